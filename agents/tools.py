"""Customers' own tools: the rules a definition keeps, and every write to them.

A tool has a name, a description and a JSON Schema of its parameters, and is of one of two kinds:

- python: a Python function (its source). The platform only parses the source with `ast` to check
  it: it never imports, compiles or runs it. The source runs in a task's sandbox, in the code runner
  under the task's second uid (runtime/agentchild/customtools.py), one fresh interpreter per call.
- http: an HTTP request (method, URL template, headers) the worker makes for each call, never the
  sandbox (runtime/httptools.py). Its URL's host must be on the customer's allow-list
  (Customer.http_tool_hosts, set by the platform's admins) and, with HTTP_TOOLS_ALLOW_PRIVATE off,
  resolve to public addresses; both are checked here on every write and again at every call.
  Secret headers are stored encrypted, write-only: no answer, export or task spec holds their values.

Versions: an agent names its tools in `tools`, and its version snapshot holds each customer tool's
definition (Agent.behaviour). Changing a tool's definition therefore makes a new version of every
agent that uses it, in the same transaction; a task keeps the definition frozen in its spec at
submit. A tool that agents use cannot be renamed or deleted (409 conflict naming them).
"""
import ast
import json
import keyword
import re

from urllib.parse import urlsplit

import jsonschema
from django.conf import settings
from django.db import transaction

from accounts.crypto import decrypt, encrypt
from accounts.models import Customer
from autogen_platform.errors import Conflict, QuotaExceeded, ValidationFailed
from autogen_platform.naming import unique_name_save
from core.services import audit_record
from runtime import httptools
from runtime.tools import tool_names

from . import services
from .models import Agent, Tool

TOOL_FIELDS = ("name", "description", "parameters", "source", "timeout_seconds", "method", "url", "arguments_in",
               "headers")
HTTP_FIELDS = ("method", "url", "arguments_in", "headers")
# An OpenAI function name is [a-zA-Z0-9_-]{1,64}; a tool's name is also the Python function's name.
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


def _identifier_problem(name) -> str | None:
    if not isinstance(name, str) or not NAME.match(name):
        return "Must be a Python identifier of at most 64 characters (letters, digits, _; not starting with a digit)"
    if keyword.iskeyword(name):
        return f"{name!r} is a Python keyword"
    return None


def name_problems(name) -> list[str]:
    problem = _identifier_problem(name)
    if problem:
        return [problem]
    if name in tool_names():
        return [f"{name!r} is the name of a built-in tool; choose another"]
    return []


