"""Liveness (`/healthz`) and readiness (`/readyz`, also `manage.py platform_status`).

Ready means: the database answers, Redis answers, and at least one task worker is live. A worker
is live while its slot report in Redis (`{REDIS_NAMESPACE}:worker_slots`, written by every worker
each second: {total, busy, at}) is younger than runtime.keys.WORKER_SLOTS_STALE_SECONDS: a worker
that is SIGKILLed, hung or cut off from Redis stops counting within that bound, on any host.
"""
import json
import logging
import time

from django.conf import settings
from django.db import connection
from django.http import JsonResponse

from autogen_platform.errors import error_body

from .keys import WORKER_SLOTS_STALE_SECONDS, worker_slots_key

logger = logging.getLogger(__name__)

FAILURE_TEXT = {
    "database": "the database does not answer",
    "redis": "Redis does not answer",
    "workers": "no live worker",
}


def healthz(request):
    """Liveness: the process serves requests. No dependency is consulted."""
    return JsonResponse({"status": "ok"})


def live_workers(conn) -> list[dict]:
    """Workers whose slot report is fresh: [{name, total, busy, age_seconds}], by name. Read only."""
    now, live = time.time(), []
    for name, raw in conn.hgetall(worker_slots_key()).items():
        try:
            report = json.loads(raw)
            age = now - float(report.get("at") or 0)
        except (ValueError, TypeError, AttributeError):
            continue
        if age <= WORKER_SLOTS_STALE_SECONDS:
            live.append({"name": name.decode(errors="replace"), "total": int(report.get("total") or 0),
                         "busy": int(report.get("busy") or 0), "age_seconds": round(max(age, 0.0), 1)})
    return sorted(live, key=lambda w: w["name"])


def redis_connection():
    import redis

    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)


def readiness() -> tuple[dict, list[str]]:
    """({part: "ok" | "error: ..." | live worker count}, [failing parts]) for the database, Redis and workers."""
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
        message = "Not ready: " + "; ".join(FAILURE_TEXT[part] for part in failing)
        body = error_body("not_ready", message, {"failing": failing, "checks": checks})
        response = JsonResponse(body, status=503)
        # Not ready is a state (every start passes through it, a dependency may be down), not a server error:
        # one WARNING naming what fails, instead of django.request's ERROR "Service Unavailable: /readyz"
        # (log_response skips a response marked as logged).
        logger.warning("%s", message)
        response._has_been_logged = True
        return response
    return JsonResponse({"status": "ready", "checks": checks})
