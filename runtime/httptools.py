"""Customers' HTTP tools: the rules of a definition and the call itself, made by the worker.

A task's child (the sandbox) never makes the request: it sends the call's arguments over its channel
(op "tool") and the supervisor answers with the result (op "tool_result"), like a model call. Here,
in the worker, the call is checked again at call time, with what the database says now:

- the URL's host must be on the customer's allow-list (Customer.http_tool_hosts, set by the platform's
  admins), and, with HTTP_TOOLS_ALLOW_PRIVATE off, resolve only to public addresses (the check model
  endpoints and webhooks use: runtime.broker.public_addresses); the connection goes to the very address
  that was checked (no second DNS answer between check and call), TLS still verified for the host name;
- redirects are not followed; the whole exchange ends within the tool's timeout_seconds; at most
  HTTP_TOOL_MAX_RESPONSE_BYTES of the answer are read;
- secret headers are decrypted by the task store for this call only; they are never sent to the child,
  never logged, and never stored in an event.

Every failure is the call's result for the model (is_error), saying what failed: refused, timeout,
HTTP status, or the connection. The task goes on.
"""
import asyncio
import ipaddress
import json
import re
import string
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
ARGUMENTS_IN = ("body", "query")
USER_AGENT = "autogen-platform-tools/1"
MAX_HEADERS = 20
MAX_HEADER_VALUE_CHARS = 4096
MAX_HOSTS = 100
HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$")
# Headers the platform sets itself (or that would let a definition smuggle another request).
RESERVED_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "upgrade", "te", "trailer",
                    "keep-alive", "expect", "proxy-authorization", "proxy-connection"}
HOST_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


# -- the allow-list --------------------------------------------------------------------------------

def host_entry_problem(entry) -> str | None:
    """Why an allow-list entry is not one: a host name ("api.example.com"), "*.example.com" (its
    subdomains, not example.com itself) or an IP address."""
    if not isinstance(entry, str) or not entry or len(entry) > 253:
        return "must be a host name, *.domain or an IP address"
    try:
        ipaddress.ip_address(entry)
        return None
    except ValueError:
        pass
    name = entry[2:] if entry.startswith("*.") else entry
    labels = name.split(".")
    if entry != entry.lower() or not all(HOST_LABEL.match(label) for label in labels):
        return (f"{entry!r} is not a host name (lower-case letters, digits, - and dots), *.domain or an "
                "IP address; no scheme, port or path")
    if entry.startswith("*.") and len(labels) < 2:
        return f"{entry!r}: a wildcard covers the subdomains of a domain with at least two labels, e.g. *.example.com"
    return None


def host_allowed(host: str, entries) -> bool:
    host = (host or "").lower().rstrip(".")
    for entry in entries or []:
        if entry.startswith("*."):
            if host.endswith(entry[1:]) and host != entry[2:]:
                return True
        elif host == entry:
            return True
    return False


# -- the definition --------------------------------------------------------------------------------

def placeholders(url: str) -> list[str]:
    """The {names} of a URL template, in order."""
    try:
        return [field for _, field, _, _ in string.Formatter().parse(url) if field is not None]
    except ValueError:
        return []


def url_problems(url, properties: dict | None) -> list[str]:
    if not isinstance(url, str) or not url:
        return ["Required for an http tool: the URL it calls, e.g. https://api.example.com/v1/orders/{order_id}"]
    if len(url) > 2000:
        return ["At most 2000 characters"]
    try:
        fields = [field for _, field, _, _ in string.Formatter().parse(url) if field is not None]
    except ValueError as exc:
        return [f"Not a valid template: {exc} (a literal brace is written {{{{ or }}}})"]
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return [f"{url!r} is not an http:// or https:// URL"]
    if "{" in parts.netloc or "}" in parts.netloc:
        return ["The host cannot hold {placeholders}: arguments fill the path and query only"]
    if parts.username or parts.password:
        return ["Credentials do not stand in the URL: send them in a secret header"]
    if parts.fragment:
        return ["A URL fragment (#...) is never sent; remove it"]
    try:
        parts.port
    except ValueError as exc:
        return [f"Bad port: {exc}"]
    problems = []
    for field in fields:
        if not field.isidentifier():
            problems.append(f"{{{field}}}: a placeholder is the name of one of the parameters' properties")
        elif properties is not None and field not in properties:
            problems.append(f"{{{field}}} is not one of the parameters' properties")
    return problems


