"""What an operator sees of real tasks: the worker's metrics, its JSON log lines and each task's trace.

A real daphne (the API), a real `manage.py runworker` with METRICS_PORT, LOG_FORMAT=json and
OTEL_EXPORTER_OTLP_ENDPOINT pointed at an OTLP/HTTP receiver started here (protobuf decoded with
opentelemetry-proto), and three tasks on a local OpenAI-compatible model: one that calls a tool and
succeeds, one whose model fails, one cancelled while its model is slow.
"""
import gzip
import json
import re
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from agents.models import Agent, ModelConfig
from tasks.models import Task
from tests.execution_support import running, wait_for
from tests.live_server import Daphne, free_port
from tests.openai_stub import MODEL_INFO, OpenAIStub

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

CONTRACT_METRICS = (
    "platform_tasks_finished_total", "platform_task_duration_seconds", "platform_task_queue_wait_seconds",
    "platform_model_request_duration_seconds", "platform_model_tokens_total", "platform_sandbox_spawn_seconds",
    "platform_worker_slots",
)


class OtlpReceiver:
    """An OTLP/HTTP trace receiver: POST /v1/traces with an ExportTraceServiceRequest (protobuf)."""

    def __init__(self):
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
            ExportTraceServiceResponse,
        )

        self.spans: list[dict] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                receiver._add(request)
                payload = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _add(self, request) -> None:
        for resource_spans in request.resource_spans:
            service = {a.key: _value(a.value) for a in resource_spans.resource.attributes}.get("service.name")
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    with self.lock:
                        self.spans.append({
                            "trace_id": span.trace_id.hex(), "span_id": span.span_id.hex(),
                            "parent": span.parent_span_id.hex() or None, "name": span.name, "kind": span.kind,
                            "service": service, "scope": scope_spans.scope.name, "status": span.status.code,
                            "attributes": {a.key: _value(a.value) for a in span.attributes},
                            "events": [e.name for e in span.events],
                        })

    def trace(self, trace_id: str) -> list[dict]:
        with self.lock:
            return [s for s in self.spans if s["trace_id"] == trace_id]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _value(value):
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    return getattr(value, kind) if kind else None


def parse_metrics(text: str) -> dict[str, float]:
    values = {}
    for line in text.splitlines():
        match = re.match(r"^(platform_[a-z_]+)(\{[^}]*\})? (\S+)$", line)
        if match:
            labels = ",".join(sorted(re.findall(r'[a-z_]+="[^"]*"', match.group(2) or "")))
            values[match.group(1) + (f"{{{labels}}}" if labels else "")] = float(match.group(3))
    return values


@pytest.fixture(scope="module")
def platform(django_db_setup, django_db_blocker):
    """The API, one worker and the OTLP receiver, with tracing on and JSON logs."""
    receiver = OtlpReceiver()
    otel = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_BSP_SCHEDULE_DELAY": "100"}
    server = Daphne(env=otel).start()
    metrics_port = free_port()
    try:
        with running("obs-w1", METRICS_PORT=metrics_port, LOG_FORMAT="json", LOG_LEVEL="INFO", **otel) as procs:
            yield {"server": server, "receiver": receiver, "metrics_url": f"http://127.0.0.1:{metrics_port}/metrics",
                   "worker_log": procs.log_dir / "obs-w1.log"}
    finally:
        server.stop()
        receiver.stop()


def worker_metrics(platform) -> dict[str, float]:
    with urllib.request.urlopen(platform["metrics_url"], timeout=10) as response:
        return parse_metrics(response.read().decode())


def api(platform, user):
    from conftest import token_for

    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token_for(user)}"
    session.base = platform["server"].http_url
    return session


def submit(session, agent: Agent, text: str) -> dict:
    response = session.post(session.base + "/api/tasks/", json={"agent": agent.pk, "input": text}, timeout=30)
    assert response.status_code == 201, response.text
    return response.json()


