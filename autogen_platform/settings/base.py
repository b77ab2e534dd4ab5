"""Every setting of the platform, read once from the environment through `env()`."""
import os
from datetime import timedelta
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = Path(os.environ.get("PLATFORM_VAR_DIR", BASE_DIR / "var"))
# The SQLite database, the embedded Redis socket and sandboxes live here: a fresh clone has none yet.
VAR_DIR.mkdir(parents=True, exist_ok=True)


def _load_dotenv(path: Path) -> None:
    """An optional `.env` file fills in variables the environment does not already set."""
    if not path.is_file():
        return
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        os.environ.setdefault(key.strip(), value.strip().strip("'\""))


_load_dotenv(BASE_DIR / ".env")


def env(name: str, default=None, cast=str):
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if cast is bool:
        return value.strip().lower() in {"1", "true", "yes", "on"}
    if cast is list:
        return [item.strip() for item in value.split(",") if item.strip()]
    return cast(value)


DEV_SECRET_KEY = "dev-insecure-secret-key-change-me"
DEV_ADMIN_API_KEY = "dev-admin-key"

DEBUG = env("DJANGO_DEBUG", True, bool)
SECRET_KEY = env("DJANGO_SECRET_KEY", DEV_SECRET_KEY)
ADMIN_API_KEY = env("ADMIN_API_KEY", DEV_ADMIN_API_KEY)
# Provider API keys are encrypted at rest with this key (any string; derived into a Fernet key).
FIELD_ENCRYPTION_KEY = env("FIELD_ENCRYPTION_KEY", SECRET_KEY)
if not DEBUG and (DEV_SECRET_KEY in (SECRET_KEY, FIELD_ENCRYPTION_KEY) or ADMIN_API_KEY == DEV_ADMIN_API_KEY):
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(
        "DJANGO_DEBUG=0 needs DJANGO_SECRET_KEY and ADMIN_API_KEY set (and FIELD_ENCRYPTION_KEY, if set, not the"
        " development key): refusing the development defaults"
    )
ALLOWED_HOSTS = env("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "testserver", "[::1]"], list)
CORS_ALLOWED_ORIGINS = env("CORS_ALLOWED_ORIGINS", [], list)
# Browser clients send these beyond corsheaders' defaults, and may read these response headers.
CORS_ALLOW_HEADERS = ("accept", "authorization", "content-type", "user-agent", "x-csrftoken", "x-requested-with",
                      "idempotency-key", "x-admin-key", "x-request-id")
CORS_EXPOSE_HEADERS = ["Retry-After", "X-Request-Id"]
CSRF_TRUSTED_ORIGINS = env("CSRF_TRUSTED_ORIGINS", [], list)

INSTALLED_APPS = [
    "daphne",
    # The Django admin site is adminpanel.site.PlatformAdminSite: staff sessions verified by a TOTP device.
    "adminpanel.apps.PlatformAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_prometheus",
    "corsheaders",
    "rest_framework",
    "rest_framework_simplejwt",
    "rest_framework_simplejwt.token_blacklist",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "axes",
    "drf_spectacular",
    # Swagger UI's and Redoc's files, served by the platform itself (/api/docs/ works with no internet).
    "drf_spectacular_sidecar",
    "django_filters",
    # Before channels: its `runworker` command must be the platform's task worker, not Channels'.
    "runtime",
    "channels",
    "django_rq",
    "core",
    "accounts",
    "agents",
    "teams",
    "tasks",
    "adminpanel",
    "integrations",
    "specs",
    "studio",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "autogen_platform.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    # Inside the security and CORS headers, outside Django's other middleware: their error pages (a disallowed
    # Host in CommonMiddleware, with DEBUG on) reach API clients in the envelope too.
    "autogen_platform.middleware.ApiErrorMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    # Everything under /admin/ (the RQ dashboard included) needs a staff session verified by a second factor.
    "adminpanel.middleware.AdminSecondFactorMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Turns a session login refused by the lockout into a 429 (the API token views answer it themselves).
    "axes.middleware.AxesMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

# Every password check goes through django-axes first: it refuses a locked-out (username, client) pair or client.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]

ROOT_URLCONF = "autogen_platform.urls"
WSGI_APPLICATION = "autogen_platform.wsgi.application"
ASGI_APPLICATION = "autogen_platform.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "autogen_platform" / "templates"],
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

DATABASE_URL = env("DATABASE_URL", f"sqlite:///{VAR_DIR / 'platform.sqlite3'}")
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=env("DB_CONN_MAX_AGE", 0, int))}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A local file: each web request thread (kept from one request to the next, autogen_platform.asgi_handler)
    # keeps its connection, unless DB_CONN_MAX_AGE says otherwise; opening one (PRAGMAs, Django's SQL
    # functions) cost about as much as a request's reads.
    DATABASES["default"]["CONN_MAX_AGE"] = env("DB_CONN_MAX_AGE", None, int)
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=30000;",
    }
