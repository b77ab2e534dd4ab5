"""Names unique within a customer (model configurations, agents, teams, schedules): one rule for saving them."""
from django.db import IntegrityError, transaction

from .errors import Conflict


def unique_name_save(instance, *, label: str) -> None:
    """Save a row whose `name` is unique among its customer's (a database constraint). A taken name is a 409
    conflict, whether it is seen before the write or only by the constraint (a concurrent save of that name).
    `label` names the kind for the message: "An agent", "A team"."""
    def taken():
        return Conflict(f"{label} named {instance.name!r} already exists", details={"name": ["Already in use"]})

    rows = type(instance)._default_manager.filter(customer_id=instance.customer_id, name=instance.name)
    if rows.exclude(pk=instance.pk).exists():
        raise taken()
    try:
        with transaction.atomic():
            instance.save()
    except IntegrityError:
        raise taken() from None