def headers_problems(headers, secret_names=()) -> list[str]:
    if not isinstance(headers, dict):
        return ["Must be an object of header name -> value"]
    problems = []
    if len(headers) + len(secret_names) > MAX_HEADERS:
        problems.append(f"At most {MAX_HEADERS} headers, secret ones included")
    for name, value in headers.items():
        problems += header_problems(name, value)
    return problems


def header_problems(name, value) -> list[str]:
    if not HEADER_NAME.match(name or ""):
        return [f"{name!r}: not a header name"]
    if name.lower() in RESERVED_HEADERS:
        return [f"{name}: set by the platform; it cannot be given"]
    if not isinstance(value, str) or not value or len(value) > MAX_HEADER_VALUE_CHARS:
        return [f"{name}: the value must be a non-empty string of at most {MAX_HEADER_VALUE_CHARS} characters"]
    if any(c in value for c in "\r\n\0"):
        return [f"{name}: the value cannot hold line breaks or NUL"]
    return []


def default_arguments_in(method: str) -> str:
    return "query" if method in ("GET", "DELETE") else "body"


# -- the call --------------------------------------------------------------------------------------

@dataclass
class Answer:
    ok: bool
    text: str
    failure: str | None = None  # refused | arguments | timeout | http_status | connection
    status: int | None = None

    def message(self) -> dict:
        return {"ok": self.ok, "text": self.text, "failure": self.failure, "status": self.status}


class _Refused(Exception):
    pass


def build_request(definition: dict, arguments: dict) -> tuple[str, dict | None, dict | None]:
    """(url with the placeholders filled, query parameters, JSON body) of one call."""
    if not isinstance(arguments, dict):
        raise _Refused("the arguments are not an object")
    fields = placeholders(definition["url"])
    filled = {}
    for field in fields:
        value = arguments.get(field)
        if value is None or isinstance(value, (dict, list)):
            raise _Refused(f"the argument {field!r} of the URL is missing or not a single value")
        text = json.dumps(value) if isinstance(value, bool) else str(value)
        if text in ("", ".", ".."):
            raise _Refused(f"the argument {field!r} of the URL cannot be {text!r}")
        filled[field] = quote(text, safe="")
    url = definition["url"].format(**filled) if fields else definition["url"]
    rest = {k: v for k, v in arguments.items() if k not in fields}
    if definition.get("arguments_in") == "query":
        params = {k: (json.dumps(v) if isinstance(v, (dict, bool)) or v is None else v) for k, v in rest.items()}
        return url, params or None, None
    return url, None, rest


_SSL = None


def _ssl_context():
    global _SSL
    if _SSL is None:
        import httpx2  # lazy: only a worker that calls an HTTP tool loads the client

        _SSL = httpx2.create_ssl_context()
    return _SSL