def _remote_refs(node, path="") -> list[str]:
    """Paths of `$ref`s that leave the document (the sandbox has no network to fetch them)."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and not (isinstance(value, str) and value.startswith("#")):
                found.append(f"{path}.$ref" if path else "$ref")
            else:
                found += _remote_refs(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _remote_refs(value, f"{path}[{i}]")
    return found


def parameters_problems(parameters) -> list[str]:
    """A JSON Schema (draft 2020-12) object of type object whose property names are Python identifiers."""
    try:
        return _parameters_problems(parameters)
    except RecursionError:
        return ["Nested too deeply"]


def _parameters_problems(parameters) -> list[str]:
    if not isinstance(parameters, dict):
        return ["Must be a JSON Schema object, e.g. {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}}}"]
    if len(json.dumps(parameters)) > settings.MAX_TOOL_PARAMETERS_CHARS:
        return [f"At most {settings.MAX_TOOL_PARAMETERS_CHARS} characters of JSON (MAX_TOOL_PARAMETERS_CHARS)"]
    if parameters.get("type") != "object":
        return ["type: must be \"object\" (the arguments of one call are an object)"]
    try:
        jsonschema.Draft202012Validator.check_schema(parameters)
    except jsonschema.SchemaError as exc:
        where = ".".join(str(p) for p in exc.path)
        return [f"{where + ': ' if where else ''}not a valid JSON Schema: {exc.message}"]
    problems = [f"{path}: only local references (#/...) are allowed" for path in _remote_refs(parameters)]
    properties = parameters.get("properties") or {}
    for name in properties:
        problem = _identifier_problem(name)
        if problem:
            problems.append(f"properties.{name}: {problem} (arguments are passed as keyword arguments)")
    for name in parameters.get("required") or []:
        if name not in properties:
            problems.append(f"required: {name!r} is not one of the properties")
    return problems


def source_problems(source, name: str, parameters) -> list[str]:
    """The source parses (ast only: never compiled or run here) and defines, at the top level, a function
    named like the tool that accepts the schema's properties as keyword arguments."""
    if not isinstance(source, str) or not source.strip():
        return ["Required: the Python source of a function named like the tool"]
    if len(source) > settings.MAX_TOOL_SOURCE_CHARS:
        return [f"At most {settings.MAX_TOOL_SOURCE_CHARS} characters (MAX_TOOL_SOURCE_CHARS); this one has {len(source)}"]
    try:
        tree = ast.parse(source, filename="<tool source>")
    except SyntaxError as exc:
        return [f"line {exc.lineno}: {exc.msg}"]
    except ValueError as exc:  # e.g. a NUL byte
        return [str(exc)]
    except (RecursionError, MemoryError):  # the parser's own limits, e.g. thousands of nested operators
        return ["Nested too deeply to parse"]
    functions = [node for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                 and node.name == name]
    if not functions:
        return [f"Must define a function named {name!r} at the top level (def {name}(...): ...)"]
    args = functions[-1].args
    if args.posonlyargs:
        return [f"{a.arg}: positional-only parameters cannot be passed (arguments are passed by keyword)"
                for a in args.posonlyargs]
    if not isinstance(parameters, dict):
        return []
    properties = parameters.get("properties") or {}
    required = set(parameters.get("required") or [])
    positional = args.args
    with_default = {a.arg for a in positional[len(positional) - len(args.defaults):]} if args.defaults else set()
    with_default |= {a.arg for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None}
    accepted = [a.arg for a in positional + args.kwonlyargs]
    problems = []
    if args.kwarg is None:
        problems += [f"the function does not accept the property {p!r} (add it as a parameter, or **kwargs)"
                     for p in properties if p not in accepted]
    problems += [f"parameter {p!r} has no default, so it must be a required property of parameters"
                 for p in accepted if p not in with_default and p not in required]
    return problems


def timeout_problems(timeout) -> list[str]:
    top = settings.TOOL_CALL_MAX_TIMEOUT_SECONDS
    if not isinstance(timeout, int) or isinstance(timeout, bool) or not 1 <= timeout <= top:
        return [f"Must be an integer from 1 to {top} seconds (TOOL_CALL_MAX_TIMEOUT_SECONDS)"]
    return []


def tool_errors(tool: Tool, customer: Customer | None = None) -> dict:
    """Field -> messages for a definition that cannot be stored; empty when it is fine."""
    errors = {"name": name_problems(tool.name)}
    errors["description"] = services.text_too_long(tool.description, settings.MAX_DESCRIPTION_CHARS,
                                                   "MAX_DESCRIPTION_CHARS")
    errors["parameters"] = parameters_problems(tool.parameters)
    errors["timeout_seconds"] = timeout_problems(tool.timeout_seconds)
    if tool.kind == Tool.Kind.HTTP:
        errors.update(http_problems(tool, customer or tool.customer, tool.parameters if not errors["parameters"] else None))
    else:
        errors["source"] = source_problems(tool.source, tool.name, tool.parameters if not errors["parameters"] else None)
        for field in HTTP_FIELDS:
            if getattr(tool, field):
                errors[field] = ["http tools only (this tool's kind is python)"]
        if tool.secret_headers_encrypted:
            errors["secret_headers"] = ["http tools only (this tool's kind is python)"]
    return {field: problems for field, problems in errors.items() if problems}


def http_problems(tool: Tool, customer: Customer, parameters) -> dict:
    """The request of an http tool: its method, URL (a host of the customer's allow-list, public unless
    HTTP_TOOLS_ALLOW_PRIVATE), where the arguments go, and its headers."""
    errors = {}
    if tool.source:
        errors["source"] = ["python tools only (an http tool has method and url instead)"]
    if tool.method not in httptools.METHODS:
        errors["method"] = [f"Must be one of {', '.join(httptools.METHODS)}"]
    if tool.arguments_in not in httptools.ARGUMENTS_IN:
        errors["arguments_in"] = ["Must be body (the arguments as a JSON object) or query (as query parameters)"]
    properties = (parameters or {}).get("properties") or {} if parameters is not None else None
    url = url_problems(tool.url, properties, customer)
    if not url and parameters is not None:
        required = set(parameters.get("required") or [])
        url = [f"{{{field}}}: a placeholder's property must be required (the URL cannot be built without it)"
               for field in httptools.placeholders(tool.url) if field not in required]
    if url:
        errors["url"] = url
    secret_names = list(tool.secret_headers_encrypted or {})
    headers = httptools.headers_problems(tool.headers, secret_names)
    if isinstance(tool.headers, dict):
        lowered = {n.lower() for n in secret_names}
        headers += [f"{name}: also a secret header; give it in one of the two" for name in tool.headers
                    if name.lower() in lowered]
    if headers:
        errors["headers"] = headers
    return errors


