"""Reads of webhooks, deliveries and schedules, scoped to the caller's customer."""
from accounts.selectors import membership_for_user, scoped_get
from autogen_platform.errors import NotFound

from .models import Schedule, Webhook, WebhookDelivery


def webhook_list_for_user(user):
    return Webhook.objects.filter(customer_id=membership_for_user(user).customer_id)


def webhook_get_for_user(user, pk) -> Webhook:
    return scoped_get(Webhook.objects.all(), user, pk, what="Webhook")


def delivery_list(webhook: Webhook, *, status: str | None = None, task: int | None = None):
    deliveries = WebhookDelivery.objects.filter(webhook=webhook)
    if status:
        deliveries = deliveries.filter(status=status)
    if task:
        deliveries = deliveries.filter(task_id=task)
    return deliveries


def delivery_get(webhook: Webhook, pk) -> WebhookDelivery:
    delivery = WebhookDelivery.objects.select_related("webhook__customer").filter(webhook=webhook, pk=pk).first()
    if delivery is None:
        raise NotFound("Delivery not found")
    return delivery


def schedule_list_for_user(user):
    return Schedule.objects.filter(customer_id=membership_for_user(user).customer_id)


def schedule_get_for_user(user, pk) -> Schedule:
    return scoped_get(Schedule.objects.all(), user, pk, what="Schedule")


def schedules_earliest_run_at():
    """The soonest next_run_at of any enabled schedule (every customer's: the scheduler's read), or None.
    One row from the (enabled, next_run_at) index."""
    return (Schedule.objects.filter(enabled=True, next_run_at__isnull=False).order_by("next_run_at")
            .values_list("next_run_at", flat=True).first())
