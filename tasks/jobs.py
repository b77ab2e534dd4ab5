"""RQ entry points for tasks: take ids, load rows, hand over to the runtime."""
import logging
import os
import socket

from .models import Task

logger = logging.getLogger(__name__)


def run_task(task_id: int) -> None:
    """Run one task in its own sandboxed child process; returns when the task has ended (or was re-queued)."""
    from runtime.services import sandbox_run

    from .services import task_start

    worker = f"{socket.gethostname()}/{os.environ.get('RQ_WORKER_ID') or os.getpid()}"
    if not task_start(task_id=task_id, worker=worker):
        status = Task.objects.filter(pk=task_id).values_list("status", flat=True).first()
        logger.info("task %s not started (status %s)", task_id, status or "gone")
        return
    sandbox_run(task_id)
