"""Reads for the studio's pages, scoped to the caller's customer: the runs history with its filters, and usage
(tokens and cost per day, per agent, per model). Costs use each model configuration's optional prices."""
from collections import defaultdict
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from django.utils import timezone

from accounts.selectors import membership_for_user
from agents.models import ModelConfig
from tasks import selectors as task_selectors
from tasks.models import Task, TaskEvent


def run_list_for_user(user, *, status=None, agent=None, team=None, since: date | None = None,
                      until: date | None = None):
    """The customer's tasks, newest first, filtered like GET /api/tasks/ plus a creation date range."""
    runs = task_selectors.task_list_for_user(user, status=status, agent=agent, team=team)
    tz = timezone.get_current_timezone()
    if since:
        runs = runs.filter(created_at__gte=datetime.combine(since, time.min, tzinfo=tz))
    if until:
        runs = runs.filter(created_at__lt=datetime.combine(until + timedelta(days=1), time.min, tzinfo=tz))
    return runs.select_related("agent", "team")


def thread_runs(task: Task):
    """The runs of the task's thread, oldest first (the conversation in order)."""
    return Task.objects.filter(thread_id=task.thread_id, customer_id=task.customer_id).order_by("created_at", "id")


# The events that carry a model call's tokens: an agent's message, and the tool call request that preceded it.
USAGE_EVENTS = ("message", "tool_call")


def _tokens(usage: dict | None) -> tuple[int, int]:
    usage = usage or {}
    return int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)


def task_token_split(task_row: dict, message_usage: list[tuple[str, dict]]) -> list[tuple[str, int | None, int, int]]:
    """[(agent name, model id, prompt, completion)] of one task.

    A single agent's task is all its own. A team's tokens go to the agents whose messages and tool calls report
    them (`models_usage`); what is left (the selector's calls) goes to "(team: selector)" on the selector model, or
    "(team)" with no model."""
    spec = task_row["spec"] or {}
    agents = spec.get("agents") or []
    model_of = {a.get("name"): a.get("model") for a in agents}
    prompt, completion = _tokens(task_row["usage"])
    if spec.get("kind") != "team":
        name = agents[0]["name"] if agents else "(deleted agent)"
        return [(name, model_of.get(name), prompt, completion)]
    rows = defaultdict(lambda: [0, 0])
    for source, usage in message_usage:
        p, c = _tokens(usage)
        rows[source][0] += p
        rows[source][1] += c
    split = [(name, model_of.get(name), p, c) for name, (p, c) in rows.items()]
    rest_p = prompt - sum(r[2] for r in split)
    rest_c = completion - sum(r[3] for r in split)
    if rest_p > 0 or rest_c > 0:
        selector = (spec.get("team") or {}).get("selector_model")
        split.append(("(team: selector)" if selector else "(team)", selector, max(rest_p, 0), max(rest_c, 0)))
    return split


def usage_for_user(user, *, days: int = 30) -> dict:
    """Tokens and cost of the customer's runs created in the last `days` days: totals, per day, per agent, per
    model. Cost is None where no price is set."""
    customer_id = membership_for_user(user).customer_id
    today = timezone.localdate()
    first = today - timedelta(days=days - 1)
    start = datetime.combine(first, time.min, tzinfo=timezone.get_current_timezone())
    tasks = list(
        Task.objects.filter(customer_id=customer_id, created_at__gte=start)
        .values("id", "created_at", "usage", "spec", "team_id")
    )
    team_ids = [t["id"] for t in tasks if (t["spec"] or {}).get("kind") == "team"]
    messages = defaultdict(list)
    if team_ids:
        for task_id, source, usage in TaskEvent.objects.filter(task_id__in=team_ids, type__in=USAGE_EVENTS).values_list(
                "task_id", "source", "content__models_usage"):
            if isinstance(usage, dict):
                messages[task_id].append((source, usage))
    models = {m.pk: m for m in ModelConfig.objects.filter(customer_id=customer_id)}

    def cost(model_id, p, c):
        model = models.get(model_id)
        return model.cost(p, c) if model is not None else None

    def bucket():
        return {"prompt_tokens": 0, "completion_tokens": 0, "cost": None, "runs": 0}

    def add(row, p, c, money):
        row["prompt_tokens"] += p
        row["completion_tokens"] += c
        if money is not None:
            row["cost"] = (row["cost"] or Decimal(0)) + money

    per_day = {first + timedelta(days=i): bucket() for i in range(days)}
    per_agent, per_model, total = defaultdict(bucket), defaultdict(bucket), bucket()
    for task in tasks:
        day = timezone.localtime(task["created_at"]).date()
        split = task_token_split(task, messages.get(task["id"], []))
        for agent_name, model_id, p, c in split:
            money = cost(model_id, p, c)
            add(per_day.setdefault(day, bucket()), p, c, money)
            add(per_agent[agent_name], p, c, money)
            model_name = models[model_id].name if model_id in models else "(unknown model)"
            add(per_model[model_name], p, c, money)
            add(total, p, c, money)
        per_day[day]["runs"] += 1
        total["runs"] += 1
        for agent_name in {s[0] for s in split}:
            per_agent[agent_name]["runs"] += 1
    for rows in (per_day, per_agent, per_model):
        for row in rows.values():
            row["tokens"] = row["prompt_tokens"] + row["completion_tokens"]
    total["tokens"] = total["prompt_tokens"] + total["completion_tokens"]
    order = lambda rows: sorted(rows.items(), key=lambda kv: (-kv[1]["tokens"], str(kv[0])))  # noqa: E731
    return {
        "days": days,
        "first": first,
        "last": today,
        "total": total,
        "per_day": sorted(per_day.items()),
        "per_agent": order(per_agent),
        "per_model": order(per_model),
        "priced": any(m.has_prices for m in models.values()),
    }


def task_cost(task: Task):
    """The run's cost from its models' prices (None when none of them has a price)."""
    return task_costs([task]).get(task.pk)


def task_costs(tasks) -> dict:
    """{task id: cost or None} for finished runs of one customer (a page of the history): two queries in all."""
    tasks = [t for t in tasks if t.is_finished]
    teams = [t.pk for t in tasks if (t.spec or {}).get("kind") == "team"]
    messages = defaultdict(list)
    if teams:
        for task_id, source, usage in (TaskEvent.objects.filter(task_id__in=teams, type__in=USAGE_EVENTS)
                                       .values_list("task_id", "source", "content__models_usage")):
            if isinstance(usage, dict):
                messages[task_id].append((source, usage))
    splits = {t.pk: task_token_split({"spec": t.spec, "usage": t.usage}, messages[t.pk]) for t in tasks}
    ids = {model_id for split in splits.values() for _, model_id, _, _ in split if model_id}
    customers = {t.customer_id for t in tasks}
    models = {m.pk: m for m in ModelConfig.objects.filter(customer_id__in=customers, pk__in=ids)} if ids else {}
    costs = {}
    for task_id, split in splits.items():
        total = None
        for _, model_id, p, c in split:
            money = models[model_id].cost(p, c) if model_id in models else None
            if money is not None:
                total = (total or Decimal(0)) + money
        costs[task_id] = total
    return costs
