"""Settings, all from environment variables (every one is listed in ``.env.example``).

With none set, the service runs embedded: SQLite under ``var/``, Celery's filesystem broker under
``var/broker`` and media under ``var/media``; one worker consumes every queue. ``DATABASE_URL``
and ``CELERY_BROKER_URL`` switch to PostgreSQL and Redis.
"""

from __future__ import annotations

import os
import secrets
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from tracker.queues import ROUTES, Queue, Task

BASE_DIR = Path(__file__).resolve().parent.parent


def env(name: str, default: str = "") -> str:
    """A variable, or the content of the file named by ``NAME_FILE`` (container secrets)."""
    file_name = os.environ.get(f"{name}_FILE")
    if file_name:
        return Path(file_name).read_text().strip()
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    value = env(name, "")
    if not value:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = env(name, "")
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None


VAR_DIR = Path(env("TRACKER_VAR_DIR", str(BASE_DIR / "var")))
DEBUG = env_bool("DEBUG", False)
# Keys that are public (the example file's placeholder, an earlier built-in default).
KNOWN_KEYS = {"change-me-to-a-long-random-string", "embedded-default-not-for-deployment"}


def checkout_secret_key(path: Path) -> str:
    """The embedded default's key: made once per checkout (random, 0600) and kept in ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(handle, "w") as out:
        out.write(secrets.token_urlsafe(50))
    return path.read_text().strip()


SECRET_KEY = env("SECRET_KEY", "")
if SECRET_KEY in KNOWN_KEYS or 0 < len(SECRET_KEY) < 32:
    raise ImproperlyConfigured(
        "SECRET_KEY is a published placeholder or shorter than 32 characters: set a long random "
        "one (python -c 'import secrets; print(secrets.token_urlsafe(50))')"
    )
if not SECRET_KEY:
    if env_bool("TRACKER_REQUIRE_SECRET_KEY", False):
        raise ImproperlyConfigured(
            "SECRET_KEY (or SECRET_KEY_FILE) must be set: TRACKER_REQUIRE_SECRET_KEY says this is "
            "a deployment"
        )
    # Embedded default: a key of this checkout's own, never a built-in one.
    SECRET_KEY = checkout_secret_key(VAR_DIR / "secret_key")
ALLOWED_HOSTS = [h.strip() for h in env("ALLOWED_HOSTS", "localhost,127.0.0.1").split(",") if h]
CSRF_TRUSTED_ORIGINS = [o for o in env("CSRF_TRUSTED_ORIGINS", "").split(",") if o]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "knox",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files, served from here (no CDN)
    "csp",
    "axes",
    "tracker",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # An upload over the limit is refused on its Content-Length, before the body is read.
    "tracker.middleware.UploadSizeLimit",
    # Static files (the pages' CSS and JavaScript, vendored) from the app server itself.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Below WhiteNoise: dynamic responses only get "Cache-Control: no-store".
    "tracker.middleware.NoStore",
    "csp.middleware.CSPMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last: answers a locked-out login with 429.
    "axes.middleware.AxesMiddleware",
]

# Failed logins (pages, admin, API token) lock the user at that address out for a while
# (django-axes); each failure is audited (tracker.signals).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("TRACKER_LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = env_int("TRACKER_LOGIN_LOCKOUT_MINUTES", 15) / 60  # hours
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False
AXES_LOCKOUT_CALLABLE = "tracker.api.errors.locked_out"  # JSON under /api/

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

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
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        env("DATABASE_URL", f"sqlite:///{VAR_DIR / 'tracker.sqlite3'}"),
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The embedded default: a web server and a worker share the file.
    DATABASES["default"]["OPTIONS"] = {"timeout": 30, "transaction_mode": "IMMEDIATE"}
    DATABASES["default"]["CONN_MAX_AGE"] = 0
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Passwords: at least 12 characters, not like the user's name or e-mail, not a common password,
# not only digits (NCSC / NIST SP 800-63B: length over composition rules).
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": env_int("TRACKER_PASSWORD_MIN_LENGTH", 12)},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-gb"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # collectstatic's target (WhiteNoise looks there)
STATICFILES_DIRS = [BASE_DIR / "static"] if (BASE_DIR / "static").is_dir() else []
# Served straight from static/ (no collectstatic step needed; the image runs it anyway).
WHITENOISE_USE_FINDERS = True
MEDIA_ROOT = Path(env("MEDIA_ROOT", str(VAR_DIR / "media")))
MEDIA_URL = "media/"

# Uploads: four NIfTI volumes or one zip (of NIfTI files, or of DICOM series: one file per
# slice, so thousands of entries); larger requests are refused before they are read.
TRACKER_MAX_UPLOAD_MB = env_int("TRACKER_MAX_UPLOAD_MB", 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
FILE_UPLOAD_TEMP_DIR = None
TRACKER_ZIP_MAX_ENTRIES = env_int("TRACKER_ZIP_MAX_ENTRIES", 5000)

REST_FRAMEWORK = {
    # Token first: an unauthenticated API call gets 401 with "WWW-Authenticate: Token".
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "knox.auth.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    # drf-spectacular's, plus each operation's error responses (tracker/api/schema.py).
    "DEFAULT_SCHEMA_CLASS": "tracker.api.schema.TrackerAutoSchema",
    # JSON bodies (a body nested too deeply is a 400, tracker/api/errors.py); the visit upload
    # and the token endpoint also take forms.
    "DEFAULT_PARSER_CLASSES": ["tracker.api.errors.BoundedJSONParser"],
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
    # The token endpoint is throttled per address on top of the lockout.
    "DEFAULT_THROTTLE_RATES": {"login": env("TRACKER_TOKEN_RATE", "20/minute")},
}
# API tokens (django-rest-knox): stored as digests, expire after TRACKER_TOKEN_TTL_HOURS,
# revocable (POST /api/token/revoke/, /api/token/revoke-all/, or deleted in the admin).
REST_KNOX = {
    "TOKEN_TTL": timedelta(hours=env_int("TRACKER_TOKEN_TTL_HOURS", 24)),
    "AUTO_REFRESH": False,
    "AUTH_HEADER_PREFIX": "Token",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Brain-tumour tracker API",
    "DESCRIPTION": (
        "Patients, visits, analysis runs and RANO 2.0 assessments. Not for diagnostic use."
    ),
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI from drf-spectacular-sidecar's vendored files (no CDN).
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/patients/"
LOGOUT_REDIRECT_URL = "/accounts/login/"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"

# Behind TLS (the compose stack: nginx terminates it and sets X-Forwarded-Proto): HTTPS only,
# HSTS, cookies only over HTTPS. `manage.py check --deploy` passes with the compose settings.
BEHIND_TLS = env_bool("TRACKER_BEHIND_TLS", False)
if BEHIND_TLS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = BEHIND_TLS
SECURE_REDIRECT_EXEMPT = [r"^healthz/$"]  # the container health check, inside the stack
SECURE_HSTS_SECONDS = env_int("TRACKER_HSTS_SECONDS", 31_536_000) if BEHIND_TLS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("TRACKER_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("TRACKER_HSTS_PRELOAD", True)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", BEHIND_TLS)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", BEHIND_TLS)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

# Content-Security-Policy (django-csp): scripts and styles only from the app's own static files
# (no inline script anywhere; style attributes are allowed for the legend swatches and Swagger
# UI), images also from data:/blob: (the viewer's canvases), nothing may frame the pages.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "style-src-attr": ["'unsafe-inline'"],
        "img-src": ["'self'", "data:", "blob:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "worker-src": ["'self'", "blob:"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

# Celery: state lives in the database, so there is no result backend.
# (a host named, though the filesystem transport has none: kombu warns about a missing one)
CELERY_BROKER_URL = env("CELERY_BROKER_URL", "filesystem://localhost/")
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker = VAR_DIR / "broker"
    for _sub in ("out", "processed", "control"):
        (_broker / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker / "out"),
        "data_folder_out": str(_broker / "out"),
        "processed_folder": str(_broker / "processed"),
        "control_folder": str(_broker / "control"),  # else ./control in the working directory
        "store_processed": False,
    }
else:
    # Priorities (0 first): a visit's later stages go before the next visit's preparation, so
    # under a burst each visit is finished as soon as it can be (tracker.queues.STAGE_PRIORITY;
    # bench/bench_throughput.py, docs/capacity.md). The filesystem broker has none: FIFO.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": 3600,
        "queue_order_strategy": "priority",
        "priority_steps": list(range(10)),
        "sep": ":",
    }
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = Queue.DEFAULT.value
CELERY_TASK_ROUTES = {task.value: {"queue": queue.value} for task, queue in ROUTES.items()}
# The sweeper re-queues runs and assessments left behind by a dead worker or a broker that lost
# its messages: it looks every TRACKER_SWEEP_EVERY_S for queued work untouched for
# TRACKER_STALE_AFTER_S and for running stages whose worker has not beaten for
# TRACKER_HEARTBEAT_STALE_S (a running stage beats every TRACKER_HEARTBEAT_STALE_S / 4).
TRACKER_SWEEP_EVERY_S = env_int("TRACKER_SWEEP_EVERY_S", 120)
TRACKER_STALE_AFTER_S = env_int("TRACKER_STALE_AFTER_S", 300)
TRACKER_HEARTBEAT_STALE_S = env_int("TRACKER_HEARTBEAT_STALE_S", 120)
CELERY_BEAT_SCHEDULE = {
    "sweep-stale-runs": {"task": Task.SWEEP.value, "schedule": float(TRACKER_SWEEP_EVERY_S)},
}
TRACKER_WEIGHTS_DIR = env("TRACKER_WEIGHTS_DIR", "")  # default: the shipped model
# Where segmentation's forward pass runs: auto (ONNX Runtime on a CPU worker, Keras on JAX),
# keras or onnx (inference/segmentation/runtime.py); the ONNX export of each model is cached
# under TRACKER_MODEL_CACHE, built by the first worker that needs it or by
# `python -m inference export-onnx --cache DIR`.
TRACKER_SEGMENTER_RUNTIME = env("TRACKER_SEGMENTER_RUNTIME", "auto")
TRACKER_MODEL_CACHE = Path(env("TRACKER_MODEL_CACHE", "") or VAR_DIR / "model-cache")
# A worker that consumes the GPU queue loads and warms the model when it starts (not on the
# first visit); 0 turns that off.
TRACKER_WARM_UP = env("TRACKER_WARM_UP", "1") != "0"
# A worker keeps the images it read or wrote last, up to this many MiB per process, so the next
# stage of a visit finds them in memory (inference/imaging/cache.py); 0 turns that off. Web
# processes never keep them.
TRACKER_IMAGE_CACHE_MB = env_int("TRACKER_IMAGE_CACHE_MB", 768)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", "INFO")},
    # WeasyPrint and fontTools narrate every PDF at INFO.
    "loggers": {
        "weasyprint": {"level": "WARNING"},
        "fontTools": {"level": "WARNING"},
    },
}
