"""Writes of the admin plane: audit rows, broadcasts, the killswitch."""
import logging

from django.conf import settings
from django.db import transaction

from runtime.outcomes import StopReason

from .models import AuditLog, Killswitch, Notification

logger = logging.getLogger(__name__)

SECRET_KEYS = {"password", "api_key", "key", "token", "access", "refresh", "secret"}
GLOBAL_SCOPE = "global"


def _scrub(details):
    if isinstance(details, dict):
        return {k: ("***" if k.lower() in SECRET_KEYS else _scrub(v)) for k, v in details.items()}
    if isinstance(details, list):
        return [_scrub(v) for v in details]
    return details


def client_ip(request) -> str | None:
    """The caller's address: REMOTE_ADDR, or the X-Forwarded-For entry set by the NUM_PROXIES-th trusted proxy."""
    if request is None:
        return None
    num_proxies = settings.REST_FRAMEWORK.get("NUM_PROXIES") or 0
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if num_proxies > 0 and forwarded:
        addrs = [a.strip() for a in forwarded.split(",") if a.strip()]
        if addrs:
            return addrs[-min(num_proxies, len(addrs))]
    return request.META.get("REMOTE_ADDR") or None


def actor_name(actor) -> str:
    """How an actor appears in audit rows: a customer user's username, `admin:<username>` for staff, or the string."""
    if getattr(actor, "pk", None) and hasattr(actor, "username"):
        if actor.is_staff and not hasattr(actor, "membership"):
            return f"admin:{actor.username}"
        return actor.username
    return str(actor or "anonymous")


def audit_record(*, actor, action: str, target="", customer=None, request=None, ip=None, details=None) -> AuditLog:
    """One audit row. `actor` is a user, or a string for the system and anonymous callers."""
    user = actor if getattr(actor, "pk", None) and hasattr(actor, "username") else None
    if customer is None and user is not None and hasattr(user, "membership"):
        customer = user.membership.customer
    return AuditLog.objects.create(
        actor=actor_name(actor)[:200],
        actor_user=user,
        customer=customer,
        action=action,
        target=str(target)[:200],
        ip=ip or client_ip(request),
        details=_scrub(details or {}),
    )


def killswitch_scope(customer_id: int | None) -> str:
    return GLOBAL_SCOPE if customer_id is None else f"customer:{customer_id}"


def killswitch_scope_engaged(customer_id: int | None) -> bool:
    """True when the global switch, or the one of this customer, is engaged."""
    scopes = [GLOBAL_SCOPE] + ([killswitch_scope(customer_id)] if customer_id else [])
    return Killswitch.objects.filter(scope__in=scopes, engaged=True).exists()


def killswitch_scopes_engaged(customer_ids: set[int]) -> set[int]:
    """Which of these customers are under an engaged killswitch (the global one covers them all)."""
    scopes = {killswitch_scope(c): c for c in customer_ids}
    engaged = set(Killswitch.objects.filter(scope__in=[GLOBAL_SCOPE, *scopes], engaged=True).values_list("scope", flat=True))
    if GLOBAL_SCOPE in engaged:
        return set(customer_ids)
    return {scopes[s] for s in engaged if s in scopes}


def _notice(customer_id: int | None, payload: dict) -> None:
    from accounts.services import customer_notice_publish

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
    already in scope (tasks.services.tasks_stop, once the switch committed): running tasks are asked to
    stop (one UPDATE; their sandboxes get the kill order over Redis the moment it commits) and end
    `cancelled` with error `killswitch`; queued tasks end the same way right after, in batches, so their
    number never delays the kill.
    """
    from tasks.services import tasks_stop

    with transaction.atomic():
        switch, audit = _killswitch_write(actor=actor, engaged=engaged, customer=customer, reason=reason, request=request)
    if engaged:
        message = f"Stopped by the killswitch: {reason}" if reason else "Stopped by the killswitch"
        scope = {"customer_id": customer.pk} if customer is not None else {"everyone": True}
        stopped = tasks_stop(reason=StopReason.KILLSWITCH, message=message, **scope)
        # the engage row, written with the switch, then completed with what the switch stopped
        AuditLog.objects.filter(pk=audit.pk).update(details={**audit.details, "running_stopped": stopped["stopping"],
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
    "actor_name",
    "audit_record",
    "broadcast_send",
    "client_ip",
    "killswitch_scope_engaged",
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
        from autogen_platform.errors import ValidationFailed

        raise ValidationFailed(f"{user.username!r} is not a staff user: only platform admins use the admin site")
    removed = 0
    if replace:
        removed, _ = TOTPDevice.objects.filter(user=user).delete()
    device = TOTPDevice.objects.create(user=user, name=name, confirmed=True)
    audit_record(actor=actor, action="admin.otp_enrol", target=f"user:{user.username}",
                 details={"device": name, "replaced": removed})
    return device
