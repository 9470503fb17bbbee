FROM python:3.11-slim
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
RUN DEBUG=0 SECRET_KEY=build-only-not-used-at-runtime-012345678901234567890123 FIELD_ENCRYPTION_KEYS=YnVpbGQtb25seS1rZXktbm90LXVzZWQtMDEyMzQ1Njc= python manage.py collectstatic --noinput
