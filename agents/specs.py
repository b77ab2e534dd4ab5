"""Declarative specs of a customer's model configurations, agents and teams.

Owns: reading a spec (YAML or JSON), validating its shape with errors that name the path
(`agents[1].model: unknown model 'x'`), the plan (create / update with the changed fields /
unchanged / delete with prune) against what the customer has, carrying the plan out through the
services in one transaction (a failing spec changes nothing), and the export that applies back as
`no changes`. Objects are matched by name; references (an agent's model, a team's members and
selector model) are names. Provider keys never stand in a spec: `api_key_env` names an environment
variable of the applying side. The webhooks and schedules sections are integrations.specs.
"""
import json
import re
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field

import yaml
from django.conf import settings
from django.db import transaction

from accounts.crypto import decrypt
from accounts.models import Customer
from adminpanel.services import audit_record
from autogen_platform.errors import ApplicationError, ValidationFailed
from integrations import specs as integration_specs

from . import tool_specs
from teams.models import Team
from teams.services import DEFAULT_TERMINATION, team_create, team_delete, team_update

from .models import Agent, ModelConfig
from .services import (
    agent_create,
    agent_delete,
    agent_update,
    model_config_create,
    model_config_delete,
    model_config_errors,
    model_config_update,
)

SECTIONS = (("models", "model"), ("tools", "tool"), ("agents", "agent"), ("teams", "team"), ("webhooks", "webhook"),
            ("schedules", "schedule"))
TOP_KEYS = ("customer", "models", "tools", "agents", "teams", "webhooks", "schedules")
MODEL_KEYS = ("name", "provider", "model", "base_url", "api_key_env", "model_info", "responses")
AGENT_KEYS = ("name", "description", "model", "system_message", "tools", "code_execution", "limits", "human_input",
              "approval")
TEAM_KEYS = ("name", "mode", "members", "selector_model", "orchestrator_model", "termination", "graph")
# The fields a plan compares, in the order an `update` line names them.
MODEL_FIELDS = ("provider", "model", "base_url", "model_info", "responses", "api_key")
AGENT_FIELDS = ("description", "model", "system_message", "tools", "code_execution", "limits", "human_input",
                "approval")
TEAM_FIELDS = ("mode", "members", "selector_model", "orchestrator_model", "termination", "graph")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MODEL_INFO_ORDER = ("vision", "function_calling", "json_output", "family", "structured_output", "multiple_system_messages")
MAX_LENGTHS = {"name": 100, "model": 200, "base_url": 500}
# Through the API the server's environment is not read (it holds the platform's own secrets): the stored key stays.
KEEP_KEY = object()


# Reading


