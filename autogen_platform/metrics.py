"""The platform's Prometheus metrics: the metric objects, one small recording function per thing that
happens, and the /metrics view.

Everything is recorded where it happens, in whichever process it happens: the ASGI server, each
task worker, the reaper. With PROMETHEUS_MULTIPROC_DIR set (runplatform sets it for its children,
under var/prometheus, emptied at each start) every process writes its values to files there and a
scrape of any one process' /metrics adds them up (prometheus_client's multiprocess mode), so nothing
is lost or counted twice. Without it each process reports its own (one process per host, or tests).

No label holds a task id, a name or free text: outcomes, error codes, providers and reasons are mapped
onto fixed sets (anything else is "other"). The one id is the customer's, on the per-customer families
(platform_customer_*), bounded by METRICS_CUSTOMERS (see customer_label). A scrape reads no table: the only figures computed at
scrape time (tasks.metrics) are tasks queued/running (one COUNT on the indexed status column), the
queue depth (one LLEN) and the live workers' slots (one HGETALL of the reports every worker writes
each second: true across hosts, and a dead worker's report goes stale by itself), none of which
grows with the finished tasks.

Imports nothing above the runtime: runtime/ and tasks/ both record through these functions.
"""
import os

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# The runtime's vocabulary (runtime.outcomes: ErrorCode, StopReason), written out because this module imports
# no app; tests/test_metrics.py keeps the two in step.
OUTCOMES = ("succeeded", "failed", "cancelled", "timed_out")
ERROR_CODES = (
    "timeout", "memory_limit", "cpu_limit", "token_budget", "killswitch", "cancelled", "agent_error", "model_error",
    "worker_lost", "sandbox_error", "output_limit", "input_timeout",
)
PROVIDERS = ("openai", "replay")
MODEL_OUTCOMES = ("ok", "error", "timeout", "cancelled")
KILL_REASONS = (*ERROR_CODES, "restart", "shutdown", "interrupt", "rollback")
STARTS = ("warm", "cold")
TOKEN_KINDS = ("prompt", "completion")
OTHER = "other"

SECONDS_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
SHORT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
MODEL_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120)
MEMORY_BUCKETS = tuple(mb * 1024 * 1024 for mb in (16, 32, 64, 128, 256, 512, 1024, 2048, 4096))

TASKS_STARTED = Counter("platform_tasks_started", "Tasks a worker started running")
TASKS_FINISHED = Counter(
    "platform_tasks_finished", "Tasks that reached a final status, by status and error code (none: no error)",
    ["outcome", "code"],
)
TASK_DURATION = Histogram("platform_task_duration_seconds", "Wall time of a task from running to finished",
                          buckets=SECONDS_BUCKETS)
TASK_QUEUE_WAIT = Histogram("platform_task_queue_wait_seconds", "Time from a task's creation until a worker ran it",
                            buckets=SECONDS_BUCKETS)
MODEL_REQUEST_DURATION = Histogram(
    "platform_model_request_duration_seconds", "Model calls made by the broker, by provider and outcome",
    ["provider", "outcome"], buckets=MODEL_BUCKETS,
)
MODEL_TOKENS = Counter("platform_model_tokens", "Model tokens used, by kind (prompt, completion)", ["kind"])
SANDBOX_SPAWN = Histogram("platform_sandbox_spawn_seconds", "Time to start a task's sandbox, warm (zygote) or cold",
                          ["start"], buckets=SHORT_BUCKETS)
SANDBOX_CPU = Histogram("platform_sandbox_cpu_seconds", "CPU seconds a finished sandbox used", buckets=SECONDS_BUCKETS)
SANDBOX_MEMORY = Histogram("platform_sandbox_peak_memory_bytes", "Peak memory of a finished sandbox",
                           buckets=MEMORY_BUCKETS)
SANDBOX_KILLS = Counter("platform_sandbox_kills", "Sandboxes stopped before their task ended on its own, by reason",
                        ["reason"])
EVENTS_WRITTEN = Counter("platform_events_written", "Task events stored")
# Per customer, where an operator needs it (who uses the tokens, who runs the tasks): families of their own,
# so the fleet-wide ones keep their few series; the `customer` label is bounded (customer_label).
CUSTOMER_TASKS_STARTED = Counter("platform_customer_tasks_started", "Tasks a worker started running, by customer",
                                 ["customer"])
CUSTOMER_TASKS_FINISHED = Counter("platform_customer_tasks_finished",
                                  "Tasks that reached a final status, by customer and status", ["customer", "outcome"])
CUSTOMER_MODEL_TOKENS = Counter("platform_customer_model_tokens", "Model tokens used, by customer and kind",
                                ["customer", "kind"])
STREAM_CONNECTIONS = Gauge("platform_stream_connections", "Open live connections, by kind (websocket, sse)",
                           ["kind"], multiprocess_mode="livesum")