def finished(task_id: int, timeout: float = 60) -> Task:
    return wait_for(lambda: (t := Task.objects.get(pk=task_id)).is_finished and t, timeout, message=f"task {task_id} finished")


def openai_agent(customer, stub, name, **fields) -> Agent:
    model = ModelConfig.objects.create(customer=customer, name=f"{name}-model", provider="openai", model="stub-model",
                                       base_url=stub.base_url, model_info=MODEL_INFO)
    return Agent.objects.create(customer=customer, name=name, model=model, system_message="You are helpful.", **fields)


def run_three_tasks(platform, make_customer):
    """One task that calls a tool and succeeds, one whose model fails, one cancelled while its model is slow."""
    customer, user = make_customer("observed")
    session = api(platform, user)
    release = threading.Event()
    slots = {}
    with OpenAIStub([{"tool_calls": [{"name": "calculator", "arguments": {"expression": "6*7"}}]}, "It is 42. TERMINATE"]) as ok_stub, \
            OpenAIStub([{"status": 400, "message": "model 'stub-model' is overloaded"}]) as failing_stub, \
            OpenAIStub([{"hold": release, "text": "Too late. TERMINATE"}]) as slow_stub:
        ok = submit(session, openai_agent(customer, ok_stub, "calc", tools=["calculator"]), "What is 6*7?")
        failing = submit(session, openai_agent(customer, failing_stub, "broken"), "Hi")
        assert finished(ok["id"]).status == "succeeded", Task.objects.get(pk=ok["id"]).error
        assert finished(failing["id"]).error["code"] == "model_error"
        slow = submit(session, openai_agent(customer, slow_stub, "slow"), "Take your time")
        wait_for(lambda: slow_stub.requests, 30, message="the slow model asked")

        # while it waits for its model, the web process' /metrics shows the worker's slot busy
        from django.test import Client

        def busy_slot():
            values = parse_metrics(Client().get("/metrics").content.decode())
            return values.get('platform_worker_slots{state="busy"}') == 1 and values

        slots = wait_for(busy_slot, 10, interval=0.2, message="one busy worker slot")
        assert session.post(f"{session.base}/api/tasks/{slow['id']}/cancel/", timeout=30).status_code == 200
        assert finished(slow["id"], 10).status == "cancelled"
        release.set()
    return session, customer, {"ok": ok["id"], "failing": failing["id"], "slow": slow["id"]}, slots


@pytest.fixture(scope="module")
def observed(platform, django_db_blocker):
    """Three tasks run once for the module (their data stays: the module's tests read it)."""
    with django_db_blocker.unblock():
        from django.contrib.auth import get_user_model

        from accounts.models import Customer, Membership

        def make_customer(name):
            customer = Customer.objects.create(name=name)
            user = get_user_model().objects.create_user(username=f"{name}-owner", password="password123")
            Membership.objects.create(user=user, customer=customer, role="owner")
            return customer, user

        def reachable():
            try:
                return worker_metrics(platform)
            except OSError:
                return None

        before = wait_for(reachable, 60, interval=0.2, message="the worker's metrics endpoint")
        session, customer, ids, slots = run_three_tasks(platform, make_customer)
        # what the tests read, taken now: each transactional test empties the tables when it ends
        tasks = {kind: session.get(f"{session.base}/api/tasks/{pk}/", timeout=30).json() for kind, pk in ids.items()}
        for kind, pk in ids.items():
            tasks[kind]["customer"] = customer.pk
        yield {"tasks": tasks, "before": before, "slots": slots}


