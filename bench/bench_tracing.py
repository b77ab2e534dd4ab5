"""The cost of the task instrumentation (metrics, log context, traces), off and on.

1. In one process, what the instrumentation of one trivial task costs (µs of this process' time):
   the calls the API and the runtime make for a task with one model call and two events
   (task.create, queue wait, spawn, a turn, a model call through ObservedClient, task end, the
   metrics), with tracing off and with tracing on (the real SDK, batching to an OTLP/HTTP receiver
   on 127.0.0.1 started by the bench; its export time is included: the bench flushes at the end).
2. End to end, through a real daphne (the API, DEBUG off) and a real `manage.py runworker`: trivial
   replay tasks POSTed one after another, tracing off and on in alternating rounds of a fresh web
   process and worker each. Reported: the CPU seconds per task of the web process and of the worker
   process (psutil; each one's idle use over the same time taken away), which do not depend on how
   loaded the machine is (also with tracing on but without the psycopg and Redis spans,
   OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=psycopg,redis), then the wall time created -> succeeded (p50/p95, which does), and the
   spans the receiver got per task.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench PLATFORM_VAR_DIR=/tmp/bench \\
        .venv/bin/python bench/bench_tracing.py [--runs 30] [--calls 2000]

The bench creates its own customer and deletes it at the end.
"""
import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "autogen_platform.settings.dev")


class Sink:
    """An OTLP/HTTP receiver that counts the spans it is sent."""

    def __init__(self):
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        self.spans = 0
        self.by_scope: dict[str, int] = {}  # spans by instrumentation scope (which library made them)
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                request = ExportTraceServiceRequest()
                request.ParseFromString(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                sink.spans += sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans)
                for r in request.resource_spans:
                    for s in r.scope_spans:
                        sink.by_scope[s.scope.name] = sink.by_scope.get(s.scope.name, 0) + len(s.spans)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


# -- 1. one process ----------------------------------------------------------------------------------


def micro(calls: int) -> dict:
    """Run in a process of its own (tracing is set up once per process): µs per task."""
    import django

    django.setup()
    from autogen_core.models import CreateResult, RequestUsage

    from autogen_platform import metrics, tracing
    from runtime import telemetry
    from runtime.outcomes import Outcome
    from runtime.ports import TaskContext

    result = CreateResult(finish_reason="stop", content="Done. TERMINATE", usage=RequestUsage(prompt_tokens=30, completion_tokens=4), cached=False)

    class Client:
        model_info = {}

        async def create(self, messages, **kwargs):
            return result

    client = telemetry.ObservedClient(Client(), {"provider": "replay", "model": "replay"})
    ctx = TaskContext(task_id=1, customer_id=1, agent_id=1, input="Go", spec={}, thread_state=None, models={}, budgets={},
                      created_at=time.time())

    async def one_task():
        creation = tracing.task_creation()
        ctx.traceparent = creation.traceparent
        creation.end(1, 1)
        metrics.task_started(0.01)
        trace = telemetry.task_trace(ctx)
        metrics.sandbox_spawned("warm", 0.005)
        trace.spawned(time.time_ns(), "warm")
        telemetry.MODEL_CALL_PARENT.set(trace.model_parent("assistant"))
        await client.create([])
        trace.event("message", "assistant", {"text": "Done. TERMINATE"})
        metrics.events_written(5)
        metrics.sandbox_finished(0.05, 8 * 2**20)
        trace.end(Outcome("succeeded"))
        metrics.task_finished("succeeded", None, 0.1)

    async def run():
        for _ in range(50):  # warm-up
            await one_task()
        start = time.perf_counter()
        cpu = time.process_time()
        for _ in range(calls):
            await one_task()
        if tracing.active():
            from opentelemetry import trace

            trace.get_tracer_provider().force_flush()
        return (time.perf_counter() - start) / calls * 1e6, (time.process_time() - cpu) / calls * 1e6

    wall, cpu = asyncio.run(run())
    return {"wall_us": wall, "cpu_us": cpu, "tracing": tracing.active()}


def micro_in_subprocess(calls: int, env: dict) -> dict:
    out = subprocess.run([sys.executable, __file__, "--micro", str(calls)], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- 2. end to end -----------------------------------------------------------------------------------


class Web:
    """A real daphne serving the API (the web process), with the bench's environment plus `env`."""

    def __init__(self, env: dict):
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port), "autogen_platform.asgi:application"],
            cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self.url = f"http://127.0.0.1:{self.port}"

    def wait(self):
        import requests

        from bench.bench_tasks import wait_until

        def up():
            try:
                return requests.get(self.url + "/healthz", timeout=1).status_code == 200
            except requests.RequestException:
                assert self.proc.poll() is None, "daphne exited"
                return False

        wait_until(up, timeout=60, interval=0.1)


