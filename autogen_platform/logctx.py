"""Log context and formats: who and what a log line is about, in every process.

`bind(task=..., customer=..., agent=...)` (a context manager) and the request middleware set
context variables; `ContextFilter` copies them onto every record, so a line logged anywhere
below (a service, the ORM, a library) carries the request id, customer, task, agent and trace id
known at that point. Context variables follow asyncio tasks (each task has its own copy) but not
plain threads: code handing work to a thread pool passes `contextvars.copy_context().run`.

`JsonFormatter` writes one JSON object a line (LOG_FORMAT=json); `PlainFormatter` the readable
development lines, with the same fields appended. `RedactFilter` masks secrets a message or its
arguments may hold (a password, an API key, a bearer token, a model api_key) before any formatter
sees them.

The stdlib's logging with a small Formatter, rather than python-json-logger or structlog: the
fields are a handful, every library already logs through the stdlib, and the worker's sandbox
child imports this module's neighbours without a new dependency.
"""
import contextvars
import datetime
import json
import logging
import re
from contextlib import contextmanager

FIELDS = ("request_id", "customer", "user", "task", "agent", "trace_id")
_vars = {name: contextvars.ContextVar(f"log_{name}", default=None) for name in FIELDS}
# Set by autogen_platform.tracing when tracing is on: the current span's trace id, for lines with none bound.
trace_id_source = None


@contextmanager
def bind(**fields):
    """Within the block, every log record carries these fields (unknown names are refused)."""
    unknown = set(fields) - set(FIELDS)
    if unknown:
        raise TypeError(f"unknown log context field(s): {', '.join(sorted(unknown))}")
    tokens = [(_vars[name], _vars[name].set(value)) for name, value in fields.items()]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def set_fields(**fields) -> None:
    """Set fields for the rest of the current context (e.g. once a request's user is known)."""
    for name, value in fields.items():
        _vars[name].set(value)


def current() -> dict:
    """The fields known now, without the unset ones."""
    return {name: var.get() for name, var in _vars.items() if var.get() is not None}


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in _vars.items():
            if getattr(record, name, None) is None:
                setattr(record, name, var.get())
        if record.trace_id is None and trace_id_source is not None:
            record.trace_id = trace_id_source()
        # django.request logs after the middleware returned (outside its context): take the id from the request.
        request = getattr(record, "request", None)
        if record.request_id is None and request is not None:
            record.request_id = getattr(request, "request_id", None)
        return True


# key=value / "key": "value" / Authorization: Bearer x / ?token=x, for the secret names below.
SECRET_NAMES = r"password|passwd|api[_-]?key|apikey|secret|token|access|refresh|authorization|x-admin-key|x-api-key|cookie|sessionid"
_SECRET_PAIR = re.compile(
    rf"""(?P<key>(?<![A-Za-z0-9])["']?(?:{SECRET_NAMES})["']?\s*[:=]\s*)(?P<quote>["']?)(?P<value>(?:(?:bearer|token|basic|api-key)\s+)?[^\s"'&,;}}]+)""",
    re.IGNORECASE,
)
_BEARER = re.compile(r"(?P<key>\b(?:bearer|token|basic|api-key)\s+)(?P<quote>)(?P<value>[A-Za-z0-9._~+/=-]{8,})", re.IGNORECASE)
# JWTs (three base64url parts) wherever they stand.
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
MASK = "[redacted]"


def redact(text: str) -> str:
    text = _SECRET_PAIR.sub(lambda m: f"{m['key']}{m['quote']}{MASK}", text)
    text = _BEARER.sub(lambda m: f"{m['key']}{MASK}", text)
    return _JWT.sub(MASK, text)


class RedactFilter(logging.Filter):
    """Masks secrets in the rendered message and the exception text of every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string is logged as is, like the stdlib does
            message = str(record.msg)
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


_STANDARD = set(vars(logging.LogRecord("x", 0, "x", 0, "x", None, None))) | {"message", "asctime", *FIELDS}


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, the context fields known, and `extra` values."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                out[name] = value
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_") and key not in out:
                out[key] = value if isinstance(value, (str, int, float, bool, type(None))) else redact(str(value))
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(self.formatException(record.exc_info))
        if record.exc_text:
            out["exception"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, default=str, ensure_ascii=False)


class PlainFormatter(logging.Formatter):
    """`time LEVEL logger message [request_id=... task=...]` for development."""

    def __init__(self):
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = " ".join(f"{n}={getattr(record, n)}" for n in FIELDS if getattr(record, n, None) is not None)
        if not context:
            return line
        head, sep, tail = line.partition("\n")
        return f"{head} [{context}]{sep}{tail}"


def logging_config(*, fmt: str, level: str, rq_level: str) -> dict:
    """settings.LOGGING: one stderr handler with the context and redaction filters."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "context": {"()": "autogen_platform.logctx.ContextFilter"},
            "redact": {"()": "autogen_platform.logctx.RedactFilter"},
        },
        "formatters": {
            "json": {"()": "autogen_platform.logctx.JsonFormatter"},
            "plain": {"()": "autogen_platform.logctx.PlainFormatter"},
        },
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": "json" if fmt == "json" else "plain",
                "filters": ["context", "redact"],
            }
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {"django.db.backends": {"level": "WARNING"}, "rq.worker": {"level": rq_level},
                    "axes": {"level": "ERROR"},
                    # the HTTP client logs every URL it calls at INFO (an HTTP tool's arguments sit in its path):
                    # model calls and tool calls have the platform's own events, metrics and spans instead
                    **{name: {"level": "WARNING"} for name in ("httpx", "httpx2", "httpcore")}},
    }