DATABASES["default"]["ENGINE"] = DATABASES["default"]["ENGINE"].replace(
    "django.db.backends.postgresql", "django_prometheus.db.backends.postgresql"
).replace("django.db.backends.sqlite3", "autogen_platform.sqlite_backend")  # django_prometheus' + a write lock
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Redis: the RQ queues, the Channels layer, pub/sub control messages. Unset means the embedded
# Redis that `runplatform` (and the test suite) start on a unix socket under var/.
EMBEDDED_REDIS_SOCKET = VAR_DIR / "redis" / "redis.sock"
REDIS_URL = env("REDIS_URL", f"unix://{EMBEDDED_REDIS_SOCKET}")
REDIS_EMBEDDED = "REDIS_URL" not in os.environ or not os.environ["REDIS_URL"]

# Prefix of the platform's Redis pub/sub channels and Channels groups (several platforms may share a Redis).
REDIS_NAMESPACE = env("REDIS_NAMESPACE", "platform")

# The cache holds throttle counters: in Redis, so every web process counts the same requests.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": f"{REDIS_NAMESPACE}:cache",
    }
}

RQ_QUEUES = {
    "default": {"URL": REDIS_URL, "DEFAULT_TIMEOUT": 3600},
    # webhook deliveries: their own queue and workers (`manage.py runwebhooks`), never the tasks'
    "webhooks": {"URL": REDIS_URL, "DEFAULT_TIMEOUT": 120},
}
# How long a web request waits for Redis (connect, and each reply) before it gives up on a side effect
# (enqueueing a job, a live announcement): the database is the record, the reaper enqueues what was missed.
REDIS_WEB_TIMEOUT_SECONDS = env("REDIS_WEB_TIMEOUT_SECONDS", 2.0, float)
RQ_SHOW_ADMIN_LINK = True

# The platform's layer: channels_redis' with a blocking read shorter than the socket's read timeout (the
# pinned redis-py's 5 s default equals channels_redis' 5 s block, which closed quiet sockets with 1011).
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "autogen_platform.realtime.RedisChannelLayer",
        "CONFIG": {"hosts": [REDIS_URL], "prefix": f"{REDIS_NAMESPACE}:asgi"},
    }
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 8}},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"

