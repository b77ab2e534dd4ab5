"""The webhooks and schedules sections of declarative specs (the rest of specs/ owns the machinery:
reader, plan, apply in one transaction, export). Webhooks are matched by url, schedules by name;
a webhook's signing secret never stands in a spec: `secret_env` names a variable of the applying side."""
from agents.models import Agent
from integrations.models import TASK_EVENTS, Schedule, Webhook
from integrations.services import (
    schedule_create,
    schedule_delete,
    schedule_update,
    webhook_create,
    webhook_delete,
    webhook_secret,
    webhook_update,
)
from integrations.signing import secret_errors
from teams.models import Team

WEBHOOK_KEYS = ("url", "description", "events", "enabled", "secret_env")
SCHEDULE_KEYS = ("name", "cron", "interval_seconds", "timezone", "agent", "team", "input", "enabled")
WEBHOOK_FIELDS = ("events", "description", "enabled", "secret")
SCHEDULE_FIELDS = ("cron", "interval_seconds", "timezone", "agent", "team", "input", "enabled")
DEFAULT_EVENTS = list(TASK_EVENTS[:4])


def _bool(problems, path, value, default=True) -> bool:
    if value is None:
        return default
    if not isinstance(value, bool):
        problems.add(path, "must be true or false")
        return default
    return value


def webhook_from_spec(problems, path, item: dict, environ, *, keep, env_name, string, string_list) -> dict:
    if "secret" in item:
        problems.add(f"{path}.secret", "secrets never stand in a spec: name an environment variable that holds "
                                       "it with `secret_env: VARIABLE`")
    unknown = [k for k in item if k not in WEBHOOK_KEYS and k != "secret"]
    for key in unknown:
        problems.add(f"{path}.{key}", f"unknown field; allowed: {', '.join(WEBHOOK_KEYS)}")
    events = string_list(problems, f"{path}.events", item.get("events")) if item.get("events") is not None else DEFAULT_EVENTS
    for i, event in enumerate(events):
        if event not in TASK_EVENTS:
            problems.add(f"{path}.events[{i}]", f"unknown event {event!r}; known: {', '.join(TASK_EVENTS)}")
    desired = {
        "events": sorted(set(events), key=lambda e: TASK_EVENTS.index(e) if e in TASK_EVENTS else 99),
        "description": string(problems, f"{path}.description", item.get("description")),
        "enabled": _bool(problems, f"{path}.enabled", item.get("enabled")),
        "secret": keep,
    }
    variable = item.get("secret_env")
    if variable is None:
        return desired
    if not isinstance(variable, str) or not env_name.match(variable):
        problems.add(f"{path}.secret_env", "must be an environment variable name, e.g. ORDERS_WEBHOOK_SECRET")
    elif environ is not None:
        value = (environ.get(variable) or "").strip()
        if not value:
            problems.add(f"{path}.secret_env", f"environment variable {variable} is not set")
        elif secret_errors(value):
            problems.add(f"{path}.secret_env", f"{variable}: {secret_errors(value)[0]}")
        else:
            desired["secret"] = value
    return desired


def schedule_from_spec(problems, path, item: dict, *, string) -> dict:
    for key in item:
        if key not in SCHEDULE_KEYS:
            problems.add(f"{path}.{key}", f"unknown field; allowed: {', '.join(SCHEDULE_KEYS)}")
    interval = item.get("interval_seconds")
    if interval is not None and (not isinstance(interval, int) or isinstance(interval, bool) or interval < 1):
        problems.add(f"{path}.interval_seconds", "must be a positive integer")
        interval = None
    desired = {
        "cron": string(problems, f"{path}.cron", item.get("cron")),
        "interval_seconds": interval,
        "timezone": string(problems, f"{path}.timezone", item.get("timezone")) or "UTC",
        "agent": string(problems, f"{path}.agent", item.get("agent")) or None,
        "team": string(problems, f"{path}.team", item.get("team")) or None,
        "input": string(problems, f"{path}.input", item.get("input"), required=True),
        "enabled": _bool(problems, f"{path}.enabled", item.get("enabled")),
    }
    if (desired["agent"] is None) == (desired["team"] is None):
        problems.add(path, "give exactly one of agent or team")
    return desired


def webhook_values(webhook: Webhook) -> dict:
    return {"events": list(webhook.events), "description": webhook.description, "enabled": webhook.enabled}