class _SpecLoader(yaml.SafeLoader):
    """Safe YAML that refuses aliases (`*name`: a few KB of them expand to gigabytes, the "billion
    laughs") and a key given twice in one mapping (plain YAML silently keeps the last)."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, f"found the alias *{event.anchor}: aliases are not accepted in a spec, write the value out",
                event.start_mark,
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        self.flatten_mapping(node)
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, Hashable):
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        "while reading a mapping", node.start_mark, f"found the key {key!r} twice", key_node.start_mark
                    )
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def spec_load(text) -> object:
    """The spec in `text` (YAML, or JSON, which YAML reads too) as plain data."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise ValidationFailed("The spec is not UTF-8 text", details={"spec": ["Not UTF-8 text"]}) from None
    try:
        return yaml.load(text, Loader=_SpecLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        problem = " ".join(str(exc).split())
        raise ValidationFailed(f"The spec is not valid YAML or JSON: {problem}", details={"spec": [problem]}) from None
    except RecursionError:
        problem = "nested too deeply"
        raise ValidationFailed(f"The spec is not valid YAML or JSON: {problem}", details={"spec": [problem]}) from None


def spec_customer(spec) -> Customer:
    """The customer a spec names with `customer:` (what the CLI applies to)."""
    if spec is None:
        raise ValidationFailed("spec: the spec is empty", details={"spec": ["the spec is empty"]})
    if not isinstance(spec, dict):
        message = f"must be a mapping with customer, models, agents and teams, not {_type_name(spec)}"
        raise ValidationFailed(f"spec: {message}", details={"spec": [message]})
    name = spec.get("customer")
    if not isinstance(name, str) or not name.strip():
        raise ValidationFailed("customer: the spec must name its customer, e.g. `customer: acme`",
                               details={"customer": ["Required: the name of the customer the spec is for"]})
    customer = Customer.objects.filter(name=name).first()
    if customer is None:
        raise ValidationFailed(f"customer: unknown customer {name!r}", details={"customer": [f"Unknown customer {name!r}"]})
    return customer


# Validating the shape


class _Problems:
    """Path -> messages, collected over the whole spec so one run shows every mistake."""

    def __init__(self):
        self.details: dict[str, list[str]] = {}

    def add(self, path: str, message: str) -> None:
        self.details.setdefault(path, []).append(message)

    def raise_if_any(self) -> None:
        if self.details:
            raise ValidationFailed(_summary_message(self.details), details=self.details)


def _summary_message(details: dict) -> str:
    path, messages = next(iter(details.items()))
    message = f"{path}: {messages[0]}"
    more = sum(len(m) for m in details.values()) - 1
    return message + (f" (and {more} more problem{'s' if more > 1 else ''})" if more else "")


def _string(problems, path, value, *, required=False, max_length=None) -> str:
    if value is None:
        if required:
            problems.add(path, "required")
        return ""
    if not isinstance(value, str):
        problems.add(path, f"must be a string, not {_type_name(value)} (quote it)")
        return ""
    if required and not value.strip():
        problems.add(path, "must not be empty")
    if max_length and len(value) > max_length:
        problems.add(path, f"at most {max_length} characters")
    return value


def _type_name(value) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    return f"a {type(value).__name__}"


def _mapping(problems, path, value) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.add(path, f"must be a mapping, not {_type_name(value)}")
        return {}
    return value


def _string_list(problems, path, value) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        problems.add(path, f"must be a list, not {_type_name(value)}")
        return []
    for i, item in enumerate(value):
        if not isinstance(item, str):
            problems.add(f"{path}[{i}]", f"must be a string, not {_type_name(item)}")
    return [item for item in value if isinstance(item, str)]


def _unknown_keys(problems, path, item: dict, allowed) -> None:
    for key in item:
        if key not in allowed:
            problems.add(f"{path}.{key}", f"unknown field; allowed: {', '.join(allowed)}")


def _model_from_spec(problems, path, item: dict, environ) -> dict:
    if "api_key" in item:
        problems.add(f"{path}.api_key", "keys never stand in a spec: name an environment variable "
                                        "that holds the key with `api_key_env: VARIABLE`")
    _unknown_keys(problems, path, {k: v for k, v in item.items() if k != "api_key"}, MODEL_KEYS)
    desired = {
        "provider": _string(problems, f"{path}.provider", item.get("provider"), required=True),
        "model": _string(problems, f"{path}.model", item.get("model"), max_length=MAX_LENGTHS["model"]),
        "base_url": _string(problems, f"{path}.base_url", item.get("base_url"), max_length=MAX_LENGTHS["base_url"]),
        "model_info": _mapping(problems, f"{path}.model_info", item.get("model_info")),
        "responses": item.get("responses") if item.get("responses") is not None else [],
        "api_key": None,
    }
    for key, messages in model_config_errors(
        provider=desired["provider"], model=desired["model"], base_url=desired["base_url"],
        model_info=desired["model_info"], responses=desired["responses"],
        has_api_key=item.get("api_key_env") is not None,
    ).items():
        if key == "provider" and not desired["provider"]:
            continue  # already reported as required
        for message in messages:
            problems.add(f"{path}.{key}", message)
    variable = item.get("api_key_env")
    if variable is not None:
        if not isinstance(variable, str) or not ENV_NAME.match(variable):
            problems.add(f"{path}.api_key_env", "must be an environment variable name, e.g. LOCAL_LLM_KEY")
        elif environ is None:
            desired["api_key"] = KEEP_KEY
        elif variable not in environ:
            problems.add(f"{path}.api_key_env", f"environment variable {variable} is not set")
        elif not environ[variable].strip():
            problems.add(f"{path}.api_key_env", f"environment variable {variable} is empty")
        else:
            desired["api_key"] = environ[variable].strip()
    return desired


def _agent_from_spec(problems, path, item: dict) -> dict:
    _unknown_keys(problems, path, item, AGENT_KEYS)
    code_execution = item.get("code_execution", False)
    if code_execution is None:
        code_execution = False
    if not isinstance(code_execution, bool):
        problems.add(f"{path}.code_execution", "must be true or false")
    return {
        "model": _string(problems, f"{path}.model", item.get("model"), required=True),
        "description": _string(problems, f"{path}.description", item.get("description")),
        "system_message": _string(problems, f"{path}.system_message", item.get("system_message")),
        "tools": _string_list(problems, f"{path}.tools", item.get("tools")),
        "code_execution": code_execution is True,
        "limits": _mapping(problems, f"{path}.limits", item.get("limits")),
        **_agent_human_input_from_spec(problems, path, item),
    }


def _agent_human_input_from_spec(problems, path, item: dict) -> dict:
    human_input = item.get("human_input", False)
    if human_input is None:
        human_input = False
    if not isinstance(human_input, bool):
        problems.add(f"{path}.human_input", "must be true or false")
    return {"human_input": human_input is True,
            "approval": _string_list(problems, f"{path}.approval", item.get("approval"))}


def _team_from_spec(problems, path, item: dict) -> dict:
    _unknown_keys(problems, path, item, TEAM_KEYS)
    members = _string_list(problems, f"{path}.members", item.get("members"))
    if item.get("members") is None or (isinstance(item.get("members"), list) and not item["members"]):
        problems.add(f"{path}.members", "a team needs at least one agent")
    for i, name in enumerate(members):
        if name in members[:i]:
            problems.add(f"{path}.members[{i}]", f"agent {name!r} is listed twice")
    models = {}
    for field in ("selector_model", "orchestrator_model"):
        value = item.get(field)
        if value is not None:
            value = _string(problems, f"{path}.{field}", value, required=True) or None
        models[field] = value
    termination = _mapping(problems, f"{path}.termination", item.get("termination"))
    graph = _mapping(problems, f"{path}.graph", item.get("graph"))
    edges = graph.get("edges") if isinstance(graph, dict) else None
    if edges is not None and not isinstance(edges, list):
        problems.add(f"{path}.graph.edges", f"must be a list, not {_type_name(edges)}")
    for i, edge in enumerate(edges if isinstance(edges, list) else []):
        if not isinstance(edge, dict):
            problems.add(f"{path}.graph.edges[{i}]", f"must be a mapping, not {_type_name(edge)}")
            continue
        for end in ("source", "target"):
            if not isinstance(edge.get(end), str) or edge[end] not in members:
                problems.add(f"{path}.graph.edges[{i}].{end}", "must name a member of the team")
    return {
        "mode": _string(problems, f"{path}.mode", item.get("mode")) or Team.Mode.ROUND_ROBIN,
        "members": members,
        **models,
        "graph": {"edges": [dict(e) for e in edges]} if isinstance(edges, list) and edges else {},
        # The team service stores this default for a team given no termination condition.
        "termination": dict(termination) if termination else dict(DEFAULT_TERMINATION),
    }


@dataclass
class _Desired:
    kind: str
    name: str
    path: str
    values: dict


def _spec_read(spec, *, customer: Customer, environ) -> dict[str, list[_Desired]]:
    """The spec's objects per kind, every shape mistake reported at once with its path."""
    problems = _Problems()
    if spec is None or spec == {}:
        problems.add("spec", "the spec is empty")
        problems.raise_if_any()
    if not isinstance(spec, dict):
        problems.add("spec", f"must be a mapping with models, agents and teams, not {_type_name(spec)}")
        problems.raise_if_any()
    for key in spec:
        if key not in TOP_KEYS:
            problems.add(str(key), f"unknown section; allowed: {', '.join(TOP_KEYS)}")
    named = spec.get("customer")
    if named is not None and not isinstance(named, str):
        problems.add("customer", f"must be a customer name, not {_type_name(named)}")
    elif named is not None and named != customer.name:
        problems.add("customer", f"the spec is for customer {named!r}, not {customer.name!r}")
    readers = {"model": lambda p, i: _model_from_spec(problems, p, i, environ),
               "agent": lambda p, i: _agent_from_spec(problems, p, i),
               "team": lambda p, i: _team_from_spec(problems, p, i),
               "tool": lambda p, i: tool_specs.tool_from_spec(problems, p, i, string=_string),
               "webhook": lambda p, i: integration_specs.webhook_from_spec(
                   problems, p, i, environ, keep=KEEP_KEY, env_name=ENV_NAME, string=_string, string_list=_string_list),
               "schedule": lambda p, i: integration_specs.schedule_from_spec(problems, p, i, string=_string)}
    objects = {}
    for section, kind in SECTIONS:
        items = spec.get(section)
        objects[kind] = []
        if items is None:
            continue
        if not isinstance(items, list):
            problems.add(section, f"must be a list, not {_type_name(items)}")
            continue
        if len(items) > settings.MAX_SPEC_OBJECTS:
            problems.add(section, f"at most {settings.MAX_SPEC_OBJECTS} objects in one spec (MAX_SPEC_OBJECTS)")
            continue
        seen = {}
        for i, item in enumerate(items):
            path = f"{section}[{i}]"
            if not isinstance(item, dict):
                problems.add(path, f"must be a mapping, not {_type_name(item)}")
                continue
            # webhooks are matched by url, everything else by name
            key, limit = ("url", 2000) if kind == "webhook" else ("name", MAX_LENGTHS["name"])
            name = _string(problems, f"{path}.{key}", item.get(key), required=True, max_length=limit)
            if name in seen:
                problems.add(f"{path}.name", f"{name!r} is already defined at {seen[name]}")
            seen.setdefault(name, path)
            objects[kind].append(_Desired(kind, name, path, readers[kind](path, item)))
    problems.raise_if_any()
    return objects


# The plan


@dataclass
class PlanItem:
    action: str  # create, update, unchanged, delete
    kind: str  # model, agent, team
    name: str
    fields: list[str] = field(default_factory=list)
    desired: _Desired | None = field(default=None, repr=False)
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
            "model_info": model_config.model_info, "responses": model_config.responses}


