"""The `tools` section of a declarative spec: customers' own tools, matched by name.

    tools:
      - name: weather
        description: The weather in a city.
        parameters: {type: object, properties: {city: {type: string}}, required: [city]}
        timeout_seconds: 10
        source: |
          def weather(city):
              return f"sunny in {city}"

The spec's reader, plan, apply and export (specs/) call these: tools are created and changed before agents (which name
them) and deleted after them (a prune deletes a tool once no agent uses it). The rules are the services'
(agents.tools): a bad definition fails the whole apply with the spec path of the field.
"""
from django.conf import settings

from agents.models import Tool
from agents.tools import tool_create, tool_delete, tool_update

TOOL_KEYS = ("name", "description", "parameters", "source", "timeout_seconds")
TOOL_FIELDS = ("description", "parameters", "source", "timeout_seconds")
NO_PARAMETERS = {"type": "object", "properties": {}}


def tool_from_spec(problems, path, item: dict, *, string) -> dict:
    for key in item:
        if key not in TOOL_KEYS:
            problems.add(f"{path}.{key}", f"unknown key; allowed: {', '.join(TOOL_KEYS)}")
    parameters = item.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        problems.add(f"{path}.parameters", "must be a mapping (a JSON Schema of type object)")
    timeout = item.get("timeout_seconds", settings.TOOL_CALL_TIMEOUT_SECONDS)
    if not isinstance(timeout, int) or isinstance(timeout, bool):
        problems.add(f"{path}.timeout_seconds", "must be an integer number of seconds")
    return {
        "description": string(problems, f"{path}.description", item.get("description")) or "",
        "parameters": NO_PARAMETERS if parameters is None else parameters,
        "source": string(problems, f"{path}.source", item.get("source"), required=True),
        "timeout_seconds": timeout,
    }


def tool_values(tool: Tool) -> dict:
    return {field: getattr(tool, field) for field in TOOL_FIELDS}


def existing(customer) -> dict:
    return {"tool": {t.name: t for t in Tool.objects.filter(customer=customer)}}


def carry_out(plan, *, actor, customer, request, at) -> None:
    """Creates and changes the spec's tools (before its agents)."""
    for item in plan:
        if item.kind != "tool" or item.action not in ("create", "update"):
            continue
        values = item.desired.values
        with at(item.desired.path):
            if item.action == "create":
                tool_create(actor=actor, customer=customer, name=item.name, request=request, **values)
            else:
                tool_update(actor=actor, tool=item.current, data={f: values[f] for f in item.fields}, request=request)


def deleter(*, actor, request):
    return lambda obj: tool_delete(actor=actor, tool=obj, request=request)


def export(customer) -> list[dict]:
    tools = []
    for tool in Tool.objects.filter(customer=customer).order_by("name"):
        item = {"name": tool.name}
        if tool.description:
            item["description"] = tool.description
        if tool.parameters != NO_PARAMETERS:
            item["parameters"] = tool.parameters
        if tool.timeout_seconds != settings.TOOL_CALL_TIMEOUT_SECONDS:
            item["timeout_seconds"] = tool.timeout_seconds
        item["source"] = tool.source
        tools.append(item)
    return tools
