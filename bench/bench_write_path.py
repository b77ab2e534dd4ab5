"""What one task costs the database and the CPU, path by path: figures that do not depend on the machine's load.

bench_scale.py measures wall-clock throughput, which means little on a busy machine. This bench counts what
each task costs instead, on `make run`'s defaults (embedded SQLite + Redis, unless --postgres/--redis):

- the web side: POST /api/tasks/ through Django's test client in this process (the view, the service, the
  quotas, the CustomerNotice of `queued`), per create: SQL statements, write transactions, SQLite write-lock
  takes (BEGIN IMMEDIATE, or a write outside a transaction), CPU seconds of this process;
- the worker side: one real `manage.py runworker` (ConcurrentWorker + Runtime + sandboxes) in a process of its
  own whose database connections are counted the same way, by the runtime's store call that made them
  (start, load, attach, append_events, finish_many, ...), and the worker process's CPU seconds (psutil).

Two scenarios, each on the same worker:
  sequential  --sequential tasks, one after another (submit, wait until finished): nothing is batched, the
              cost of one task alone;
  burst       --burst tasks submitted while the worker is stopped (SIGSTOP), then let go at once: what
              batching (events, ends) saves when tasks come together (how much gets batched depends on timing).

The trivial task is a replay model answering "Done. TERMINATE" (one agent message, then the task ends).
Background work of the worker that is not per task (RQ keepalive, worker-host heartbeat) is counted apart.

    .venv/bin/python bench/bench_write_path.py                          # embedded SQLite + Redis
    .venv/bin/python bench/bench_write_path.py --sequential 20 --burst 50 --json /tmp/write_path.json
    .venv/bin/python bench/bench_write_path.py --postgres postgres://postgres@127.0.0.1:5432/bench_wp
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
VENV = str(ROOT / ".venv")

# -- counting (both processes) --------------------------------------------------------------------------

_tag = threading.local()


class Counts:
    """SQL statements, write transactions and write-lock takes, by tag (what made them)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.statements = Counter()
        self.write_txns = Counter()
        self.lock_takes = Counter()
        self.by_function = Counter()  # "tag | innermost project function: first words of the SQL"

    def snapshot(self) -> dict:
        with self.lock:
            return {
                "thread_cpu": {},
                "statements": dict(self.statements),
                "write_txns": dict(self.write_txns),
                "lock_takes": dict(self.lock_takes),
                "by_function": dict(self.by_function),
            }


COUNTS = Counts()


def _project_function() -> str:
    """The innermost frame of the project's own code (not Django, not this bench)."""
    frame = sys._getframe(3)
    while frame is not None:
        filename = frame.f_code.co_filename
        if filename.startswith(str(ROOT)) and not filename.startswith(VENV) and "bench/" not in filename:
            return f"{Path(filename).parent.name}/{Path(filename).name}:{frame.f_code.co_name}"
        frame = frame.f_back
    return "?"


def _counting(execute, sql, params, many, context):
    connection = context["connection"]
    tag = getattr(_tag, "name", None) or "other"
    head = sql.lstrip()[:12].upper()
    words = " ".join(w for w in sql.split()[:3] if not w.startswith('"s'))[:40]  # savepoint ids vary
    write = head.startswith(("INSERT", "UPDATE", "DELETE", "REPLACE"))
    with COUNTS.lock:
        COUNTS.statements[tag] += 1
        COUNTS.by_function[f"{tag} | {_project_function()}: {words}"] += 1
        if head.startswith("BEGIN"):
            COUNTS.lock_takes[tag] += 1  # SQLite, transaction_mode IMMEDIATE: every atomic block takes the lock
        elif write:
            if not connection.in_atomic_block:
                COUNTS.write_txns[tag] += 1
                if connection.vendor == "sqlite":
                    COUNTS.lock_takes[tag] += 1
            elif not getattr(connection, "_bench_wrote", False):
                connection._bench_wrote = True
                COUNTS.write_txns[tag] += 1
    return execute(sql, params, many, context)


