"""Liveness (`/healthz`) and readiness (`/readyz`, also `manage.py platform_status`).

Ready means: the database answers, Redis answers, and at least one task worker is alive. A worker
is alive while RQ keeps its registration (RQ expires it worker_ttl + 60 s after the last
heartbeat) and, when it runs on this host, while its process exists, so a SIGKILLed worker stops
counting at once here instead of minutes later.
"""
import socket

import psutil
from django.conf import settings
from django.db import connection
from django.http import JsonResponse

from .errors import error_body


def healthz(request):
    """Liveness: the process serves requests. No dependency is consulted."""
    return JsonResponse({"status": "ok"})


def live_workers(conn) -> list:
    """RQ workers of this Redis with a current registration and, on this host, a live process."""
    from rq import Worker

    hostname = socket.gethostname()
    alive = []
    for worker in Worker.all(connection=conn):
        if worker.last_heartbeat is None or worker.death_date is not None:
            continue
        if worker.hostname == hostname and worker.pid and not _process_alive(worker.pid):
            continue
        alive.append(worker)
    return alive


def _process_alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def redis_connection():
    import redis

    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)


def readiness() -> tuple[dict, list[str]]:
    """({part: "ok" | "error: ..." | count}, [failing parts]) for the database, Redis and workers."""
    checks, failing = {}, []
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - readiness reports any failure by name
        checks["database"] = f"error: {exc.__class__.__name__}"
        failing.append("database")
    try:
        conn = redis_connection()
        conn.ping()
        checks["redis"] = "ok"
    except Exception as exc:  # noqa: BLE001
        checks["redis"] = f"error: {exc.__class__.__name__}"
        checks["workers"] = "unknown"
        failing += ["redis", "workers"]
        return checks, failing
    try:
        checks["workers"] = len(live_workers(conn))
    except Exception as exc:  # noqa: BLE001
        checks["workers"] = f"error: {exc.__class__.__name__}"
    if not isinstance(checks["workers"], int) or checks["workers"] == 0:
        failing.append("workers")
    return checks, failing


def readyz(request):
    checks, failing = readiness()
    if failing:
        body = error_body("not_ready", f"Not ready: {', '.join(failing)}", {"failing": failing, "checks": checks})
        return JsonResponse(body, status=503)
    return JsonResponse({"status": "ready", "checks": checks})
