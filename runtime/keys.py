"""The runtime's Redis key names: the worker slot reports (and their freshness bound) and the live sandbox
stats, written by the workers (runtime.supervisor), read by runtime.services and runtime.health. A module of
its own so that neither the supervisor nor the web process (which never loads the supervisor) needs the other."""
from django.conf import settings


def sandbox_stats_key(task_id: int) -> str:
    return f"{settings.REDIS_NAMESPACE}:sandbox:{task_id}"


def sandbox_index_key() -> str:
    return f"{settings.REDIS_NAMESPACE}:sandboxes"


def worker_slots_key() -> str:
    return f"{settings.REDIS_NAMESPACE}:worker_slots"


# A worker's slot report older than this is a worker that is gone.
WORKER_SLOTS_STALE_SECONDS = 10.0