def _agent_values(agent: Agent) -> dict:
    return {"description": agent.description, "model": agent.model.name, "system_message": agent.system_message,
            "tools": agent.tools, "code_execution": agent.code_execution, "limits": agent.limits,
            "human_input": agent.human_input, "approval": list(agent.approval or [])}


def _team_values(team: Team) -> dict:
    names = {m.agent_id: m.agent.name for m in team.members.all()}
    edges = [{**e, "source": names.get(e["source"], e["source"]), "target": names.get(e["target"], e["target"])}
             for e in (team.graph or {}).get("edges", [])]
    return {"mode": team.mode, "members": [m.agent.name for m in team.members.all()],
            "selector_model": team.selector_model.name if team.selector_model_id else None,
            "orchestrator_model": team.orchestrator_model.name if team.orchestrator_model_id else None,
            "termination": team.termination,
            "graph": {"edges": edges} if edges else {}}


CURRENT_VALUES = {"model": _model_values, "agent": _agent_values, "team": _team_values, "tool": tool_specs.tool_values,
                  "webhook": integration_specs.webhook_values, "schedule": integration_specs.schedule_values}


def _changed_fields(desired: _Desired, current, current_values: dict, names) -> list[str]:
    changed = [f for f in names if f in current_values and current_values[f] != desired.values[f]]
    if desired.kind == "model":
        key = desired.values["api_key"]
        if key is not KEEP_KEY and (_stored_key(current) or "") != (key or ""):
            changed.append("api_key")
    if desired.kind == "webhook" and integration_specs.secret_changed(current, desired.values["secret"], KEEP_KEY):
        changed.append("secret")
    return changed


