"""The runtime's interface for other apps: run a task's sandbox, kill sandboxes, report live processes and hosts."""
import logging

from django.conf import settings
from django.db import DatabaseError, connections
from django.utils import timezone

from . import control
from .keys import WORKER_SLOTS_STALE_SECONDS, sandbox_index_key, sandbox_stats_key, worker_slots_key
from .model_check import calls_functions, config_problems
from .models import WorkerHost

logger = logging.getLogger(__name__)


def sandbox_run(task_id: int) -> None:
    """Start a queued task and run it in its own sandboxed child until it ends, in this process.

    What a plain RQ worker does with tasks.jobs.run_task; `manage.py runworker` hands tasks to its
    concurrent runtime instead. Always leaves the task finished (or re-queued), its process tree gone.
    """
    # lazy: the task runtime (supervisor, sandbox, AutoGen) stays out of processes that never run a task
    from .supervisor import run_one

    # The runtime's database work happens on its own threads: drop this thread's connection.
    connections.close_all()
    run_one(task_id)


def model_config_problems(*, provider: str, model: str, base_url: str, model_info, has_api_key) -> dict:
    """Field -> messages for what a run of this model configuration would miss (runtime.model_check)."""
    return config_problems(provider=provider, model=model, base_url=base_url, model_info=model_info,
                           has_api_key=has_api_key)


def model_calls_functions(*, provider: str, model: str, model_info) -> bool:
    """Whether agents on this model configuration may have tools (runtime.model_check.calls_functions)."""
    return calls_functions(provider=provider, model=model, model_info=model_info)


def model_config_test(config: dict) -> dict:
    """One real call through the broker's client code, from this process (the web's), under the same rules
    as a worker's (MODEL_ENDPOINTS_ALLOW_PRIVATE), bounded by MODEL_CALL_TIMEOUT_SECONDS (at most
    MODEL_TEST_MAX_SECONDS): {ok, latency_ms, error: {code, message} | null}."""
    # lazy: as above (the connection test loads AutoGen through the broker)
    from .model_test import model_test

    return model_test(config, timeout_seconds=min(settings.MODEL_CALL_TIMEOUT_SECONDS, MODEL_TEST_MAX_SECONDS))


MODEL_TEST_MAX_SECONDS = 30.0


def sandbox_kill(task_id: int, reason: str) -> None:
    """Ask whichever worker runs the task to kill its sandbox tree now."""
    control.publish({"kind": "kill", "task": task_id, "reason": reason})


def sandbox_kill_scope(customer_id: int | None, reason: str) -> None:
    """Kill every running sandbox of a customer (None: of every customer) on every worker."""
    control.publish({"kind": "kill_scope", "customer": customer_id, "reason": reason})


def _live_entries(task_ids) -> list[dict]:
    task_ids = [int(t) for t in task_ids]
    if not task_ids:
        return []
    conn = control.redis_connection()
    pipe = conn.pipeline(transaction=False)
    for task_id in task_ids:
        pipe.hgetall(sandbox_stats_key(task_id))
    out = []
    for task_id, raw in zip(task_ids, pipe.execute()):
        if not raw:
            continue
        row = {k.decode(): v.decode() for k, v in raw.items()}
        out.append(
            {
                "task": task_id,
                "pid": int(row["pid"]) if row.get("pid") else None,
                "cpu_seconds": float(row.get("cpu_seconds") or 0),
                "memory_mb": float(row.get("memory_mb") or 0),
                "started_at": row.get("started_at"),
                "customer": int(row["customer"]) if row.get("customer") else None,
                "agent": int(row["agent"]) if row.get("agent") else None,
            }
        )
    return out


def sandbox_processes(task_ids: list[int]) -> list[dict]:
    """Live sandboxes of these tasks: [{task, pid, cpu_seconds, memory_mb, started_at}], from the workers' stats in Redis."""
    keys = ("task", "pid", "cpu_seconds", "memory_mb", "started_at")
    try:
        return [{k: e[k] for k in keys} for e in _live_entries(task_ids)]
    except Exception:  # noqa: BLE001 - an unreachable Redis shows no live processes rather than an error
        logger.warning("sandbox stats unavailable", exc_info=True)
        return []


def sandbox_running() -> list[dict]:
    """Every live sandbox on every worker: [{task, pid, cpu_seconds, memory_mb, started_at, customer, agent}]."""
    conn = control.redis_connection()
    ids = [int(t) for t in conn.smembers(sandbox_index_key())]
    live = _live_entries(ids)
    gone = set(ids) - {e["task"] for e in live}
    if gone:
        conn.srem(sandbox_index_key(), *gone)
    return live


def worker_slots() -> dict:
    """Task slots of the live workers: {"total", "busy"} (each worker reports its own every second)."""
    import json
    import time

    conn = control.redis_connection()
    total = busy = 0
    stale = []
    for name, raw in conn.hgetall(worker_slots_key()).items():
        try:
            report = json.loads(raw)
        except ValueError:
            report = {}
        if time.time() - float(report.get("at") or 0) > WORKER_SLOTS_STALE_SECONDS:
            stale.append(name)
            continue
        total += int(report.get("total") or 0)
        busy += int(report.get("busy") or 0)
    if stale:
        conn.hdel(worker_slots_key(), *stale)
    return {"total": total, "busy": busy}


def worker_host_register(hostname: str) -> tuple[bool, dict]:
    """Probe this host's sandbox layers, record them on WorkerHost; returns (level_ok, capabilities)."""
    # lazy: as above (only a worker probes its host)
    from .sandbox import meets_min_level, probe_capabilities

    capabilities = dict(probe_capabilities())
    try:
        level_ok = meets_min_level(capabilities, settings.SANDBOX_MIN_LEVEL)
    except ValueError as exc:  # an unknown SANDBOX_MIN_LEVEL: refuse rather than guess
        logger.error("%s", exc)
        level_ok = False
    capabilities["min_level"] = settings.SANDBOX_MIN_LEVEL
    capabilities["accepts_tasks"] = level_ok
    now = timezone.now()
    WorkerHost.objects.update_or_create(
        hostname=hostname[:200], defaults={"capabilities": capabilities, "started_at": now, "last_seen": now}
    )
    return level_ok, capabilities


_last_seen_written = 0.0


def worker_host_seen(hostname: str, every_seconds: float = 15.0) -> None:
    """Refresh WorkerHost.last_seen (at most every few seconds), from a worker's RQ heartbeat.

    Runs in the RQ worker's parent, which forks work-horses: its database connection is closed
    again at once, so that no horse inherits it.
    """
    import time

    global _last_seen_written
    if time.monotonic() - _last_seen_written < every_seconds:
        return
    _last_seen_written = time.monotonic()
    try:
        WorkerHost.objects.filter(hostname=hostname[:200]).update(last_seen=timezone.now())
    except DatabaseError:  # a missed refresh only makes the host look idle for a while
        # (Only the database's errors: RQ's StopRequested, raised by SIGTERM's handler while this query
        # waits, must reach the worker, or a stop is swallowed and the worker has to be killed.)
        logger.warning("WorkerHost refresh failed", exc_info=True)
    finally:
        connections.close_all()
