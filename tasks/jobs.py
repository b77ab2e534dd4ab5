"""RQ entry points for tasks: take ids, hand over to the runtime.

`manage.py runworker` (runtime.worker.ConcurrentWorker) does not perform run_task: it hands the task to its
concurrent runtime. Any other RQ worker performs it, running the one task in-line.
"""
from runtime.services import sandbox_run


def run_task(task_id: int) -> None:
    """Start the task (unless it must not start now) and run it in its own sandbox until it ends."""
    sandbox_run(task_id)
