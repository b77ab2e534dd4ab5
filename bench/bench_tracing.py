"""The cost of the task instrumentation (metrics, log context, traces), off and on.

1. In one process, what the instrumentation of one trivial task costs (µs of this process' time):
   the calls the API and the runtime make for a task with one model call and two events
   (task.create, queue wait, spawn, a turn, a model call through ObservedClient, task end, the
   metrics), with tracing off and with tracing on (the real SDK, batching to an OTLP/HTTP receiver
   on 127.0.0.1 started by the bench; its export time is included: the bench flushes at the end).
2. End to end, through real daphnes (the API, DEBUG off) and real `manage.py runworker`s: three stacks
   running at once, each a web process and a worker on a Redis database of its own, with tracing
   off, on, and on without the psycopg and Redis spans (OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=
   psycopg,redis); trivial replay tasks POSTed to each stack in turn, so that the machine's load
   weighs on the three alike. Reported: the CPU seconds per task of each web process and each worker
   (psutil; each one's idle use over the same time taken away), then the wall time created ->
   succeeded (p50/p95), and the spans each traced stack exported per task, by library.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench PLATFORM_VAR_DIR=/tmp/bench \\
        .venv/bin/python bench/bench_tracing.py [--runs 60] [--calls 2000]

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


def end_to_end(runs: int) -> dict:
    """Three stacks at once, each a daphne and a worker on a Redis database of its own: tracing off, on,
    and on without the psycopg and Redis spans (`lean`). Trivial replay tasks go to each stack in turn
    (ABC, CBA, ...), each POSTed and awaited, so that the machine's load weighs on the three alike. The
    CPU seconds each process used per task (psutil; its idle use over the same time taken away), in
    BLOCKS blocks, then the wall time created -> finished, and the spans exported per task."""
    import django

    django.setup()
    import requests
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from accounts.models import Membership
    from bench.bench_tasks import Bench, percentile, stop, wait_until
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
    redis_url = settings.REDIS_URL.split("?")[0]
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    base_env.update(DATABASE_URL=database_url(connection.settings_dict), LOG_LEVEL="WARNING")
    sinks = {"on": Sink(), "lean": Sink()}  # one receiver per traced stack: its spans counted apart
    modes = {"off": {}, "on": {"OTEL_EXPORTER_OTLP_ENDPOINT": sinks["on"].url},
             "lean": {"OTEL_EXPORTER_OTLP_ENDPOINT": sinks["lean"].url, "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "psycopg,redis"}}
    stacks = {}
    for n, (label, extra) in enumerate(modes.items(), start=1):
        sep = "&" if "?" in redis_url else "?"
        env = dict(base_env, REDIS_URL=f"{redis_url}{sep}db={n}", **extra)
        worker = subprocess.Popen([sys.executable, str(ROOT / "manage.py"), "runworker", "--name", f"bench-{os.getpid()}-{label}"],
                                  env=env, cwd=ROOT, stdin=subprocess.DEVNULL)
        stacks[label] = {"web": Web(env), "worker": worker, "latency": [], "web_cpu": [], "worker_cpu": [], "spans": 0}

    def one_task(web) -> float:
        from tasks.models import Task

        response = session.post(web.url + "/api/tasks/", json={"agent": bench.trivial.pk, "input": "Go"}, timeout=30)
        assert response.status_code == 201, response.text
        task_id = response.json()["id"]
        task = wait_until(lambda: Task.objects.filter(pk=task_id, status__in=Task.FINISHED).first(), timeout=60, interval=0.005)
        assert task.status == "succeeded", task.error
        return (task.finished_at - task.created_at).total_seconds()

    def pids(stack):
        return stack["web"].proc.pid, stack["worker"].pid

    try:
        for stack in stacks.values():
            stack["web"].wait()
        for _ in range(3):  # every process finishes starting (imports, first queries, the zygote)
            for stack in stacks.values():
                one_task(stack["web"])
        time.sleep(6.0)  # the warm-up's spans go out
        spans_start = {label: (sink.spans, dict(sink.by_scope)) for label, sink in sinks.items()}
        # idle use (heartbeats, slot reports, the exporter's timer) over a quiet stretch, all stacks at once
        before = {label: [_cpu(p) for p in pids(stack)] for label, stack in stacks.items()}
        started = time.monotonic()
        time.sleep(IDLE_SECONDS)
        idle = {label: [(_cpu(p) - c) / (time.monotonic() - started) for p, c in zip(pids(stack), before[label])]
                for label, stack in stacks.items()}
        order = list(stacks)
        per_block = max(1, runs // BLOCKS)
        for block in range(BLOCKS):
            before = {label: [_cpu(p) for p in pids(stack)] for label, stack in stacks.items()}
            started = time.monotonic()
            for i in range(per_block):
                for label in (order if i % 2 == 0 else order[::-1]):
                    stacks[label]["latency"].append(one_task(stacks[label]["web"]))
            time.sleep(6.0)  # the last batches go out (OTEL_BSP_SCHEDULE_DELAY: 5 s)
            waited = time.monotonic() - started
            for label, stack in stacks.items():
                used = [_cpu(p) - c for p, c in zip(pids(stack), before[label])]
                stack["web_cpu"].append((used[0] - idle[label][0] * waited) / per_block)
                stack["worker_cpu"].append((used[1] - idle[label][1] * waited) / per_block)
        result = {}
        for label, stack in stacks.items():
            result[label] = {
                "p50": percentile(stack["latency"], 50), "p95": percentile(stack["latency"], 95),
                "web_cpu": statistics.median(stack["web_cpu"]), "worker_cpu": statistics.median(stack["worker_cpu"]),
                "web_cpu_rounds": stack["web_cpu"], "worker_cpu_rounds": stack["worker_cpu"],
                "web_idle": idle[label][0], "worker_idle": idle[label][1], "tasks": len(stack["latency"]),
            }
            if label in sinks:
                start_count, start_scopes = spans_start[label]
                n = len(stack["latency"])
                result[label]["spans_per_task"] = (sinks[label].spans - start_count) / n
                result[label]["spans_by_scope"] = {
                    k: (v - start_scopes.get(k, 0)) / n for k, v in sinks[label].by_scope.items() if v > start_scopes.get(k, 0)}
    finally:
        for stack in stacks.values():
            stop([stack["worker"]])
            stack["web"].proc.terminate()
            stack["web"].proc.wait(15)
        bench.delete()
        user.delete()
        if redis_proc is not None:
            from runtime import embedded_redis

            embedded_redis.stop(redis_proc)
    return result


BLOCKS = 4
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
    e2e = end_to_end(args.runs)

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
        ("  per block (web; worker), off", "; ".join(", ".join(cpu(x) for x in off_[k]) for k in ("web_cpu_rounds", "worker_cpu_rounds"))),
        ("  per block (web; worker), on", "; ".join(", ".join(cpu(x) for x in on_[k]) for k in ("web_cpu_rounds", "worker_cpu_rounds"))),
        ("  per block (web; worker), lean", "; ".join(", ".join(cpu(x) for x in lean[k]) for k in ("web_cpu_rounds", "worker_cpu_rounds"))),
        ("idle CPU per second (web, worker): off / on / lean", " / ".join(
            f"{x['web_idle'] * 1000:.1f}, {x['worker_idle'] * 1000:.1f} ms" for x in (off_, on_, lean))),
        ("trivial task created -> finished (wall), p50 / p95: off", f"{ms(off_['p50'])} / {ms(off_['p95'])}"),
        ("trivial task created -> finished (wall), p50 / p95: on", f"{ms(on_['p50'])} / {ms(on_['p95'])}"),
        ("trivial task created -> finished (wall), p50 / p95: lean", f"{ms(lean['p50'])} / {ms(lean['p95'])}"),
        ("spans exported per trivial task (tracing on)", f"{on_['spans_per_task']:.1f} ("
         + ", ".join(f"{k.rsplit('.', 1)[-1]} {v:.1f}" for k, v in sorted(on_["spans_by_scope"].items()))
         + f"); lean {lean['spans_per_task']:.1f}"),
    ]
    print(f"load average before: {load_before}; after: {', '.join(f'{x:.1f}' for x in os.getloadavg())};"
          f" {os.cpu_count()} CPUs; {args.calls} tasks in-process, {off_['tasks']} end to end per setting")
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"{name.ljust(width)}  {value}")


if __name__ == "__main__":
    main()