def test_a_real_worker_counts_what_its_tasks_did(platform, observed):
    # given the three tasks ran on the worker; when Prometheus scrapes the worker's own endpoint
    after = wait_for(lambda: (m := worker_metrics(platform)).get(
        'platform_tasks_finished_total{code="cancelled",outcome="cancelled"}', 0) >= 1 and m, 10, message="counted")

    def delta(name):
        return after.get(name, 0) - observed["before"].get(name, 0)

    # then every figure moved by what happened
    assert delta('platform_tasks_finished_total{code="none",outcome="succeeded"}') == 1
    assert delta('platform_tasks_finished_total{code="model_error",outcome="failed"}') == 1
    assert delta('platform_tasks_finished_total{code="cancelled",outcome="cancelled"}') == 1
    assert delta("platform_tasks_started_total") == 3
    assert delta("platform_task_queue_wait_seconds_count") == 3
    assert delta("platform_task_duration_seconds_count") == 3
    assert delta('platform_model_request_duration_seconds_count{outcome="ok",provider="openai"}') == 2  # tool call, answer
    assert delta('platform_model_request_duration_seconds_count{outcome="error",provider="openai"}') == 1
    assert delta('platform_model_request_duration_seconds_count{outcome="cancelled",provider="openai"}') == 1
    assert delta('platform_model_tokens_total{kind="prompt"}') > 0
    assert delta('platform_model_tokens_total{kind="completion"}') > 0
    # and per customer (METRICS_CUSTOMERS=all by default): the task owner's id, never its name
    customer = observed["tasks"]["ok"]["customer"]
    assert delta(f'platform_customer_model_tokens_total{{customer="{customer}",kind="prompt"}}') == \
        delta('platform_model_tokens_total{kind="prompt"}')
    assert delta(f'platform_customer_tasks_started_total{{customer="{customer}"}}') == 3
    assert delta(f'platform_customer_tasks_finished_total{{customer="{customer}",outcome="failed"}}') == 1
    spawned = delta('platform_sandbox_spawn_seconds_count{start="warm"}') + delta('platform_sandbox_spawn_seconds_count{start="cold"}')
    assert spawned == 3
    assert delta("platform_sandbox_cpu_seconds_count") == 3 and delta("platform_sandbox_cpu_seconds_sum") > 0
    assert delta("platform_sandbox_peak_memory_bytes_count") == 3 and delta("platform_sandbox_peak_memory_bytes_sum") > 0
    assert delta('platform_sandbox_kills_total{reason="cancelled"}') == 1
    assert delta('platform_sandbox_kills_total{reason="model_error"}') == 1
    assert delta("platform_events_written_total") >= 10  # the worker stores all but the queued ones
    # and the web side showed the worker's slots (one busy while the slow model held its task)
    slots = observed["slots"]
    assert slots['platform_worker_slots{state="busy"}'] == 1 and slots['platform_worker_slots{state="free"}'] >= 0
    # and every metric the contract names is exported by one side or the other
    exported = {name.split("{")[0] for name in {**after, **slots}}
    for name in CONTRACT_METRICS:
        assert any(e == name or e.startswith(name + "_") for e in exported), name


def test_the_worker_json_log_lines_carry_the_task_customer_agent_and_trace(platform, observed):
    # when the operator reads the worker's JSON log lines for one task
    task = observed["tasks"]["failing"]
    lines = []
    for raw in Path(platform["worker_log"]).read_text().splitlines():
        try:
            record = json.loads(raw)
        except ValueError:
            continue
        if record.get("task") == task["id"]:
            lines.append(record)
    # then its end is there, with who it belonged to and its trace id (the last such line: the log file
    # outlives test runs, and an earlier run's task may have had the same id)
    end = next(r for r in reversed(lines) if "ended failed (model_error)" in r["message"])
    assert end["customer"] == task["customer"] and end["agent"] == task["agent"]
    assert end["trace_id"] == task["trace_id"] and re.fullmatch(r"[0-9a-f]{32}", end["trace_id"])