async def call(definition: dict, arguments, *, hosts: list, secrets: dict | None, allow_private: bool,
               max_bytes: int) -> Answer:
    """One call of an HTTP tool: never raises, the Answer says what happened. secrets: the secret headers'
    values (None: the tool's row is gone, so those it names are missing)."""
    name = definition.get("name") or "tool"
    timeout = max(1, int(definition.get("timeout_seconds") or 30))
    try:
        url, params, body = build_request(definition, arguments)
    except _Refused as exc:
        return Answer(False, f"Tool {name}: {exc}.", "arguments")
    host = (urlsplit(url).hostname or "").lower()
    if not host_allowed(host, hosts):
        return Answer(False, f"Tool {name}: refused: the host {host} is not on this customer's allow-list for "
                             "HTTP tools (an admin sets it).", "refused")
    missing = [h for h in definition.get("secret_headers") or [] if h not in (secrets or {})]
    if missing:
        return Answer(False, f"Tool {name}: refused: its secret header(s) {', '.join(missing)} are no longer "
                             "stored (the tool was changed or deleted).", "refused")
    headers = {**(definition.get("headers") or {}), **{h: (secrets or {})[h] for h in definition.get("secret_headers") or []}}
    try:
        async with asyncio.timeout(timeout):
            answer = await _request(name, definition.get("method") or "POST", url, params, body, headers,
                                    allow_private=allow_private, max_bytes=max_bytes)
    except TimeoutError:
        return Answer(False, f"Tool {name} timed out after {timeout} s: no complete answer from {host}; the call "
                             "was stopped.", "timeout")
    # An endpoint that echoes the request's headers does not hand a secret to the model (or the events).
    for value in (secrets or {}).values():
        if len(value) >= 4 and value in answer.text:
            answer.text = answer.text.replace(value, "[secret header value]")
    return answer


async def _request(name, method, url, params, body, headers, *, allow_private, max_bytes) -> Answer:
    import httpx2  # lazy: only a worker that calls an HTTP tool loads the client

    from .broker import public_addresses  # lazy: the broker loads AutoGen, which a web process does not need

    parts = urlsplit(url)
    refusal, addresses = await asyncio.to_thread(public_addresses, url, allow_private=allow_private)
    if refusal:
        return Answer(False, f"Tool {name}: refused: {refusal}.", "refused")
    # The connection goes to the address that was checked; the Host header and TLS name stay the host's.
    address = addresses[0]
    pinned = httpx2.URL(url).copy_with(host=address)
    extensions = {"sni_hostname": parts.hostname} if parts.scheme == "https" else {}
    request_headers = {"User-Agent": USER_AGENT, **headers, "Host": parts.netloc.rsplit("@", 1)[-1]}
    async with httpx2.AsyncClient(follow_redirects=False, trust_env=False, verify=_ssl_context(), timeout=None) as client:
        request = client.build_request(method, pinned, params=params, json=body, headers=request_headers,
                                       extensions=extensions)
        try:
            response = await client.send(request, stream=True)
        except httpx2.HTTPError as exc:
            return Answer(False, f"Tool {name}: the request to {parts.hostname} failed: {type(exc).__name__}: "
                                 f"{str(exc)[:300]}", "connection")
        try:
            data, cut = await _read(response, max_bytes)
        except httpx2.HTTPError as exc:
            return Answer(False, f"Tool {name}: the answer of {parts.hostname} broke off: {type(exc).__name__}",
                          "connection", response.status_code)
        finally:
            await response.aclose()
    text = data.decode(response.encoding or "utf-8", errors="replace")
    status = response.status_code
    if 300 <= status < 400:
        location = response.headers.get("location", "")[:200]
        return Answer(False, f"Tool {name}: HTTP {status} from {parts.hostname}: a redirect to {location!r}, not "
                             "followed.", "http_status", status)
    if not 200 <= status < 300:
        shown = text[:1000] + ("…" if len(text) > 1000 or cut else "")
        return Answer(False, f"Tool {name}: HTTP {status} {response.reason_phrase} from {parts.hostname}"
                             + (f": {shown}" if shown.strip() else "."), "http_status", status)
    if cut:
        text += f"\n[response cut at {max_bytes} bytes]"
    return Answer(True, text, None, status)


async def _read(response, max_bytes: int) -> tuple[bytes, bool]:
    data = bytearray()
    async for chunk in response.aiter_bytes():
        data += chunk
        if len(data) > max_bytes:
            return bytes(data[:max_bytes]), True
    return bytes(data), False
