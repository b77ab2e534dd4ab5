"""Task execution end to end: real `manage.py runworker` processes, sandboxed children, replay models.

Measures, and prints as a table:
- end-to-end latency of a trivial replay task (created -> succeeded, from the task's own timestamps),
  p50 and p95 over --latency-runs tasks submitted one after another;
- a burst of --burst tasks submitted at once: tasks per second until the last one ends;
- the sandboxed child's start: a bare interpreter, and one that imports AgentChat (what every task pays);
- cancel latency: cancel -> status `cancelled`, and cancel -> every process of the tree gone;
- memory per task process: peak of a trivial task's tree, and the live RSS of a waiting child.

    .venv/bin/python bench/bench_tasks.py                      # embedded defaults (SQLite, embedded Redis)
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench REDIS_URL=redis://127.0.0.1:6379/5 \
        .venv/bin/python bench/bench_tasks.py --workers 2 --burst 50

Set PLATFORM_VAR_DIR (e.g. /tmp/bench) so that a running `make run` does not take the bench's jobs.
The bench creates its own customer and deletes it at the end.
"""
import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "autogen_platform.settings.dev")

import django  # noqa: E402

django.setup()

import psutil  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402

SLEEPY_CODE = "```python\nimport time\ntime.sleep(120)\n```"


def percentile(values, p):
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))]


def database_url() -> str:
    from tests.execution_support import database_url as url

    return url(connection.settings_dict)


def start_workers(count: int) -> list[subprocess.Popen]:
    env = dict(os.environ, DATABASE_URL=database_url(), REDIS_URL=settings.REDIS_URL, LOG_LEVEL="WARNING")
    return [
        subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "runworker", "--name", f"bench-{os.getpid()}-{n}"],
            env=env, cwd=ROOT, stdin=subprocess.DEVNULL,
        )
        for n in range(count)
    ]


def stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


def wait_until(predicate, timeout=120.0, interval=0.005):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError("bench: waited too long")


class Bench:
    def __init__(self):
        from accounts.models import Customer
        from agents.models import Agent, ModelConfig

        name = f"bench-tasks-{os.getpid()}-{int(time.time())}"
        self.customer = Customer.objects.create(name=name, max_concurrent_tasks=10_000, max_tasks_per_day=1_000_000)
        trivial = ModelConfig.objects.create(customer=self.customer, name="trivial", provider="replay", responses=["Done. TERMINATE"])
        sleepy = ModelConfig.objects.create(customer=self.customer, name="sleepy", provider="replay", responses=[SLEEPY_CODE])
        self.trivial = Agent.objects.create(customer=self.customer, name="trivial", model=trivial)
        self.sleepy = Agent.objects.create(customer=self.customer, name="sleepy", model=sleepy, code_execution=True)

    def submit(self, agent) -> int:
        from tasks.services import task_create

        task, _ = task_create(actor="bench", customer=self.customer, input="Go", agent=agent)
        return task.pk

    def finished(self, task_ids, timeout=300.0):
        from tasks.models import Task

        ids = set(task_ids)

        def done():
            rows = list(Task.objects.filter(pk__in=ids, status__in=Task.FINISHED))
            return rows if len(rows) == len(ids) else None

        return wait_until(done, timeout, interval=0.01)

    def latency(self, runs: int) -> list[float]:
        out = []
        for _ in range(runs):
            (task,) = self.finished([self.submit(self.trivial)])
            assert task.status == "succeeded", task.error
            out.append((task.finished_at - task.created_at).total_seconds())
        return out

    def burst(self, count: int) -> tuple[float, list]:
        ids = [self.submit(self.trivial) for _ in range(count)]
        tasks = self.finished(ids)
        failed = [t.error for t in tasks if t.status != "succeeded"]
        first = min(t.created_at for t in tasks)
        last = max(t.finished_at for t in tasks)
        return count / (last - first).total_seconds(), failed

    def cancel(self, runs: int) -> tuple[list, list, list]:
        from tasks.models import Task
        from tasks.services import task_cancel

        to_status, to_gone, rss = [], [], []
        for _ in range(runs):
            task_id = self.submit(self.sleepy)
            pid = wait_until(lambda: Task.objects.filter(pk=task_id, status="running").values_list("pid", flat=True).first())
            # the code executor's process runs the model's code file: the whole tree is up
            tree = wait_until(lambda: _code_running(_tree(pid)), timeout=60)
            rss.append(sum(_rss(p) for p in tree if any(word in " ".join(_cmdline(p)) for word in ("agentchild", "sandbox/zygote.py"))) / 2**20)
            started = time.monotonic()
            task_cancel(actor="bench", task=Task.objects.get(pk=task_id))
            wait_until(lambda: Task.objects.filter(pk=task_id, status="cancelled").exists(), interval=0.002)
            to_status.append(time.monotonic() - started)
            wait_until(lambda: all(not psutil.pid_exists(p.pid) or p.status() == psutil.STATUS_ZOMBIE for p in tree), interval=0.002)
            to_gone.append(time.monotonic() - started)
        return to_status, to_gone, rss

    def delete(self):
        from agents.models import Agent, ModelConfig
        from tasks.models import Task

        Task.objects.filter(customer=self.customer).delete()
        Agent.objects.filter(customer=self.customer).delete()
        ModelConfig.objects.filter(customer=self.customer).delete()
        self.customer.delete()


