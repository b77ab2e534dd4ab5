"""Every read of tasks and their events, scoped to the acting user where it starts from a request."""
from django.db.models import Count, Q, Sum

from accounts.models import CustomerUsage
from autogen_platform.errors import NotFound

from .models import Task, TaskEvent, Thread


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


EVENTS_DEFAULT_LIMIT = 500
EVENTS_MAX_LIMIT = 1000


def task_list_for_user(user, *, status=None, agent=None, team=None):
    """The user's customer's tasks, newest first; each filter is optional."""
    tasks = Task.objects.filter(customer_id=customer_id_for_user(user))
    if status:
        tasks = tasks.filter(status=status)
    if agent is not None:
        tasks = tasks.filter(agent_id=agent)
    if team is not None:
        tasks = tasks.filter(team_id=team)
    return tasks.order_by("-created_at", "-id")


def task_events_page(task: Task, *, after: int = 0, limit: int = EVENTS_DEFAULT_LIMIT):
    """At most `limit` events with seq > after, ascending."""
    return TaskEvent.objects.filter(task=task, seq__gt=after).order_by("seq")[: min(limit, EVENTS_MAX_LIMIT)]


def thread_list_for_user(user):
    return Thread.objects.filter(customer_id=customer_id_for_user(user)).order_by("-created_at", "-id")


def thread_get_for_user(*, user, pk):
    """The user's customer's thread, or NotFound."""
    thread = Thread.objects.filter(pk=pk, customer_id=customer_id_for_user(user)).first()
    if thread is None:
        raise NotFound("Thread not found")
    return thread


def agent_tasks_in_flight(agent):
    """Unfinished tasks the agent takes part in (queued, running, waiting for input): its own, and those of
    teams it is a member of."""
    return (
        Task.objects.filter(status__in=[Task.Status.QUEUED, Task.Status.RUNNING, Task.Status.INPUT_REQUIRED])
        .filter(Q(agent=agent) | Q(team__members__agent=agent))
        .distinct()
        .order_by("created_at", "id")
    )


def team_tasks_in_flight(team):
    """Unfinished tasks of the team (queued, running, waiting for input)."""
    return Task.objects.filter(team=team, status__in=[Task.Status.QUEUED, Task.Status.RUNNING,
                                                     Task.Status.INPUT_REQUIRED])


def tasks_by_status() -> dict[str, int]:
    """How many tasks the platform holds in each status, in two small reads whatever the tasks table holds: the
    unfinished ones counted on the (status, heartbeat_at) index, the finished ones summed from the per-day usage
    counters that every end and deletion keeps (accounts.CustomerUsage: one row per customer and day). Counting
    the whole table took 160 ms at a million tasks (PostgreSQL, both cores), and grew with it."""
    out = {status: 0 for status in Task.Status.values}
    unfinished = [s for s in Task.Status.values if s not in CustomerUsage.ENDED]
    for status, n in Task.objects.filter(status__in=unfinished).order_by().values_list("status").annotate(n=Count("id")):
        out[status] = n
    ended = CustomerUsage.objects.aggregate(**{status: Sum(status) for status in CustomerUsage.ENDED})
    out.update({status: int(n or 0) for status, n in ended.items()})
    return out