# Request bodies over this size are refused with 413 in the error envelope.
MAX_REQUEST_BODY_BYTES = env("MAX_REQUEST_BODY_BYTES", 1024 * 1024, int)
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_REQUEST_BODY_BYTES
# Caps on what one object may store (validation_error naming the field past them), so no request can
# bloat a row that every later list, export and task reads (README "Configuration", docs/api.md "Limits").
MAX_SYSTEM_MESSAGE_CHARS = env("MAX_SYSTEM_MESSAGE_CHARS", 32768, int)
MAX_DESCRIPTION_CHARS = env("MAX_DESCRIPTION_CHARS", 2000, int)
MAX_TASK_INPUT_CHARS = env("MAX_TASK_INPUT_CHARS", 65536, int)
# Tasks one POST /api/tasks/batch/ may submit (all in one transaction; the request body limit holds too).
MAX_TASK_BATCH = env("MAX_TASK_BATCH", 100, int)
MAX_REPLAY_RESPONSES = env("MAX_REPLAY_RESPONSES", 100, int)
MAX_REPLAY_RESPONSE_CHARS = env("MAX_REPLAY_RESPONSE_CHARS", 8192, int)
MAX_TEXT_MENTION_CHARS = env("MAX_TEXT_MENTION_CHARS", 200, int)
MAX_SPEC_OBJECTS = env("MAX_SPEC_OBJECTS", 500, int)
# Customers' own tools (agents.tools): how many a customer may have (GET /api/tools/ lists them all, unpaged),
# the size of one tool's source and parameters schema, and a call's time limit in the sandbox (per tool,
# timeout_seconds: the default, and the most it may ask for).
MAX_TOOLS_PER_CUSTOMER = env("MAX_TOOLS_PER_CUSTOMER", 100, int)
MAX_TOOL_SOURCE_CHARS = env("MAX_TOOL_SOURCE_CHARS", 65536, int)
MAX_TOOL_PARAMETERS_CHARS = env("MAX_TOOL_PARAMETERS_CHARS", 16384, int)
TOOL_CALL_TIMEOUT_SECONDS = env("TOOL_CALL_TIMEOUT_SECONDS", 30, int)
TOOL_CALL_MAX_TIMEOUT_SECONDS = env("TOOL_CALL_MAX_TIMEOUT_SECONDS", 300, int)
# A deleted customer's rows (tasks, events, agents...) are kept this long, then purged by the reaper.
CUSTOMER_RETENTION_DAYS = env("CUSTOMER_RETENTION_DAYS", 30, float)
# Every list is paged: `page_size` above this is cut to it; a page_size that is not a positive integer is a 400.
MAX_PAGE_SIZE = env("MAX_PAGE_SIZE", 200, int)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.CustomerJWTAuthentication",
        "accounts.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["accounts.permissions.IsCustomerMember"],
    "DEFAULT_PAGINATION_CLASS": "autogen_platform.pagination.Pagination",
    # Lists filter and order with django-filter; an unknown query parameter is a 400 naming it.
    "DEFAULT_FILTER_BACKENDS": ["autogen_platform.filters.FilterBackend"],
    # JSON bodies only: a form cannot carry nested objects (quotas, limits) and would drop them silently.
    "DEFAULT_PARSER_CLASSES": ["autogen_platform.parsers.JSONParser"],
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "autogen_platform.schema.AutoSchema",
    "EXCEPTION_HANDLER": "autogen_platform.errors.exception_handler",
    "DEFAULT_THROTTLE_RATES": {
        "login": env("LOGIN_THROTTLE_RATE", "20/min"),
    },
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    # Trusted reverse proxies in front of the platform: 0 means X-Forwarded-For is ignored, so a client
    # cannot dodge login throttling or fake its audited IP by sending the header.
    "NUM_PROXIES": env("NUM_PROXIES", 0, int),
}

SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=env("JWT_ACCESS_MINUTES", 60, int)),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=env("JWT_REFRESH_DAYS", 7, int)),
    "SIGNING_KEY": SECRET_KEY,
    # A refresh gives a new refresh token and blacklists the one used: a stolen, already used one is refused.
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    # Tokens carry a hash of the password hash: after a password change every earlier token is refused.
    "CHECK_REVOKE_TOKEN": True,
    # last_login is set by the user_logged_in signal every sign-in sends (accounts.signin).
    "UPDATE_LAST_LOGIN": False,
}

# Sign-in lockout (django-axes), the same for every password form: the API token endpoints, /api-auth/login/ and
# /admin/login/. A (username, client address) pair is locked after LOGIN_FAILURE_LIMIT failures; a client address
# after LOGIN_CLIENT_FAILURE_LIMIT failures over any usernames. Nobody can lock a victim out from the victim's own
# address by guessing from elsewhere. Both lift LOGIN_LOCKOUT_MINUTES after the last failure; `manage.py axes_reset`.
AXES_HANDLER = "accounts.signin.SignInLockoutHandler"
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"], "ip_address"]
AXES_FAILURE_LIMIT = env("LOGIN_FAILURE_LIMIT", 5, int)
LOGIN_CLIENT_FAILURE_LIMIT = env("LOGIN_CLIENT_FAILURE_LIMIT", 30, int)
AXES_COOLOFF_TIME = timedelta(minutes=env("LOGIN_LOCKOUT_MINUTES", 15, int))
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "core.services.client_ip"
AXES_LOCKOUT_CALLABLE = "accounts.signin.lockout_response"
AXES_VERBOSE = False
# Successful sign-ins are in the audit log already (accounts.signin); axes keeps only the failure counters.
AXES_DISABLE_ACCESS_LOG = True
# TOTP devices of staff users (the Django admin's second factor) are named after the platform in apps.
OTP_TOTP_ISSUER = env("OTP_TOTP_ISSUER", "AutoGen platform")

