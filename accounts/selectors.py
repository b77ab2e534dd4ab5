"""Reads scoped to the caller: the caller's membership and customer, API keys, notifications."""
from autogen_platform.errors import NotFound, PermissionDeniedError

from .models import ApiKey, Customer, CustomerNotice, CustomerStream, Membership, Notification


def membership_for_user(user) -> Membership:
    """The caller's membership; an account outside every customer has no customer API."""
    membership = getattr(user, "membership", None) if getattr(user, "is_authenticated", False) else None
    if membership is None:
        raise PermissionDeniedError("This account does not belong to a customer")
    return membership


def customer_for_user(user) -> Customer:
    return membership_for_user(user).customer


def object_id(pk) -> int:
    """A URL or body id as an int; anything else is simply not found."""
    try:
        value = int(pk)
    except (TypeError, ValueError):
        raise NotFound() from None
    if value < 1:
        raise NotFound()
    return value


def scoped_get(queryset, user, pk, *, what: str):
    """One object of the caller's customer, or 404 whether it is missing or another customer's."""
    obj = queryset.filter(customer_id=membership_for_user(user).customer_id, pk=object_id(pk)).first()
    if obj is None:
        raise NotFound(f"{what} not found")
    return obj


def api_key_list_for_user(user):
    return ApiKey.objects.filter(customer_id=membership_for_user(user).customer_id).select_related("user")


def api_key_get_for_user(user, pk) -> ApiKey:
    return scoped_get(ApiKey.objects.all(), user, pk, what="API key")


def notification_list_for_user(user):
    """The customer's own notifications plus broadcasts (customer null), newest first."""
    from django.db.models import Q

    customer_id = membership_for_user(user).customer_id
    return Notification.objects.filter(Q(customer__isnull=True) | Q(customer_id=customer_id)).order_by(
        "-created_at", "-id"
    )


def customer_stream_read(*, customer_id: int, after: int | None, upto: int | None = None) -> dict:
    """A customer's events stream from the database: `notices` (frames with seq > after, up to `upto`, in
    order; none when after is None), its `last_seq` and `pruned_through` (what a resume can no longer get)."""
    position = CustomerStream.objects.filter(customer_id=customer_id).values_list("last_seq", "pruned_through").first()
    last_seq, pruned_through = position or (0, 0)
    notices = []
    if after is not None and after < last_seq:
        rows = CustomerNotice.objects.filter(customer_id=customer_id, seq__gt=after)
        if upto is not None:
            rows = rows.filter(seq__lte=upto)
        notices = [{**payload, "seq": seq} for seq, payload in rows.order_by("seq").values_list("seq", "payload")]
    return {"notices": notices, "last_seq": last_seq, "pruned_through": pruned_through}
