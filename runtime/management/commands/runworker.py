"""`manage.py runworker [--burst]`: one RQ worker on the "default" queue that runs up to WORKER_CONCURRENCY tasks
at once, each in its own sandbox (runtime.worker.ConcurrentWorker, runtime.supervisor.Runtime).

At start it probes the host's sandbox layers, logs them, records them in WorkerHost (shown by
GET /api/admin/runtime/) and refuses to start when the isolation level is below SANDBOX_MIN_LEVEL.
"""
import logging
import os
import resource
import socket
import sys
import uuid

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import connections
from django.utils import timezone

from autogen_platform import gc_tuning, metrics
from runtime import broker
from runtime.sandbox import zygote
from runtime.services import worker_host_register, worker_host_seen
from runtime.supervisor import Runtime
from runtime.worker import ConcurrentWorker

logger = logging.getLogger("runtime.worker")


class Command(BaseCommand):
    help = "Run an RQ worker that executes tasks in sandboxed child processes."

    def add_arguments(self, parser):
        parser.add_argument("--burst", action="store_true", help="Exit when the queue is empty.")
        parser.add_argument("--name", default=None, help="Worker name (default: RQ's).")
        parser.add_argument("--max-jobs", type=int, default=None)

    def handle(self, *args, **options):
        # A worker serves no pages: DEBUG (on under `make run`) would only make Django format and keep
        # every SQL statement it runs (measured: half the time of storing 200 task ends at once).
        settings.DEBUG = False

        level_ok, capabilities = worker_host_register(socket.gethostname())
        logger.info("sandbox level %s: %s", capabilities.get("level"), _describe(capabilities))
        if not level_ok:
            logger.error(
                "sandbox level %r is below SANDBOX_MIN_LEVEL=%r: refusing to run tasks on this host",
                capabilities.get("level"),
                settings.SANDBOX_MIN_LEVEL,
            )
            sys.exit(os.EX_CONFIG)  # below SANDBOX_MIN_LEVEL: a supervisor (runplatform) does not restart it

        import django_rq

        broker.preload()
        _raise_open_files_limit()
        warm = settings.SANDBOX_WARM_START and capabilities.get("mode") in ("root", "user")
        if warm:
            if zygote.ensure() is None:
                logger.warning("the sandbox zygote did not start: tasks start cold")

        def keepalive():
            if warm:
                zygote.ensure()  # a zygote that died is started again; meanwhile tasks start cold
            worker_host_seen(socket.gethostname())

        name = options["name"] or uuid.uuid4().hex
        runtime = Runtime(concurrency=settings.WORKER_CONCURRENCY, worker_name=f"{socket.gethostname()}/{name}")
        queue = django_rq.get_queue("default")
        worker = ConcurrentWorker(
            [queue], connection=queue.connection, name=name, worker_ttl=60,
            runtime=runtime, grace_seconds=settings.WORKER_SHUTDOWN_GRACE_SECONDS, on_keepalive=keepalive,
        )
        # The main thread's connection is not the runtime's (each of its database threads has its own).
        connections.close_all()
        gc_tuning.settle()
        runtime.start()
        logger.info("worker %s: up to %s tasks at once", name, runtime.concurrency)
        if settings.METRICS_PORT:  # a worker host without a web process: its own /metrics

            metrics.serve(settings.METRICS_PORT, settings.METRICS_BIND_HOST)
            logger.info("metrics on http://%s:%s/metrics", settings.METRICS_BIND_HOST, settings.METRICS_PORT)
        worker.work(
            burst=options["burst"],
            logging_level=settings.LOGGING.get("loggers", {}).get("rq.worker", {}).get("level", "WARNING"),
            max_jobs=options["max_jobs"],
        )


def _raise_open_files_limit() -> None:
    """Each task holds a few descriptors (its channel, output pipe, pidfds): take the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _describe(capabilities: dict) -> str:
    layers = capabilities.get("layers", {})
    return ", ".join(f"{name}={'on' if info.get('active') else 'off'}" for name, info in sorted(layers.items())) or "none"