def _existing(customer: Customer) -> dict[str, dict]:
    teams = (Team.objects.filter(customer=customer).select_related("selector_model", "orchestrator_model")
             .prefetch_related("members__agent"))
    return {
        "model": {m.name: m for m in ModelConfig.objects.filter(customer=customer)},
        "agent": {a.name: a for a in Agent.objects.filter(customer=customer).select_related("model")},
        "team": {t.name: t for t in teams},
        **integration_specs.existing(customer),
        **tool_specs.existing(customer),
    }


def _check_references(objects, existing, *, prune: bool) -> None:
    """Agent models, team members and selector models name objects of the spec, or (without prune) existing ones."""
    problems = _Problems()
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
        for field in ("selector_model", "orchestrator_model"):
            model = desired.values[field]
            if model and model not in known["model"]:
                problems.add(f"{desired.path}.{field}", f"unknown model {model!r}{hint}")
    known_teams = {d.name for d in objects["team"]} | (set() if prune else set(existing["team"]))
    integration_specs.check_references(problems, objects, known["agent"], known_teams, hint)
    problems.raise_if_any()


def _plan(objects, existing, *, prune: bool) -> list[PlanItem]:
    plan = []
    compared = {"model": MODEL_FIELDS, "agent": AGENT_FIELDS, "team": TEAM_FIELDS, "tool": tool_specs.TOOL_FIELDS,
                "webhook": integration_specs.WEBHOOK_FIELDS, "schedule": integration_specs.SCHEDULE_FIELDS}
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


