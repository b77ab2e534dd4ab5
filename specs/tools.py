"""The `tools` section of a declarative spec: customers' own tools, matched by name.

    tools:
      - name: weather
        description: The weather in a city.
        parameters: {type: object, properties: {city: {type: string}}, required: [city]}
        timeout_seconds: 10
        source: |
          def weather(city):
              return f"sunny in {city}"
      - name: order_status
        kind: http
        description: The status of an order.
        parameters: {type: object, properties: {order_id: {type: string}}, required: [order_id]}
        method: GET
        url: https://api.example.com/v1/orders/{order_id}
        headers: {Accept: application/json}
        secret_headers_env: {Authorization: ORDERS_API_AUTHORIZATION}

An http tool's secret header values never stand in a spec: `secret_headers_env` maps each header name to an
environment variable of the applying side (through the API, where the server's environment is not read, the
stored values stay). The spec's reader, plan, apply and export (specs/) call these: tools are created and changed
before agents (which name them) and deleted after them (a prune deletes a tool once no agent uses it). The rules
are the services' (agents.tools): a bad definition fails the whole apply with the spec path of the field.
"""
import re

from django.conf import settings

from accounts.crypto import decrypt
from agents.models import Tool
from agents.tools import tool_create, tool_delete, tool_update

TOOL_KEYS = ("name", "kind", "description", "parameters", "source", "method", "url", "arguments_in", "headers",
             "secret_headers_env", "timeout_seconds")
TOOL_FIELDS = ("kind", "description", "parameters", "source", "method", "url", "arguments_in", "headers",
               "timeout_seconds")
NO_PARAMETERS = {"type": "object", "properties": {}}
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# A secret header whose value the applying side does not give (through the API): the stored one stays.
KEEP = object()


def tool_from_spec(problems, path, item: dict, *, string, environ=None) -> dict:
    for key in item:
        if key == "secret_headers":
            problems.add(f"{path}.secret_headers", "secrets never stand in a spec: map each header to an environment "
                                                   "variable that holds its value with `secret_headers_env`")
        elif key not in TOOL_KEYS:
            problems.add(f"{path}.{key}", f"unknown key; allowed: {', '.join(TOOL_KEYS)}")
    parameters = item.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        problems.add(f"{path}.parameters", "must be a mapping (a JSON Schema of type object)")
    timeout = item.get("timeout_seconds", settings.TOOL_CALL_TIMEOUT_SECONDS)
    if not isinstance(timeout, int) or isinstance(timeout, bool):
        problems.add(f"{path}.timeout_seconds", "must be an integer number of seconds")
    kind = string(problems, f"{path}.kind", item.get("kind")) or Tool.Kind.PYTHON
    if kind not in Tool.Kind.values:
        problems.add(f"{path}.kind", f"must be one of {', '.join(Tool.Kind.values)}")
    desired = {
        "kind": kind,
        "description": string(problems, f"{path}.description", item.get("description")) or "",
        "parameters": NO_PARAMETERS if parameters is None else parameters,
        "timeout_seconds": timeout,
        "source": "", "method": "", "url": "", "arguments_in": "", "headers": {}, "secret_headers": {},
    }
    if kind != Tool.Kind.HTTP:
        for key in ("method", "url", "arguments_in", "headers", "secret_headers_env"):
            if key in item:
                problems.add(f"{path}.{key}", "http tools only (give kind: http)")
        desired["source"] = string(problems, f"{path}.source", item.get("source"), required=True)
        return desired
    if "source" in item:
        problems.add(f"{path}.source", "python tools only (an http tool has method and url)")
    method = string(problems, f"{path}.method", item.get("method")) or "POST"
    desired["method"] = method.upper()
    desired["url"] = string(problems, f"{path}.url", item.get("url"), required=True)
    desired["arguments_in"] = (string(problems, f"{path}.arguments_in", item.get("arguments_in"))
                               or ("query" if desired["method"] in ("GET", "DELETE") else "body"))
    headers = item.get("headers")
    if headers is not None and not (isinstance(headers, dict) and all(isinstance(v, str) for v in headers.values())):
        problems.add(f"{path}.headers", "must be a mapping of header name -> string value")
    elif headers:
        desired["headers"] = {str(k): v for k, v in headers.items()}
    desired["secret_headers"] = _secret_headers(problems, f"{path}.secret_headers_env", item.get("secret_headers_env"),
                                                environ)
    return desired


