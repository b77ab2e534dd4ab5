"""The audit log's writes: `audit_record` and how actors and client addresses appear in it."""
from django.conf import settings

from .models import AuditLog

SECRET_KEYS = {"password", "api_key", "key", "token", "access", "refresh", "secret"}


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
