"""Webhook figures /metrics computes at scrape time: the deliveries still to send, by state, how late the
most overdue one is, and the live delivery workers (what is counted as it happens, the attempts and the
ended deliveries, is in autogen_platform.metrics).

One grouped query over the unfinished deliveries only (status pending, queued or sending: the
(status, next_attempt_at) index), so its cost follows the deliveries in flight, never the kept record
of finished ones; the live workers are RQ's worker set of the `webhooks` queue and one EXISTS per member.
"""
import logging

from django.db.models import Count, Min, Q
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily

from autogen_platform.metrics import register_scrape_collector

from .models import WebhookDelivery

logger = logging.getLogger(__name__)

WAITING_STATES = ("due", "retry_wait", "sending")


class WebhookDeliveriesCollector:
    def describe(self):
        return []  # registering runs no query

    def collect(self):
        yield from self._deliveries()
        yield from self._workers()

    def _deliveries(self):
        Status = WebhookDelivery.Status
        now = timezone.now()
        due = Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
        try:
            rows = list(
                WebhookDelivery.objects.filter(status__in=[Status.PENDING, Status.QUEUED, Status.SENDING]).order_by()
                .values("status").annotate(n=Count("id"), due=Count("id", filter=due), oldest=Min("next_attempt_at", filter=due))
            )
        except Exception as exc:  # noqa: BLE001 - a failing query must not break the rest of /metrics
            logger.warning("webhook delivery counts unavailable: %s", exc)
            return
        counts = dict.fromkeys(WAITING_STATES, 0)
        oldest = None
        for row in rows:
            if row["status"] == Status.SENDING:
                counts["sending"] += row["n"]
                continue
            counts["due"] += row["due"]
            counts["retry_wait"] += row["n"] - row["due"]
            if row["oldest"] is not None and (oldest is None or row["oldest"] < oldest):
                oldest = row["oldest"]
        waiting = GaugeMetricFamily(
            "platform_webhook_deliveries_waiting",
            "Webhook deliveries not yet done, by state (due: to send now; retry_wait: backing off; sending)",
            labels=["state"],
        )
        for state in WAITING_STATES:
            waiting.add_metric([state], counts[state])
        yield waiting
        late = GaugeMetricFamily("platform_webhook_oldest_due_seconds",
                                 "How long the most overdue webhook delivery has been due without being sent (0: none)")
        late.add_metric([], max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0)
        yield late

    def _workers(self):
        try:
            import django_rq
            from rq import worker_registration

            queue = django_rq.get_queue("webhooks")
            keys = sorted(worker_registration.get_keys(queue=queue))
            with queue.connection.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.exists(key)
                # a SIGKILLed worker stays in RQ's set until a cleanup; its own key expires (worker_ttl)
                count = sum(1 for alive in pipe.execute() if alive)
        except Exception as exc:  # noqa: BLE001
            logger.warning("webhook workers unavailable: %s", exc)
            return
        workers = GaugeMetricFamily("platform_webhook_workers", "Live webhook delivery workers (RQ workers of the webhooks queue)")
        workers.add_metric([], count)
        yield workers


_collector = WebhookDeliveriesCollector()


def register() -> None:
    register_scrape_collector(_collector)