def schedule_values(schedule: Schedule) -> dict:
    return {"cron": schedule.cron, "interval_seconds": schedule.interval_seconds, "timezone": schedule.timezone,
            "agent": schedule.agent.name if schedule.agent_id else None,
            "team": schedule.team.name if schedule.team_id else None, "input": schedule.input,
            "enabled": schedule.enabled}


def secret_changed(webhook: Webhook, desired_secret, keep) -> bool:
    if desired_secret is keep:
        return False
    try:
        return webhook_secret(webhook) != desired_secret
    except ValueError:
        return True


def existing(customer) -> dict:
    return {
        "webhook": {w.url: w for w in Webhook.objects.filter(customer=customer).order_by("pk")},
        "schedule": {s.name: s for s in Schedule.objects.filter(customer=customer).select_related("agent", "team")},
    }


def check_references(problems, objects, known_agents: set, known_teams: set, hint: str) -> None:
    for desired in objects["schedule"]:
        agent, team = desired.values["agent"], desired.values["team"]
        if agent and agent not in known_agents:
            problems.add(f"{desired.path}.agent", f"unknown agent {agent!r}{hint}")
        if team and team not in known_teams:
            problems.add(f"{desired.path}.team", f"unknown team {team!r}{hint}")


def carry_out(plan, *, actor, customer, request, keep, at, warnings: list[str]) -> None:
    for item in plan:
        if item.kind != "webhook" or item.action not in ("create", "update"):
            continue
        values = item.desired.values
        with at(item.desired.path):
            if item.action == "create":
                webhook_create(actor=actor, customer=customer, url=item.name, events=values["events"],
                               description=values["description"], enabled=values["enabled"],
                               secret=None if values["secret"] is keep else values["secret"], request=request)
                if values["secret"] is keep:
                    warnings.append(f"{item.desired.path}: webhook {item.name!r} got a generated signing secret "
                                    "that is not shown: set secret_env, or read a new one with "
                                    "POST /api/webhooks/{id}/rotate-secret/")
            else:
                webhook_update(actor=actor, webhook=item.current, data={f: values[f] for f in item.fields},
                               request=request)
    agents = {a.name: a for a in Agent.objects.filter(customer=customer)}
    teams = {t.name: t for t in Team.objects.filter(customer=customer)}
    for item in plan:
        if item.kind != "schedule" or item.action not in ("create", "update"):
            continue
        values = dict(item.desired.values)
        values["agent"] = agents.get(values["agent"]) if values["agent"] else None
        values["team"] = teams.get(values["team"]) if values["team"] else None
        with at(item.desired.path):
            if item.action == "create":
                schedule_create(actor=actor, customer=customer, name=item.name, request=request, **values)
            else:
                fields = set(item.fields)
                if fields & {"agent", "team"}:
                    fields |= {"agent", "team"}
                schedule_update(actor=actor, schedule=item.current, data={f: values[f] for f in fields},
                                request=request)


def deleters(*, actor, request) -> dict:
    return {"webhook": lambda obj: webhook_delete(actor=actor, webhook=obj, request=request),
            "schedule": lambda obj: schedule_delete(actor=actor, schedule=obj, request=request)}


def export(customer) -> dict:
    current = existing(customer)
    webhooks, taken = [], set()
    for webhook in current["webhook"].values():
        item = {"url": webhook.url}
        if webhook.description:
            item["description"] = webhook.description
        item["events"] = list(webhook.events)
        if not webhook.enabled:
            item["enabled"] = False
        name, n = "WEBHOOK_SECRET", 2
        while name in taken:
            name, n = f"WEBHOOK_SECRET_{n}", n + 1
        taken.add(name)
        item["secret_env"] = name
        webhooks.append(item)
    schedules = []
    for schedule in sorted(current["schedule"].values(), key=lambda s: s.name):
        values = schedule_values(schedule)
        item = {"name": schedule.name}
        item.update({"cron": schedule.cron} if schedule.cron else {"interval_seconds": schedule.interval_seconds})
        item["timezone"] = schedule.timezone
        item.update({"agent": values["agent"]} if values["agent"] else {"team": values["team"]})
        item["input"] = schedule.input
        if not schedule.enabled:
            item["enabled"] = False
        schedules.append(item)
    return {"webhooks": webhooks, "schedules": schedules}