def url_problems(url, properties, customer: Customer) -> list[str]:
    problems = httptools.url_problems(url, properties)
    if problems:
        return problems
    host = (urlsplit(url).hostname or "").lower()
    allowed = customer.http_tool_hosts or []
    if not httptools.host_allowed(host, allowed):
        listed = ", ".join(allowed) if allowed else "none yet"
        return [f"The host {host} is not on this customer's allow-list for HTTP tools (allowed: {listed}); the "
                "platform's admins set it (PATCH /api/admin/customers/{id}/ http_tool_hosts)"]
    if settings.HTTP_TOOLS_ALLOW_PRIVATE:
        return []
    # lazy: runtime.broker loads AutoGen, which the web process loads only when it checks a URL
    from runtime.broker import public_addresses

    refusal, _ = public_addresses(url.replace("{", "").replace("}", ""))
    # A name that does not resolve yet is accepted (its calls fail until it does); a private one is not.
    if refusal and not refusal.startswith("cannot resolve"):
        return [refusal]
    return []


def _same_secret(token: str | None, value: str) -> bool:
    try:
        return token is not None and decrypt(token) == value
    except ValueError:  # stored under another FIELD_ENCRYPTION_KEY: set it again
        return False


def secret_headers_apply(tool: Tool, given) -> None:
    """Sets (a value) or removes (null) the named secret headers; the others keep theirs."""
    if given is None:
        return
    if not isinstance(given, dict):
        raise ValidationFailed(details={"secret_headers": ["Must be an object of header name -> value (null removes one)"]})
    stored = dict(tool.secret_headers_encrypted or {})
    problems = []
    for name, value in given.items():
        if value is None:
            stored.pop(name, None)
            continue
        found = httptools.header_problems(name, value)
        if found:
            problems += found
        elif not _same_secret(stored.get(name), value):
            stored[name] = encrypt(value)
    if problems:
        raise ValidationFailed(details={"secret_headers": problems})
    tool.secret_headers_encrypted = stored


def agents_using(tool: Tool, *, lock: bool = False) -> list[Agent]:
    """The customer's agents whose `tools` name this tool (in Python: SQLite has no JSON containment)."""
    agents = Agent.objects.filter(customer_id=tool.customer_id).order_by("name")
    if lock:
        agents = agents.select_for_update(of=("self",))
    return [agent for agent in agents if tool.name in (agent.tools or [])]


def _save(tool: Tool, customer: Customer) -> None:
    errors = tool_errors(tool, customer)
    if errors:
        raise ValidationFailed(details=errors)
    unique_name_save(tool, label="A tool")