SPECTACULAR_SETTINGS = {
    "TITLE": "AutoGen agent platform API",
    "DESCRIPTION": "Run AutoGen AgentChat agents and teams as a service, in sandboxed subprocesses.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums",
                             "autogen_platform.schema.refuse_unknown_properties",
                             # the SSE stream and the WebSocket frames, which are not DRF views
                             "autogen_platform.schema_streams.add_live_streams"],
    # Swagger UI and Redoc from drf-spectacular-sidecar's files, not a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # No validator badge: Swagger UI would load it from validator.swagger.io.
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "persistAuthorization": True, "displayOperationId": True,
                            "validatorUrl": None},
    # Several models have a `status`: name each choice set after its model.
    "ENUM_NAME_OVERRIDES": {
        "AgentStatusEnum": "agents.models.Agent.Status",
        "TaskStatusEnum": "tasks.models.Task.Status",
        "InputRequestKindEnum": ["input", "approval"],
        "ImportedObjectKindEnum": ["model", "agent", "team"],
    },
}

LOGIN_URL = "/api-auth/login/"
LOGIN_REDIRECT_URL = "/api/"

# Workers and the sandbox.
WORKERS = env("WORKERS", 2, int)
# daphne processes runplatform starts on one listening socket (each runs the synchronous views on one thread).
WEB_PROCESSES = env("WEB_PROCESSES", 2, int)
# Tasks one worker process supervises at once, each in its own sandboxed child (a waiting task costs a
# few MB: its child's touched pages and a coroutine). make run: WORKERS x WORKER_CONCURRENCY at once.
WORKER_CONCURRENCY = env("WORKER_CONCURRENCY", 256, int)
# On SIGTERM a worker takes no new task and lets the ones it holds run this long; the rest end worker_lost.
WORKER_SHUTDOWN_GRACE_SECONDS = env("WORKER_SHUTDOWN_GRACE_SECONDS", 10, float)
# Shared by all the tasks of a worker: database threads (each one connection) and sandbox-building threads.
WORKER_DB_THREADS = env("WORKER_DB_THREADS", 4, int)
WORKER_SPAWN_THREADS = env("WORKER_SPAWN_THREADS", 4, int)
# Live frames (tokens, events) a worker keeps for its sockets when Redis is slow; older ones are dropped
# (a socket fills the gap from the database).
WORKER_LIVE_BACKLOG = env("WORKER_LIVE_BACKLOG", 10000, int)
# What a task's child may send: one message, all its output (messages, stdout, stderr), one event's
# stored content, and events in all. Over one of them the task ends output_limit.
TASK_MESSAGE_MAX_BYTES = env("TASK_MESSAGE_MAX_BYTES", 16 * 1024 * 1024, int)
TASK_OUTPUT_LIMIT_BYTES = env("TASK_OUTPUT_LIMIT_BYTES", 64 * 1024 * 1024, int)
TASK_EVENT_MAX_BYTES = env("TASK_EVENT_MAX_BYTES", 256 * 1024, int)
TASK_MAX_EVENTS = env("TASK_MAX_EVENTS", 10000, int)
# The runtime reaches tasks only through this port (runtime.ports.TaskStore).
RUNTIME_TASK_STORE = "tasks.runtime_store.DjangoTaskStore"
PORT = env("PORT", 8000, int)
# Address `runplatform` binds the ASGI server to (0.0.0.0 to listen on every interface, e.g. behind a proxy).
BIND_HOST = env("BIND_HOST", "127.0.0.1")
# daphne pings a WebSocket quiet for this many seconds (a protocol ping frame, which keeps proxies and NATs
# from dropping it) and closes one that has not answered a ping within the timeout (a dead peer).
WEBSOCKET_PING_INTERVAL = env("WEBSOCKET_PING_INTERVAL", 20, int)
WEBSOCKET_PING_TIMEOUT = env("WEBSOCKET_PING_TIMEOUT", 30, int)
# The newest notices each customer's /ws/events/ stream keeps for clients that resume (the reaper prunes older ones).
CUSTOMER_STREAM_KEEP = env("CUSTOMER_STREAM_KEEP", 1000, int)
TASK_HEARTBEAT_SECONDS = env("TASK_HEARTBEAT_SECONDS", 2, float)
# A running task whose heartbeat is older than this is ended `worker_lost` by the reaper.
TASK_LEASE_SECONDS = env("TASK_LEASE_SECONDS", 15, float)
# A queued task with no job in the queue for this long is enqueued again by the reaper.
TASK_REQUEUE_SECONDS = env("TASK_REQUEUE_SECONDS", 30, float)
REAPER_INTERVAL_SECONDS = env("REAPER_INTERVAL_SECONDS", 2, float)
# A task waiting in input_required for a person's answer longer than this ends timed_out (input_timeout).
TASK_INPUT_TIMEOUT_SECONDS = env("TASK_INPUT_TIMEOUT_SECONDS", 86400, float)
# A task's work dir kept (packed, on the task row) while it waits for input, at most this many bytes
# compressed; over it the files are dropped and a log event says so. 0: never kept.
TASK_INPUT_WORKDIR_MAX_BYTES = env("TASK_INPUT_WORKDIR_MAX_BYTES", 2 * 1024 * 1024, int)
# Whether model calls (made by workers, on the customers' behalf) may go to loopback, private or
# link-local addresses, e.g. a local Ollama. Production (settings.prod) defaults to no.
MODEL_ENDPOINTS_ALLOW_PRIVATE = env("MODEL_ENDPOINTS_ALLOW_PRIVATE", True, bool)
# The longest a model call waits for the provider (its answer, or each next streamed chunk): past it the
# task ends model_error naming the endpoint. A wait longer than MODEL_WAITING_SECONDS shows in the task's
# stream as a `model_waiting` event. POST /api/models/{id}/test/ is bounded by the same timeout.
MODEL_CALL_TIMEOUT_SECONDS = env("MODEL_CALL_TIMEOUT_SECONDS", 120, float)
MODEL_WAITING_SECONDS = env("MODEL_WAITING_SECONDS", 5, float)
# Customers' HTTP tools (called by workers, never the sandbox; runtime/httptools.py): whether they may go to
# loopback, private or link-local addresses (like model endpoints), and how much of an answer is read.
HTTP_TOOLS_ALLOW_PRIVATE = env("HTTP_TOOLS_ALLOW_PRIVATE", MODEL_ENDPOINTS_ALLOW_PRIVATE, bool)
HTTP_TOOL_MAX_RESPONSE_BYTES = env("HTTP_TOOL_MAX_RESPONSE_BYTES", 32768, int)

