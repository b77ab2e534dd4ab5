"""Tests: the same stack as production, fast password hashing, no throttling surprises."""
from .base import *  # noqa: F401,F403
from .base import DATABASES, REDIS_EMBEDDED, REDIS_NAMESPACE, REDIS_URL, VAR_DIR

DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Worker subprocesses started by tests must see the test database, so SQLite tests use a file.
if "sqlite" in DATABASES["default"]["ENGINE"]:
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}

# The embedded Redis of the tests lives beside, not on, the one `make run` uses.
if REDIS_EMBEDDED:
    EMBEDDED_REDIS_SOCKET = VAR_DIR / "redis-test" / "redis.sock"
    REDIS_URL = f"unix://{EMBEDDED_REDIS_SOCKET}"
RQ_QUEUES = {"default": {"URL": REDIS_URL, "DEFAULT_TIMEOUT": 3600}}
CHANNEL_LAYERS = {"default": {"BACKEND": "autogen_platform.realtime.RedisChannelLayer", "CONFIG": {"hosts": [REDIS_URL], "prefix": f"{REDIS_NAMESPACE}:asgi-test"}}}
# Tests clear the cache between tests; a Redis cache's clear() would flush the queues' database too.
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
