"""Reading a declarative spec: YAML or JSON text to plain data (spec_load), the customer it names
(spec_customer), and its shape checked into the desired objects per kind (spec_read), every mistake
reported at once with its path (`agents[1].model: must be a string`). Provider keys never stand in a
spec: `api_key_env` names an environment variable of the applying side (KEEP_KEY: through the API
the server's environment is not read).
"""
import re
from collections.abc import Hashable
from dataclasses import dataclass

import yaml
from django.conf import settings

from accounts.models import Customer
from agents.services import model_config_errors
from autogen_platform.errors import ValidationFailed
from teams.models import Team
from teams.services import DEFAULT_TERMINATION

from . import integrations, tools
from .prices import PRICE_KEYS, prices_from_spec

SECTIONS = (("models", "model"), ("tools", "tool"), ("agents", "agent"), ("teams", "team"), ("webhooks", "webhook"),
            ("schedules", "schedule"))
TOP_KEYS = ("customer", "models", "tools", "agents", "teams", "webhooks", "schedules")
MODEL_KEYS = ("name", "provider", "model", "base_url", "api_key_env", "model_info", "responses", *PRICE_KEYS)
AGENT_KEYS = ("name", "description", "model", "system_message", "tools", "code_execution", "limits", "human_input",
              "approval")
TEAM_KEYS = ("name", "mode", "members", "selector_model", "orchestrator_model", "termination", "graph")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
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


class Problems:
    """Path -> messages, collected over the whole spec so one run shows every mistake."""

    def __init__(self):
        self.details: dict[str, list[str]] = {}

    def add(self, path: str, message: str) -> None:
        self.details.setdefault(path, []).append(message)

    def raise_if_any(self) -> None:
        if self.details:
            raise ValidationFailed(summary_message(self.details), details=self.details)


def summary_message(details: dict) -> str:
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
        **prices_from_spec(problems, path, item),
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
class Desired:
    kind: str
    name: str
    path: str
    values: dict


def spec_read(spec, *, customer: Customer, environ) -> dict[str, list[Desired]]:
    """The spec's objects per kind, every shape mistake reported at once with its path."""
    problems = Problems()
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
               "webhook": lambda p, i: integrations.webhook_from_spec(
                   problems, p, i, environ, keep=KEEP_KEY, env_name=ENV_NAME, string=_string, string_list=_string_list),
               "schedule": lambda p, i: integrations.schedule_from_spec(problems, p, i, string=_string),
               "tool": lambda p, i: tools.tool_from_spec(problems, p, i, string=_string, environ=environ)}
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
            objects[kind].append(Desired(kind, name, path, readers[kind](path, item)))
    problems.raise_if_any()
    return objects
