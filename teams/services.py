"""Every write to teams: members (ordered), mode, selector model, termination; audit rows."""
from django.conf import settings
from django.db import IntegrityError, transaction

from accounts.models import Customer
from adminpanel.services import audit_record
from agents.models import Agent, ModelConfig
from autogen_platform.errors import Conflict, QuotaExceeded, ValidationFailed

from .models import Team, TeamMember

TERMINATION_INT_KEYS = ("max_messages", "timeout_seconds", "max_tokens")
TERMINATION_KEYS = ("max_messages", "text_mention", "timeout_seconds", "max_tokens")
# A team given no termination condition stops after this many messages, so it always ends.
DEFAULT_TERMINATION = {"max_messages": 10}


def _id(obj):
    return getattr(obj, "pk", obj)


def _termination_clean(termination, customer: Customer) -> dict:
    if termination is None:
        termination = {}
    if not isinstance(termination, dict):
        raise ValidationFailed(details={"termination": ["Must be an object"]})
    problems = [f"{k}: unknown condition; allowed: {', '.join(TERMINATION_KEYS)}" for k in termination
                if k not in TERMINATION_KEYS]
    for key in TERMINATION_INT_KEYS:
        value = termination.get(key)
        if key in termination and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            problems.append(f"{key}: must be a positive integer")
    if "text_mention" in termination:
        value = termination["text_mention"]
        if not isinstance(value, str) or not value.strip():
            problems.append("text_mention: must be a non-empty string")
        elif len(value) > settings.MAX_TEXT_MENTION_CHARS:
            problems.append(f"text_mention: at most {settings.MAX_TEXT_MENTION_CHARS} characters (MAX_TEXT_MENTION_CHARS)")
    if problems:
        raise ValidationFailed(details={"termination": problems})
    timeout = termination.get("timeout_seconds")
    if timeout is not None and timeout > customer.max_timeout_seconds:
        raise QuotaExceeded(
            f"termination.timeout_seconds {timeout} is above the customer's quota of {customer.max_timeout_seconds}",
            details={"termination": {"timeout_seconds": {"requested": timeout, "quota": customer.max_timeout_seconds}}},
        )
    return dict(termination) if termination else dict(DEFAULT_TERMINATION)


def _members_clean(members, customer: Customer) -> list[int]:
    ids = [_id(m) for m in (members or [])]
    if not ids:
        raise ValidationFailed(details={"members": ["A team needs at least one agent"]})
    if len(set(ids)) != len(ids):
        raise ValidationFailed(details={"members": ["An agent is listed twice"]})
    found = set(Agent.objects.filter(customer=customer, pk__in=ids).values_list("pk", flat=True))
    missing = [i for i in ids if i not in found]
    if missing:
        raise ValidationFailed(details={"members": [f"Unknown agents: {', '.join(map(str, missing))}"]})
    return ids


def _selector_model_clean(team: Team, customer: Customer, given: bool) -> None:
    if team.mode not in Team.Mode.values:
        raise ValidationFailed(details={"mode": [f"Must be one of: {', '.join(Team.Mode.values)}"]})
    if team.mode == Team.Mode.SELECTOR:
        if team.selector_model_id is None:
            raise ValidationFailed(details={"selector_model": ["Required in selector mode"]})
        if not ModelConfig.objects.filter(pk=team.selector_model_id, customer=customer).exists():
            raise ValidationFailed(details={"selector_model": ["Unknown model configuration"]})
    elif team.selector_model_id is not None:
        if given:
            raise ValidationFailed(details={"selector_model": ["Only used in selector mode"]})
        team.selector_model_id = None


def _team_save(team: Team, members: list[int] | None) -> None:
    if Team.objects.filter(customer_id=team.customer_id, name=team.name).exclude(pk=team.pk).exists():
        raise Conflict(f"A team named {team.name!r} already exists", details={"name": ["Already in use"]})
    try:
        with transaction.atomic():
            team.save()
    except IntegrityError:
        raise Conflict(f"A team named {team.name!r} already exists", details={"name": ["Already in use"]}) from None
    if members is not None:
        TeamMember.objects.filter(team=team).delete()
        TeamMember.objects.bulk_create(
            [TeamMember(team=team, agent_id=agent_id, position=i) for i, agent_id in enumerate(members)]
        )


@transaction.atomic
def team_create(*, actor, customer: Customer, name: str, members, mode: str = Team.Mode.ROUND_ROBIN,
                selector_model=None, termination: dict | None = None, request=None) -> Team:
    """`members`: agents (or ids) in speaking order. No termination condition means max_messages 10."""
    team = Team(customer=customer, name=name, mode=mode, selector_model_id=_id(selector_model))
    _selector_model_clean(team, customer, given=selector_model is not None)
    member_ids = _members_clean(members, customer)
    team.termination = _termination_clean(termination, customer)
    _team_save(team, member_ids)
    audit_record(actor=actor, action="team.create", target=f"team:{team.pk}", customer=customer, request=request,
                 details={"name": team.name, "members": member_ids, "mode": team.mode})
    return team


@transaction.atomic
def team_update(*, actor, team: Team, data: dict, request=None) -> Team:
    team = Team.objects.select_for_update(of=("self",)).select_related("customer").get(pk=team.pk)
    customer = team.customer
    changed = [f for f in ("name", "mode", "selector_model", "termination", "members") if f in data]
    if "name" in data:
        team.name = data["name"]
    if "mode" in data:
        team.mode = data["mode"]
    if "selector_model" in data:
        team.selector_model_id = _id(data["selector_model"])
    _selector_model_clean(team, customer, given=data.get("selector_model") is not None)
    if "termination" in data:
        team.termination = _termination_clean(data["termination"], customer)
    member_ids = _members_clean(data["members"], customer) if "members" in data else None
    _team_save(team, member_ids)
    audit_record(actor=actor, action="team.update", target=f"team:{team.pk}", customer=customer, request=request,
                 details={"changed": changed})
    return team


@transaction.atomic
def team_delete(*, actor, team: Team, request=None) -> None:
    from .selectors import team_tasks_in_flight

    team = Team.objects.select_for_update(of=("self",)).select_related("customer").get(pk=team.pk)
    in_flight = list(team_tasks_in_flight(team).values_list("id", flat=True))
    if in_flight:
        raise Conflict(f"Team {team.name!r} has queued or running tasks", details={"tasks": in_flight})
    pk, name = team.pk, team.name
    team.delete()
    audit_record(actor=actor, action="team.delete", target=f"team:{pk}", customer=team.customer, request=request,
                 details={"name": name})
