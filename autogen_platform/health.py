"""Liveness and readiness."""
import time

from django.conf import settings
from django.db import connection
from django.http import JsonResponse


def healthz(request):
    return JsonResponse({"status": "ok"})


def readyz(request):
    checks, failing = {}, []
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - readiness reports any failure by name
        checks["database"] = f"error: {exc.__class__.__name__}"
        failing.append("database")
    workers = 0
    try:
        import redis
        from rq import Worker

        conn = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
        conn.ping()
        checks["redis"] = "ok"
        now = time.time()
        for worker in Worker.all(connection=conn):
            beat = worker.last_heartbeat.timestamp() if worker.last_heartbeat else 0
            if now - beat < max(60, settings.TASK_LEASE_SECONDS * 4):
                workers += 1
        checks["workers"] = workers
        if workers == 0:
            failing.append("workers")
    except Exception as exc:  # noqa: BLE001
        checks["redis"] = f"error: {exc.__class__.__name__}"
        failing.append("redis")
    if failing:
        body = {
            "error": {
                "code": "not_ready",
                "message": f"Not ready: {', '.join(failing)}",
                "details": {"failing": failing, "checks": checks},
            }
        }
        return JsonResponse(body, status=503)
    return JsonResponse({"status": "ready", "checks": checks})
