"""`manage.py runwebhooks [--burst]`: one webhook delivery worker, an RQ worker on the `webhooks` queue.

It performs integrations.jobs.deliver: one HTTP attempt at a time, each bounded by WEBHOOK_TIMEOUT_SECONDS,
in-line (RQ's SimpleWorker: no fork per delivery). Deliveries never run on the task workers, so an endpoint
that is slow or down delays no task; and one endpoint holds at most one delivery worker at a time (a
Redis lock per webhook), so it delays no other customer's deliveries either. `runplatform` starts
WEBHOOK_WORKERS of them. Its attempts are counted (platform_webhook_*) in the host's metrics directory;
`--metrics-port` serves them for a host without a web process or a runworker with METRICS_PORT.
"""
import logging
import uuid

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import connections

from autogen_platform import metrics


class Command(BaseCommand):
    help = "Run a webhook delivery worker (RQ, queue 'webhooks')."

    def add_arguments(self, parser):
        parser.add_argument("--burst", action="store_true", help="Exit when the queue is empty.")
        parser.add_argument("--name", default=None, help="Worker name (default: a random one).")
        parser.add_argument("--metrics-port", type=int, default=None,
                            help="Serve this host's /metrics on this port (a delivery host without a web process"
                                 " or a runworker with METRICS_PORT).")

    def handle(self, *args, **options):
        import django_rq
        from rq.worker import SimpleWorker

        queue = django_rq.get_queue("webhooks")
        name = options["name"] or f"webhooks-{uuid.uuid4().hex[:12]}"
        worker = SimpleWorker([queue], connection=queue.connection, name=name, worker_ttl=60)
        connections.close_all()
        logging.getLogger("integrations").info("webhook delivery worker %s", name)
        if options["metrics_port"]:
            metrics.serve(options["metrics_port"], settings.METRICS_BIND_HOST)
        worker.work(
            burst=options["burst"],
            logging_level=settings.LOGGING.get("loggers", {}).get("rq.worker", {}).get("level", "WARNING"),
        )
