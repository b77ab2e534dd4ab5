"""Carrying a spec's plan out through the services, in one transaction: a failing spec changes
nothing, a dry run goes through every service and rolls back (spec_apply, what the CLI and the API call).
"""
from collections.abc import Mapping

from django.db import transaction

from accounts.models import Customer
from core.services import audit_record
from agents.services import (
    agent_create,
    agent_delete,
    agent_update,
    model_config_create,
    model_config_delete,
    model_config_update,
)
from autogen_platform.errors import ApplicationError, ValidationFailed
from teams.services import team_create, team_delete, team_update

from . import integrations, tools
from .prices import PRICE_KEYS
from .plan import PlanItem, SpecResult, check_references, existing_objects, spec_plan
from .reader import KEEP_KEY, SECTIONS, spec_read, summary_message


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
            exc.message = summary_message(exc.details) if details else f"{self.path}: {exc.message}"
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
                    responses=values["responses"], request=request, **{k: values[k] for k in PRICE_KEYS})
            else:
                data = {f: (key if f == "api_key" else values[f]) for f in item.fields}
                models[item.name] = model_config_update(actor=actor, model_config=item.current, data=data,
                                                        request=request)

    tools.carry_out(plan, actor=actor, customer=customer, request=request, at=_at,  # agents name them
                    warnings=warnings)

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

    integrations.carry_out(plan, actor=actor, customer=customer, request=request, keep=KEEP_KEY, at=_at,
                                warnings=warnings)
    deleters = {**integrations.deleters(actor=actor, request=request),
                "team": lambda obj: team_delete(actor=actor, team=obj, request=request),
                "agent": lambda obj: agent_delete(actor=actor, agent=obj, request=request),
                "model": lambda obj: model_config_delete(actor=actor, model_config=obj, request=request),
                "tool": tools.deleter(actor=actor, request=request)}
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
            objects = spec_read(spec, customer=customer, environ=environ)
            existing = existing_objects(customer)
            check_references(objects, existing, prune=prune)
            result.plan = spec_plan(objects, existing, prune=prune)
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