def test_every_task_is_one_trace_from_the_api_request_to_its_model_calls(platform, observed):
    # given the task that called a tool, shown by the API with its trace id
    tasks = observed["tasks"]
    trace_id = tasks["ok"]["trace_id"]
    assert re.fullmatch(r"[0-9a-f]{32}", trace_id)

    # when the spans reach the receiver
    def complete():
        names = {s["name"] for s in platform["receiver"].trace(trace_id)}
        return "task.run" in names and "execute_tool calculator" in names and platform["receiver"].trace(trace_id)

    spans = wait_for(complete, 20, interval=0.2, message="the task's spans")

    # then the trace starts at the API request and holds the queue wait, the spawn, the turns and model calls
    by_id = {s["span_id"]: s for s in spans}
    roots = [s for s in spans if s["parent"] is None]
    assert len(roots) == 1 and roots[0]["kind"] == 2 and roots[0]["service"] == "autogen-platform-web"  # SERVER
    assert roots[0]["attributes"].get("http.request.method", roots[0]["attributes"].get("http.method")) == "POST"
    assert all(s["parent"] in by_id for s in spans if s["parent"]), "every span hangs in the same tree"
    names = [s["name"] for s in spans]
    create = next(s for s in spans if s["name"] == "task.create")
    assert create["parent"] == roots[0]["span_id"] and create["attributes"]["platform.task.id"] == tasks["ok"]["id"]
    run = next(s for s in spans if s["name"] == "task.run")
    assert run["parent"] == create["span_id"] and run["service"] == "autogen-platform-worker"
    assert run["attributes"]["platform.task.status"] == "succeeded"
    for name in ("task.queue_wait", "sandbox.spawn"):
        assert next(s for s in spans if s["name"] == name)["parent"] == run["span_id"], name
    turns = [s for s in spans if s["name"] == "invoke_agent calc"]
    assert turns and all(t["attributes"]["gen_ai.agent.name"] == "calc" for t in turns)
    calls = [s for s in spans if s["name"] == "chat stub-model"]
    assert len(calls) == 2, names
    for call in calls:
        assert by_id[call["parent"]]["name"] == "invoke_agent calc"
        assert call["kind"] == 3  # CLIENT
        attributes = call["attributes"]
        assert attributes["gen_ai.system"] == "openai" and attributes["gen_ai.request.model"] == "stub-model"
        assert attributes["gen_ai.operation.name"] == "chat"
        assert attributes["gen_ai.usage.input_tokens"] > 0 and attributes["gen_ai.usage.output_tokens"] > 0
        # and the provider client's HTTP request (openai over httpx2, instrumented) is the call's child
        [request] = [s for s in spans if s["parent"] == call["span_id"]]
        assert request["kind"] == 3 and request["scope"] == "opentelemetry.instrumentation.httpx", request
        http = request["attributes"]
        assert http.get("http.response.status_code", http.get("http.status_code")) == 200, http
        assert http.get("http.request.method", http.get("http.method")) == "POST"
    tool = next(s for s in spans if s["name"] == "execute_tool calculator")
    assert tool["attributes"]["gen_ai.tool.name"] == "calculator" and by_id[tool["parent"]]["name"] == "invoke_agent calc"

    # and each task has its own trace: the failing one's ends in error, the cancelled one's records the kill
    failing, slow = tasks["failing"]["trace_id"], tasks["slow"]["trace_id"]
    assert len({trace_id, failing, slow}) == 3
    failed_run = wait_for(lambda: next((s for s in platform["receiver"].trace(failing) if s["name"] == "task.run"), None),
                          20, message="the failing task's run span")
    assert failed_run["status"] == 2 and failed_run["attributes"]["platform.task.error_code"] == "model_error"  # ERROR
    failed_call = next(s for s in platform["receiver"].trace(failing) if s["name"] == "chat stub-model")
    assert failed_call["status"] == 2
    failed_request = next(s for s in platform["receiver"].trace(failing) if s["parent"] == failed_call["span_id"])
    assert failed_request["attributes"].get("http.response.status_code",
                                            failed_request["attributes"].get("http.status_code")) == 400
    slow_run = wait_for(lambda: next((s for s in platform["receiver"].trace(slow) if s["name"] == "task.run"), None),
                        20, message="the cancelled task's run span")
    assert "sandbox.kill" in slow_run["events"]
