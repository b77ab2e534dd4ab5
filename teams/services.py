"""Every write to teams: members (ordered), mode and the model it needs, termination, graph; versions
(every behaviour change is a new immutable TeamVersion; a rollback applies an old one as a new version);
audit rows."""
from django.conf import settings
from django.db import transaction

from accounts.models import Customer
from agents.models import Agent, ModelConfig
from autogen_platform.errors import Conflict, QuotaExceeded, ValidationFailed
from autogen_platform.naming import unique_name_save
from core.services import audit_record
from runtime.services import model_calls_functions

from . import conditions, signals
from .models import Team, TeamMember, TeamVersion

# A team given no termination condition stops after this many messages, so it always ends.
DEFAULT_TERMINATION = {"max_messages": 10}
# mode -> the model configuration field it needs (the others must stay empty).
MODE_MODELS = {Team.Mode.SELECTOR: "selector_model", Team.Mode.MAGENTIC_ONE: "orchestrator_model"}
MODEL_FIELDS = ("selector_model", "orchestrator_model")


def _id(obj):
    return getattr(obj, "pk", obj)


def _timeouts(termination) -> list[int]:
    return [v for _, key, v in conditions.termination_walk(termination) if key == "timeout_seconds"]


def _termination_clean(termination, customer: Customer, member_names: list[str]) -> dict:
    if termination is None:
        termination = {}
    problems = conditions.termination_problems(termination, text_limit=settings.MAX_TEXT_MENTION_CHARS)
    if not problems:
        problems = conditions.termination_member_problems(termination, member_names)
    if problems:
        raise ValidationFailed(details={"termination": problems})
    over = [t for t in _timeouts(termination) if t > customer.max_timeout_seconds]
    if over:
        timeout = max(over)
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


def _mode_models_clean(team: Team, customer: Customer, given: set) -> None:
    """The model a mode needs (selector: selector_model, magentic_one: orchestrator_model) is one of the
    customer's; a model field the mode does not use is refused when given, else cleared."""
    if team.mode not in Team.Mode.values:
        raise ValidationFailed(details={"mode": [f"Must be one of: {', '.join(Team.Mode.values)}"]})
    needed = MODE_MODELS.get(team.mode)
    for field in MODEL_FIELDS:
        value = getattr(team, f"{field}_id")
        if field == needed:
            if value is None:
                raise ValidationFailed(details={field: [f"Required in {team.mode} mode"]})
            if not ModelConfig.objects.filter(pk=value, customer=customer).exists():
                raise ValidationFailed(details={field: ["Unknown model configuration"]})
        elif value is not None:
            if field in given:
                used_in = [m for m, f in MODE_MODELS.items() if f == field][0]
                raise ValidationFailed(details={field: [f"Only used in {used_in} mode"]})
            setattr(team, f"{field}_id", None)


def _graph_clean(team: Team, member_ids: list[int], given: bool) -> None:
    graph = team.graph or {}
    if team.mode != Team.Mode.GRAPH:
        if given and graph:
            raise ValidationFailed(details={"graph": ["Only used in graph mode"]})
        team.graph = {}
        return
    problems = conditions.graph_problems(graph, member_ids, text_limit=settings.MAX_TEXT_MENTION_CHARS)
    if problems:
        raise ValidationFailed(details={"graph": problems})
    team.graph = {"edges": [dict(e) for e in graph.get("edges", [])]}


def _member_names(member_ids: list[int]) -> list[str]:
    return list(Agent.objects.filter(pk__in=member_ids).values_list("name", flat=True))


def _mode_members_clean(team: Team, member_ids: list[int]) -> None:
    """What a mode asks of its members: a swarm starts with someone to hand off to. (In swarm and graph
    teams a member with code_execution runs its code itself, with AgentChat's code tool.)"""
    if team.mode == Team.Mode.SWARM and len(member_ids) < 2 and not conditions.handoff_targets(team.termination):
        raise ValidationFailed(details={"members": [
            "A swarm needs two members to hand off between (or a handoff condition in termination)"]})
    # Handoffs and the code tool are function calls: AutoGen refuses them, when a task starts, on a model
    # that cannot call functions. Said here, when the team is written.
    handoffs = team.mode == Team.Mode.SWARM or bool(conditions.handoff_targets(team.termination))
    code_tool = team.mode in (Team.Mode.SWARM, Team.Mode.GRAPH)
    problems = []
    for agent in Agent.objects.filter(pk__in=member_ids, human_input=False).select_related("model"):
        needs = "handoffs" if handoffs else "its code tool" if code_tool and agent.code_execution else None
        model = agent.model
        if needs and not model_calls_functions(provider=model.provider, model=model.model, model_info=model.model_info):
            problems.append(f"{agent.name}: its model configuration {model.name!r} cannot call functions "
                            f"(model_info.function_calling false), which {needs} need in this team")
    if problems:
        raise ValidationFailed(details={"members": problems})


def _team_save(team: Team, members: list[int] | None) -> None:
    unique_name_save(team, label="A team")
    if members is not None:
        TeamMember.objects.filter(team=team).delete()
        TeamMember.objects.bulk_create(
            [TeamMember(team=team, agent_id=agent_id, position=i) for i, agent_id in enumerate(members)]
        )


def _actor_name(actor) -> str:
    return (getattr(actor, "username", None) or str(actor or ""))[:150]


