"""Helpers for execution tests and the benchmark: real `manage.py runworker` / `reaper` processes
pointed at the test database and Redis, and small builders for agents and tasks."""
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import psutil
from django.conf import settings

REPO = Path(__file__).resolve().parent.parent


def database_url(settings_dict: dict) -> str:
    """The DATABASE_URL of the database this process uses now (pytest-django's test_<name> included)."""
    engine = settings_dict["ENGINE"]
    if "sqlite" in engine:
        return f"sqlite:///{settings_dict['NAME']}"
    auth = settings_dict.get("USER") or ""
    if settings_dict.get("PASSWORD"):
        auth += f":{settings_dict['PASSWORD']}"
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = settings_dict.get("PORT") or 5432
    return f"postgres://{auth}@{host}:{port}/{settings_dict['NAME']}"


def worker_env(settings_dict: dict, **overrides) -> dict:
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", "autogen_platform.settings.test"),
            "DATABASE_URL": database_url(settings_dict),
            "REDIS_URL": settings.REDIS_URL,
            "REDIS_NAMESPACE": settings.REDIS_NAMESPACE,
            "PLATFORM_VAR_DIR": str(settings.VAR_DIR),
            "TASK_HEARTBEAT_SECONDS": "0.5",
            "TASK_LEASE_SECONDS": "2",
            "REAPER_INTERVAL_SECONDS": "0.5",
            "TASK_REQUEUE_SECONDS": "5",
            "LOG_LEVEL": "WARNING",
        }
    )
    env.update({k: str(v) for k, v in overrides.items()})
    return env


class Processes:
    """Workers and a reaper started for a test module; logs under VAR_DIR/test-workers/."""

    def __init__(self, env: dict):
        self.env = env
        self.procs: dict[str, subprocess.Popen] = {}
        self.rq_names: dict[str, str] = {}
        self.log_dir = Path(settings.VAR_DIR) / "test-workers"
        self.log_dir.mkdir(parents=True, exist_ok=True)

    def _start(self, name: str, argv: list[str]) -> subprocess.Popen:
        log = open(self.log_dir / f"{name}.log", "ab")
        proc = subprocess.Popen(
            [sys.executable, str(REPO / "manage.py"), *argv],
            env=self.env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        self.procs[name] = proc
        return proc

    def start_worker(self, name: str) -> subprocess.Popen:
        # A fresh RQ name each start: a SIGKILLed worker's registration outlives it for a while.
        self.starts = getattr(self, "starts", 0) + 1
        self.rq_names[name] = f"{settings.REDIS_NAMESPACE}-{name}-{os.getpid()}-{self.starts}"
        return self._start(name, ["runworker", "--name", self.rq_names[name]])

    def start_reaper(self, name: str = "reaper") -> subprocess.Popen:
        return self._start(name, ["reaper"])

    def start_webhooks(self, name: str = "webhooks") -> subprocess.Popen:
        """A webhook delivery worker (`manage.py runwebhooks`)."""
        return self._start(name, ["runwebhooks", "--name", f"{settings.REDIS_NAMESPACE}-{name}-{os.getpid()}"])

    def wait_ready(self, names, timeout: float = 180.0) -> None:
        """Until these workers take jobs (registered in RQ, which a worker does once its runtime and zygote are
        up): a test's own timeouts then measure its tasks, not a worker's start on a busy machine (which took
        over 30 s there and failed the first test of a module now and then)."""
        import django_rq
        from rq import Worker

        connection = django_rq.get_connection("default")
        wanted = {self.rq_names[name] for name in names}
        deadline = time.monotonic() + timeout
        while not wanted <= {w.name for w in Worker.all(connection=connection)}:
            exited = [name for name in names if self.procs[name].poll() is not None]
            if exited or time.monotonic() > deadline:
                raise AssertionError(f"workers {exited or sorted(wanted)} did not start (logs in {self.log_dir})")
            time.sleep(0.1)

    def worker_for(self, task_worker: str) -> tuple[str, subprocess.Popen]:
        """The (name, process) of the worker whose RQ name is in Task.worker."""
        for name, proc in self.procs.items():
            if task_worker.endswith(f"/{self.rq_names.get(name)}"):
                return name, proc
        raise LookupError(task_worker)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                for child in psutil.Process(proc.pid).children(recursive=True):
                    child.kill()
                proc.kill()
                proc.wait()


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.05, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def pid_gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@contextmanager
def running(*workers: str, reaper: bool = False, webhooks: int = 0, **env):
    """Worker processes (and a reaper) pointed at this test session's database, stopped afterwards.
    Name workers uniquely per module: RQ keeps a SIGKILLed worker's name registered for a while."""
    from django.db import connection

    procs = Processes(worker_env(connection.settings_dict, **env))
    for name in workers:
        procs.start_worker(name)
    if reaper:
        procs.start_reaper()
    for n in range(webhooks):
        procs.start_webhooks(f"webhooks-{n + 1}")
    try:
        procs.wait_ready(workers)
        yield procs
    finally:
        procs.stop()