def _secret_headers(problems, path, variables, environ) -> dict:
    if variables is None:
        return {}
    if not isinstance(variables, dict):
        problems.add(path, "must be a mapping of header name -> environment variable, e.g. "
                           "{Authorization: ORDERS_API_AUTHORIZATION}")
        return {}
    values = {}
    for header, variable in variables.items():
        if not isinstance(variable, str) or not ENV_NAME.match(variable):
            problems.add(f"{path}.{header}", "must be an environment variable name, e.g. ORDERS_API_AUTHORIZATION")
        elif environ is None:
            values[str(header)] = KEEP
        elif not (environ.get(variable) or "").strip():
            problems.add(f"{path}.{header}", f"environment variable {variable} is not set")
        else:
            values[str(header)] = environ[variable].strip()
    return values


def secret_headers_changed(tool: Tool, desired: dict) -> bool:
    stored = tool.secret_headers_encrypted or {}
    if set(stored) != set(desired):
        return True
    for name, value in desired.items():
        if value is KEEP:
            continue
        try:
            if decrypt(stored[name]) != value:
                return True
        except ValueError:
            return True
    return False


def _secret_data(desired: dict, current: Tool | None) -> dict:
    """What the service gets: the values given, and null for stored names the spec no longer has."""
    data = {name: value for name, value in desired.items() if value is not KEEP}
    for name in (current.secret_headers_encrypted or {}) if current is not None else ():
        if name not in desired:
            data[name] = None
    return data


def tool_values(tool: Tool) -> dict:
    return {field: getattr(tool, field) for field in TOOL_FIELDS}


def existing(customer) -> dict:
    return {"tool": {t.name: t for t in Tool.objects.filter(customer=customer)}}


def carry_out(plan, *, actor, customer, request, at, warnings=None) -> None:
    """Creates and changes the spec's tools (before its agents)."""
    for item in plan:
        if item.kind != "tool" or item.action not in ("create", "update"):
            continue
        values = dict(item.desired.values)
        secret_headers = values.pop("secret_headers")
        with at(item.desired.path):
            if item.action == "create":
                missing = [name for name, value in secret_headers.items() if value is KEEP]
                if missing and warnings is not None:
                    warnings.append(f"{item.desired.path}.secret_headers_env: the server's environment is not read "
                                    f"through the API; tool {item.name!r} has no {', '.join(missing)} header until "
                                    "one is set with PATCH /api/tools/{id}/ or `manage.py apply`")
                tool_create(actor=actor, customer=customer, name=item.name, request=request,
                            secret_headers=_secret_data(secret_headers, None), **values)
            else:
                data = {f: values[f] for f in item.fields if f in values}
                if "secret_headers" in item.fields:
                    data["secret_headers"] = _secret_data(secret_headers, item.current)
                tool_update(actor=actor, tool=item.current, data=data, request=request)


def deleter(*, actor, request):
    return lambda obj: tool_delete(actor=actor, tool=obj, request=request)


def export(customer) -> list[dict]:
    tools = []
    for tool in Tool.objects.filter(customer=customer).order_by("name"):
        item = {"name": tool.name}
        if tool.kind != Tool.Kind.PYTHON:
            item["kind"] = tool.kind
        if tool.description:
            item["description"] = tool.description
        if tool.parameters != NO_PARAMETERS:
            item["parameters"] = tool.parameters
        if tool.timeout_seconds != settings.TOOL_CALL_TIMEOUT_SECONDS:
            item["timeout_seconds"] = tool.timeout_seconds
        if tool.kind == Tool.Kind.HTTP:
            item["method"] = tool.method
            item["url"] = tool.url
            if tool.arguments_in != ("query" if tool.method in ("GET", "DELETE") else "body"):
                item["arguments_in"] = tool.arguments_in
            if tool.headers:
                item["headers"] = dict(tool.headers)
            if tool.secret_headers_encrypted:  # never a value: the variable to hold it
                item["secret_headers_env"] = {name: secret_env_name(tool.name, name) for name in tool.secret_header_names}
        else:
            item["source"] = tool.source
        tools.append(item)
    return tools


def secret_env_name(tool: str, header: str) -> str:
    return re.sub(r"[^A-Z0-9]+", "_", f"{tool}_{header}".upper()).strip("_")
