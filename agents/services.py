"""Every write to model configurations and agents: validation rules, versions, state changes, audit rows."""
from urllib.parse import urlparse

from django.conf import settings
from django.db import transaction
from django.db.models import ProtectedError

from accounts.crypto import decrypt, encrypt
from accounts.models import Customer
from autogen_platform.errors import Conflict, QuotaExceeded, ValidationFailed
from autogen_platform.naming import unique_name_save
from core.services import audit_record
from runtime.services import model_calls_functions, model_config_problems, model_config_test as runtime_test
from runtime.tools import tool_names
from runtime.outcomes import StopReason

from . import signals
from .models import Agent, AgentVersion, ModelConfig
from .selectors import customer_tool_names

LIMIT_KEYS = ("memory_mb", "cpu_seconds", "timeout_seconds", "max_tokens")
# Agent limit -> the customer quota it may not exceed.
LIMIT_QUOTAS = {"memory_mb": "max_memory_mb", "cpu_seconds": "max_cpu_seconds", "timeout_seconds": "max_timeout_seconds"}
MODEL_INFO_REQUIRED = {"vision": bool, "function_calling": bool, "json_output": bool, "family": str}
MODEL_INFO_OPTIONAL = {"structured_output": bool, "multiple_system_messages": bool}
MODEL_CONFIG_FIELDS = ("name", "provider", "model", "base_url", "model_info", "responses", "price_prompt_per_million",
                       "price_completion_per_million")
PRICE_FIELDS = ("price_prompt_per_million", "price_completion_per_million")
AGENT_FIELDS = ("name", "description", "system_message", "model", "tools", "code_execution", "limits", "human_input",
                "approval")


def _actor_name(actor) -> str:
    return getattr(actor, "username", None) or str(actor or "system")


def _is_positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


# Model configurations


