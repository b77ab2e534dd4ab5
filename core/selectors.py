"""The killswitch's reads: is a customer (or everyone) under an engaged switch. Its writes are the admin's
(adminpanel.services.killswitch_set)."""
from .models import Killswitch

GLOBAL_SCOPE = "global"


def killswitch_scope(customer_id: int | None) -> str:
    return GLOBAL_SCOPE if customer_id is None else f"customer:{customer_id}"


def killswitch_scope_engaged(customer_id: int | None) -> bool:
    """True when the global switch, or the one of this customer, is engaged."""
    scopes = [GLOBAL_SCOPE] + ([killswitch_scope(customer_id)] if customer_id else [])
    return Killswitch.objects.filter(scope__in=scopes, engaged=True).exists()


def killswitch_engaged_scopes() -> set[str]:
    """Every engaged scope ("global", "customer:N"): one read for a batch of checks (killswitch_scope() names them)."""
    return set(Killswitch.objects.filter(engaged=True).values_list("scope", flat=True))


def killswitch_scopes_engaged(customer_ids: set[int]) -> set[int]:
    """Which of these customers are under an engaged killswitch (the global one covers them all)."""
    scopes = {killswitch_scope(c): c for c in customer_ids}
    engaged = set(Killswitch.objects.filter(scope__in=[GLOBAL_SCOPE, *scopes], engaged=True).values_list("scope", flat=True))
    if GLOBAL_SCOPE in engaged:
        return set(customer_ids)
    return {scopes[s] for s in engaged if s in scopes}
