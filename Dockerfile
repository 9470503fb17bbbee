# The one image every portal service runs (web, worker, beat, migrate, sandbox).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1
ENV PYTHONUNBUFFERED=1
WORKDIR /app
# The processes run as this user; the data volume's mount point belongs to it, so Docker gives a
# new portal-var volume the same owner. The code and the collected static files stay root's.
RUN groupadd --system --gid 10001 portal && useradd --system --uid 10001 --gid portal --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin portal && mkdir -p /var/portal && chown portal:portal /var/portal
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
# Into STATIC_ROOT (/app/staticfiles), inside the image: no volume is mounted over it.
# The pinned front-end packages first (assets.lock; files already in the context are only verified).
RUN python scripts/fetch_assets.py && DEBUG=0 SECRET_KEY=build-only-not-used-at-runtime-012345678901234567890123 FIELD_ENCRYPTION_KEYS=YnVpbGQtb25seS1rZXktbm90LXVzZWQtMDEyMzQ1Njc= python manage.py collectstatic --noinput
USER portal