WEBHOOK_RESULTS = ("2xx", "3xx", "4xx", "5xx", "timeout", "error")
WEBHOOK_OUTCOMES = ("succeeded", "gave_up", "not_sent")
WEBHOOK_ATTEMPT_DURATION = Histogram(
    "platform_webhook_attempt_duration_seconds",
    "Webhook POSTs made by the delivery workers, by result (the status class, timeout, or error: no answer)",
    ["result"], buckets=SHORT_BUCKETS,
)
WEBHOOK_DELIVERIES_FINISHED = Counter(
    "platform_webhook_deliveries_finished",
    "Webhook deliveries that ended, by outcome (succeeded; gave_up after the last attempt; not_sent: refused address,"
    " disabled webhook or unreadable secret)", ["outcome"],
)
WEBHOOK_DELIVERY_ATTEMPTS = Histogram("platform_webhook_delivery_attempts", "Attempts an ended webhook delivery took",
                                      buckets=(1, 2, 3, 4, 5, 6, 8, 10, 15, 20))


def _start_at_zero() -> None:
    """Every label value of the fleet-wide families' fixed sets starts at 0 in every process. Prometheus sees a
    series appear with its first value and counts no increase for it: without these zeros, the first task of each
    outcome and error code, the first model error, the first kill of each reason... would never show in rate()
    or increase(), nor in the alerts built on them (seen by hand: one model_error, one timeout and one cancel
    left PlatformTasksFailing at 0). The per-customer families cannot (their customers are not known in advance)."""
    for outcome in OUTCOMES:
        for code in ("none", *ERROR_CODES):
            TASKS_FINISHED.labels(outcome, code)
    for provider in PROVIDERS:
        for outcome in MODEL_OUTCOMES:
            MODEL_REQUEST_DURATION.labels(provider, outcome)
    for kind in TOKEN_KINDS:
        MODEL_TOKENS.labels(kind)
    for start in STARTS:
        SANDBOX_SPAWN.labels(start)
    for reason in KILL_REASONS:
        SANDBOX_KILLS.labels(reason)
    for result in WEBHOOK_RESULTS:
        WEBHOOK_ATTEMPT_DURATION.labels(result)
    for outcome in WEBHOOK_OUTCOMES:
        WEBHOOK_DELIVERIES_FINISHED.labels(outcome)
    for kind in ("websocket", "sse"):
        STREAM_CONNECTIONS.labels(kind)


_start_at_zero()


def _one_of(value, allowed) -> str:
    value = str(value) if value is not None else ""
    return value if value in allowed else OTHER


class _CustomerLabels:
    """The `customer` label value of a customer's figures: its id when METRICS_CUSTOMERS gives it one, else
    "other" (the totals stay true either way).

    METRICS_CUSTOMERS is `all` (the default: every customer, up to METRICS_CUSTOMERS_MAX distinct ones per
    process; any further one counts as "other" and a warning is logged once), a comma-separated list of
    customer ids (those only), or `none` (every customer is "other"). Ids, never names: a name is the
    customer's free text. Decided per process from settings and what it has seen, without a query: the
    recording functions run on the task path."""

    def __init__(self):
        self.mode = None
        self.listed: frozenset = frozenset()
        self.limit = 0
        self.seen: set = set()
        self.warned = False

    def _configure(self) -> None:
        from django.conf import settings

        raw = str(getattr(settings, "METRICS_CUSTOMERS", "all") or "none").strip().lower()
        self.limit = int(getattr(settings, "METRICS_CUSTOMERS_MAX", 100))
        if raw in ("all", "none"):
            self.mode = raw
        else:
            self.mode = "list"
            self.listed = frozenset(part.strip() for part in raw.split(",") if part.strip())

    def settings(self) -> tuple[str, frozenset, int]:
        """(mode: all, list or none; the listed ids; the limit), for figures computed at scrape time."""
        if self.mode is None:
            self._configure()
        return self.mode, self.listed, self.limit

    def __call__(self, customer_id) -> str:
        if self.mode is None:
            self._configure()
        if customer_id is None or self.mode == "none":
            return OTHER
        value = str(customer_id)
        if self.mode == "list":
            return value if value in self.listed else OTHER
        if value in self.seen:
            return value
        if len(self.seen) < self.limit:
            self.seen.add(value)
            return value
        if not self.warned:
            self.warned = True
            import logging

            logging.getLogger(__name__).warning(
                "more than METRICS_CUSTOMERS_MAX=%s customers in this process' metrics: further ones count as "
                "customer=\"other\" (list the ones to watch in METRICS_CUSTOMERS, or raise the limit)", self.limit)
        return OTHER


customer_label = _CustomerLabels()


def task_started(queue_wait: float, customer_id: int | None = None) -> None:
    """A worker started a task that waited `queue_wait` seconds since it was created."""
    TASKS_STARTED.inc()
    TASK_QUEUE_WAIT.observe(max(0.0, queue_wait))
    CUSTOMER_TASKS_STARTED.labels(customer_label(customer_id)).inc()


