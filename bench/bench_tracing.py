"""The cost of the task instrumentation (metrics, log context, traces), off and on.

1. In one process, what the instrumentation of one trivial task costs (µs of this process' time):
   the calls the API and the runtime make for a task with one model call and two events
   (task.create, queue wait, spawn, a turn, a model call through ObservedClient, task end, the
   metrics), with tracing off and with tracing on (the real SDK, batching to an OTLP/HTTP receiver
   on 127.0.0.1 started by the bench; its export time is included: the bench flushes at the end).
2. End to end: a trivial replay task through a real `manage.py runworker`, created -> succeeded
   (the task's own timestamps), p50/p95 over --runs tasks one after another, with tracing off and
   on (the worker's, and the task.create span of this process), in alternating rounds of a fresh
   worker each; and the spans the receiver got per task.

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
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                request = ExportTraceServiceRequest()
                request.ParseFromString(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                sink.spans += sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans)
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


def end_to_end(runs: int, sink: Sink) -> dict:
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from bench.bench_tasks import Bench, percentile, start_workers, stop

    redis_proc = None
    if settings.REDIS_EMBEDDED:
        from runtime import embedded_redis

        redis_proc = embedded_redis.start(settings.EMBEDDED_REDIS_SOCKET)
    call_command("migrate", verbosity=0)
    from autogen_platform import tracing

    on_env = {"OTEL_EXPORTER_OTLP_ENDPOINT": sink.url, "OTEL_BSP_SCHEDULE_DELAY": "500"}
    saved = dict(os.environ)
    os.environ.update(on_env)
    tracing.setup("bench")  # this process creates the tasks: their task.create spans (only in the "on" rounds)
    os.environ.clear()
    os.environ.update(saved)
    bench = Bench()
    latencies = {"off": [], "on": []}
    spans = 0
    try:
        # off and on alternate, so that the machine's load changing over time weighs on both alike
        for _ in range(ROUNDS):
            for label, env in (("off", {}), ("on", on_env)):
                tracing._configured = bool(env)
                os.environ.update(env)
                workers = start_workers(1)
                try:
                    bench.latency(3)  # the worker finishes starting
                    spans_before = sink.spans
                    latencies[label] += bench.latency(max(1, runs // ROUNDS))
                    if env:
                        time.sleep(1.5)  # the last batches go out
                        spans += sink.spans - spans_before
                finally:
                    stop(workers)
                    os.environ.clear()
                    os.environ.update(saved)
        out = {label: {"p50": percentile(values, 50), "p95": percentile(values, 95), "mean": statistics.mean(values)}
               for label, values in latencies.items()}
        out["on"]["spans_per_task"] = spans / len(latencies["on"])
    finally:
        bench.delete()
        if redis_proc is not None:
            from runtime import embedded_redis

            embedded_redis.stop(redis_proc)
    return out


ROUNDS = 3


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--micro", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.micro is not None:
        print(json.dumps(micro(args.micro)))
        return

    sink = Sink()
    base = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    off = micro_in_subprocess(args.calls, base)
    on = micro_in_subprocess(args.calls, {**base, "OTEL_EXPORTER_OTLP_ENDPOINT": sink.url})
    assert on["tracing"] and not off["tracing"]
    e2e = end_to_end(args.runs, sink)

    ms = lambda s: f"{s * 1000:.0f} ms"  # noqa: E731
    rows = [
        ("instrumentation of one task, one process: tracing off", f"{off['wall_us']:.0f} µs ({off['cpu_us']:.0f} µs CPU)"),
        ("instrumentation of one task, one process: tracing on", f"{on['wall_us']:.0f} µs ({on['cpu_us']:.0f} µs CPU)"),
        ("trivial replay task end to end, tracing off: p50 / p95", f"{ms(e2e['off']['p50'])} / {ms(e2e['off']['p95'])}"),
        ("trivial replay task end to end, tracing on: p50 / p95", f"{ms(e2e['on']['p50'])} / {ms(e2e['on']['p95'])}"),
        ("spans exported per trivial task (tracing on)", f"{e2e['on']['spans_per_task']:.1f}"),
    ]
    print(f"load average: {', '.join(f'{x:.1f}' for x in os.getloadavg())}; {args.calls} tasks in-process, {args.runs} end to end")
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"{name.ljust(width)}  {value}")


if __name__ == "__main__":
    main()
