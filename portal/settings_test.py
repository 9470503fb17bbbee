"""Test settings: the production settings module with safe defaults for the environment."""

import os

os.environ.setdefault("DEBUG", "0")
os.environ.setdefault("SECRET_KEY", "test-only-secret-key-0123456789-0123456789-0123456789-xyz")
os.environ.setdefault("FIELD_ENCRYPTION_KEYS", "dGVzdC1vbmx5LWZpZWxkLWtleS0wMTIzNDU2Nzg5YWI=")
os.environ.setdefault("ALLOWED_HOSTS", "testserver,localhost,127.0.0.1")
os.environ.setdefault("SECURE_SSL_REDIRECT", "false")
os.environ.setdefault("SECURE_COOKIES", "false")
os.environ.setdefault("SECURE_HSTS_SECONDS", "0")
os.environ.setdefault("EMAIL_BACKEND", "django.core.mail.backends.locmem.EmailBackend")
os.environ.setdefault("PORTAL_VAR_DIR", os.path.join(os.path.dirname(os.path.dirname(__file__)), "var", "test"))

# Under `pytest -n N` (make test runs the tests that need no Celery worker and no browser that
# way) each process gets its own var folder and its own Redis cache database, so one process's
# cache.clear() or broker folder never reaches another's. The test database is suffixed per
# process by pytest-django itself.
_XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")  # "gw0", "gw1", ...
if _XDIST_WORKER.startswith("gw") and _XDIST_WORKER[2:].isdigit():
    _index = int(_XDIST_WORKER[2:])
    os.environ["PORTAL_VAR_DIR"] = os.path.join(os.environ["PORTAL_VAR_DIR"], _XDIST_WORKER)
    _redis = os.environ.get("REDIS_URL", "")
    _base, _, _db = _redis.rpartition("/")
    if _redis and _db.isdigit() and _index:
        # Downwards from the given database: CI gives the cache 15 and the broker 14, so the
        # second process's cache is 13, the third's 12.
        os.environ["REDIS_URL"] = f"{_base}/{(int(_db) - 1 - _index) % 16}"

from portal.settings import *  # noqa: E402,F403

# django-otp's own delay after a wrong code (1 s, then doubling) would make tests wait; the
# lockout (django-axes) that counts wrong codes stays on and is what the tests exercise.
OTP_TOTP_THROTTLE_FACTOR = 0
OTP_STATIC_THROTTLE_FACTOR = 0

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast tests; production keeps PBKDF2
STORAGES["staticfiles"]["BACKEND"] = "django.contrib.staticfiles.storage.StaticFilesStorage"  # noqa: F405
STATIC_ROOT = None  # type: ignore[assignment]  # tests never collect static files; whitenoise serves from the finders
WHITENOISE_USE_FINDERS = True