def task_finished(outcome: str, code: str | None, duration: float | None, customer_id: int | None = None) -> None:
    """A task reached a final status; `duration` (running to finished) is None for a task that never ran."""
    outcome = _one_of(outcome, OUTCOMES)
    TASKS_FINISHED.labels(outcome, "none" if not code else _one_of(code, ERROR_CODES)).inc()
    CUSTOMER_TASKS_FINISHED.labels(customer_label(customer_id), outcome).inc()
    if duration is not None:
        TASK_DURATION.observe(max(0.0, duration))


def model_request(provider: str, outcome: str, seconds: float, prompt_tokens: int = 0, completion_tokens: int = 0,
                  customer_id: int | None = None) -> None:
    """One model call by the broker: outcome is ok, error, timeout or cancelled."""
    MODEL_REQUEST_DURATION.labels(_one_of(provider, PROVIDERS), _one_of(outcome, MODEL_OUTCOMES)).observe(max(0.0, seconds))
    if prompt_tokens or completion_tokens:
        customer = customer_label(customer_id)
        for kind, n in (("prompt", prompt_tokens), ("completion", completion_tokens)):
            if n:
                MODEL_TOKENS.labels(kind).inc(int(n))
                CUSTOMER_MODEL_TOKENS.labels(customer, kind).inc(int(n))


def webhook_attempt(status: int | None, seconds: float, timed_out: bool = False) -> None:
    """One webhook POST by a delivery worker: the answer's HTTP status, or none (timed out, or another error)."""
    if status is not None:
        result = f"{int(status) // 100}xx"
    else:
        result = "timeout" if timed_out else "error"
    WEBHOOK_ATTEMPT_DURATION.labels(_one_of(result, WEBHOOK_RESULTS)).observe(max(0.0, seconds))


def webhook_delivery_ended(outcome: str, attempts: int) -> None:
    """A webhook delivery is done with: succeeded, gave_up (its last attempt failed) or not_sent."""
    WEBHOOK_DELIVERIES_FINISHED.labels(_one_of(outcome, WEBHOOK_OUTCOMES)).inc()
    WEBHOOK_DELIVERY_ATTEMPTS.observe(max(0, int(attempts)))


def sandbox_spawned(start: str, seconds: float) -> None:
    """A sandbox is up: start is "warm" (forked from the zygote) or "cold"."""
    SANDBOX_SPAWN.labels(_one_of(start, STARTS)).observe(max(0.0, seconds))


def sandbox_finished(cpu_seconds: float, peak_memory_bytes: float) -> None:
    """A sandbox ended: what it used."""
    SANDBOX_CPU.observe(max(0.0, cpu_seconds or 0.0))
    SANDBOX_MEMORY.observe(max(0.0, peak_memory_bytes or 0.0))


def kill(reason: str) -> None:
    """A sandbox was stopped for `reason` (a stop reason or the error code it ends with)."""
    SANDBOX_KILLS.labels(_one_of(reason, KILL_REASONS)).inc()


def events_written(n: int) -> None:
    if n:
        EVENTS_WRITTEN.inc(n)


def stream_opened(kind: str) -> None:
    STREAM_CONNECTIONS.labels(_one_of(kind, ("websocket", "sse"))).inc()


def stream_closed(kind: str) -> None:
    STREAM_CONNECTIONS.labels(_one_of(kind, ("websocket", "sse"))).dec()


# -- exposition --------------------------------------------------------------------------------------

_scrape_collectors: list = []


def register_scrape_collector(collector) -> None:
    """A collector computed at scrape time by the web process' /metrics (cheap figures from shared state)."""
    if collector not in _scrape_collectors:
        _scrape_collectors.append(collector)


def multiprocess_mode() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir"))


class _Exposed:
    """What a scrape sees: every process' values (multiprocess mode) or this process' own, then the
    scrape-time collectors. generate_latest() needs only collect()."""

    def __init__(self, with_scrape_collectors: bool, names=None):
        self.with_scrape_collectors = with_scrape_collectors
        self.names = names

    def restricted_registry(self, names):
        """prometheus_client's HTTP server asks for this on `?name[]=...`."""
        return _Exposed(self.with_scrape_collectors, set(names))

    def collect(self):
        for family in self._collect():
            if self.names is None or family.name in self.names or any(s.name in self.names for s in family.samples):
                yield family

    def _collect(self):
        if multiprocess_mode():
            from prometheus_client import multiprocess

            base = CollectorRegistry()
            multiprocess.MultiProcessCollector(base)
        else:
            base = REGISTRY
        yield from base.collect()
        if self.with_scrape_collectors:
            for collector in _scrape_collectors:
                yield from collector.collect()


def metrics_view(request):
    """/metrics: django-prometheus' HTTP and database figures and the platform's, from every process on this host."""
    from django.http import HttpResponse

    return HttpResponse(generate_latest(_Exposed(with_scrape_collectors=True)), content_type=CONTENT_TYPE_LATEST)


def serve(port: int, addr: str = "0.0.0.0"):
    """An HTTP /metrics endpoint for a process without the web app (a worker host): its processes' figures only."""
    from prometheus_client import start_http_server

    return start_http_server(port, addr=addr, registry=_Exposed(with_scrape_collectors=False))
