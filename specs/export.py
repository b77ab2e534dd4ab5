"""Export: a customer's models, agents, teams, webhooks and schedules as a spec that applies back as
`no changes` (keys and signing secrets are never exported: a placeholder variable stands there), and
the YAML it is written as (spec_dump_yaml).
"""
import json
import re

import yaml

from accounts.models import Customer

from . import integrations, tools
from .prices import prices_for_spec
from .plan import existing_objects, team_values

MODEL_INFO_ORDER = ("vision", "function_calling", "json_output", "family", "structured_output", "multiple_system_messages")


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
    existing = existing_objects(customer)
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
        item.update(prices_for_spec(model_config))
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
        current = team_values(team)
        item = {"name": team.name, "mode": team.mode, "members": current["members"]}
        for field in ("selector_model", "orchestrator_model"):
            if current[field]:
                item[field] = current[field]
        item["termination"] = dict(team.termination)
        if current["graph"]:
            item["graph"] = current["graph"]
        teams.append(item)
    return {"customer": customer.name, "models": models, "tools": tools.export(customer), "agents": agents,
            "teams": teams,
            **integrations.export(customer)}


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
    if any(re.match(r"^\s+secret_headers_env:", line) for line in lines):
        header.append("# HTTP tools' secret headers are never exported: secret_headers_env names the variable "
                      "to hold each.")
    return "\n".join(header + lines) + "\n"