@transaction.atomic
def tool_create(*, actor, customer: Customer, name: str, source: str = "", description: str = "",
                parameters: dict | None = None, timeout_seconds: int | None = None, kind: str = Tool.Kind.PYTHON,
                method: str | None = None, url: str = "", arguments_in: str | None = None,
                headers: dict | None = None, secret_headers: dict | None = None, request=None) -> Tool:
    customer = Customer.objects.select_for_update().get(pk=customer.pk)
    if Tool.objects.filter(customer=customer).count() >= settings.MAX_TOOLS_PER_CUSTOMER:
        raise QuotaExceeded(f"A customer may have at most {settings.MAX_TOOLS_PER_CUSTOMER} tools",
                            details={"quota": "MAX_TOOLS_PER_CUSTOMER", "limit": settings.MAX_TOOLS_PER_CUSTOMER})
    if kind not in Tool.Kind.values:
        raise ValidationFailed(details={"kind": [f"Must be one of {', '.join(Tool.Kind.values)}"]})
    tool = Tool(
        customer=customer, name=name, kind=kind, description=description or "",
        parameters={"type": "object", "properties": {}} if parameters is None else parameters, source=source or "",
        timeout_seconds=settings.TOOL_CALL_TIMEOUT_SECONDS if timeout_seconds is None else timeout_seconds,
        url=url or "", headers={} if headers is None else headers,
    )
    if kind == Tool.Kind.HTTP:
        tool.method = (method or "POST").upper() if isinstance(method or "POST", str) else method
        tool.arguments_in = arguments_in or httptools.default_arguments_in(tool.method)
    else:
        tool.method, tool.arguments_in = method or "", arguments_in or ""
    secret_headers_apply(tool, secret_headers)
    _save(tool, customer)
    audit_record(actor=actor, action="tool.create", target=f"tool:{tool.pk}", customer=customer, request=request,
                 details={"name": tool.name, "kind": tool.kind, "version": tool.version,
                          **({"secret_headers": tool.secret_header_names} if tool.secret_headers_encrypted else {})})
    return tool


def _defines(definition: dict) -> dict:
    """What a task runs of a definition (a rename alone makes no new version)."""
    return {k: v for k, v in definition.items() if k not in ("name", "version")}


@transaction.atomic
def tool_update(*, actor, tool: Tool, data: dict, request=None) -> Tool:
    """Changes the given fields. A definition change bumps the tool's version and makes a new version of
    every agent using it (their current version then runs the new definition; submitted tasks keep theirs)."""
    tool = Tool.objects.select_for_update().select_related("customer").get(pk=tool.pk)
    old_name, old_definition = tool.name, tool.definition()
    if "kind" in data and data["kind"] != tool.kind:
        raise ValidationFailed(details={"kind": [f"A tool's kind cannot change (this one is {tool.kind}); "
                                                 "create another tool"]})
    changed = []
    for field in TOOL_FIELDS:
        if field not in data:
            continue
        value = data[field]
        if field in ("description", "source", "url"):
            value = value or ""
        elif field == "timeout_seconds" and value is None:
            value = settings.TOOL_CALL_TIMEOUT_SECONDS
        elif field == "headers" and value is None:
            value = {}
        elif field == "method" and isinstance(value, str):
            value = value.upper()
        elif field == "arguments_in" and value is None and tool.kind == Tool.Kind.HTTP:
            value = httptools.default_arguments_in(data.get("method", tool.method))
        if getattr(tool, field) != value:
            setattr(tool, field, value)
            changed.append(field)
    if data.get("secret_headers") is not None:
        before = dict(tool.secret_headers_encrypted or {})
        secret_headers_apply(tool, data["secret_headers"])
        if tool.secret_headers_encrypted != before:
            changed.append("secret_headers")  # names only in the audit: never a value
    if "name" in changed:
        users = [agent.name for agent in agents_using(Tool(customer_id=tool.customer_id, name=old_name))]
        if users:
            raise Conflict(f"Tool {old_name!r} is used by agents: {', '.join(users)}; take it out of their tools "
                           "before renaming it", details={"agents": users})
    # A new secret value alone is no new definition (tasks read the values at each call); a new set of names is.
    redefined = _defines(tool.definition()) != _defines(old_definition)
    if redefined:
        tool.version += 1
    _save(tool, tool.customer)
    versions = {}
    if redefined:
        for agent in agents_using(tool, lock=True):
            versions[agent.name] = services.agent_tool_redefined(actor=actor, agent=agent, tool_name=tool.name,
                                                                  request=request).version
    audit_record(actor=actor, action="tool.update", target=f"tool:{tool.pk}", customer=tool.customer, request=request,
                 details={"changed": changed, "version": tool.version, "agent_versions": versions})
    return tool


@transaction.atomic
def tool_delete(*, actor, tool: Tool, request=None) -> None:
    tool = Tool.objects.select_for_update().select_related("customer").get(pk=tool.pk)
    users = [agent.name for agent in agents_using(tool)]
    if users:
        raise Conflict(f"Tool {tool.name!r} is used by agents: {', '.join(users)}", details={"agents": users})
    pk, name = tool.pk, tool.name
    tool.delete()
    audit_record(actor=actor, action="tool.delete", target=f"tool:{pk}", customer=tool.customer, request=request,
                 details={"name": name})