# -- Integrations: webhooks and schedules (docs/operations.md, "Webhooks and schedules") --------------
# Whether webhook deliveries may go to loopback, private or link-local addresses (like model endpoints).
WEBHOOKS_ALLOW_PRIVATE = env("WEBHOOKS_ALLOW_PRIVATE", MODEL_ENDPOINTS_ALLOW_PRIVATE, bool)
# One delivery attempt (connect, send, answer) ends after this long; the endpoint then counts as failed.
WEBHOOK_TIMEOUT_SECONDS = env("WEBHOOK_TIMEOUT_SECONDS", 5.0, float)
# Attempts of one delivery before it is given up; attempt n+1 waits BASE * 4**(n-1) s (capped at MAX).
WEBHOOK_MAX_ATTEMPTS = env("WEBHOOK_MAX_ATTEMPTS", 8, int)
WEBHOOK_RETRY_BASE_SECONDS = env("WEBHOOK_RETRY_BASE_SECONDS", 5.0, float)
WEBHOOK_RETRY_MAX_SECONDS = env("WEBHOOK_RETRY_MAX_SECONDS", 6 * 3600.0, float)
# Delivery worker processes `runplatform` starts (each sends one delivery at a time; one endpoint
# holds at most one of them at a time, so a slow endpoint never stalls the others).
WEBHOOK_WORKERS = env("WEBHOOK_WORKERS", 2, int)
WEBHOOKS_MAX_PER_CUSTOMER = env("WEBHOOKS_MAX_PER_CUSTOMER", 20, int)
# Finished deliveries stay listed this long, then the reaper deletes them.
WEBHOOK_DELIVERY_RETENTION_DAYS = env("WEBHOOK_DELIVERY_RETENTION_DAYS", 30, int)
SCHEDULES_MAX_PER_CUSTOMER = env("SCHEDULES_MAX_PER_CUSTOMER", 100, int)
# The shortest interval (and the closest cron firings are a minute apart anyway).
SCHEDULE_MIN_INTERVAL_SECONDS = env("SCHEDULE_MIN_INTERVAL_SECONDS", 60, int)
# Each reaper's scheduler sleeps until the soonest firing but at most this long: how soon a schedule
# created or changed elsewhere is seen (its firing is then at most this late), one indexed query per look.
SCHEDULER_POLL_SECONDS = env("SCHEDULER_POLL_SECONDS", 1.0, float)
# -------------------------------------------------------------------------------------------------------

