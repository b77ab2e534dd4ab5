"""Figures /metrics computes at scrape time, kept cheap: tasks queued and running, the queue depth, and
the live workers and their slots (from the reports each worker writes to Redis every second, the
ones /readyz reads: the same on every web host, and a dead worker drops out within 10 s).

Everything else (tasks finished, durations, queue wait, model calls, tokens, sandboxes) is counted
where it happens (autogen_platform.metrics). The count below reads only the live rows: one COUNT on
the indexed status column restricted to queued and running, so its cost follows the tasks in flight,
never the finished ones; the queue depth is one LLEN. A database count rather than Redis alone
because a task waiting for a customer's slot is queued but has no job in the queue.
"""
import logging

from django.db.models import Count
from prometheus_client.core import GaugeMetricFamily

from autogen_platform.metrics import register_scrape_collector
from runtime import health

from .models import Task

logger = logging.getLogger(__name__)

LIVE_STATUSES = ("queued", "running")


class LiveTasksCollector:
    def describe(self):
        # Declared so that registering does not run a scrape (and a query) at start-up.
        return []

    def collect(self):
        yield from self._tasks()
        yield from self._queue()
        yield from self._workers()

    def _tasks(self):
        try:
            rows = Task.objects.filter(status__in=LIVE_STATUSES).order_by().values_list("status").annotate(n=Count("id"))
            counted = dict(rows)
        except Exception as exc:  # noqa: BLE001 - a failing query must not break the rest of /metrics
            logger.warning("task counts unavailable: %s", exc)
            return
        tasks = GaugeMetricFamily("platform_tasks", "Tasks in flight, by status (queued, running)", labels=["status"])
        for status in LIVE_STATUSES:
            tasks.add_metric([status], counted.get(status, 0))
        yield tasks

    def _queue(self):
        try:
            import django_rq

            depth = django_rq.get_queue("default").count
        except Exception as exc:  # noqa: BLE001
            logger.warning("queue depth unavailable: %s", exc)
            return
        queue = GaugeMetricFamily("platform_queue_depth", "Jobs waiting in the task queue")
        queue.add_metric([], depth)
        yield queue


    def _workers(self):
        try:
            workers = health.live_workers(health.redis_connection())
        except Exception as exc:  # noqa: BLE001
            logger.warning("worker slots unavailable: %s", exc)
            return
        live = GaugeMetricFamily("platform_workers_live", "Task workers that reported in the last 10 s")
        live.add_metric([], len(workers))
        slots = GaugeMetricFamily("platform_worker_slots", "Task slots of the live workers, by state", labels=["state"])
        busy = sum(w["busy"] for w in workers)
        slots.add_metric(["busy"], busy)
        slots.add_metric(["free"], max(0, sum(w["total"] for w in workers) - busy))
        yield live
        yield slots


def register() -> None:
    register_scrape_collector(_collector)


_collector = LiveTasksCollector()
