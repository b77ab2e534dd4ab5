"""Every read of tasks and their events, scoped to the acting user where it starts from a request."""
from autogen_platform.errors import NotFound

from .models import Task, TaskEvent


def customer_id_for_user(user) -> int | None:
    membership = getattr(user, "membership", None)
    return membership.customer_id if membership is not None else None


def task_get_for_user(*, user, pk) -> Task:
    """The user's customer's task, or NotFound (another customer's task is simply not found)."""
    task = Task.objects.filter(pk=pk, customer_id=customer_id_for_user(user)).first()
    if task is None:
        raise NotFound("Task not found")
    return task


def task_stream_snapshot(*, task_id: int, after: int) -> tuple[str, list[dict]]:
    """(status, events with seq > after) as one consistent cut.

    The status and last_seq come from one read of the task row, which the event writers update in the
    same transaction as they insert events: every event up to last_seq is committed, and the status
    matches them. Events committed after this read reach a stream through its live group instead.
    """
    row = Task.objects.filter(pk=task_id).values_list("status", "last_seq").first()
    if row is None:
        return "", []
    status, last_seq = row
    return status, task_events_between(task_id=task_id, after=after, upto=last_seq)


def task_events_between(*, task_id: int, after: int, upto: int | None = None) -> list[dict]:
    """Events with after < seq (<= upto), in order, as the API shows them."""
    events = TaskEvent.objects.filter(task_id=task_id, seq__gt=after)
    if upto is not None:
        if upto <= after:
            return []
        events = events.filter(seq__lte=upto)
    return [e.as_dict() for e in events.order_by("seq")]