def _version_add(team: Team, actor) -> TeamVersion:
    return TeamVersion.objects.create(team=team, version=team.version, snapshot=team.behaviour(),
                                      created_by=_actor_name(actor))


@transaction.atomic
def team_create(*, actor, customer: Customer, name: str, members, mode: str = Team.Mode.ROUND_ROBIN,
                selector_model=None, orchestrator_model=None, termination: dict | None = None,
                graph: dict | None = None, request=None) -> Team:
    """`members`: agents (or ids) in speaking order (a graph's entry is the first). No termination
    condition means max_messages 10."""
    team = Team(customer=customer, name=name, mode=mode, selector_model_id=_id(selector_model),
                orchestrator_model_id=_id(orchestrator_model), graph=graph or {})
    _mode_models_clean(team, customer, given={f for f, v in (("selector_model", selector_model),
                                                             ("orchestrator_model", orchestrator_model)) if v is not None})
    member_ids = _members_clean(members, customer)
    team.termination = _termination_clean(termination, customer, _member_names(member_ids))
    _graph_clean(team, member_ids, given=graph is not None)
    _mode_members_clean(team, member_ids)
    team.version = 1
    _team_save(team, member_ids)
    _version_add(team, actor)
    audit_record(actor=actor, action="team.create", target=f"team:{team.pk}", customer=customer, request=request,
                 details={"name": team.name, "members": member_ids, "mode": team.mode, "version": 1})
    return team


def _team_locked(team: Team) -> Team:
    return Team.objects.select_for_update(of=("self",)).select_related("customer").get(pk=team.pk)


@transaction.atomic
def team_update(*, actor, team: Team, data: dict, request=None) -> Team:
    """Changes the given fields; a change to anything but the name makes a new version."""
    team = _team_locked(team)
    before = team.behaviour()
    changed = _team_change(team, data)
    if team.behaviour() != before:
        team.version += 1
        team.save(update_fields=["version"])
        _version_add(team, actor)
    audit_record(actor=actor, action="team.update", target=f"team:{team.pk}", customer=team.customer,
                 request=request, details={"changed": changed, "version": team.version})
    return team


@transaction.atomic
def team_rollback(*, actor, team: Team, version: int, request=None) -> Team:
    """Applies an earlier version's snapshot as a NEW version: history is never rewritten. The snapshot is
    checked as any change is (the agents and models it names must still be the customer's)."""
    team = _team_locked(team)
    old = TeamVersion.objects.filter(team=team, version=version).first()
    if old is None:
        raise ValidationFailed(details={"version": [f"The team has no version {version}"]})
    snapshot = old.snapshot
    members = list(snapshot.get("members") or [])
    gone = sorted(set(members) - set(Agent.objects.filter(customer=team.customer, pk__in=members)
                                     .values_list("pk", flat=True)))
    if gone:
        raise Conflict(f"Agents of version {version} no longer exist: {', '.join(map(str, gone))}",
                       details={"members": gone})
    for field in MODEL_FIELDS:
        pk = snapshot.get(field)
        if pk is not None and not ModelConfig.objects.filter(pk=pk, customer=team.customer).exists():
            raise Conflict(f"The {field.replace('_', ' ')} of version {version} no longer exists")
    _team_change(team, {
        "mode": snapshot.get("mode", Team.Mode.ROUND_ROBIN), "members": members,
        # the mode's own model is given, the other cleared (given as None it is not "given" to the checks)
        **{field: snapshot.get(field) for field in MODEL_FIELDS},
        "termination": snapshot.get("termination") or {}, "graph": snapshot.get("graph") or {},
    })
    team.version += 1
    team.save(update_fields=["version"])
    _version_add(team, actor)
    audit_record(actor=actor, action="team.rollback", target=f"team:{team.pk}", customer=team.customer,
                 request=request, details={"from_version": version, "version": team.version})
    return team


def _team_change(team: Team, data: dict) -> list[str]:
    """Applies `data` to the (locked) team with every check of a write and saves it; the fields named."""
    customer = team.customer
    changed = [f for f in ("name", "mode", *MODEL_FIELDS, "termination", "graph", "members") if f in data]
    if "name" in data:
        team.name = data["name"]
    if "mode" in data:
        team.mode = data["mode"]
    for field in MODEL_FIELDS:
        if field in data:
            setattr(team, f"{field}_id", _id(data[field]))
    _mode_models_clean(team, customer, given={f for f in MODEL_FIELDS if data.get(f) is not None})
    member_ids = _members_clean(data["members"], customer) if "members" in data else None
    final_members = member_ids if member_ids is not None else team.member_ids()
    # Conditions and graph are checked against the members the team has after this change.
    termination = data["termination"] if "termination" in data else team.termination
    team.termination = _termination_clean(termination, customer, _member_names(final_members))
    if "graph" in data:
        team.graph = data["graph"] or {}
    _graph_clean(team, final_members, given=data.get("graph") is not None)
    _mode_members_clean(team, final_members)
    _team_save(team, member_ids)
    return changed


@transaction.atomic
def team_delete(*, actor, team: Team, request=None) -> None:
    team = Team.objects.select_for_update(of=("self",)).select_related("customer").get(pk=team.pk)
    signals.team_deleting.send(sender=Team, team=team)  # tasks refuses while the team has unfinished tasks (Conflict)
    pk, name = team.pk, team.name
    team.delete()
    audit_record(actor=actor, action="team.delete", target=f"team:{pk}", customer=team.customer, request=request,
                 details={"name": name})
