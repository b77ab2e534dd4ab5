"""Figures /metrics computes at scrape time, kept cheap: tasks queued and running, the queue depth, and
the live workers and their slots (from the reports each worker writes to Redis every second, the
ones /readyz reads: the same on every web host, and a dead worker drops out within 10 s).

Everything else (tasks finished, durations, queue wait, model calls, tokens, sandboxes) is counted
where it happens (autogen_platform.metrics). The count below reads only the live rows: one COUNT on
the indexed status column restricted to queued and running, so its cost follows the tasks in flight,
never the finished ones; the queue depth is one LLEN. A database count rather than Redis alone
because a task waiting for a customer's slot is queued but has no job in the queue.

The share of each customer's monthly token budget used so far (platform_customer_token_budget_used_ratio, for
the "nearly spent" alert) is read from the per-day usage counters the quota reads (accounts.CustomerUsage: this
month's rows of each customer, one index lookup each), never the tasks table: one query per scrape
whose cost follows the customers, not their tasks. Its `customer` label keeps METRICS_CUSTOMERS' bound: the
listed customers (`list`), or the ones nearest their budget up to METRICS_CUSTOMERS_MAX (`all`); `other` is
the highest ratio among the rest (a max, not a sum: a ratio of a sum of budgets would hide the one customer
about to be refused).
"""
import logging

from django.db.models import Count, FloatField, OuterRef
from django.db.models.functions import Cast, Greatest
from prometheus_client.core import GaugeMetricFamily

from accounts.models import Customer
from autogen_platform import metrics
from autogen_platform.metrics import register_scrape_collector
from runtime import health

from .models import Task
from .quotas import customer_month_tokens

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
        yield from self._token_budgets()

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

    def _token_budgets(self):
        try:
            ratios = token_budget_ratios()
        except Exception as exc:  # noqa: BLE001
            logger.warning("token budget figures unavailable: %s", exc)
            return
        family = GaugeMetricFamily(
            "platform_customer_token_budget_used_ratio",
            "Share of the customer's monthly token budget used this month (1: spent, new tasks refused); "
            "customer=\"other\": the highest among the customers without a label of their own",
            labels=["customer"],
        )
        for customer, ratio in ratios.items():
            family.add_metric([customer], ratio)
        yield family


def token_budget_ratios() -> dict[str, float]:
    """{customer label: tokens used this month / monthly budget}, within METRICS_CUSTOMERS' bound, `other`
    always present (0 when no other customer used tokens). A budget of 0 gives the tokens used (>= 1, spent,
    once it used any)."""
    mode, listed, limit = metrics.customer_label.settings()
    # One subquery per customer, referenced once (the ordering reuses the selected ratio): customers without
    # tokens this month sort last with 0 and are dropped here rather than by a WHERE that would run it again.
    ratio = Cast(customer_month_tokens(OuterRef("pk")), FloatField()) / Cast(Greatest("monthly_token_budget", 1), FloatField())
    customers = Customer.objects.filter(deleted_at__isnull=True).annotate(ratio=ratio).order_by("-ratio", "pk")
    ratios: dict[str, float] = {}
    if mode == "list":
        ids = [int(c) for c in listed if c.isdigit()]
        ratios.update((str(pk), r) for pk, r in customers.filter(pk__in=ids).values_list("pk", "ratio"))
        other = customers.exclude(pk__in=ids).values_list("ratio", flat=True).first()
    elif mode == "all" and limit > 0:
        # the ones nearest their budget get a label; the first one left out is the highest of the rest
        top = [(pk, r) for pk, r in customers.values_list("pk", "ratio")[: limit + 1] if r > 0]
        ratios.update((str(pk), r) for pk, r in top[:limit])
        other = top[limit][1] if len(top) > limit else None
    else:
        other = customers.values_list("ratio", flat=True).first()
    ratios[metrics.OTHER] = other or 0.0
    return ratios


def register() -> None:
    register_scrape_collector(_collector)


_collector = LiveTasksCollector()
