"""Redis clients of request handling: short timeouts and no retries, so that a Redis that hangs
costs a request a bounded wait (REDIS_WEB_TIMEOUT_SECONDS) instead of redis-py's default of
5 s per attempt, retried. Workers' blocking reads use their own clients (runtime, rq)."""
import os
import threading

from django.conf import settings

_clients: dict[tuple[int, str], object] = {}
_lock = threading.Lock()


def web_redis(url: str | None = None):
    """A Redis client for `url` (default REDIS_URL) with bounded connect and read timeouts, one per process."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    url = url or settings.REDIS_URL
    key = (os.getpid(), url, settings.REDIS_WEB_TIMEOUT_SECONDS)
    with _lock:
        client = _clients.get(key)
        if client is None:
            timeout = settings.REDIS_WEB_TIMEOUT_SECONDS
            client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout,
                                          retry=Retry(NoBackoff(), 0))
            _clients[key] = client
    return client
