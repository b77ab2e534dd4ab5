"""The worker slot reports' Redis key and freshness bound: written by every worker (runtime.supervisor),
read by runtime.services and runtime.health. A module of its own so the supervisor needs nothing of services."""
from django.conf import settings


def worker_slots_key() -> str:
    return f"{settings.REDIS_NAMESPACE}:worker_slots"


# A worker's slot report older than this is a worker that is gone.
WORKER_SLOTS_STALE_SECONDS = 10.0