SANDBOX_ROOT = Path(env("SANDBOX_ROOT", str(VAR_DIR / "sandboxes")))
SANDBOX_MIN_LEVEL = env("SANDBOX_MIN_LEVEL", "none")
# Warm start: each worker keeps a zygote that imported AgentChat and forks one single-use child per
# task (same sandbox layers); a task falls back to a cold start whenever the zygote fails.
SANDBOX_WARM_START = env("SANDBOX_WARM_START", True, bool)
# A sandbox's share of the CPU while every core is busy (cgroup v2 cpu.weight, 1-10000; each thread of the
# platform's own processes weighs 100): low, so that the platform (web, workers' start, kills and ends, the
# killswitch) goes first when the tasks' trees (and a killed tree's teardown in the kernel) would take the
# cores; idle CPU is still the sandboxes' in full, up to each task's CPU quota.
SANDBOX_CPU_WEIGHT = env("SANDBOX_CPU_WEIGHT", 2, int)
DEFAULT_AGENT_LIMITS = {
    "memory_mb": env("DEFAULT_MEMORY_MB", 512, int),
    "cpu_seconds": env("DEFAULT_CPU_SECONDS", 60, int),
    "timeout_seconds": env("DEFAULT_TIMEOUT_SECONDS", 300, int),
    "max_tokens": env("DEFAULT_MAX_TOKENS", 100000, int),
}
DEFAULT_CUSTOMER_QUOTAS = {
    "max_agents": 50,
    "max_concurrent_tasks": 5,
    "max_tasks_per_day": 1000,
    "monthly_token_budget": 10_000_000,
    "max_memory_mb": 2048,
    "max_cpu_seconds": 600,
    "max_timeout_seconds": 3600,
}

# `manage.py runworker` serves its host's metrics on http://METRICS_BIND_HOST:METRICS_PORT/metrics when set
# (a worker host without a web process). PROMETHEUS_MULTIPROC_DIR (read by prometheus_client itself; runplatform
# sets var/prometheus) makes every process of a host write there and any one's /metrics show them all.
METRICS_PORT = env("METRICS_PORT", None, int)
METRICS_BIND_HOST = env("METRICS_BIND_HOST", "127.0.0.1")
# Which customers get their own `customer` label on the platform_customer_* metrics (the rest count as "other"):
# `all` (up to METRICS_CUSTOMERS_MAX per process), a comma-separated list of customer ids, or `none`.
METRICS_CUSTOMERS = env("METRICS_CUSTOMERS", "all")
METRICS_CUSTOMERS_MAX = env("METRICS_CUSTOMERS_MAX", 100, int)

# LOG_FORMAT=json: one JSON object a line on stderr (autogen_platform/logctx.py); otherwise readable lines.
LOG_FORMAT = env("LOG_FORMAT", "plain")
from autogen_platform.logctx import logging_config  # noqa: E402 - a plain module: no Django import

LOGGING = logging_config(fmt=LOG_FORMAT, level=env("LOG_LEVEL", "INFO"), rq_level=env("RQ_LOG_LEVEL", "WARNING"))