# Carrying it out


class _at:
    """Errors of a service call name the spec path of the object (`agents[1].tools: Unknown tools: x`)."""

    def __init__(self, path: str):
        self.path = path

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc is None or not isinstance(exc, ApplicationError):
            return False
        if isinstance(exc, ValidationFailed):
            details = {}
            for key, messages in (exc.details or {}).items():
                path = self.path if key == "non_field_errors" else f"{self.path}.{key}"
                details[path] = messages if isinstance(messages, list) else [messages]
            exc.details = details or {self.path: [exc.message]}
            exc.message = _summary_message(exc.details) if details else f"{self.path}: {exc.message}"
        else:
            exc.message = f"{self.path}: {exc.message}"
            exc.details = {"path": self.path, **(exc.details or {})}
        exc.args = (exc.message,)
        return False


def _carry_out(plan: list[PlanItem], *, actor, customer: Customer, existing, request, warnings: list[str]) -> None:
    models = dict(existing["model"])
    agents = dict(existing["agent"])
    by_kind = {kind: [i for i in plan if i.kind == kind and i.action in ("create", "update")] for _, kind in SECTIONS}

    for item in plan:
        if item.kind != "model" or item.desired is None or item.desired.values["api_key"] is not KEEP_KEY:
            continue
        if item.action == "create" or not item.current.has_api_key:
            warnings.append(f"{item.desired.path}.api_key_env: the server's environment is not read through the "
                            f"API; model {item.name!r} has no key until one is set with PATCH /api/models/{{id}}/ "
                            "or `manage.py apply`")

    for item in by_kind["model"]:
        values = item.desired.values
        key = values["api_key"]
        with _at(item.desired.path):
            if item.action == "create":
                if key is KEEP_KEY:
                    key = None
                models[item.name] = model_config_create(
                    actor=actor, customer=customer, name=item.name, provider=values["provider"], model=values["model"],
                    base_url=values["base_url"], api_key=key, model_info=values["model_info"],
                    responses=values["responses"], request=request)
            else:
                data = {f: (key if f == "api_key" else values[f]) for f in item.fields}
                models[item.name] = model_config_update(actor=actor, model_config=item.current, data=data,
                                                        request=request)

    tool_specs.carry_out(plan, actor=actor, customer=customer, request=request, at=_at)  # agents name them

    for item in by_kind["agent"]:
        values = {**item.desired.values, "model": models[item.desired.values["model"]]}
        with _at(item.desired.path):
            if item.action == "create":
                agents[item.name] = agent_create(actor=actor, customer=customer, name=item.name, request=request,
                                                 **values)
            else:
                agents[item.name] = agent_update(actor=actor, agent=item.current,
                                                 data={f: values[f] for f in item.fields}, request=request)

    for item in by_kind["team"]:
        desired = item.desired.values
        values = {**desired, "members": [agents[name] for name in desired["members"]],
                  "selector_model": models[desired["selector_model"]] if desired["selector_model"] else None,
                  "orchestrator_model": models[desired["orchestrator_model"]] if desired["orchestrator_model"] else None,
                  "graph": {"edges": [{**e, "source": agents[e["source"]].pk, "target": agents[e["target"]].pk}
                                      for e in desired["graph"].get("edges", [])]} if desired["graph"] else {}}
        with _at(item.desired.path):
            if item.action == "create":
                team_create(actor=actor, customer=customer, name=item.name, request=request, **values)
            else:
                team_update(actor=actor, team=item.current, data={f: values[f] for f in item.fields},
                            request=request)

    integration_specs.carry_out(plan, actor=actor, customer=customer, request=request, keep=KEEP_KEY, at=_at,
                                warnings=warnings)
    deleters = {**integration_specs.deleters(actor=actor, request=request),
                "team": lambda obj: team_delete(actor=actor, team=obj, request=request),
                "agent": lambda obj: agent_delete(actor=actor, agent=obj, request=request),
                "model": lambda obj: model_config_delete(actor=actor, model_config=obj, request=request),
                "tool": tool_specs.deleter(actor=actor, request=request)}
    for item in plan:
        if item.action == "delete":
            with _at(f"delete {item.kind} {item.name}"):
                deleters[item.kind](item.current)


