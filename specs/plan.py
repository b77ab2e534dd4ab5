"""The plan of a spec against what the customer has: create, update (naming the changed fields),
unchanged, and with prune delete; references (an agent's model, a team's members) checked by name.
"""
from dataclasses import dataclass, field

from accounts.crypto import decrypt
from accounts.models import Customer
from agents.models import Agent, ModelConfig
from teams.models import Team

from . import integrations, tools
from .prices import PRICE_KEYS, prices_of
from .reader import KEEP_KEY, SECTIONS, Desired, Problems

# The fields a plan compares, in the order an `update` line names them.
MODEL_FIELDS = ("provider", "model", "base_url", "model_info", "responses", *PRICE_KEYS, "api_key")
AGENT_FIELDS = ("description", "model", "system_message", "tools", "code_execution", "limits", "human_input",
                "approval")
TEAM_FIELDS = ("mode", "members", "selector_model", "orchestrator_model", "termination", "graph")


@dataclass
class PlanItem:
    action: str  # create, update, unchanged, delete
    kind: str  # model, agent, team
    name: str
    fields: list[str] = field(default_factory=list)
    desired: Desired | None = field(default=None, repr=False)
    current: object = field(default=None, repr=False)

    def line(self) -> str:
        changed = f" ({', '.join(self.fields)})" if self.fields else ""
        return f"{self.action} {self.kind} {self.name}{changed}"

    def as_dict(self) -> dict:
        return {"action": self.action, "kind": self.kind, "name": self.name, "fields": list(self.fields)}


@dataclass
class SpecResult:
    plan: list[PlanItem]
    applied: bool
    warnings: list[str] = field(default_factory=list)

    @property
    def summary(self) -> dict:
        counts = {action: 0 for action in ("create", "update", "unchanged", "delete")}
        for item in self.plan:
            counts[item.action] += 1
        return counts

    @property
    def changes(self) -> int:
        counts = self.summary
        return counts["create"] + counts["update"] + counts["delete"]

    def summary_line(self) -> str:
        if not self.changes:
            return "no changes"
        counts = self.summary
        return (f"{counts['create']} to create, {counts['update']} to update, {counts['unchanged']} unchanged, "
                f"{counts['delete']} to delete")

    def lines(self) -> list[str]:
        return [item.line() for item in self.plan] + [self.summary_line()]

    def as_dict(self) -> dict:
        return {"plan": [item.as_dict() for item in self.plan], "summary": self.summary, "applied": self.applied,
                "warnings": list(self.warnings)}


def _stored_key(model_config: ModelConfig) -> str | None:
    try:
        return decrypt(model_config.api_key_encrypted)
    except ValueError:
        return None  # unreadable with the current FIELD_ENCRYPTION_KEY: a spec that names a key replaces it


def _model_values(model_config: ModelConfig) -> dict:
    """What exists, in the terms of a spec (references as names)."""
    return {"provider": model_config.provider, "model": model_config.model, "base_url": model_config.base_url,
            "model_info": model_config.model_info, "responses": model_config.responses, **prices_of(model_config)}


def _agent_values(agent: Agent) -> dict:
    return {"description": agent.description, "model": agent.model.name, "system_message": agent.system_message,
            "tools": agent.tools, "code_execution": agent.code_execution, "limits": agent.limits,
            "human_input": agent.human_input, "approval": list(agent.approval or [])}


def team_values(team: Team) -> dict:
    names = {m.agent_id: m.agent.name for m in team.members.all()}
    edges = [{**e, "source": names.get(e["source"], e["source"]), "target": names.get(e["target"], e["target"])}
             for e in (team.graph or {}).get("edges", [])]
    return {"mode": team.mode, "members": [m.agent.name for m in team.members.all()],
            "selector_model": team.selector_model.name if team.selector_model_id else None,
            "orchestrator_model": team.orchestrator_model.name if team.orchestrator_model_id else None,
            "termination": team.termination,
            "graph": {"edges": edges} if edges else {}}


CURRENT_VALUES = {"model": _model_values, "agent": _agent_values, "team": team_values, "tool": tools.tool_values,
                  "webhook": integrations.webhook_values, "schedule": integrations.schedule_values}


def _changed_fields(desired: Desired, current, current_values: dict, names) -> list[str]:
    changed = [f for f in names if f in current_values and current_values[f] != desired.values[f]]
    if desired.kind == "model":
        key = desired.values["api_key"]
        if key is not KEEP_KEY and (_stored_key(current) or "") != (key or ""):
            changed.append("api_key")
    if desired.kind == "webhook" and integrations.secret_changed(current, desired.values["secret"], KEEP_KEY):
        changed.append("secret")
    if desired.kind == "tool" and tools.secret_headers_changed(current, desired.values["secret_headers"]):
        changed.append("secret_headers")
    return changed


def existing_objects(customer: Customer) -> dict[str, dict]:
    teams = (Team.objects.filter(customer=customer).select_related("selector_model", "orchestrator_model")
             .prefetch_related("members__agent"))
    return {
        "model": {m.name: m for m in ModelConfig.objects.filter(customer=customer)},
        "agent": {a.name: a for a in Agent.objects.filter(customer=customer).select_related("model")},
        "team": {t.name: t for t in teams},
        **integrations.existing(customer),
        **tools.existing(customer),
    }


def check_references(objects, existing, *, prune: bool) -> None:
    """Agent models, team members and selector models name objects of the spec, or (without prune) existing ones."""
    problems = Problems()
    known = {}
    for kind in ("model", "agent"):
        known[kind] = {d.name for d in objects[kind]} | (set() if prune else set(existing[kind]))
    hint = " (prune deletes what the spec does not name)" if prune else ""
    for desired in objects["agent"]:
        model = desired.values["model"]
        if model and model not in known["model"]:
            problems.add(f"{desired.path}.model", f"unknown model {model!r}{hint}")
    for desired in objects["team"]:
        for i, member in enumerate(desired.values["members"]):
            if member not in known["agent"]:
                problems.add(f"{desired.path}.members[{i}]", f"unknown agent {member!r}{hint}")
        for key in ("selector_model", "orchestrator_model"):
            model = desired.values[key]
            if model and model not in known["model"]:
                problems.add(f"{desired.path}.{key}", f"unknown model {model!r}{hint}")
    known_teams = {d.name for d in objects["team"]} | (set() if prune else set(existing["team"]))
    integrations.check_references(problems, objects, known["agent"], known_teams, hint)
    problems.raise_if_any()


def spec_plan(objects, existing, *, prune: bool) -> list[PlanItem]:
    plan = []
    compared = {"model": MODEL_FIELDS, "agent": AGENT_FIELDS, "team": TEAM_FIELDS, "tool": tools.TOOL_FIELDS,
                "webhook": integrations.WEBHOOK_FIELDS, "schedule": integrations.SCHEDULE_FIELDS}
    for _, kind in SECTIONS:
        for desired in objects[kind]:
            current = existing[kind].get(desired.name)
            if current is None:
                plan.append(PlanItem("create", kind, desired.name, desired=desired))
                continue
            current_values = CURRENT_VALUES[kind](current)
            changed = _changed_fields(desired, current, current_values, compared[kind])
            plan.append(PlanItem("update" if changed else "unchanged", kind, desired.name, changed,
                                 desired=desired, current=current))
    if prune:
        for _, kind in reversed(SECTIONS):  # teams first, then agents, then models
            named = {d.name for d in objects[kind]}
            for name in sorted(set(existing[kind]) - named):
                plan.append(PlanItem("delete", kind, name, current=existing[kind][name]))
    return plan
