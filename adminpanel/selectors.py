"""Reads of the admin plane. Admins see every customer, so these are not tenant scoped: the admin API's
authentication and permissions are the gate."""
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

from django.db.models import Sum
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from accounts.models import Customer, CustomerUsage
from agents.models import Agent
from autogen_platform.errors import NotFound, ValidationFailed
from core.models import AuditLog, Killswitch
from core.selectors import GLOBAL_SCOPE, killswitch_scope
from runtime.models import WorkerHost
from runtime.services import sandbox_processes, worker_slots
from tasks.models import Task
from tasks.selectors import tasks_by_status


def _iso(value):
    return value.isoformat().replace("+00:00", "Z") if value else None


def customer_list():
    """Customers that exist for the platform: a deleted one (awaiting its purge) is not among them."""
    return Customer.objects.filter(deleted_at__isnull=True).order_by("name")


def customer_get(customer_id) -> Customer:
    customer = customer_list().filter(pk=_int(customer_id, "customer")).first()
    if customer is None:
        raise NotFound("Customer not found")
    return customer


def agent_list(*, customer_id=None):
    agents = Agent.objects.select_related("customer").order_by("customer__name", "name")
    if customer_id not in (None, ""):
        agents = agents.filter(customer_id=_int(customer_id, "customer"))
    return agents


def agent_get(agent_id) -> Agent:
    agent = Agent.objects.select_related("customer").filter(pk=_int(agent_id, "agent")).first()
    if agent is None:
        raise NotFound("Agent not found")
    return agent


def _int(value, field):
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValidationFailed(details={field: ["A whole number is required"]}) from None


def _when(value, field, *, end=False):
    """An ISO datetime, or a date: its start, or with end=True the start of the next day."""
    try:
        moment = parse_datetime(value)
        day = None if moment is not None else parse_date(value)
    except ValueError:
        moment = day = None
    if moment is None:
        if day is None:
            raise ValidationFailed(details={field: ["Use an ISO 8601 date or datetime"]})
        moment = datetime(day.year, day.month, day.day) + (timedelta(days=1) if end else timedelta())
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment, dt_timezone.utc)
    try:  # in UTC: the database refuses offsets past 15:59 that the parser takes
        return moment.astimezone(dt_timezone.utc)
    except (OverflowError, ValueError):
        raise ValidationFailed(details={field: ["Out of range"]}) from None


def audit_list(*, actor=None, action=None, customer=None, since=None, until=None):
    """Newest first. `action` matches exactly, or by prefix when it ends with '.' or '*' (e.g. `killswitch.`).
    `since` and `until` are inclusive; a bare date as `until` includes that whole day."""
    rows = AuditLog.objects.select_related("customer").order_by("-at", "-id")
    if actor:
        rows = rows.filter(actor=actor)
    if action:
        prefix = action.rstrip("*")
        rows = rows.filter(action__startswith=prefix) if action.endswith((".", "*")) else rows.filter(action=action)
    if customer not in (None, ""):
        rows = rows.filter(customer_id=_int(customer, "customer"))
    if since:
        rows = rows.filter(at__gte=_when(since, "since"))
    if until:
        if "T" in until or " " in until:
            rows = rows.filter(at__lte=_when(until, "until"))
        else:
            rows = rows.filter(at__lt=_when(until, "until", end=True))
    return rows


def killswitch_state(customer_id: int | None = None) -> dict:
    """One scope's switch: {engaged, customer, reason, changed_by, changed_at}; never set reads as released."""
    switch = Killswitch.objects.filter(scope=killswitch_scope(customer_id)).first()
    if switch is None:
        return {"engaged": False, "customer": customer_id, "reason": "", "changed_by": "", "changed_at": None}
    return {
        "engaged": switch.engaged,
        "customer": switch.customer_id,
        "reason": switch.reason,
        "changed_by": switch.changed_by,
        "changed_at": _iso(switch.changed_at),
    }


def killswitch_overview() -> dict:
    """The global switch's state plus every engaged customer switch."""
    state = killswitch_state(None)
    state["customers"] = [
        killswitch_state(customer_id)
        for customer_id in Killswitch.objects.filter(engaged=True)
        .exclude(scope=GLOBAL_SCOPE)
        .order_by("customer_id")
        .values_list("customer_id", flat=True)
    ]
    return state


def queue_depth() -> int:
    import django_rq

    try:
        return django_rq.get_queue("default").count
    except Exception:  # noqa: BLE001 - statistics report an unreachable queue instead of failing
        return -1


def _worker_slots() -> dict:
    try:
        return worker_slots()
    except Exception:  # noqa: BLE001 - statistics report an unreachable Redis instead of failing
        return {"total": -1, "busy": -1}


def platform_stats() -> dict:
    now = timezone.now()
    by_status = tasks_by_status()
    # the per-day usage counters (accounts.CustomerUsage, kept equal to the sum of the tasks' tokens_used by
    # every write of it): one row per customer active today, however many tasks the table holds
    tokens_today = CustomerUsage.objects.filter(day=now.date()).aggregate(n=Sum("tokens"))["n"] or 0
    engaged = Killswitch.objects.filter(engaged=True)
    return {
        "customers": Customer.objects.count(),
        "agents": Agent.objects.count(),
        "tasks_by_status": by_status,
        "running_sandboxes": by_status[Task.Status.RUNNING],
        "queue_depth": queue_depth(),
        "worker_slots": _worker_slots(),
        "tokens_today": int(tokens_today),
        "killswitch": {
            "global": engaged.filter(scope=GLOBAL_SCOPE).exists(),
            "customers": sorted(engaged.exclude(scope=GLOBAL_SCOPE).values_list("customer_id", flat=True)),
        },
    }


def runtime_overview() -> dict:
    """Each worker host's sandbox layers, and the sandboxes running now."""
    from django.conf import settings

    now = timezone.now()
    stale_after = max(60.0, settings.TASK_LEASE_SECONDS * 4)
    hosts = [
        {
            "hostname": host.hostname,
            "alive": (now - host.last_seen).total_seconds() < stale_after,
            "level": (host.capabilities or {}).get("level"),
            "layers": (host.capabilities or {}).get("layers", {}),
            "capabilities": host.capabilities,
            "started_at": _iso(host.started_at),
            "last_seen": _iso(host.last_seen),
        }
        for host in WorkerHost.objects.order_by("hostname")
    ]
    running = {
        t["id"]: t
        for t in Task.objects.filter(status=Task.Status.RUNNING).values("id", "customer_id", "agent_id", "team_id", "worker")
    }
    sandboxes = []
    for proc in sandbox_processes(list(running)):
        task = running.get(proc.get("task"), {})
        sandboxes.append(
            {**proc, "customer": task.get("customer_id"), "agent": task.get("agent_id"), "team": task.get("team_id"),
             "worker": task.get("worker", "")}
        )
    return {"hosts": hosts, "sandboxes": sandboxes}
