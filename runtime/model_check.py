"""What a model configuration needs before a task can use it, what went wrong when a model call failed,
(the one-call connection test of `POST /api/models/{id}/test/` is runtime.model_test).

A failed call used to read `model_error: <name>: Connection error.`; `describe_failure` names the endpoint
and the cause (connection refused, DNS, TLS, timeout, the HTTP status with the provider's own message).
"""
import asyncio
import errno
import socket
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

OPENAI_BASE_URL = "https://api.openai.com/v1"
# Hosted OpenAI-compatible endpoints that refuse a request without an API key. Any other endpoint (a local
# Ollama, vLLM, llama.cpp server) may run without one.
KEYED_HOSTS = (
    "api.openai.com", "openai.azure.com", "generativelanguage.googleapis.com", "api.anthropic.com", "api.llama.com",
    "api.groq.com", "api.mistral.ai", "api.together.xyz", "api.together.ai", "openrouter.ai", "api.deepseek.com",
    "api.fireworks.ai", "api.x.ai", "api.perplexity.ai", "api.cohere.ai", "api.cohere.com",
)


def endpoint_of(config: dict) -> str:
    """The URL a configuration's calls go to, for people (an empty base_url is OpenAI's, or the provider
    AutoGen picks from the model name)."""
    if config.get("provider") == "replay":
        return "replay (no network)"
    base_url = config.get("base_url") or ""
    if base_url:
        return base_url
    model = str(config.get("model") or "")
    try:
        from autogen_ext.models.openai import _model_info

        if model.startswith("gemini-"):
            return _model_info.GEMINI_OPENAI_BASE_URL
        if model.startswith("claude-"):
            return _model_info.ANTHROPIC_OPENAI_BASE_URL
        if model.startswith("Llama-"):
            return _model_info.LLAMA_API_BASE_URL
    except ImportError:  # pragma: no cover - autogen-ext is a requirement
        pass
    return OPENAI_BASE_URL


def needs_api_key(base_url: str) -> bool:
    """Whether the endpoint refuses calls without a key: OpenAI's (an empty base_url) and the hosted providers."""
    if not base_url:
        return True
    host = (urlsplit(base_url).hostname or "").lower()
    return any(host == known or host.endswith("." + known) for known in KEYED_HOSTS)


def known_model(model: str) -> bool:
    """Whether AutoGen knows the model's capabilities (autogen_ext.models.openai's model info table)."""
    from autogen_ext.models.openai import _model_info

    try:
        _model_info.get_info(model)
    except (ValueError, KeyError):
        return False
    return True


def calls_functions(*, provider: str, model: str, model_info) -> bool:
    """Whether AutoGen lets an agent on this configuration call tools: its model_info says so, or AutoGen's
    table for a model it knows. Replay clients and unknown models without model_info (refused on their own)
    are not held against an agent."""
    if provider != "openai":
        return True
    if isinstance(model_info, dict) and model_info:
        return bool(model_info.get("function_calling"))
    from autogen_ext.models.openai import _model_info  # lazy: as in known_model (AutoGen is heavy to import)

    try:
        return bool(_model_info.get_info(model).get("function_calling", True))
    except (ValueError, KeyError):
        return True


def config_problems(*, provider: str, model: str, base_url: str, model_info, has_api_key: bool | None) -> dict:
    """Field -> messages for what a run of an openai configuration would miss; `has_api_key` None: not known
    here (not checked)."""
    if provider != "openai" or not (model or "").strip():
        return {}
    errors = {}
    if not model_info and not known_model(model):
        errors["model_info"] = [
            f"Required: AutoGen does not know the model {model!r}, so give its capabilities: "
            "{vision, function_calling, json_output, family (e.g. unknown), structured_output}"
        ]
    if has_api_key is False and needs_api_key(base_url):
        errors["api_key"] = [f"Required: the endpoint {base_url or OPENAI_BASE_URL} refuses calls without an API key"]
    return errors


# -- failures -------------------------------------------------------------------------------------


@dataclass
class Failure:
    code: str  # connection_refused, dns_error, tls_error, timeout, http_error, connection_error, model_error
    cause: str

    def message(self, name: str, endpoint: str) -> str:
        return f"Model {name!r} at {endpoint}: {self.cause}"


def _chain(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _provider_message(body) -> str:
    if isinstance(body, dict):
        inner = body.get("error") if isinstance(body.get("error"), dict) else body
        message = inner.get("message") or body.get("message") or body.get("detail") or body.get("error")
        if message:
            return str(message)
    if isinstance(body, str) and body.strip():
        return body.strip()
    return ""


def describe_failure(exc: BaseException, *, timeout_seconds: float | None = None) -> Failure:
    """The cause of a failed model call, for the task's error message and the connection test."""
    chain = list(_chain(exc))
    for item in chain:
        status = getattr(item, "status_code", None)
        if isinstance(status, int) and status >= 400:
            text = _provider_message(getattr(item, "body", None)) or str(getattr(item, "message", "") or item)
            return Failure("http_error", f"HTTP {status} from the provider: {text[:1000]}")
    for item in chain:
        if isinstance(item, (asyncio.TimeoutError, TimeoutError)) or "Timeout" in type(item).__name__:
            after = f" in {timeout_seconds:g} s (MODEL_CALL_TIMEOUT_SECONDS)" if timeout_seconds else ""
            return Failure("timeout", f"no answer{after}: the endpoint accepted the request but did not respond")
    for item in chain:
        if isinstance(item, socket.gaierror) or "name resolution" in str(item).lower() \
                or "name or service not known" in str(item).lower() or "nodename nor servname" in str(item).lower():
            return Failure("dns_error", f"the host name does not resolve (DNS): {_reason(item)}")
    for item in chain:
        if isinstance(item, ssl.SSLError) or "certificate" in str(item).lower() or "ssl" in type(item).__name__.lower():
            return Failure("tls_error", f"TLS failed: {_reason(item)}")
    for item in chain:
        if isinstance(item, ConnectionRefusedError) or getattr(item, "errno", None) == errno.ECONNREFUSED \
                or "connection refused" in str(item).lower() or "connect call failed" in str(item).lower():
            return Failure("connection_refused", "connection refused: nothing listens at that address and port")
    for item in chain:
        if isinstance(item, OSError) and str(item):
            return Failure("connection_error", f"cannot connect: {_reason(item)}")
    innermost = chain[-1] if chain else exc
    if innermost is not exc and str(innermost):
        return Failure("connection_error" if "Connection" in type(exc).__name__ else "model_error",
                       f"{exc} ({type(innermost).__name__}: {_reason(innermost)})")
    return Failure("model_error", f"{type(exc).__name__}: {_reason(exc)}")


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text[:500]
