"""Django settings: one file, driven by environment variables (see .env.example).

Defaults are safe for a single machine: DEBUG off, a secret key generated on first start and kept in the data
folder (never in the repository), SQLite in the data folder unless DATABASE_URL is set, and the embedded Redis
(started by `make run`) on a unix socket in the data folder unless CELERY_BROKER_URL is set.
"""

from __future__ import annotations

import json
import os
import secrets
from datetime import timedelta
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


# Where the platform keeps its state: the SQLite database, model artifacts, embedding caches, the secret key.
DATA_DIR = Path(os.environ.get("ALABEL_DATA_DIR", str(BASE_DIR / "var"))).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)
ARTIFACTS_DIR = Path(os.environ.get("ALABEL_ARTIFACTS_DIR", str(DATA_DIR / "artifacts"))).resolve()


def _secret_key() -> str:
    key = os.environ.get("DJANGO_SECRET_KEY", "")
    if key:
        return key
    path = DATA_DIR / "secret_key"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(50))
    return path.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", "")

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
    "django_celery_beat",
    "annotator",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last: it turns a login locked out by django-axes into a 429 (annotator.security.lockout_response).
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "webapp.urls"
WSGI_APPLICATION = "webapp.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Database: PostgreSQL when DATABASE_URL is set, SQLite in the data folder otherwise (also when it is set but empty,
# as `DATABASE_URL= make run` or an uncommented `DATABASE_URL=` line of .env.example leave it).
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{DATA_DIR / 'db.sqlite3'}",
        conn_max_age=int(os.environ.get("DATABASE_CONN_MAX_AGE", "60")),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        # Web, worker and beat write concurrently: WAL lets readers proceed, IMMEDIATE takes the write lock at
        # the start of a transaction (no upgrade deadlocks), and writers wait up to 20 s for each other.
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # Tests run worker processes against the test database, so it must be a file, not :memory:.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test_db.sqlite3")}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Caches: the API throttles count in the default cache, which every web process (gunicorn runs several, maybe on
# several hosts) must share: the database cache (its table is created by `migrate`, annotator migration 0017), or
# Redis when ALABEL_CACHE_URL is set (redis://host:6379/1, or unix:///path/redis.sock?db=1).
ALABEL_CACHE_URL = os.environ.get("ALABEL_CACHE_URL", "")
if ALABEL_CACHE_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": ALABEL_CACHE_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "alabel_cache"}}