class _DryRun(Exception):
    """Unwinds the transaction of a dry run after every service has checked its part."""


def spec_apply(*, actor, customer: Customer, spec, dry_run: bool = False, prune: bool = False,
               environ: Mapping | None = None, request=None) -> SpecResult:
    """Plans `spec` against the customer's objects and carries the plan out in one transaction.

    `environ` is where `api_key_env` variables are read (the CLI passes os.environ); None (the API)
    keeps stored keys. A dry run goes through every service too, so it fails where the real run would,
    then rolls everything back. Any error leaves the customer's objects as they were.
    """
    result = SpecResult(plan=[], applied=False)
    try:
        with transaction.atomic():
            # One apply at a time per customer: the plan stays true while it is carried out.
            customer = Customer.objects.select_for_update().get(pk=customer.pk)
            objects = _spec_read(spec, customer=customer, environ=environ)
            existing = _existing(customer)
            _check_references(objects, existing, prune=prune)
            result.plan = _plan(objects, existing, prune=prune)
            _carry_out(result.plan, actor=actor, customer=customer, existing=existing, request=request,
                       warnings=result.warnings)
            if dry_run:
                raise _DryRun
            if result.changes:
                audit_record(actor=actor, action="spec.apply", target=f"customer:{customer.pk}", customer=customer,
                             request=request, details={**result.summary, "prune": prune})
            result.applied = True
    except _DryRun:
        pass
    return result


# Export


def _key_env_name(model_name: str, taken: set) -> str:
    base = re.sub(r"[^A-Za-z0-9]+", "_", model_name).strip("_").upper() or "MODEL"
    if base[0].isdigit():
        base = f"MODEL_{base}"
    name, n = f"{base}_API_KEY", 2
    while name in taken:
        name, n = f"{base}_API_KEY_{n}", n + 1
    taken.add(name)
    return name