def _tree(pid):
    try:
        root = psutil.Process(pid)
        return [root] + root.children(recursive=True)
    except psutil.Error:
        return []


def _code_running(tree):
    return tree if any("tmp_code" in " ".join(_cmdline(p)) for p in tree) else None


def _rss(process):
    try:
        return process.memory_info().rss
    except psutil.Error:
        return 0


def _cmdline(process):
    try:
        return process.cmdline()
    except psutil.Error:
        return []


def child_start(runs: int) -> tuple[list, list]:
    """Seconds from spawn to exit of a sandboxed `python -c pass`, and of one importing AgentChat."""
    from runtime.sandbox import Sandbox, SandboxLimits, probe_capabilities
    from runtime.supervisor import child_env

    probe_capabilities()  # the layers a Sandbox uses by default
    results = {"bare": [], "agentchat": []}
    code = {"bare": "pass", "agentchat": "import agentchild.build, agentchild.events"}
    for _ in range(runs):
        for kind in ("bare", "agentchat"):
            box = Sandbox(task_id=900_000 + os.getpid() % 1000, limits=SandboxLimits(), root=settings.SANDBOX_ROOT)
            started = time.monotonic()
            box.spawn([sys.executable, "-c", code[kind]], env=child_env(box.workdir, 0))
            box.wait(60)
            results[kind].append(time.monotonic() - started)
            box.cleanup()
    return results["bare"], results["agentchat"]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=settings.WORKERS)
    parser.add_argument("--latency-runs", type=int, default=20)
    parser.add_argument("--burst", type=int, default=50)
    parser.add_argument("--cancel-runs", type=int, default=5)
    parser.add_argument("--start-runs", type=int, default=5)
    args = parser.parse_args()

    redis_proc = None
    if settings.REDIS_EMBEDDED:
        from runtime import embedded_redis

        redis_proc = embedded_redis.start(settings.EMBEDDED_REDIS_SOCKET)
    call_command("migrate", verbosity=0)
    workers = start_workers(args.workers)
    bench = Bench()
    try:
        bench.latency(2)  # warm-up: the workers finish starting
        latencies = bench.latency(args.latency_runs)
        rate, burst_failed = bench.burst(args.burst)
        to_status, to_gone, child_rss = bench.cancel(args.cancel_runs)
        from tasks.models import Task

        peaks = list(Task.objects.filter(customer=bench.customer, agent=bench.trivial).values_list("usage__peak_memory_mb", flat=True))
        bare, agentchat = child_start(args.start_runs)
    finally:
        stop(workers)
        bench.delete()
        if redis_proc is not None:
            from runtime import embedded_redis

            embedded_redis.stop(redis_proc)

    from runtime.sandbox import probe_capabilities

    ms = lambda s: f"{s * 1000:.0f} ms"  # noqa: E731
    rows = [
        ("end-to-end trivial replay task, p50", ms(percentile(latencies, 50))),
        ("end-to-end trivial replay task, p95", ms(percentile(latencies, 95))),
        (f"burst of {args.burst} tasks, {args.workers} workers", f"{rate:.1f} tasks/s" + (f" ({len(burst_failed)} failed)" if burst_failed else "")),
        ("child start: sandboxed bare python, p50", ms(percentile(bare, 50))),
        ("child start: sandboxed python + AgentChat imports, p50", ms(percentile(agentchat, 50))),
        ("cancel -> status cancelled, p50 / max", f"{ms(percentile(to_status, 50))} / {ms(max(to_status))}"),
        ("cancel -> process tree gone, p50 / max", f"{ms(percentile(to_gone, 50))} / {ms(max(to_gone))}"),
        ("memory: peak of a trivial task's tree, median", f"{statistics.median([p for p in peaks if p]):.0f} MB"),
        ("memory: RSS of a waiting agent child, median", f"{statistics.median(child_rss):.0f} MB"),
    ]
    caps = probe_capabilities()
    print()
    print(f"machine: {platform.node()}, {os.cpu_count()} CPU, {psutil.virtual_memory().total / 2**30:.1f} GiB, "
          f"{platform.system()} {platform.release()}, Python {platform.python_version()}")
    print(f"database: {connection.vendor}; redis: {'embedded' if settings.REDIS_EMBEDDED else 'external'}; "
          f"sandbox level: {caps.get('level')}; load average: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    width = max(len(r[0]) for r in rows)
    print(f"{'measure'.ljust(width)}  value")
    print(f"{'-' * width}  {'-' * 20}")
    for name, value in rows:
        print(f"{name.ljust(width)}  {value}")


if __name__ == "__main__":
    main()