# Logins (the form and POST /api/v1/auth/token/): django-axes locks a username at one client address out for
# ALABEL_LOGIN_LOCKOUT_MINUTES after ALABEL_LOGIN_FAILURES failed attempts (counted in the database, so across
# processes); a success resets the count.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = int(os.environ.get("ALABEL_LOGIN_FAILURES", "5"))
AXES_COOLOFF_TIME = timedelta(minutes=float(os.environ.get("ALABEL_LOGIN_LOCKOUT_MINUTES", "15")))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "annotator.security.client_ip"
AXES_LOCKOUT_CALLABLE = "annotator.security.lockout_response"
# Reverse proxies in front of the web processes (each appends to X-Forwarded-For): lockouts and throttles count by
# the address the nearest one saw. 0: REMOTE_ADDR, and a client's own X-Forwarded-For is never trusted.
DJANGO_NUM_PROXIES = int(os.environ.get("DJANGO_NUM_PROXIES", "0"))
# API tokens (POST /api/v1/auth/token/) expire this many hours after they are issued.
ALABEL_TOKEN_HOURS = float(os.environ.get("ALABEL_TOKEN_HOURS", "24"))

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = os.environ.get("DJANGO_TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "staticfiles"
STATIC_ROOT.mkdir(exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "project-list"
LOGOUT_REDIRECT_URL = "login"

# Security defaults. Behind TLS the production checklist (docs/operations.md) switches on HTTPS-only cookies
# (DJANGO_SECURE_COOKIES=1), the redirect to HTTPS (DJANGO_SSL_REDIRECT=1) and HSTS (DJANGO_HSTS_SECONDS, with
# DJANGO_HSTS_INCLUDE_SUBDOMAINS / DJANGO_HSTS_PRELOAD); behind a proxy that terminates TLS,
# DJANGO_SECURE_PROXY_SSL_HEADER=1 trusts its X-Forwarded-Proto (the proxy must set it and drop the client's).
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_SSL_REDIRECT = env_bool("DJANGO_SSL_REDIRECT", False)
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]  # health checks reach the container over plain HTTP
SECURE_HSTS_SECONDS = int(os.environ.get("DJANGO_HSTS_SECONDS", "0"))
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("DJANGO_HSTS_PRELOAD", False)
if env_bool("DJANGO_SECURE_PROXY_SSL_HEADER", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SECURE_REFERRER_POLICY = "same-origin"
# Content-Security-Policy (django-csp): the pages load only their own static scripts and styles, no inline code,
# nothing from another origin.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

# Uploads: an import file larger than this is refused with a clear message before it is parsed.
ALABEL_MAX_IMPORT_BYTES = int(os.environ.get("ALABEL_MAX_IMPORT_BYTES", str(50 * 1024 * 1024)))
DATA_UPLOAD_MAX_MEMORY_SIZE = ALABEL_MAX_IMPORT_BYTES
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
DATA_UPLOAD_MAX_NUMBER_FIELDS = 10_000

REST_FRAMEWORK = {
    # The token class first: its `WWW-Authenticate: Token` makes an anonymous request a 401 (a 403 otherwise).
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "annotator.api.authentication.ExpiringTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    # JSON only: the browsable API (HTML forms for every endpoint) in development only.
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        *(["rest_framework.renderers.BrowsableAPIRenderer"] if DEBUG else []),
    ],
    # POST /api/v1/auth/token/ per client address, counted in the shared cache (CACHES above).
    "DEFAULT_THROTTLE_RATES": {"auth": os.environ.get("ALABEL_AUTH_RATE", "10/minute")},
    "NUM_PROXIES": DJANGO_NUM_PROXIES,
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # drf-spectacular's, with every operation's error answers described as RFC 9457 problem details.
    "DEFAULT_SCHEMA_CLASS": "annotator.api.schema.ProblemAutoSchema",
    # Every API error as problem details (`application/problem+json`); list paging: annotator/api/paging.py.
    "EXCEPTION_HANDLER": "annotator.api.errors.exception_handler",
    "DEFAULT_PAGINATION_CLASS": None,
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    # `?format=csv` selects the export format, not a DRF renderer.
    "URL_FORMAT_OVERRIDE": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "alabel API",
    "DESCRIPTION": "Active-learning annotation platform for multi-label text classification.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    # One name for the training modes (`retrain_mode`, `mode`), or the schema generator warns (drf_spectacular.W001
    # in `check --deploy`) that one choice set has several names.
    "ENUM_NAME_OVERRIDES": {"TrainModeEnum": "annotator.models.TrainMode"},
}

# Celery: the broker is Redis. Without CELERY_BROKER_URL, the embedded Redis that `make run` starts on a unix
# socket in the data folder is used. The database is the source of truth for jobs, so no result backend.
EMBEDDED_REDIS_SOCKET = DATA_DIR / "redis.sock"
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL") or f"redis+socket://{EMBEDDED_REDIS_SOCKET}"
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {
    "annotator.tasks.encode_documents": {"queue": "gpu"},
    "annotator.tasks.train_model": {"queue": "gpu"},
    "annotator.tasks.adapt_encoder": {"queue": "gpu"},
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Long training runs must not be redelivered while they still run (acks_late): visibility timeout above them.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": int(os.environ.get("CELERY_VISIBILITY_TIMEOUT", "7200")),
    "socket_connect_timeout": 3,
    "socket_timeout": 10,
}
# Publishing must not hang a web request when the broker is down: the job row stays PENDING and the
# reconciler (celery beat) dispatches it again.
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.2,
}
CELERY_BEAT_SCHEDULER = "annotator.beat:SafeDatabaseScheduler"  # django-celery-beat's, one bad entry never stops beat
ALABEL_RECONCILE_SECONDS = float(os.environ.get("ALABEL_RECONCILE_SECONDS", "60"))  # the reconciler's period
CELERY_BEAT_SCHEDULE = {
    "reconcile-jobs": {"task": "annotator.tasks.reconcile", "schedule": ALABEL_RECONCILE_SECONDS},
}
CELERY_TIMEZONE = TIME_ZONE
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# The platform's own knobs.
ALABEL_ENCODER_PATH = os.environ.get("ALABEL_ENCODER_PATH", "")  # empty: the bundled all-MiniLM-L6-v2
ALABEL_DEVICE = os.environ.get("ALABEL_DEVICE", "auto")
# The full tier's settings for projects whose model_tier is "full": learner.full.FullTierConfig fields as a JSON
# object, e.g. {"epochs": 2, "max_length": 64, "batch_size": 16, "head": "tree"} (default {}: the learner's
# defaults, head "auto"). The project's loss, the run's seed, ALABEL_DEVICE and the project's encoder set the rest;
# a bad or unknown key fails the training run with its name (docs/operations.md).
ALABEL_FULL_TIER = json.loads(os.environ.get("ALABEL_FULL_TIER", "").strip() or "{}")
if not isinstance(ALABEL_FULL_TIER, dict):
    raise ValueError(f"ALABEL_FULL_TIER must be a JSON object of FullTierConfig fields; got {ALABEL_FULL_TIER!r}")