def spec_export(customer: Customer) -> dict:
    """The customer's models, agents and teams as a spec; keys are never exported (a placeholder variable
    stands where one is stored)."""
    existing = _existing(customer)
    taken = set()
    models = []
    for model_config in sorted(existing["model"].values(), key=lambda m: m.name):
        item = {"name": model_config.name, "provider": model_config.provider}
        for key in ("model", "base_url"):
            if getattr(model_config, key):
                item[key] = getattr(model_config, key)
        if model_config.has_api_key:
            item["api_key_env"] = _key_env_name(model_config.name, taken)
        if model_config.model_info:
            info = model_config.model_info
            item["model_info"] = {k: info[k] for k in sorted(info, key=lambda k: (MODEL_INFO_ORDER + (k,)).index(k))}
        if model_config.responses:
            item["responses"] = list(model_config.responses)
        models.append(item)
    agents = []
    for agent in sorted(existing["agent"].values(), key=lambda a: a.name):
        item = {"name": agent.name}
        if agent.description:
            item["description"] = agent.description
        item["model"] = agent.model.name
        if agent.system_message:
            item["system_message"] = agent.system_message
        if agent.tools:
            item["tools"] = list(agent.tools)
        if agent.code_execution:
            item["code_execution"] = True
        if agent.limits:
            item["limits"] = dict(agent.limits)
        if agent.human_input:
            item["human_input"] = True
        if agent.approval:
            item["approval"] = list(agent.approval)
        agents.append(item)
    teams = []
    for team in sorted(existing["team"].values(), key=lambda t: t.name):
        current = _team_values(team)
        item = {"name": team.name, "mode": team.mode, "members": current["members"]}
        for field in ("selector_model", "orchestrator_model"):
            if current[field]:
                item[field] = current[field]
        item["termination"] = dict(team.termination)
        if current["graph"]:
            item["graph"] = current["graph"]
        teams.append(item)
    return {"customer": customer.name, "models": models, "tools": tool_specs.export(customer), "agents": agents,
            "teams": teams,
            **integration_specs.export(customer)}


class _SpecDumper(yaml.SafeDumper):
    """Block style for multi-line strings (system messages read as written); short lists and the small
    settings mappings (model_info, limits, termination) on one line, as people write them."""


class _Inline(dict):
    pass


def _represent_str(dumper, value):
    if not value.replace("\n", "").isprintable():
        # other line breaks (U+0085, U+2028) and control characters only survive escaped, in double quotes
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style='"')
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


def _represent_list(dumper, value):
    short = all(isinstance(v, (str, int, float, bool)) and "\n" not in str(v) for v in value) and len(str(value)) < 80
    return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=short)


def _represent_inline(dumper, value):
    return dumper.represent_mapping("tag:yaml.org,2002:map", dict(value), flow_style=True)


_SpecDumper.add_representer(str, _represent_str)
_SpecDumper.add_representer(list, _represent_list)
_SpecDumper.add_representer(_Inline, _represent_inline)

KEY_COMMENT = "  # the key is not exported: set this variable to it before applying"
SECRET_COMMENT = "  # the signing secret is not exported: set this variable to it (whsec_...) before applying"
INLINE_KEYS = ("model_info", "limits", "termination")


def spec_dump_yaml(spec: dict) -> str:
    spec = {section: [{k: _Inline(v) if k in INLINE_KEYS and isinstance(v, dict) else v for k, v in item.items()}
                      for item in value] if isinstance(value, list) else value
            for section, value in spec.items()}
    text = yaml.dump(spec, Dumper=_SpecDumper, sort_keys=False, allow_unicode=True, width=120)
    lines = [line + KEY_COMMENT if re.match(r"^\s+api_key_env: [A-Z0-9_]+$", line) else
             line + SECRET_COMMENT if re.match(r"^\s+secret_env: [A-Z0-9_]+$", line) else line
             for line in text.splitlines()]
    name = str(spec.get("customer"))
    if not name.isprintable():  # a comment cannot escape: control characters or line breaks would break the file
        name = json.dumps(name)
    header = [f"# Spec of customer {name}: apply it with `manage.py apply -f FILE` "
              "or POST /api/apply/."]
    if any(line.endswith(KEY_COMMENT) for line in lines):
        header.append("# Provider keys are never exported: each api_key_env names the variable to hold one.")
    return "\n".join(header + lines) + "\n"
