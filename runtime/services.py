"""The runtime's interface for other apps: run a task's sandbox, kill sandboxes, report capabilities."""
from . import control


def sandbox_kill(task_id: int, reason: str) -> None:
    """Ask whichever worker runs the task to kill its sandbox tree now."""
    control.publish({"kind": "kill", "task": task_id, "reason": reason})


def sandbox_kill_scope(customer_id: int | None, reason: str) -> None:
    """Kill every running sandbox of a customer (None: of every customer) on every worker."""
    control.publish({"kind": "kill_scope", "customer": customer_id, "reason": reason})


def sandbox_processes(task_ids: list[int]) -> list[dict]:
    """Live sandboxes of these tasks: [{task, pid, cpu_seconds, memory_mb, started_at}] (issue 3 fills this in)."""
    return []