def model_config_errors(*, provider: str, model: str, base_url: str, model_info, responses,
                        has_api_key: bool | None = None) -> dict:
    """Field -> messages for a model configuration that could not be run; empty when it is fine.

    Beyond the shape, what a run needs (runtime.services.model_config_problems): `model_info` for a model
    AutoGen does not know, an API key for an endpoint that needs one (`has_api_key` None: not checked)."""
    errors = {}
    if provider not in ModelConfig.Provider.values:
        errors["provider"] = [f"Must be one of: {', '.join(ModelConfig.Provider.values)}"]
    if provider == ModelConfig.Provider.OPENAI and not (model or "").strip():
        errors["model"] = ["Required for the openai provider (the model name the endpoint serves)"]
    if base_url:
        parsed = urlparse(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            errors["base_url"] = ["Must be an http(s) URL, e.g. http://127.0.0.1:11434/v1"]
    if model_info:
        problems = []
        if not isinstance(model_info, dict):
            problems.append("Must be an object")
        else:
            for key, kind in MODEL_INFO_REQUIRED.items():
                if key not in model_info:
                    problems.append(f"{key}: required")
                elif not isinstance(model_info[key], kind):
                    problems.append(f"{key}: must be a {'boolean' if kind is bool else 'string'}")
            for key, kind in MODEL_INFO_OPTIONAL.items():
                if key in model_info and not isinstance(model_info[key], kind):
                    problems.append(f"{key}: must be a boolean")
            unknown = sorted(set(model_info) - set(MODEL_INFO_REQUIRED) - set(MODEL_INFO_OPTIONAL))
            if unknown:
                problems.append(f"unknown keys: {', '.join(unknown)}")
        if problems:
            errors["model_info"] = problems
    if provider == ModelConfig.Provider.REPLAY:
        if not isinstance(responses, list) or not responses or not all(isinstance(r, str) for r in responses):
            errors["responses"] = ["The replay provider needs a non-empty list of strings"]
    elif responses and (not isinstance(responses, list) or not all(isinstance(r, str) for r in responses)):
        errors["responses"] = ["Must be a list of strings"]
    if not errors:
        errors.update(model_config_problems(provider=provider, model=model, base_url=base_url, model_info=model_info,
                                            has_api_key=has_api_key))
    if "responses" not in errors and isinstance(responses, list):
        problems = text_limit_errors(responses, settings.MAX_REPLAY_RESPONSE_CHARS, "MAX_REPLAY_RESPONSE_CHARS")
        if len(responses) > settings.MAX_REPLAY_RESPONSES:
            problems.insert(0, f"At most {settings.MAX_REPLAY_RESPONSES} responses (MAX_REPLAY_RESPONSES)")
        if problems:
            errors["responses"] = problems
    return errors


def text_limit_errors(texts: list, limit: int, setting: str) -> list[str]:
    """Messages for the items of `texts` longer than `limit` characters."""
    return [f"Item {i}: at most {limit} characters ({setting})" for i, text in enumerate(texts)
            if isinstance(text, str) and len(text) > limit]


def text_too_long(value, limit: int, setting: str) -> list[str]:
    """[message] when the text `value` is longer than `limit` characters, else []."""
    if isinstance(value, str) and len(value) > limit:
        return [f"At most {limit} characters ({setting}); this one has {len(value)}"]
    return []


def _model_config_save(model_config: ModelConfig, *, key_may_follow: bool = False) -> None:
    errors = model_config_errors(
        provider=model_config.provider,
        model=model_config.model,
        base_url=model_config.base_url,
        model_info=model_config.model_info,
        responses=model_config.responses,
        has_api_key=None if key_may_follow else model_config.has_api_key,
    )
    for field in PRICE_FIELDS:
        price = getattr(model_config, field)
        if price is not None and price < 0:
            errors[field] = ["A price cannot be negative"]
    if errors:
        raise ValidationFailed(details=errors)
    unique_name_save(model_config, label="A model configuration")


@transaction.atomic
def model_config_create(*, actor, customer: Customer, name: str, provider: str, model: str = "", base_url: str = "",
                        api_key: str | None = None, model_info: dict | None = None, responses: list | None = None,
                        price_prompt_per_million=None, price_completion_per_million=None,
                        request=None, key_may_follow: bool = False) -> ModelConfig:
    """key_may_follow: an AutoGen component import, whose dump masks the key: the configuration is stored
    without one (the import's `ignored` list says to set it with PATCH); every other check applies."""
    model_config = ModelConfig(
        customer=customer,
        name=name,
        provider=provider,
        model=model or "",
        base_url=base_url or "",
        api_key_encrypted=encrypt(api_key or ""),
        model_info=model_info or {},
        responses=responses or [],
        price_prompt_per_million=price_prompt_per_million,
        price_completion_per_million=price_completion_per_million,
    )
    _model_config_save(model_config, key_may_follow=key_may_follow)
    audit_record(actor=actor, action="model_config.create", target=f"model_config:{model_config.pk}",
                 customer=customer, request=request,
                 details={"name": name, "provider": provider, "has_api_key": model_config.has_api_key})
    return model_config


@transaction.atomic
def model_config_update(*, actor, model_config: ModelConfig, data: dict, request=None) -> ModelConfig:
    """`data` holds the fields to change; `api_key` empty or null removes the stored key."""
    model_config = ModelConfig.objects.select_for_update().get(pk=model_config.pk)
    changed = []
    for field in MODEL_CONFIG_FIELDS:
        if field in data:
            value = data[field]
            if field in ("model", "base_url"):
                value = value or ""
            elif field == "model_info":
                value = value or {}
            elif field == "responses":
                value = value or []
            if getattr(model_config, field) != value:
                setattr(model_config, field, value)
                changed.append(field)
    if "api_key" in data:
        model_config.api_key_encrypted = encrypt(data["api_key"] or "")
        changed.append("api_key")
    if not model_calls_functions(provider=model_config.provider, model=model_config.model,
                                 model_info=model_config.model_info):
        # its agents with tools would fail at their next task (AutoGen refuses tools on such a model)
        with_tools = sorted(a.name for a in Agent.objects.filter(model=model_config, human_input=False).only(
            "name", "tools", "human_input") if a.tools)
        if with_tools:
            raise ValidationFailed(details={"model_info": [
                f"function_calling false, but agents with tools use this model: {', '.join(with_tools)}; "
                "remove their tools or move them to another model first"]})
    _model_config_save(model_config)
    audit_record(actor=actor, action="model_config.update", target=f"model_config:{model_config.pk}",
                 customer=model_config.customer, request=request, details={"changed": changed})
    return model_config


def model_config_runtime(model_config: ModelConfig) -> dict:
    """What the runtime's model client is built from (the key decrypted; None when it cannot be)."""
    try:
        api_key = decrypt(model_config.api_key_encrypted)
    except ValueError:
        api_key = None
    return {"id": model_config.pk, "name": model_config.name, "provider": model_config.provider,
            "model": model_config.model, "base_url": model_config.base_url, "api_key": api_key,
            "model_info": dict(model_config.model_info or {}), "responses": list(model_config.responses or [])}


def model_config_test(*, actor, model_config: ModelConfig, request=None) -> dict:
    """One real call to the configuration's endpoint through the runtime's model client:
    {ok, latency_ms, error: {code, message} | null}. Not a transaction: it waits on the network."""
    outcome = runtime_test(model_config_runtime(model_config))
    audit_record(actor=actor, action="model_config.test", target=f"model_config:{model_config.pk}",
                 customer=model_config.customer, request=request,
                 details={"ok": outcome["ok"], "error": (outcome["error"] or {}).get("code")})
    return outcome


@transaction.atomic
def model_config_delete(*, actor, model_config: ModelConfig, request=None) -> None:
    pk, name = model_config.pk, model_config.name
    try:
        with transaction.atomic():
            model_config.delete()
    except ProtectedError as exc:
        users = sorted({str(obj) for obj in exc.protected_objects})
        raise Conflict(f"Model configuration {name!r} is in use", details={"used_by": users}) from None
    audit_record(actor=actor, action="model_config.delete", target=f"model_config:{pk}",
                 customer=model_config.customer, request=request, details={"name": name})


# Agents


_NO_FUNCTION_CALLING = ("The model configuration {name!r} cannot call functions (its model_info has function_calling "
                        "false), so AutoGen would refuse this agent's tools when a task runs: set function_calling "
                        "on the model, or give the agent no tools")


def _agent_check(agent: Agent, customer: Customer) -> None:
    """The rules every agent write keeps: the caller's model, known tools, limits within quota."""
    errors = {}
    for field, limit in (("system_message", "MAX_SYSTEM_MESSAGE_CHARS"), ("description", "MAX_DESCRIPTION_CHARS")):
        problems = text_too_long(getattr(agent, field), getattr(settings, limit), limit)
        if problems:
            errors[field] = problems
    if agent.model_id is None or not ModelConfig.objects.filter(pk=agent.model_id, customer=customer).exists():
        errors["model"] = ["Unknown model configuration"]
    tools = agent.tools
    if not isinstance(tools, list) or not all(isinstance(t, str) for t in tools):
        errors["tools"] = ["Must be a list of tool names"]
    else:
        unknown = [t for t in tools if t not in tool_names()]
        unknown = [t for t in unknown if t not in customer_tool_names(customer.pk)] if unknown else unknown
        if unknown:
            errors["tools"] = [f"Unknown tools: {', '.join(unknown)}; see GET /api/tools/"]
        elif len(set(tools)) != len(tools):
            errors["tools"] = ["A tool is listed twice"]
    if "tools" not in errors and "model" not in errors and tools and not agent.human_input:
        model = ModelConfig.objects.get(pk=agent.model_id)
        if not model_calls_functions(provider=model.provider, model=model.model, model_info=model.model_info):
            errors["tools"] = [_NO_FUNCTION_CALLING.format(name=model.name)]
    approval_problems = _approval_problems(agent)
    if approval_problems:
        errors["approval"] = approval_problems
    limits = agent.limits
    if not isinstance(limits, dict):
        errors["limits"] = ["Must be an object"]
    else:
        problems = [f"{k}: unknown limit; allowed: {', '.join(LIMIT_KEYS)}" for k in limits if k not in LIMIT_KEYS]
        problems += [f"{k}: must be a positive integer" for k, v in limits.items() if k in LIMIT_KEYS
                     and not _is_positive_int(v)]
        if problems:
            errors["limits"] = problems
    if errors:
        raise ValidationFailed(details=errors)
    over = {k: {"requested": limits[k], "quota": getattr(customer, q)}
            for k, q in LIMIT_QUOTAS.items() if k in limits and limits[k] > getattr(customer, q)}
    if over:
        raise QuotaExceeded(
            "Limits above the customer's quota: " + ", ".join(f"{k} {v['requested']} > {v['quota']}" for k, v in over.items()),
            details={"limits": over},
        )


# What `approval` may name besides the agent's tools.
APPROVAL_CODE_EXECUTION = "code_execution"


def _approval_problems(agent: Agent) -> list[str]:
    """`approval` names calls the agent can make: its own tools, and code_execution when it runs code."""
    approval = agent.approval
    if not isinstance(approval, list) or not all(isinstance(a, str) for a in approval):
        return ["Must be a list of tool names or \"code_execution\""]
    if len(set(approval)) != len(approval):
        return ["A name is listed twice"]
    problems = []
    for name in approval:
        if name == APPROVAL_CODE_EXECUTION:
            if not agent.code_execution:
                problems.append("code_execution: the agent does not run code (set code_execution: true)")
        elif name not in (agent.tools or []):
            problems.append(f"{name}: not one of the agent's tools ({', '.join(agent.tools or []) or 'none'})")
    if approval and agent.human_input:
        problems.append("An agent with human_input is answered by a person and calls no tools: approval does not apply")
    return problems


def _agent_save(agent: Agent, customer: Customer) -> None:
    _agent_check(agent, customer)
    unique_name_save(agent, label="An agent")


def _version_add(agent: Agent, actor) -> AgentVersion:
    return AgentVersion.objects.create(
        agent=agent, version=agent.version, snapshot=agent.behaviour(), created_by=_actor_name(actor)[:150]
    )


@transaction.atomic
def agent_create(*, actor, customer: Customer, name: str, model: ModelConfig, description: str = "",
                 system_message: str = "", tools=(), code_execution: bool = False, limits: dict | None = None,
                 human_input: bool = False, approval=(), request=None) -> Agent:
    # The customer row lock makes concurrent creations take the last free slot once.
    customer = Customer.objects.select_for_update().get(pk=customer.pk)
    if Agent.objects.filter(customer=customer).count() >= customer.max_agents:
        raise QuotaExceeded(f"The customer may have at most {customer.max_agents} agents",
                            details={"quota": "max_agents", "limit": customer.max_agents})
    agent = Agent(
        customer=customer,
        name=name,
        description=description or "",
        system_message=system_message or "",
        model_id=getattr(model, "pk", model),
        tools=list(tools or []),
        code_execution=bool(code_execution),
        limits=dict(limits or {}),
        human_input=bool(human_input),
        approval=list(approval or []),
        version=1,
    )
    _agent_save(agent, customer)
    _version_add(agent, actor)
    audit_record(actor=actor, action="agent.create", target=f"agent:{agent.pk}", customer=customer, request=request,
                 details={"name": agent.name, "version": 1})
    return agent


@transaction.atomic
def agent_update(*, actor, agent: Agent, data: dict, request=None) -> Agent:
    """Changes the given fields; a change to a behaviour field makes a new version (name, description do not)."""
    agent = Agent.objects.select_for_update(of=("self",)).select_related("customer").get(pk=agent.pk)
    before = agent.behaviour()
    changed = []
    for field in AGENT_FIELDS:
        if field not in data:
            continue
        value = data[field]
        if field == "model":
            field, value = "model_id", getattr(value, "pk", value)
        elif field in ("description", "system_message"):
            value = value or ""
        elif field in ("tools", "approval"):
            value = list(value or [])
        elif field == "human_input":
            value = bool(value)
        elif field == "limits":
            value = dict(value or {})
        if getattr(agent, field) != value:
            setattr(agent, field, value)
            changed.append(field.removesuffix("_id"))
    bumped = agent.behaviour() != before
    if bumped:
        agent.version += 1
    _agent_save(agent, agent.customer)
    if bumped:
        _version_add(agent, actor)
    audit_record(actor=actor, action="agent.update", target=f"agent:{agent.pk}", customer=agent.customer,
                 request=request, details={"changed": changed, "version": agent.version})
    return agent


def agent_tool_redefined(*, actor, agent: Agent, tool_name: str, request=None) -> Agent:
    """One of the agent's customer tools changed its definition (agents.tools.tool_update, in its
    transaction, the agent row locked): a new version whose snapshot holds the new definition."""
    agent.version += 1
    agent.save(update_fields=["version", "updated_at"])
    _version_add(agent, actor)
    audit_record(actor=actor, action="agent.update", target=f"agent:{agent.pk}", customer=agent.customer,
                 request=request, details={"changed": ["tool_definitions"], "tool": tool_name, "version": agent.version})
    return agent


@transaction.atomic
def agent_rollback(*, actor, agent: Agent, version: int, request=None) -> Agent:
    """Applies an earlier version's snapshot as a NEW version: history is never rewritten."""
    agent = Agent.objects.select_for_update(of=("self",)).select_related("customer").get(pk=agent.pk)
    old = AgentVersion.objects.filter(agent=agent, version=version).first()
    if old is None:
        raise ValidationFailed(details={"version": [f"The agent has no version {version}"]})
    snapshot = old.snapshot
    if not ModelConfig.objects.filter(pk=snapshot.get("model"), customer=agent.customer).exists():
        raise Conflict(f"The model configuration of version {version} no longer exists")
    agent.system_message = snapshot.get("system_message", "")
    agent.model_id = snapshot.get("model")
    agent.tools = list(snapshot.get("tools", []))
    agent.code_execution = bool(snapshot.get("code_execution", False))
    agent.limits = dict(snapshot.get("limits", {}))
    agent.human_input = bool(snapshot.get("human_input", False))
    agent.approval = list(snapshot.get("approval", []))
    agent.version += 1
    _agent_save(agent, agent.customer)
    _version_add(agent, actor)
    audit_record(actor=actor, action="agent.rollback", target=f"agent:{agent.pk}", customer=agent.customer,
                 request=request, details={"from_version": version, "version": agent.version})
    return agent


def _tasks_stop(agent: Agent, *, reason: str, message: str) -> dict:
    """Asks tasks (through agents.signals.agent_tasks_stop: it sits above agents) to stop the agent's tasks
    with `reason` (tasks.services.tasks_stop, the one rule for every scope)."""
    details = {"cancelled": [], "requeued": [], "stopping": []}
    for _, answer in signals.agent_tasks_stop.send(sender=Agent, agent=agent, reason=reason, message=message):
        for key in details:
            details[key] += answer[key]
    return details


@transaction.atomic
def agent_stop(*, actor, agent: Agent, request=None) -> Agent:
    """No new task starts; queued tasks are cancelled and running ones stopped (error `cancelled`)."""
    agent = Agent.objects.select_for_update(of=("self",)).select_related("customer").get(pk=agent.pk)
    if agent.status != Agent.Status.STOPPED:
        agent.status = Agent.Status.STOPPED
        agent.save(update_fields=["status", "updated_at"])
    details = _tasks_stop(agent, reason=StopReason.CANCELLED, message="agent stopped")
    audit_record(actor=actor, action="agent.stop", target=f"agent:{agent.pk}", customer=agent.customer,
                 request=request, details=details)
    return agent


@transaction.atomic
def agent_start(*, actor, agent: Agent, request=None) -> Agent:
    agent = Agent.objects.select_for_update(of=("self",)).select_related("customer").get(pk=agent.pk)
    if agent.status != Agent.Status.ACTIVE:
        agent.status = Agent.Status.ACTIVE
        agent.save(update_fields=["status", "updated_at"])
    audit_record(actor=actor, action="agent.start", target=f"agent:{agent.pk}", customer=agent.customer,
                 request=request)
    return agent


@transaction.atomic
def agent_restart(*, actor, agent: Agent, request=None) -> Agent:
    """Running tasks are stopped with reason `restart` (their worker re-queues them on the current version),
    queued ones move to the current version, and a stopped agent becomes active."""
    agent = Agent.objects.select_for_update(of=("self",)).select_related("customer").get(pk=agent.pk)
    if agent.status != Agent.Status.ACTIVE:
        agent.status = Agent.Status.ACTIVE
        agent.save(update_fields=["status", "updated_at"])
    details = _tasks_stop(agent, reason=StopReason.RESTART, message="agent restarted")
    audit_record(actor=actor, action="agent.restart", target=f"agent:{agent.pk}", customer=agent.customer,
                 request=request, details={"restarting": details["stopping"], "requeued": details["requeued"]})
    return agent


@transaction.atomic
def agent_delete(*, actor, agent: Agent, request=None) -> None:
    agent = Agent.objects.select_for_update(of=("self",)).select_related("customer").get(pk=agent.pk)
    # teams refuses while the agent is a member of a team, then tasks while it has unfinished tasks (Conflict)
    signals.agent_deleting.send(sender=Agent, agent=agent)
    pk, name = agent.pk, agent.name
    try:
        with transaction.atomic():
            agent.delete()
    except ProtectedError:
        raise Conflict(f"Agent {name!r} is still referenced") from None
    audit_record(actor=actor, action="agent.delete", target=f"agent:{pk}", customer=agent.customer,
                 request=request, details={"name": name})