def install_counting() -> None:
    """Count every statement of every connection this process opens, from now on."""
    from django.db import connections
    from django.db.backends.base.base import BaseDatabaseWrapper
    from django.db.backends.signals import connection_created

    def hook(sender, connection, **kwargs):
        if _counting not in connection.execute_wrappers:
            connection.execute_wrappers.append(_counting)

    connection_created.connect(hook, weak=False)
    for connection in connections.all(initialized_only=True):
        hook(None, connection)

    for name in ("commit", "rollback"):
        original = getattr(BaseDatabaseWrapper, name)

        def ended(self, _original=original):
            self._bench_wrote = False
            return _original(self)

        setattr(BaseDatabaseWrapper, name, ended)


class tagged:
    def __init__(self, name: str):
        self.name = name

    def __enter__(self):
        self.previous = getattr(_tag, "name", None)
        _tag.name = self.name

    def __exit__(self, *exc):
        _tag.name = self.previous


# -- the worker process --------------------------------------------------------------------------------


def as_worker(out: str) -> None:
    """`manage.py runworker`, its database calls counted by the runtime's store method that made them."""
    import django

    django.setup()
    if os.environ.get("BENCH_NO_COUNTING"):  # --cpu: the counting's own cost stays out of the CPU figures
        return _run_worker(out)
    install_counting()
    from runtime import supervisor

    original = supervisor._with_connection

    def with_tag(fn, args, kwargs):
        with tagged(getattr(fn, "__name__", "db")):
            return original(fn, args, kwargs)

    supervisor._with_connection = with_tag

    with tagged("worker-background"):
        _run_worker(out)


def _run_worker(out: str) -> None:
    import psutil
    from django.core.management import call_command

    me = psutil.Process()

    def thread_cpu() -> dict:
        """CPU seconds of this process's threads by what they are (runtime-db, runtime-loop, MainThread: RQ)."""
        names = {t.native_id: t.name.rstrip("0123456789_-").split("_")[0] for t in threading.enumerate()}
        out = Counter()
        for t in me.threads():
            out[names.get(t.id, "other")] += t.user_time + t.system_time
        return dict(out)

    def dump():
        while True:
            time.sleep(0.2)
            tmp = out + ".tmp"
            with open(tmp, "w") as f:
                json.dump({**COUNTS.snapshot(), "thread_cpu": thread_cpu()}, f)
            os.replace(tmp, out)

    threading.Thread(target=dump, name="bench-counts", daemon=True).start()
    call_command("runworker", "--name", f"bench-wp-{os.getpid()}")


# -- the bench (parent) ----------------------------------------------------------------------------------


def diff(after: dict, before: dict) -> dict:
    return {k: {t: v - before.get(k, {}).get(t, 0) for t, v in after[k].items() if v - before.get(k, {}).get(t, 0)}
            for k in after}


