"""Traces (OpenTelemetry): off by default, on in every process when OTEL_EXPORTER_OTLP_ENDPOINT (or
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set; spans go out over OTLP/HTTP (protobuf) in batches.

Every task is one trace. The API request that creates it is the root (django instrumentation);
task_create opens a `task.create` span under it and stores that span's W3C `traceparent` on the
task row, so the worker that runs the task (another process, maybe another host) continues the
same trace: `runtime.telemetry.TaskTrace` adds the queue wait, the sandbox spawn, each model call
the broker makes (GenAI semantic conventions) and each agent turn and tool call. A task created
outside a request (a schedule, the CLI) starts its own trace at `task.create`. The task's API
representation shows the trace id (`trace_id`), and so do its JSON log lines.

Instrumented libraries, in the web process: Django (server spans; probes and scrapes excluded),
psycopg and Redis (client spans under a request). Not in the workers: their queries and Redis
commands run on shared threads and loops outside any task's span (batched for many tasks), so
they would only make orphan spans. The model providers' HTTP requests are, in every process: the
openai package here speaks httpx2, which opentelemetry-instrumentation-httpx patches with its
HTTPX2ClientInstrumentor; each request (one per attempt, the client's own retries included) is a
child of the broker's `chat` span.

Sampling: child spans follow their parent; a root span is kept unless it is a client span (a query
or a Redis command outside any request: a WebSocket consumer's, say), which would make one trace
per query and bury the tasks' traces.

The SDK reads its usual variables (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES,
OTEL_EXPORTER_OTLP_HEADERS, OTEL_BSP_SCHEDULE_DELAY, ...); OTEL_SDK_DISABLED=true turns it off, and
OTEL_PYTHON_DISABLED_INSTRUMENTATIONS (django, psycopg, redis, httpx) leaves out a library's spans.
"""
import logging
import os

from . import logctx

logger = logging.getLogger(__name__)

INSTRUMENTATION = "autogen_platform"
EXCLUDED_URLS = "healthz,readyz,metrics,static/"
_configured = False


def enabled() -> bool:
    """Whether this process exports traces (read from the environment, once per call: cheap)."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return bool(os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def process_kind() -> str:
    """What this process is, for service.name: a manage.py command's name (runworker, reaper, ...) or web."""
    import sys

    argv = sys.argv or [""]
    if argv[0].endswith("manage.py") and len(argv) > 1:
        return {"runworker": "worker"}.get(argv[1], argv[1])
    return "web"


def active() -> bool:
    """setup() installed the SDK in this process."""
    return _configured


def setup(service: str | None = None) -> bool:
    """Install the SDK and the library instrumentations in this process, once; no-op when tracing is off.
    `service` names the process kind (web, worker, ...) when OTEL_SERVICE_NAME does not."""
    global _configured
    if _configured or not enabled():
        return _configured
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased

    service = service or process_kind()
    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": f"autogen-platform-{service}"}
    provider = TracerProvider(resource=Resource.create(attributes), sampler=ParentBased(root=_root_sampler()))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _configured = True
    if service == "web":
        # Only there do queries and Redis commands run under a span (a request's); in a worker, a reaper or
        # a command they would all be orphans, dropped by the sampler after costing their wrapping.
        _instrument_libraries()
    _instrument_model_http()

    logctx.trace_id_source = current_trace_id
    logger.info("tracing on: spans go to %s", os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
                or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))
    return True


def _disabled(name: str) -> bool:
    """OTEL_PYTHON_DISABLED_INSTRUMENTATIONS (OpenTelemetry's own variable, e.g. `psycopg,redis`) names it."""
    listed = os.environ.get("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "")
    return name in {part.strip().lower() for part in listed.split(",")}


def _instrument_libraries() -> None:
    from opentelemetry.instrumentation.django import DjangoInstrumentor
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    # Before Django loads its middleware (AppConfig.ready runs first): it inserts its own at the top.
    if not _disabled("django"):
        DjangoInstrumentor().instrument(excluded_urls=os.environ.get("OTEL_PYTHON_DJANGO_EXCLUDED_URLS", EXCLUDED_URLS))
    # Most of a traced request's cost: one span per query and per Redis command (docs/benchmarks.md)
    if not _disabled("psycopg"):
        PsycopgInstrumentor().instrument()
    if not _disabled("redis"):
        RedisInstrumentor().instrument()


def _instrument_model_http() -> None:
    """The HTTP requests of the model providers' clients (openai here speaks httpx2): in a worker they run
    under the broker's `chat` span (runtime.telemetry makes it current), in the web process under the
    request (POST /api/models/{id}/test/)."""
    if _disabled("httpx"):
        return
    try:
        from opentelemetry.instrumentation.httpx import HTTPX2ClientInstrumentor
    except ImportError:  # an installation without it, or without httpx2: the chat span still times the call
        return
    HTTPX2ClientInstrumentor().instrument()


def _root_sampler():
    """A root span is kept unless it is a client span (see the module docstring)."""
    from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
    from opentelemetry.trace import SpanKind

    class NoOrphanClientSpans(Sampler):
        def should_sample(self, parent_context, trace_id, name, kind=None, attributes=None, links=None, trace_state=None):
            if kind == SpanKind.CLIENT:
                return SamplingResult(Decision.DROP, None, trace_state)
            return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes, trace_state)

        def get_description(self) -> str:
            return "NoOrphanClientSpans"

    return NoOrphanClientSpans()


_tracer = None


def tracer():
    global _tracer
    if _tracer is None:
        from opentelemetry import trace

        _tracer = trace.get_tracer(INSTRUMENTATION)
    return _tracer


def traceparent_of(span) -> str:
    """The W3C traceparent header value of a span ("" for a span that is not recorded)."""
    context = span.get_span_context()
    if not context.is_valid or not span.is_recording():
        return ""
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def context_from(traceparent: str):
    """The OpenTelemetry context a traceparent continues (None: a new trace)."""
    if not traceparent:
        return None
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return TraceContextTextMapPropagator().extract({"traceparent": traceparent})  # validates it, too


def trace_id_of(traceparent: str) -> str | None:
    parts = (traceparent or "").split("-")
    return parts[1] if len(parts) == 4 and len(parts[1]) == 32 else None


def current_trace_id() -> str | None:
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    return f"{context.trace_id:032x}" if context.is_valid else None


class TaskCreation:
    """The `task.create` span of one task: `traceparent` goes on the row, end() closes the span."""

    def __init__(self):
        from opentelemetry.trace import SpanKind

        self.span = tracer().start_span("task.create", kind=SpanKind.PRODUCER)
        self.traceparent = traceparent_of(self.span)

    def end(self, task_id: int | None, customer_id: int | None = None) -> None:
        if task_id is not None:
            self.span.set_attribute("platform.task.id", task_id)
        if customer_id is not None:
            self.span.set_attribute("platform.customer.id", customer_id)
        self.span.end()


class _NoTaskCreation:
    traceparent = ""

    def end(self, task_id=None, customer_id=None) -> None:
        pass


_NO_TASK_CREATION = _NoTaskCreation()


def task_creation():
    """Start a task's trace (under the current request's span, if any); a no-op when tracing is off."""
    return TaskCreation() if _configured else _NO_TASK_CREATION