# A running job's worker writes its heartbeat every ALABEL_HEARTBEAT_SECONDS from a thread; the reconciler fails
# (and retries, at most ALABEL_JOB_MAX_RETRIES times in a row) a RUNNING job silent for ALABEL_JOB_STALE_SECONDS.
ALABEL_HEARTBEAT_SECONDS = float(os.environ.get("ALABEL_HEARTBEAT_SECONDS", "5"))
ALABEL_JOB_STALE_SECONDS = int(os.environ.get("ALABEL_JOB_STALE_SECONDS", "60"))
ALABEL_JOB_MAX_RETRIES = int(os.environ.get("ALABEL_JOB_MAX_RETRIES", "3"))
# Every worker process records itself (WorkerHeartbeat) this often; /healthz counts workers seen within 3 periods.
ALABEL_WORKER_HEARTBEAT_SECONDS = float(os.environ.get("ALABEL_WORKER_HEARTBEAT_SECONDS", "10"))
ALABEL_COLD_START_SIZE = int(os.environ.get("ALABEL_COLD_START_SIZE", "50"))
# The annotate page shows every label as a toggle with its key when a project has at most this many (deprecated
# labels not counted); above it, search and the suggestions only. 0 turns the toggles off.
ALABEL_LABEL_BUTTONS = int(os.environ.get("ALABEL_LABEL_BUTTONS", "60"))
# Encoder adaptation (learner.adapt) needs pairs of labelled documents: below this many it is refused.
ALABEL_ADAPT_MIN_DOCUMENTS = int(os.environ.get("ALABEL_ADAPT_MIN_DOCUMENTS", "20"))
# Projects with adapt_auto adapt on their own from this many labelled documents (measured on GoEmotions: +2 points
# of micro-F1 at 100 labels, +5 at 500; docs/benchmarks.md), then whenever the labelled documents have doubled.
ALABEL_ADAPT_AUTO_DOCUMENTS = int(os.environ.get("ALABEL_ADAPT_AUTO_DOCUMENTS", "100"))
# An adapted encoder is adopted when the fast tier on it does at least this much better (micro-F1) than on the encoder
# in use, on labelled documents held out of the adaptation (negative: adopt even a slightly worse one).
ALABEL_ADAPT_MIN_GAIN = float(os.environ.get("ALABEL_ADAPT_MIN_GAIN", "0.0"))
# An adaptation holds the gpu queue (training and encoding too) for about 1 s per labelled document on two CPU cores:
# without CUDA, automatic adaptations stop above this many labelled documents (managers can still adapt by hand).
ALABEL_ADAPT_AUTO_CPU_MAX_DOCUMENTS = int(os.environ.get("ALABEL_ADAPT_AUTO_CPU_MAX_DOCUMENTS", "500"))
ALABEL_MAX_DOCUMENT_CHARS = int(os.environ.get("ALABEL_MAX_DOCUMENT_CHARS", "100000"))  # longer texts: refused

# Budget notices go to the project managers by email: the console backend (logs) unless configured, e.g.
# DJANGO_EMAIL_BACKEND=django.core.mail.backends.smtp.EmailBackend with EMAIL_HOST / EMAIL_PORT.
EMAIL_BACKEND = os.environ.get("DJANGO_EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
EMAIL_PORT = int(os.environ.get("EMAIL_PORT", "25"))
DEFAULT_FROM_EMAIL = os.environ.get("ALABEL_FROM_EMAIL", "alabel@localhost")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("ALABEL_LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