class Bench:
    def __init__(self, args):
        from django.conf import settings
        from django.core.management import call_command
        from rest_framework.test import APIClient

        from accounts.models import Customer
        from accounts.services import customer_create, member_add
        from agents.models import Agent, ModelConfig
        from runtime import embedded_redis

        self.args = args
        call_command("migrate", "--noinput", "-v0")
        self.redis = embedded_redis.start(settings.EMBEDDED_REDIS_SOCKET) if settings.REDIS_EMBEDDED else None
        customer = customer_create(actor="bench", name=f"bench-wp-{os.getpid()}", quotas={
            "max_concurrent_tasks": 10_000, "max_tasks_per_day": 1_000_000})
        self.customer = Customer.objects.get(pk=customer.pk)
        self.password = "bench-Passw0rd-" + os.urandom(4).hex()
        member_add(actor="bench", customer=self.customer, username=f"bench-wp-{os.getpid()}", password=self.password,
                   role="owner")
        model = ModelConfig.objects.create(customer=self.customer, name="trivial", provider="replay",
                                           responses=["Done. TERMINATE"])
        self.agent = Agent.objects.create(customer=self.customer, name="trivial", model=model)
        self.client = APIClient()
        response = self.client.post("/api/auth/token/", {"username": f"bench-wp-{os.getpid()}",
                                                          "password": self.password}, format="json")
        assert response.status_code == 200, response.content
        self.client.credentials(HTTP_AUTHORIZATION=f"Bearer {response.json()['access']}")
        self.worker = None
        self.counts_file = str(Path(settings.VAR_DIR) / "worker-counts.json")

    def start_worker(self) -> None:
        from django.conf import settings
        from rq import Worker

        import django_rq

        env = dict(os.environ, LOG_LEVEL="WARNING")
        self.worker = subprocess.Popen([sys.executable, __file__, "--as-worker", self.counts_file], env=env, cwd=ROOT,
                                       stdin=subprocess.DEVNULL)
        queue = django_rq.get_queue("default")
        deadline = time.monotonic() + 120
        while not Worker.all(queue=queue):
            if self.worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the worker did not start")
            time.sleep(0.2)
        time.sleep(2)  # the zygote is up, the first keepalive done
        assert settings.REDIS_URL

    def stop_worker(self) -> None:
        if self.worker is not None and self.worker.poll() is None:
            self.worker.send_signal(signal.SIGTERM)
            try:
                self.worker.wait(60)
            except subprocess.TimeoutExpired:
                self.worker.kill()
                self.worker.wait()

    def worker_counts(self) -> dict:
        """The worker's counts once they stopped moving (its last on_commit work included)."""
        last, same_since = None, time.monotonic()
        while True:
            time.sleep(0.25)
            try:
                now = Path(self.counts_file).read_text()
            except FileNotFoundError:
                continue
            if now != last:
                last, same_since = now, time.monotonic()
            elif time.monotonic() - same_since > 1.0:
                return json.loads(now)

    def worker_cpu(self) -> float:
        import psutil

        times = psutil.Process(self.worker.pid).cpu_times()
        return times.user + times.system

    def submit(self) -> int:
        response = self.client.post("/api/tasks/", {"agent": self.agent.pk, "input": "Go"}, format="json")
        assert response.status_code == 201, response.content
        return response.json()["id"]

    def wait_finished(self, ids: list[int], timeout: float = 300) -> None:
        from tasks.models import Task

        deadline = time.monotonic() + timeout
        while Task.objects.filter(pk__in=ids).exclude(status__in=Task.FINISHED).exists():
            if time.monotonic() > deadline:
                raise RuntimeError("tasks did not finish")
            time.sleep(0.02)
        bad = list(Task.objects.filter(pk__in=ids).exclude(status="succeeded").values_list("pk", "status", "error"))
        assert not bad, bad

    def scenario(self, name: str, count: int) -> dict:
        web_before, worker_before = COUNTS.snapshot(), self.worker_counts()
        cpu_before, web_cpu = self.worker_cpu(), 0.0
        ids = []
        if name == "sequential":
            for _ in range(count):
                started = time.process_time()
                with tagged("web"):
                    ids.append(self.submit())
                web_cpu += time.process_time() - started
                self.wait_finished(ids[-1:])
        else:
            self.worker.send_signal(signal.SIGSTOP)
            try:
                started = time.process_time()
                with tagged("web"):
                    ids = [self.submit() for _ in range(count)]
                web_cpu = time.process_time() - started
            finally:
                self.worker.send_signal(signal.SIGCONT)
            self.wait_finished(ids)
        worker = diff(self.worker_counts(), worker_before)
        web = diff(COUNTS.snapshot(), web_before)
        cpu = self.worker_cpu() - cpu_before
        return {"tasks": count, "web": web, "worker": worker, "web_cpu": web_cpu, "worker_cpu": cpu}


def per_task(part: dict, key: str, count: int) -> float:
    """Per task, without what is not per task: the worker's keepalive, the timers (heartbeat, stop poll: per
    interval, for every task held at once), and on the web side the bench's own polling."""
    skip = ("worker-background", "heartbeat", "stop_reasons", "other")
    return sum(v for tag, v in part.get(key, {}).items() if tag not in skip) / count


