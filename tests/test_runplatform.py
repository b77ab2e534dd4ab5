"""`manage.py runplatform` as `make run` starts it, on the embedded defaults (SQLite under a var dir,
the embedded Redis): it serves /healthz and /readyz, restarts a worker that dies, and leaves no
process behind when stopped by SIGTERM or when it is itself SIGKILLed."""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest
import requests
from django.conf import settings

MANAGE = str(Path(settings.BASE_DIR) / "manage.py")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _embedded_env(var_dir: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "REDIS_NAMESPACE")}
    env.update(
        DJANGO_SETTINGS_MODULE="autogen_platform.settings.dev",
        PLATFORM_VAR_DIR=str(var_dir),
        PYTHONUNBUFFERED="1",
        **extra,
    )
    return env


@pytest.fixture(scope="module")
def migrated_sqlite():
    """One migrated SQLite file, copied into each platform's var dir (migrating takes seconds)."""
    # Short paths: the embedded Redis socket path must stay under the kernel's 107-byte limit.
    var_dir = Path(tempfile.mkdtemp(prefix="rp-template-", dir="/tmp"))
    subprocess.run(
        [sys.executable, MANAGE, "migrate", "--noinput", "-v0"], env=_embedded_env(var_dir), check=True, timeout=120
    )
    yield var_dir / "platform.sqlite3"
    shutil.rmtree(var_dir, ignore_errors=True)


class Platform:
    def __init__(self, sqlite: Path):
        self.var_dir = Path(tempfile.mkdtemp(prefix="rp-", dir="/tmp"))
        shutil.copy(sqlite, self.var_dir / "platform.sqlite3")
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = open(self.var_dir / "runplatform.log", "w+b")
        self.proc = subprocess.Popen(
            [sys.executable, MANAGE, "runplatform", "--grace", "5"],
            env=_embedded_env(self.var_dir, PORT=str(self.port), WORKERS="1"),
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.seen: dict[int, psutil.Process] = {}

    def record(self) -> list[psutil.Process]:
        """Remember every descendant alive now (psutil.Process keeps its create time: no pid-reuse confusion)."""
        try:
            children = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        for child in children:
            self.seen.setdefault(child.pid, child)
        return children

    def workers(self) -> list[psutil.Process]:
        return [p for p in self.record() if _cmdline(p)[-1:] == ["runworker"]]

    def get(self, path: str, **kwargs):
        return requests.get(self.base + path, timeout=5, **kwargs)

    def wait_for(self, condition, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.record()
            try:
                result = condition()
            except requests.RequestException:
                result = None
            if result:
                return result
            assert self.proc.poll() is None, f"runplatform exited with {self.proc.returncode}:\n{self.output()[-6000:]}"
            time.sleep(0.5)
        raise AssertionError(f"timed out waiting for {what}:\n{self.output()[-6000:]}")

    def output(self) -> str:
        self.log.flush()
        return (self.var_dir / "runplatform.log").read_text(errors="replace")

    def left_over(self, timeout: float) -> list[psutil.Process]:
        deadline = time.monotonic() + timeout
        while True:
            alive = [p for p in self.seen.values() if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
            if not alive or time.monotonic() > deadline:
                return alive
            time.sleep(0.2)

    def close(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for proc in self.left_over(5):
            proc.kill()
        self.log.close()
        shutil.rmtree(self.var_dir, ignore_errors=True)


def _cmdline(proc: psutil.Process) -> list[str]:
    try:
        return proc.cmdline()
    except psutil.Error:
        return []


@pytest.fixture
def platform(migrated_sqlite):
    running = Platform(migrated_sqlite)
    yield running
    running.close()


def _ready(platform):
    response = platform.get("/readyz")
    return response if response.status_code == 200 else None


def test_runplatform_serves_and_sigterm_stops_every_process(platform):
    # given a platform started as `make run` starts it
    health = platform.wait_for(lambda: platform.get("/healthz").status_code == 200, 60, "/healthz")
    assert health
    ready = platform.wait_for(lambda: _ready(platform), 60, "/readyz 200").json()
    assert ready["status"] == "ready"
    assert ready["checks"]["database"] == "ok" and ready["checks"]["redis"] == "ok"
    assert ready["checks"]["workers"] >= 1
    names = {" ".join(_cmdline(p)) for p in platform.record()}
    assert any("redis-server" in n for n in names), names
    web = [p for p in platform.record() if "daphne" in " ".join(_cmdline(p))]
    assert len(web) == 2, names  # WEB_PROCESSES=2 by default, on one listening socket
    # either one serves the port alone: stop one, the other answers every request meanwhile
    web[0].suspend()
    try:
        assert {platform.get("/healthz", headers={"Connection": "close"}).status_code for _ in range(6)} == {200}
    finally:
        web[0].resume()
    web[1].suspend()
    try:
        assert {platform.get("/healthz", headers={"Connection": "close"}).status_code for _ in range(6)} == {200}
    finally:
        web[1].resume()
    assert any(n.endswith("runworker") for n in names), names
    assert any(n.endswith("reaper") for n in names), names
    assert "/api/docs/" in platform.output() and "/admin/" in platform.output()

    # when it gets SIGTERM
    platform.proc.send_signal(signal.SIGTERM)

    # then it exits 0 and every process it started is gone, the embedded Redis included
    assert platform.proc.wait(30) == 0, platform.output()[-6000:]
    assert platform.left_over(5) == [], platform.output()[-6000:]
    with pytest.raises(requests.ConnectionError):
        platform.get("/healthz")
    assert not (platform.var_dir / "redis" / "redis.sock").exists() or not _redis_answers(platform.var_dir)


def test_dead_worker_is_restarted_and_sigkilled_supervisor_leaves_nothing(platform):
    # given a ready platform
    platform.wait_for(lambda: _ready(platform), 60, "/readyz 200")
    (worker,) = platform.workers()

    # when a worker is killed
    worker.kill()

    # then the supervisor starts another one and the platform is ready again
    replacement = platform.wait_for(
        lambda: [w for w in platform.workers() if w.pid != worker.pid], 30, "a restarted worker"
    )
    assert replacement
    platform.wait_for(lambda: _ready(platform), 60, "/readyz 200 after the restart")
    assert "worker-1 was killed by SIGKILL" in platform.output()

    # and when the supervisor itself is SIGKILLed, its children do not linger
    platform.record()
    platform.proc.kill()
    platform.proc.wait(10)
    assert platform.left_over(30) == []


def test_embedded_redis_stops_when_its_owner_is_killed():
    # given a process that started the embedded Redis
    socket_path = Path(tempfile.mkdtemp(prefix="er-", dir="/tmp")) / "redis.sock"
    owner = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from runtime import embedded_redis; "
            "p = embedded_redis.start(sys.argv[1]); print(p.pid, flush=True); time.sleep(60)",
            str(socket_path),
        ],
        cwd=settings.BASE_DIR,
        stdout=subprocess.PIPE,
        text=True,
    )
    redis_pid = int(owner.stdout.readline())
    redis_proc = psutil.Process(redis_pid)
    assert "redis-server" in " ".join(redis_proc.cmdline())

    # when the owner dies by SIGKILL
    owner.kill()
    owner.wait()

    # then the server stops too
    gone, alive = psutil.wait_procs([redis_proc], timeout=10)
    for proc in alive:
        proc.kill()
    assert alive == []
    shutil.rmtree(socket_path.parent, ignore_errors=True)


def _redis_answers(var_dir: Path) -> bool:
    from runtime import embedded_redis

    return embedded_redis.is_answering(var_dir / "redis" / "redis.sock")
