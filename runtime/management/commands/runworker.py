"""`manage.py runworker [--burst]`: one RQ worker on the "default" queue that runs tasks in sandboxes.

At start it probes the host's sandbox layers, logs them, records them in WorkerHost (shown by
GET /api/admin/runtime/) and refuses to start when the isolation level is below SANDBOX_MIN_LEVEL.
"""
import logging
import os
import socket
import sys

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import connections
from django.utils import timezone

logger = logging.getLogger("runtime.worker")

# Exit status when the host is below SANDBOX_MIN_LEVEL (EX_CONFIG: a supervisor should not restart it).
EXIT_BELOW_MIN_LEVEL = 78


class Command(BaseCommand):
    help = "Run an RQ worker that executes tasks in sandboxed child processes."

    def add_arguments(self, parser):
        parser.add_argument("--burst", action="store_true", help="Exit when the queue is empty.")
        parser.add_argument("--name", default=None, help="Worker name (default: RQ's).")
        parser.add_argument("--max-jobs", type=int, default=None)

    def handle(self, *args, **options):
        from runtime.services import worker_host_register, worker_host_seen

        level_ok, capabilities = worker_host_register(socket.gethostname())
        logger.info("sandbox level %s: %s", capabilities.get("level"), _describe(capabilities))
        if not level_ok:
            logger.error(
                "sandbox level %r is below SANDBOX_MIN_LEVEL=%r: refusing to run tasks on this host",
                capabilities.get("level"),
                settings.SANDBOX_MIN_LEVEL,
            )
            sys.exit(EXIT_BELOW_MIN_LEVEL)

        import django_rq
        from rq import Worker

        from runtime import broker, supervisor  # noqa: F401 - imported once here, warm in every work-horse

        broker.preload()
        warm = settings.SANDBOX_WARM_START and capabilities.get("mode") in ("root", "user")
        worker_pid = os.getpid()
        if warm and capabilities.get("mode") in ("root", "user"):
            from runtime.sandbox import zygote

            if zygote.ensure() is None:
                logger.warning("the sandbox zygote did not start: tasks start cold")

        class TaskWorker(Worker):
            """RQ's forking worker that also keeps this host's WorkerHost.last_seen fresh."""

            def heartbeat(self, *args, **kwargs):
                super().heartbeat(*args, **kwargs)
                if warm and os.getpid() == worker_pid:  # not in a work-horse: its zygote would die with it
                    from runtime.sandbox import zygote

                    zygote.ensure()  # a zygote that died is started again; meanwhile tasks start cold
                worker_host_seen(socket.gethostname())

        queue = django_rq.get_queue("default")
        # worker_ttl 60: an idle worker comes round to its heartbeat every 45 s.
        worker = TaskWorker([queue], connection=queue.connection, name=options["name"], worker_ttl=60)
        # The forked work-horses must not share the parent's database sockets.
        connections.close_all()
        worker.work(
            burst=options["burst"],
            logging_level=settings.LOGGING.get("loggers", {}).get("rq.worker", {}).get("level", "WARNING"),
            max_jobs=options["max_jobs"],
        )


def _describe(capabilities: dict) -> str:
    layers = capabilities.get("layers", {})
    return ", ".join(f"{name}={'on' if info.get('active') else 'off'}" for name, info in sorted(layers.items())) or "none"
