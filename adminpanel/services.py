"""Writes of the admin plane: audit rows, broadcasts, the killswitch."""
from django.db import transaction

from .models import AuditLog

SECRET_KEYS = {"password", "api_key", "key", "token", "access", "refresh", "secret"}


def _scrub(details):
    if isinstance(details, dict):
        return {k: ("***" if k.lower() in SECRET_KEYS else _scrub(v)) for k, v in details.items()}
    if isinstance(details, list):
        return [_scrub(v) for v in details]
    return details


def client_ip(request) -> str | None:
    if request is None:
        return None
    return request.META.get("REMOTE_ADDR") or None


def audit_record(*, actor, action: str, target="", customer=None, request=None, ip=None, details=None) -> AuditLog:
    """One audit row. `actor` is a user, or a string for the system and anonymous callers."""
    user = actor if getattr(actor, "pk", None) and hasattr(actor, "username") else None
    if user is not None:
        name = f"admin:{user.username}" if user.is_staff and not hasattr(user, "membership") else user.username
    else:
        name = str(actor or "anonymous")
    if customer is None and user is not None and hasattr(user, "membership"):
        customer = user.membership.customer
    return AuditLog.objects.create(
        actor=name[:200],
        actor_user=user,
        customer=customer,
        action=action,
        target=str(target)[:200],
        ip=ip or client_ip(request),
        details=_scrub(details or {}),
    )


def killswitch_scope_engaged(customer_id: int | None) -> bool:
    """True when the global switch, or the one of this customer, is engaged."""
    from .models import Killswitch

    scopes = ["global"] + ([f"customer:{customer_id}"] if customer_id else [])
    return Killswitch.objects.filter(scope__in=scopes, engaged=True).exists()


__all__ = ["audit_record", "client_ip", "killswitch_scope_engaged", "transaction"]