def _cpu(pid: int) -> float:
    import psutil

    times = psutil.Process(pid).cpu_times()
    return times.user + times.system  # the process itself: its sandboxes' CPU is theirs, tracing or not


def end_to_end(runs: int, sink: Sink) -> dict:
    """Per setting (off, on), in alternating rounds of a fresh daphne and a fresh worker: trivial replay tasks
    one after another, each POSTed to the API and awaited; the CPU seconds the web and worker processes
    used per task (their idle use over the same time taken away), the wall time created -> finished, and
    the spans exported. CPU per task does not depend on how loaded the machine is; the wall time does."""
    import django

    django.setup()
    import requests
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from accounts.models import Membership
    from bench.bench_tasks import Bench, percentile, start_workers, stop, wait_until
    from tests.execution_support import database_url

    redis_proc = None
    if settings.REDIS_EMBEDDED:
        from runtime import embedded_redis

        redis_proc = embedded_redis.start(settings.EMBEDDED_REDIS_SOCKET)
    call_command("migrate", verbosity=0)
    from django.db import connection
    from rest_framework_simplejwt.tokens import AccessToken

    bench = Bench()
    user = get_user_model().objects.create_user(username=f"{bench.customer.name}-owner", password="x" * 16)
    Membership.objects.create(user=user, customer=bench.customer, role="owner")
    token = AccessToken.for_user(user)
    token["scope"] = "customer"
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    base_env = dict(os.environ, DATABASE_URL=database_url(connection.settings_dict), REDIS_URL=settings.REDIS_URL,
                    LOG_LEVEL="WARNING")
    on_env = {"OTEL_EXPORTER_OTLP_ENDPOINT": sink.url}
    lean_env = {**on_env, "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "psycopg,redis"}
    modes = (("off", {}), ("on", on_env), ("lean", lean_env))
    out = {label: {"latency": [], "web_cpu": [], "worker_cpu": [], "web_idle": [], "worker_idle": [], "spans": 0, "tasks": 0}
           for label, _ in modes}

    def one_task(web) -> float:
        from tasks.models import Task

        response = session.post(web.url + "/api/tasks/", json={"agent": bench.trivial.pk, "input": "Go"}, timeout=30)
        assert response.status_code == 201, response.text
        task_id = response.json()["id"]
        task = wait_until(lambda: Task.objects.filter(pk=task_id, status__in=Task.FINISHED).first(), timeout=60, interval=0.005)
        assert task.status == "succeeded", task.error
        return (task.finished_at - task.created_at).total_seconds()

    try:
        # off and on alternate, so that the machine's load changing over time weighs on both alike
        for _ in range(ROUNDS):
            for label, extra in modes:
                figures = out[label]
                saved = dict(os.environ)
                os.environ.clear()
                os.environ.update(base_env, **extra)
                web, workers = Web(dict(os.environ)), start_workers(1)
                os.environ.clear()
                os.environ.update(saved)
                try:
                    web.wait()
                    for _ in range(3):  # both finish starting (imports, first queries, the zygote)
                        one_task(web)
                    time.sleep(1.0)
                    pids = (web.proc.pid, workers[0].pid)
                    # idle use (heartbeats, slot reports, the exporter's timer) over a quiet stretch
                    idle_cpu, idle_started = [_cpu(p) for p in pids], time.monotonic()
                    time.sleep(IDLE_SECONDS)
                    idle_rate = [(_cpu(p) - c) / (time.monotonic() - idle_started) for p, c in zip(pids, idle_cpu)]
                    spans_before, cpu_before, started = sink.spans, [_cpu(p) for p in pids], time.monotonic()
                    scopes_before = dict(sink.by_scope)
                    n = max(1, runs // ROUNDS)
                    figures["latency"] += [one_task(web) for _ in range(n)]
                    if extra:
                        time.sleep(6.0)  # the last batches go out (OTEL_BSP_SCHEDULE_DELAY: 5 s)
                    used = [_cpu(p) - c for p, c in zip(pids, cpu_before)]
                    waited = time.monotonic() - started
                    figures["web_cpu"].append((used[0] - idle_rate[0] * waited) / n)
                    figures["worker_cpu"].append((used[1] - idle_rate[1] * waited) / n)
                    figures["web_idle"].append(idle_rate[0])
                    figures["worker_idle"].append(idle_rate[1])
                    figures["spans"] += sink.spans - spans_before
                    for scope, count in sink.by_scope.items():
                        figures.setdefault("by_scope", {})[scope] = figures.get("by_scope", {}).get(scope, 0) + count - scopes_before.get(scope, 0)
                    figures["tasks"] += n
                finally:
                    stop(workers)
                    web.proc.terminate()
                    web.proc.wait(15)
        result = {}
        for label, figures in out.items():
            result[label] = {
                "p50": percentile(figures["latency"], 50), "p95": percentile(figures["latency"], 95),
                "web_cpu": statistics.median(figures["web_cpu"]), "worker_cpu": statistics.median(figures["worker_cpu"]),
                "web_cpu_rounds": figures["web_cpu"], "worker_cpu_rounds": figures["worker_cpu"],
                "web_idle": statistics.median(figures["web_idle"]), "worker_idle": statistics.median(figures["worker_idle"]),
                "spans_per_task": figures["spans"] / max(1, figures["tasks"]),
                "spans_by_scope": {k: v / max(1, figures["tasks"]) for k, v in figures.get("by_scope", {}).items() if v},
            }
    finally:
        bench.delete()
        user.delete()
        if redis_proc is not None:
            from runtime import embedded_redis

            embedded_redis.stop(redis_proc)
    return result


ROUNDS = 3
IDLE_SECONDS = 4.0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--micro", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.micro is not None:
        print(json.dumps(micro(args.micro)))
        return

    # the web process as in production (DEBUG off needs keys of its own; the bench signs its token with the same)
    os.environ.setdefault("DJANGO_DEBUG", "0")
    os.environ.setdefault("DJANGO_SECRET_KEY", "bench-secret-key-not-for-production")
    os.environ.setdefault("ADMIN_API_KEY", "bench-admin-key-not-for-production")
    load_before = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    sink = Sink()
    base = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    off = micro_in_subprocess(args.calls, base)
    on = micro_in_subprocess(args.calls, {**base, "OTEL_EXPORTER_OTLP_ENDPOINT": sink.url})
    assert on["tracing"] and not off["tracing"]
    e2e = end_to_end(args.runs, sink)

    ms = lambda s: f"{s * 1000:.0f} ms"  # noqa: E731
    cpu = lambda s: f"{s * 1000:.1f} ms"  # noqa: E731
    off_, on_, lean = e2e["off"], e2e["on"], e2e["lean"]
    rows = [
        ("instrumentation of one task, one process: tracing off", f"{off['wall_us']:.0f} µs ({off['cpu_us']:.0f} µs CPU)"),
        ("instrumentation of one task, one process: tracing on", f"{on['wall_us']:.0f} µs ({on['cpu_us']:.0f} µs CPU)"),
        ("CPU per task, web process (daphne): off / on / on without psycopg+redis spans",
         f"{cpu(off_['web_cpu'])} / {cpu(on_['web_cpu'])} / {cpu(lean['web_cpu'])}"),
        ("CPU per task, worker process: off / on / on without psycopg+redis spans",
         f"{cpu(off_['worker_cpu'])} / {cpu(on_['worker_cpu'])} / {cpu(lean['worker_cpu'])}"),
        ("  per round (web; worker), off", "; ".join(", ".join(cpu(x) for x in off_[k]) for k in ("web_cpu_rounds", "worker_cpu_rounds"))),
        ("  per round (web; worker), on", "; ".join(", ".join(cpu(x) for x in on_[k]) for k in ("web_cpu_rounds", "worker_cpu_rounds"))),
        ("  per round (web; worker), lean", "; ".join(", ".join(cpu(x) for x in lean[k]) for k in ("web_cpu_rounds", "worker_cpu_rounds"))),
        ("idle CPU per second (web, worker): off / on", f"{off_['web_idle'] * 1000:.1f}, {off_['worker_idle'] * 1000:.1f} ms"
                                                         f" / {on_['web_idle'] * 1000:.1f}, {on_['worker_idle'] * 1000:.1f} ms"),
        ("trivial task created -> finished (wall), p50 / p95: off", f"{ms(off_['p50'])} / {ms(off_['p95'])}"),
        ("trivial task created -> finished (wall), p50 / p95: on", f"{ms(on_['p50'])} / {ms(on_['p95'])}"),
        ("trivial task created -> finished (wall), p50 / p95: lean", f"{ms(lean['p50'])} / {ms(lean['p95'])}"),
        ("spans exported per trivial task (tracing on)", f"{on_['spans_per_task']:.1f} ("
         + ", ".join(f"{k.rsplit('.', 1)[-1]} {v:.1f}" for k, v in sorted(on_["spans_by_scope"].items())) + f"); lean {lean['spans_per_task']:.1f}"),
    ]
    print(f"load average before: {load_before}; after: {', '.join(f'{x:.1f}' for x in os.getloadavg())};"
          f" {os.cpu_count()} CPUs; {args.calls} tasks in-process, {args.runs} end to end per setting")
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"{name.ljust(width)}  {value}")


if __name__ == "__main__":
    main()
