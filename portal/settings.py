"""Settings, all read from the environment through portal.env (see README, "Configuration")."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from celery.schedules import crontab
from csp import constants as csp_constants
from django.core.exceptions import ImproperlyConfigured

from portal.env import Env

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(Env().str("PORTAL_VAR_DIR", str(BASE_DIR / "var")))
env = Env()

DEBUG = env.bool("DEBUG", False)
if DEBUG:
    SECRET_KEY = env.str("SECRET_KEY", "dev-only-insecure-key-do-not-use-in-production-0123456789")
else:
    SECRET_KEY = env.str("SECRET_KEY", "")
    if len(SECRET_KEY) < 50:
        raise ImproperlyConfigured("SECRET_KEY must be set to at least 50 characters when DEBUG is off")

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", [])
SITE_URL = env.url("SITE_URL", f"http://127.0.0.1:{env.int('PORT', 8000, minimum=1)}", schemes=("http", "https"))

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "axes",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "portal",
    "tenants",
    "billing",
    "reselling",
    "customers",
    "api",
    "console",
    "drf_spectacular_sidecar",  # Swagger UI / Redoc assets served locally: /api/docs/ works offline
]

MIDDLEWARE = [
    # First, so it times and counts every answer, including those of the middleware below.
    "portal.metrics.RequestMetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Content-Security-Policy and Permissions-Policy on every answer (static files included).
    "csp.middleware.CSPMiddleware",
    "portal.csp.PermissionsPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # The language: the set_language cookie, else the browser's Accept-Language, else English.
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "portal.middleware.RequestContextMiddleware",
    # Logs out sessions of users whose tenant was closed after they logged in.
    "customers.middleware.ClosedTenantMiddleware",
    # Until the second factor is verified, a session reaches only the sign-in pages (portal/twofactor.py).
    "portal.twofactor.TwoFactorMiddleware",
    # Gives /api/ responses that Django (not DRF) produced the API's one JSON error shape.
    "api.middleware.ApiErrorShapeMiddleware",
    # Last, as django-axes asks.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "portal.context_processors.navigation",
                "console.context_processors.provider_banner",
            ],
        },
    },
]

DATABASES = {"default": env.database("DATABASE_URL", f"sqlite:///{VAR_DIR / 'portal.sqlite3'}")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env.str("REDIS_URL", "")
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# Celery: Redis when CELERY_BROKER_URL says so, otherwise kombu's filesystem transport, which
# needs no server, so the embedded stack runs anywhere.
CELERY_DATA_DIR = VAR_DIR / "celery"
CELERY_BROKER_URL = env.url("CELERY_BROKER_URL", "filesystem://", schemes=("filesystem", "redis", "rediss", "amqp"))
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {}
if CELERY_BROKER_URL.startswith("filesystem"):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(CELERY_DATA_DIR / "queue"),
        "data_folder_out": str(CELERY_DATA_DIR / "queue"),
        "processed_folder": str(CELERY_DATA_DIR / "processed"),
        # Where kombu keeps its exchange bindings (default: ./control in the working folder).
        "control_folder": str(CELERY_DATA_DIR / "control"),
        "store_processed": False,
        # The transport polls its folder; the default (1 s) caps the embedded stack at about
        # one task a second per worker process.
        "polling_interval": 0.1,
    }
else:
    # Longer than any task's hard time limit, so a running task is never handed out twice
    # because the broker thought it lost.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", False)
# How often beat sends the heartbeat (/healthz/ready wants one at least every 3 minutes).
HEARTBEAT_SECONDS = env.int("HEARTBEAT_SECONDS", 60, minimum=1)
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
SYNC_HOUR_UTC = env.int("SYNC_HOUR_UTC", 2, minimum=0)
if SYNC_HOUR_UTC > 23:
    raise ImproperlyConfigured(f"SYNC_HOUR_UTC={SYNC_HOUR_UTC} must be between 0 and 23")
# Billing (billing/conf.py validates these): money limits are decimal strings in the tenant's
# currency; times are seconds.
BILLING_TRANSFER_LIMIT = env.str("BILLING_TRANSFER_LIMIT", "5000")
BILLING_DAILY_LIMIT_PER_STAFF = env.str("BILLING_DAILY_LIMIT_PER_STAFF", "20000")
BILLING_APPROVAL_THRESHOLD = env.str("BILLING_APPROVAL_THRESHOLD", "1000")
BILLING_TRANSFER_LEASE_SECONDS = env.int("BILLING_TRANSFER_LEASE_SECONDS", 120, minimum=1)
BILLING_SETTLE_SECONDS = env.int("BILLING_SETTLE_SECONDS", 30, minimum=0)
BILLING_PENDING_GRACE_SECONDS = env.int("BILLING_PENDING_GRACE_SECONDS", 60, minimum=0)
BILLING_TRANSFER_MAX_ATTEMPTS = env.int("BILLING_TRANSFER_MAX_ATTEMPTS", 8, minimum=1)
BILLING_UNKNOWN_REVIEW_AFTER_SECONDS = env.int("BILLING_UNKNOWN_REVIEW_AFTER_SECONDS", 86400, minimum=60)
BILLING_SYNC_STALE_SECONDS = env.int("BILLING_SYNC_STALE_SECONDS", 600, minimum=1)
BILLING_SYNC_PAGE_SIZE = env.int("BILLING_SYNC_PAGE_SIZE", 1000, minimum=1)
BILLING_SYNC_CONCURRENCY = env.int("BILLING_SYNC_CONCURRENCY", 4, minimum=1)
BILLING_PROVIDER_RATE_PER_SECOND = env.int("BILLING_PROVIDER_RATE_PER_SECOND", 40, minimum=0)
BILLING_SYNC_SHARD_CHUNKS = env.int("BILLING_SYNC_SHARD_CHUNKS", 25, minimum=1)
# How often (ms) a worker writing a sync publishes the run's counters, heartbeat and progress bar.
BILLING_SYNC_PUBLISH_MS = env.int("BILLING_SYNC_PUBLISH_MS", 500, minimum=0)
BILLING_SYNC_MAX_RESUMES = env.int("BILLING_SYNC_MAX_RESUMES", 5, minimum=0)
BILLING_RECONCILE_HOUR_UTC = env.int("BILLING_RECONCILE_HOUR_UTC", (SYNC_HOUR_UTC + 1) % 24, minimum=0)
BILLING_RECONCILE_DAYS = env.int("BILLING_RECONCILE_DAYS", 2, minimum=1)
BILLING_PARENT_ALERT_DAYS = env.int("BILLING_PARENT_ALERT_DAYS", 7, minimum=0)
BILLING_SPEND_WINDOW_DAYS = env.int("BILLING_SPEND_WINDOW_DAYS", 7, minimum=1)
BILLING_BUDGET_MAX_AGE_SECONDS = env.int("BILLING_BUDGET_MAX_AGE_SECONDS", 300, minimum=0)
BILLING_REFRESH_AFTER_TRANSFER = env.bool("BILLING_REFRESH_AFTER_TRANSFER", True)
BILLING_REFRESH_AFTER_TRANSFER_SECONDS = env.int("BILLING_REFRESH_AFTER_TRANSFER_SECONDS", 5, minimum=0)

# Periodic work. Every entry is safe to fire twice (database claims and locks), since
# duplicate beats happen. The timings here are where each entry starts: the beat's scheduler
# (portal/schedule.py) copies them to the database on first use, and reseller admins change
# them in the console from then on.
CELERY_BEAT_SCHEDULER = "portal.schedule:DatabaseScheduler"
CELERY_BEAT_SCHEDULE = {
    "billing-sync-nightly": {"task": "billing.sync_nightly", "schedule": crontab(minute=0, hour=SYNC_HOUR_UTC)},
    "billing-transfer-sweep": {"task": "billing.transfer_sweep", "schedule": 60.0},
    # Resumes a sync whose workers died, from the shards it had not finished.
    "billing-sync-sweep": {"task": "billing.sync_sweep", "schedule": 60.0},
    "billing-reconcile-nightly": {
        "task": "billing.reconcile_nightly",
        "schedule": crontab(minute=30, hour=BILLING_RECONCILE_HOUR_UTC),
    },
    "billing-low-balance-alerts": {"task": "billing.low_balance_alerts", "schedule": 300.0},
    # Invoices of the month before, on the 1st; dunning of overdue invoices daily; the
    # invoice sweeper resumes a stale run and re-sends issue emails a crash left unsent.
    "reselling-invoice-run-monthly": {
        "task": "reselling.invoice_run_monthly",
        "schedule": crontab(minute=0, hour=4, day_of_month=1),
    },
    "reselling-dunning-daily": {"task": "reselling.dunning_daily", "schedule": crontab(minute=0, hour=7)},
    "reselling-invoice-sweep": {"task": "reselling.invoice_sweep", "schedule": 300.0},
    # Charges: top-ups every 5 minutes; fees and usage in one run a day, which each hourly
    # beat resumes where it stopped (a finished run makes the beat a no-op until tomorrow).
    "reselling-topup-charges": {"task": "reselling.topup_charges", "schedule": 300.0},
    "reselling-charges-nightly": {"task": "reselling.charges_nightly", "schedule": crontab(minute=30)},
    # The margin report's month totals, folded into their cache off the request path.
    "reselling-margin-totals": {"task": "reselling.margin_totals", "schedule": 60.0},
    "tenants-sweep-operations": {"task": "tenants.sweep_operations", "schedule": 30.0},
    # Which provider methods each connection's provider still answers (tenants.capability_probe).
    "tenants-probe-capabilities-nightly": {
        "task": "tenants.probe_capabilities_nightly",
        "schedule": crontab(minute=0, hour=(SYNC_HOUR_UTC + 1) % 24),
    },
    "portal-idempotency-reap": {"task": "portal.idempotency_reap", "schedule": crontab(minute=15)},
    # Document verification of every open tenant (tenants.services.plans.verification_scan).
    "tenants-verification-nightly": {
        "task": "tenants.verification_nightly",
        "schedule": crontab(minute=30, hour=(SYNC_HOUR_UTC + 2) % 24),
    },
    # The beat records when it schedules this and the worker when it runs it (/healthz/ready).
    "portal-heartbeat": {
        "task": "portal.heartbeat",
        "schedule": float(HEARTBEAT_SECONDS),
        "options": {"expires": 2 * HEARTBEAT_SECONDS},
    },
}
# The reseller's company as printed on invoices, the first time (the console edits it after):
# a JSON object with company_name, address, tax_id, email, bank_details, tax_rate_percent and
# rounding ({"USD": 2, "KZT": 0}). reselling/invoices.py validates it.
RESELLER_COMPANY = env.json("RESELLER_COMPANY", {"company_name": "Reseller"})
# Bearer token a Prometheus scraper sends to /metrics; /metrics answers 404 while it is unset.
METRICS_TOKEN = env.str("METRICS_TOKEN", "")

# Provider connection used by `make run` and as the default for new connections. The base URL
# points at the local sandbox; credentials are files, never values in the database.
PROVIDER_BASE_URL = env.url("PROVIDER_BASE_URL", "http://127.0.0.1:8001", schemes=("http", "https"))
VOXIMPLANT_BASE_URL = env.url("VOXIMPLANT_BASE_URL", PROVIDER_BASE_URL, schemes=("http", "https"))
VOICEIT_BASE_URL = env.url("VOICEIT_BASE_URL", PROVIDER_BASE_URL, schemes=("http", "https"))
PROVIDER_CREDENTIALS_DIR = Path(env.str("PROVIDER_CREDENTIALS_DIR", str(VAR_DIR / "sandbox")))
VOXIMPLANT_CREDENTIALS_FILE = env.str("VOXIMPLANT_CREDENTIALS_FILE", str(PROVIDER_CREDENTIALS_DIR / "credentials.json"))
VOXIMPLANT_PARENT_API_KEY_FILE = env.str(
    "VOXIMPLANT_PARENT_API_KEY_FILE", str(PROVIDER_CREDENTIALS_DIR / "parent_api_key")
)
VOICEIT_CREDENTIALS_FILE = env.str("VOICEIT_CREDENTIALS_FILE", str(PROVIDER_CREDENTIALS_DIR / "voiceit.json"))
PROVIDER_CONNECT_TIMEOUT = env.int("PROVIDER_CONNECT_TIMEOUT", 5, minimum=1)
PROVIDER_READ_TIMEOUT = env.int("PROVIDER_READ_TIMEOUT", 30, minimum=1)

# Keys for secrets kept in the database (child api keys, VoiceIt tokens). Comma-separated,
# newest first, so a key can be rotated without losing what the old one encrypted.
FIELD_ENCRYPTION_KEYS = env.list("FIELD_ENCRYPTION_KEYS", [])
if not FIELD_ENCRYPTION_KEYS:
    if not DEBUG:
        raise ImproperlyConfigured("FIELD_ENCRYPTION_KEYS must be set when DEBUG is off")
    FIELD_ENCRYPTION_KEYS = ["ZGV2LW9ubHktZmllbGQta2V5LWRvLW5vdC11c2UtISE="]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
    {"NAME": "portal.validators.MaximumLengthValidator", "OPTIONS": {"max_length": 4096}},
]
# customers.backends refuses users of closed tenants (ModelBackend otherwise).
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "customers.backends.TenantAwareModelBackend"]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# Two-factor sign-in (portal/twofactor.py, docs/security.md): how long a password-and-code
# re-authentication stays fresh for money, token, role and provider changes.
TWO_FACTOR_REAUTH_SECONDS = env.int("TWO_FACTOR_REAUTH_SECONDS", 300, minimum=30)
OTP_TOTP_ISSUER = env.str("OTP_TOTP_ISSUER", "Reseller portal")

AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = 1  # hours
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
# The counter is reset by portal.twofactor once the whole sign-in succeeded (password and, where
# needed, the code): a reset on the password alone would let a guesser of codes start over.
AXES_RESET_ON_SUCCESS = False
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
# Reverse proxies in front of the portal; portal.clientip reads the client's address from
# X-Forwarded-For accordingly, for the lockout, the audit log and the API throttle alike.
PROXY_COUNT = env.int("PROXY_COUNT", 0, minimum=0)
AXES_CLIENT_IP_CALLABLE = "portal.clientip.client_ip"
AXES_VERBOSE = False

SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"
SESSION_COOKIE_AGE = 12 * 3600
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = True
# Under /api/ a CSRF failure answers in the API's JSON error shape; elsewhere Django's page.
CSRF_FAILURE_VIEW = "api.errors.csrf_failure"

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", not DEBUG)
# The stack's own health checks call /healthz (and the checks under it) over plain HTTP.
SECURE_REDIRECT_EXEMPT = [r"^healthz(/|$)", r"^metrics$"]  # probes and the scraper inside the stack
SESSION_COOKIE_SECURE = env.bool("SECURE_COOKIES", not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# No inline script or style anywhere: scripts and styles are files under static/ (docs/security.md).
# data: images: the Swagger UI stylesheet of /api/docs/ draws its icons with them.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [csp_constants.SELF],
        "script-src": [csp_constants.SELF],
        "style-src": [csp_constants.SELF],
        "img-src": [csp_constants.SELF, "data:"],
        "font-src": [csp_constants.SELF],
        "connect-src": [csp_constants.SELF],
        "frame-ancestors": [csp_constants.NONE],
        "base-uri": [csp_constants.SELF],
        "form-action": [csp_constants.SELF],
        "object-src": [csp_constants.NONE],
        "report-uri": "/csp-report/",
    },
}
# Permissions-Policy: portal/csp.py switches off the browser features no page uses; a
# PERMISSIONS_POLICY dict here ({"camera": (), "fullscreen": ("self",)}) would replace that list.

EMAIL_BACKEND = env.str(
    "EMAIL_BACKEND",
    "django.core.mail.backends.console.EmailBackend" if DEBUG else "django.core.mail.backends.smtp.EmailBackend",
)
EMAIL_HOST = env.str("EMAIL_HOST", "localhost")
EMAIL_PORT = env.int("EMAIL_PORT", 25, minimum=1)
EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", False)
# Seconds for the SMTP connection and each command on it: a mail server that hangs never holds a
# page or a task longer than this.
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", 10, minimum=1)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", "portal@localhost")
STAFF_ALERT_EMAILS = env.list("STAFF_ALERT_EMAILS", [])
# Warn staff and owners this many days before an unverified account is held by the provider.
VERIFICATION_WARN_DAYS = env.int("VERIFICATION_WARN_DAYS", 7, minimum=0)
VERIFICATION_BATCH = env.int("VERIFICATION_BATCH", 500, minimum=1)

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
# English and Russian (docs/CONVENTIONS.md, "Languages"); English stays the default.
LANGUAGES = [("en", "English"), ("ru", "Русский")]
LOCALE_PATHS = [BASE_DIR / "locale"]
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"  # collected into the image at build, never under PORTAL_VAR_DIR
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # The API's own policies live in portal/api/ (see its package docstring).
    "DEFAULT_PARSER_CLASSES": ["api.parsers.JSONBodyParser"],
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "api.auth.ApiTokenAuthentication",
        "api.auth.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_THROTTLE_CLASSES": ["api.throttles.PerTokenThrottle"],
    "EXCEPTION_HANDLER": "api.errors.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Reseller portal API",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Assets from the drf-spectacular-sidecar package, served by whitenoise: no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Error responses and parameter bounds on every operation (api/schema.py).
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "api.schema.document_errors_and_bounds",
    ],
}
# Requests per token (or per session user) on the API, e.g. "600/min".
API_THROTTLE_RATE = env.str("API_THROTTLE_RATE", "1200/min")
# How long a customer waits between two "refresh my balance now" provider calls, per tenant.
CUSTOMER_REFRESH_INTERVAL = env.int("CUSTOMER_REFRESH_INTERVAL", 60, minimum=1)

LOG_LEVEL = env.str("LOG_LEVEL", "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "redact": {"()": "portal.logs.RedactSecretsFilter"},
        "request": {"()": "portal.logs.RequestContextFilter"},
    },
    "formatters": {"json": {"()": "portal.logs.JsonFormatter"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "json", "filters": ["request", "redact"]},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"django.db.backends": {"level": "INFO"}, "httpx": {"level": "WARNING"}},
}

# Error tracking (portal/errortracking.py): off unless SENTRY_DSN is set. Events carry no
# personal data and pass through the log redaction before they leave the process.
SENTRY_DSN = env.str("SENTRY_DSN", "")
SENTRY_ENVIRONMENT = env.str("SENTRY_ENVIRONMENT", "development" if DEBUG else "production")
SENTRY_TRACES_SAMPLE_RATE = float(env.decimal("SENTRY_TRACES_SAMPLE_RATE", "0", minimum=Decimal(0)))
if SENTRY_TRACES_SAMPLE_RATE > 1:
    raise ImproperlyConfigured(f"SENTRY_TRACES_SAMPLE_RATE={SENTRY_TRACES_SAMPLE_RATE} must be between 0 and 1")