def report(results: dict, database: str) -> None:
    print(f"\nper task, {database}  (load average {os.getloadavg()[0]:.1f}: CPU seconds inflate on a busy machine)")
    print("| scenario | side | SQL statements | write transactions | SQLite write-lock takes | CPU ms |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, r in results.items():
        n = r["tasks"]
        own = r["worker"].get("thread_cpu", {}).get("bench-counts", 0)  # the bench's own thread in the worker
        for side, cpu in (("web (POST /api/tasks/)", r["web_cpu"]), ("worker", r["worker_cpu"] - own)):
            part = r["web" if side.startswith("web") else "worker"]
            print(f"| {name} ({n}) | {side} | {per_task(part, 'statements', n):.1f} | {per_task(part, 'write_txns', n):.2f} "
                  f"| {per_task(part, 'lock_takes', n):.2f} | {cpu / n * 1000:.1f} |")
    for name, r in results.items():
        n = r["tasks"]
        print(f"\n{name}: worker statements per task, by store call (write txns, lock takes)")
        w = r["worker"]
        for tag in sorted(w.get("statements", {}), key=lambda t: -w["statements"][t]):
            print(f"  {tag:22} {w['statements'][tag] / n:6.2f}  ({w.get('write_txns', {}).get(tag, 0) / n:.2f}, "
                  f"{w.get('lock_takes', {}).get(tag, 0) / n:.2f})")
        cpu = w.get("thread_cpu", {})
        print(f"{name}: worker CPU ms per task by thread: "
              + ", ".join(f"{t} {v / n * 1000:.1f}" for t, v in sorted(cpu.items(), key=lambda kv: -kv[1]) if v > 0))
        if os.environ.get("BENCH_DETAIL"):
            for side in ("web", "worker"):
                print(f"  {side} detail:")
                for key, v in sorted(r[side].get("by_function", {}).items(), key=lambda kv: -kv[1]):
                    print(f"    {v / n:6.2f}  {key}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sequential", type=int, default=20)
    parser.add_argument("--burst", type=int, default=50)
    parser.add_argument("--postgres", help="a database URL (the default: SQLite under a fresh var dir)")
    parser.add_argument("--redis", help="a Redis URL (the default: the embedded Redis)")
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--cpu", action="store_true",
                        help="measure CPU only: the worker's statements are not counted (counting costs CPU too)")
    parser.add_argument("--as-worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.as_worker:
        return as_worker(args.as_worker)

    var_dir = tempfile.mkdtemp(prefix="bwp-", dir="/tmp")  # short: the Redis socket path has a length limit
    for name in ("DATABASE_URL", "REDIS_URL", "REDIS_NAMESPACE"):
        os.environ.pop(name, None)
    os.environ.update(DJANGO_SETTINGS_MODULE="autogen_platform.settings.dev", PLATFORM_VAR_DIR=var_dir,
                      LOG_LEVEL=os.environ.get("LOG_LEVEL", "WARNING"))
    if args.postgres:
        os.environ["DATABASE_URL"] = args.postgres
    if args.cpu:
        os.environ["BENCH_NO_COUNTING"] = "1"
    if args.redis:
        os.environ.update(REDIS_URL=args.redis, REDIS_NAMESPACE=f"benchwp{os.getpid()}")
    import django

    django.setup()
    install_counting()
    from django.db import connection

    bench = Bench(args)
    results = {}
    try:
        bench.start_worker()
        bench.submit()  # warm both sides (first imports, the zygote's first fork)
        time.sleep(2)
        for name, count in (("sequential", args.sequential), ("burst", args.burst)):
            if count:
                results[name] = bench.scenario(name, count)
    except Exception:
        traceback.print_exc()
        raise
    finally:
        bench.stop_worker()
        from runtime import embedded_redis

        if bench.redis is not None:
            embedded_redis.stop(bench.redis)
        shutil.rmtree(var_dir, ignore_errors=True)
    report(results, connection.vendor)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
