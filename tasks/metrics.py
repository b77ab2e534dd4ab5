"""Platform metrics for /metrics, read at scrape time from the database and Redis.

Workers are separate processes (often on other machines), so nothing here is counted in process
memory: each scrape asks the shared records, which makes the figures the same from any web node.
"""
import logging

from django.db.models import Count, Q, Sum
from prometheus_client.core import REGISTRY, CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

logger = logging.getLogger(__name__)

DURATION_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
KILL_REASONS = ("timeout", "memory_limit", "cpu_limit", "token_budget", "killswitch", "cancelled", "worker_lost")


class PlatformCollector:
    def describe(self):
        # Declared so that registering does not run a scrape (and a query) at start-up.
        return []

    def collect(self):
        try:
            yield from self._collect()
        except Exception as exc:  # noqa: BLE001 - a failing scrape must not break /metrics' HTTP metrics
            logger.warning("platform metrics unavailable: %s", exc)

    def _collect(self):
        from django.db.models import DurationField, ExpressionWrapper, F

        from tasks.models import Task

        by_status = dict(Task.objects.values_list("status").annotate(n=Count("id")).values_list("status", "n"))
        tasks = GaugeMetricFamily("platform_tasks", "Tasks by status", labels=["status"])
        for status in Task.Status.values:
            tasks.add_metric([status], by_status.get(status, 0))
        yield tasks

        finished = Task.objects.filter(status__in=Task.FINISHED, started_at__isnull=False, finished_at__isnull=False)
        duration = ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField())
        from datetime import timedelta

        annotated = finished.annotate(d=duration)
        aggregates = {f"le_{i}": Count("id", filter=Q(d__lte=timedelta(seconds=b))) for i, b in enumerate(DURATION_BUCKETS)}
        row = annotated.aggregate(total=Count("id"), total_seconds=Sum("d"), **aggregates)
        total_seconds = row["total_seconds"].total_seconds() if row["total_seconds"] else 0.0
        buckets = [(str(b), row[f"le_{i}"]) for i, b in enumerate(DURATION_BUCKETS)] + [("+Inf", row["total"])]
        hist = HistogramMetricFamily("platform_task_duration_seconds", "Wall time of finished tasks")
        hist.add_metric([], buckets, total_seconds)
        yield hist

        tokens = CounterMetricFamily("platform_tokens_used", "Model tokens used by tasks (prompt + completion)")
        tokens.add_metric([], int(Task.objects.aggregate(n=Sum("tokens_used"))["n"] or 0))
        yield tokens

        kills = CounterMetricFamily("platform_sandbox_kills", "Tasks whose sandbox was stopped, by reason", labels=["reason"])
        counted = dict(
            Task.objects.filter(error__code__in=KILL_REASONS)
            .values_list("error__code")
            .annotate(n=Count("id"))
            .values_list("error__code", "n")
        )
        for reason in KILL_REASONS:
            kills.add_metric([reason], counted.get(reason, 0))
        yield kills

        yield from self._redis_metrics(by_status)

    def _redis_metrics(self, by_status):
        queue = GaugeMetricFamily("platform_queue_depth", "Jobs waiting in the task queue")
        running = GaugeMetricFamily("platform_running_sandboxes", "Task sandboxes running now")
        try:
            import django_rq

            queue.add_metric([], django_rq.get_queue("default").count)
        except Exception as exc:  # noqa: BLE001
            logger.warning("queue depth unavailable: %s", exc)
        running.add_metric([], by_status.get("running", 0))
        yield queue
        yield running


_registered = False


def register() -> None:
    global _registered
    if not _registered:
        REGISTRY.register(PlatformCollector())
        _registered = True
