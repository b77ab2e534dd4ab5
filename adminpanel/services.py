"""Writes of the admin plane: broadcasts, the killswitch (its reads and the audit log: core)."""
import logging

from django.db import transaction

from accounts.models import Notification
from accounts.services import customer_notice_publish
from autogen_platform.errors import ValidationFailed
from core.models import AuditLog, Killswitch
from core.selectors import killswitch_scope
from core.services import actor_name, audit_record
from runtime.outcomes import StopReason
from tasks.services import tasks_stop, tasks_stop_running

logger = logging.getLogger(__name__)


def _notice(customer_id: int | None, payload: dict) -> None:
    customer_notice_publish(customer_id=customer_id, payload=payload)


def notification_payload(notification: Notification) -> dict:
    return {
        "id": notification.pk,
        "message": notification.message,
        "level": notification.level,
        "created_at": notification.created_at.isoformat().replace("+00:00", "Z"),
    }


@transaction.atomic
def broadcast_send(*, actor, message: str, level: str = Notification.Level.INFO, request=None) -> Notification:
    """A notice to every customer: kept as a Notification and pushed live on every events stream."""
    notification = Notification.objects.create(customer=None, message=message, level=level, created_by=actor_name(actor))
    audit_record(actor=actor, action="broadcast.send", target=f"notification:{notification.pk}", request=request,
                 details={"level": level, "message": message[:500]})
    payload = {"type": "broadcast", "notification": notification_payload(notification)}
    transaction.on_commit(lambda: _notice(None, payload), robust=True)
    return notification


def killswitch_set(*, actor, engaged: bool, customer=None, reason: str = "", request=None) -> Killswitch:
    """Engage or release the killswitch of one customer (or the global one, customer None).

    The row is the record every worker checks before it runs a task. Engaging also stops what is
    already in scope: running tasks are asked to stop in the switch's own transaction (one UPDATE; their
    sandboxes get the kill order over Redis the moment it commits) and end `cancelled` with error
    `killswitch`; queued tasks end the same way right after (tasks.services.tasks_stop), in batches, so their
    number never delays the kill.

    The running tasks are read before the switch commits: a worker's stop poll that sees the switch engaged
    ends its tasks at once, and read after the commit such a task could already be over and missing from
    the audit (seen in CI: one of the two tasks the global switch stopped was left out).
    """
    scope = {"customer_id": customer.pk} if customer is not None else {"everyone": True}
    with transaction.atomic():
        # the stop first: its kill order is then the first thing sent once this commits, before the notices
        running = tasks_stop_running(reason=StopReason.KILLSWITCH, **scope) if engaged else []
        switch, audit = _killswitch_write(actor=actor, engaged=engaged, customer=customer, reason=reason, request=request)
    if engaged:
        message = f"Stopped by the killswitch: {reason}" if reason else "Stopped by the killswitch"
        # the queued ones, and a task whose start committed while the switch did (its worker checked the
        # switch before it was visible): the poll would stop it within half a second, this at once
        stopped = tasks_stop(reason=StopReason.KILLSWITCH, message=message, announce_none=False, **scope)
        # the engage row, written with the switch, then completed with what the switch stopped
        AuditLog.objects.filter(pk=audit.pk).update(details={
            **audit.details, "running_stopped": sorted(set(running) | set(stopped["stopping"])),
            "queued_cancelled": stopped["cancelled"]})
    return switch


def _killswitch_write(*, actor, engaged: bool, customer, reason: str, request):
    customer_id = customer.pk if customer is not None else None
    scope = killswitch_scope(customer_id)
    switch, _ = Killswitch.objects.select_for_update().get_or_create(scope=scope, defaults={"customer": customer})
    was_engaged = switch.engaged
    switch.engaged = engaged
    switch.reason = reason
    switch.changed_by = actor_name(actor)[:150]
    switch.save()

    audit = audit_record(
        actor=actor,
        action="killswitch.engage" if engaged else "killswitch.release",
        target=scope,
        customer=customer,
        request=request,
        details={"reason": reason, "was_engaged": was_engaged,
                 **({"running_stopped": [], "queued_cancelled": []} if engaged else {})},
    )
    if engaged:
        message = "Service suspended by the platform administrators: no tasks run" + (f" ({reason})" if reason else "")
    else:
        message = "Service restored: tasks run again"
    notification = Notification.objects.create(
        customer=customer, message=message, level=Notification.Level.CRITICAL if engaged else Notification.Level.INFO,
        created_by=actor_name(actor)[:150],
    )
    payload = {
        "type": "killswitch",
        "engaged": engaged,
        "scope": "global" if customer_id is None else "customer",
        "customer": customer_id,
        "reason": reason,
        "notification": notification_payload(notification),
    }
    transaction.on_commit(lambda: _notice(customer_id, payload), robust=True)
    logger.warning("killswitch %s %s by %s: %s", scope, "engaged" if engaged else "released", switch.changed_by, reason)
    return switch, audit


__all__ = [
    "broadcast_send",
    "killswitch_set",
]


@transaction.atomic
def admin_otp_enrol(*, actor, user, name: str = "authenticator", replace: bool = False):
    """A confirmed TOTP device for a staff user: the Django admin's second factor. Returns the device, whose
    `config_url` (otpauth://) is shown once to the admin to load into an authenticator app.

    With `replace`, the user's other TOTP devices are deleted first (a lost phone); without, a second device is
    added beside them."""
    from django_otp.plugins.otp_totp.models import TOTPDevice

    if not user.is_staff:
        raise ValidationFailed(f"{user.username!r} is not a staff user: only platform admins use the admin site")
    removed = 0
    if replace:
        removed, _ = TOTPDevice.objects.filter(user=user).delete()
    device = TOTPDevice.objects.create(user=user, name=name, confirmed=True)
    audit_record(actor=actor, action="admin.otp_enrol", target=f"user:{user.username}",
                 details={"device": name, "replaced": removed})
    return device
