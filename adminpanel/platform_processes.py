"""The platform's process manager: what `manage.py runplatform` (a thin command) runs in the foreground.

ProcessManager starts the processes a command hands it (the embedded Redis, daphne, the task and webhook
workers, the reaper), each in its own process group, told by the kernel to stop if the manager dies
(PR_SET_PDEATHSIG); it prefixes and forwards their output, restarts one that dies unexpectedly with
backoff, and on SIGINT or SIGTERM stops every process it started (TERM, then KILL after a grace period),
the embedded Redis last and orphaned grandchildren included (the manager is their subreaper). Its own
output lines are labelled `supervisor`.
"""
import ctypes
import datetime
import json
import os
import selectors
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass

import psutil
from django.conf import settings

from autogen_platform.logctx import redact
from runtime import embedded_redis
from runtime.agentchild.linux import PR_SET_CHILD_SUBREAPER

# A child that ran this long before dying starts again at the shortest backoff.
HEALTHY_RUN_SECONDS = 30
MAX_BACKOFF_SECONDS = 30


@dataclass
class ManagedProcess:
    name: str
    spawn: object  # () -> subprocess.Popen, started in its own process group
    proc: subprocess.Popen | None = None
    started_at: float = 0.0
    failures: int = 0
    restart_at: float | None = None
    given_up: bool = False


class ProcessManager:
    def __init__(self, out, *, grace: float):
        self.out = out
        self.grace = grace
        self.children: list[ManagedProcess] = []
        self.by_pid: dict[int, ManagedProcess] = {}
        self.selector = selectors.DefaultSelector()
        self.stopping = False
        self.forced = False

    # -- output ---------------------------------------------------------------------------------
    def say(self, message: str) -> None:
        if settings.LOG_FORMAT == "json":
            self._write(json_line("supervisor", message).encode() + b"\n")
        else:
            self._write(f"{'supervisor':<10}| {message}\n".encode())

    def _write(self, data: bytes) -> None:
        try:
            self.out.write(data)
            self.out.flush()
        except (BrokenPipeError, ValueError):
            pass

    def _watch(self, child: ManagedProcess, proc: subprocess.Popen) -> None:
        if proc.stdout is None:
            return
        os.set_blocking(proc.stdout.fileno(), False)
        self.selector.register(proc.stdout, selectors.EVENT_READ, (child.name, bytearray()))

    def pump(self, timeout: float) -> None:
        """Forward whatever the children wrote, one prefixed line at a time."""
        if not self.selector.get_map():
            time.sleep(timeout)
            return
        for key, _ in self.selector.select(timeout):
            name, buffer = key.data
            try:
                data = os.read(key.fd, 65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if data:
                buffer += data
                *lines, rest = bytes(buffer).split(b"\n")
                buffer[:] = rest
            else:  # EOF: every process holding the pipe is gone
                lines = [bytes(buffer)] if buffer else []
                self.selector.unregister(key.fileobj)
                key.fileobj.close()
            for line in lines:
                if settings.LOG_FORMAT == "json":
                    self._write(json_child_line(name, line) + b"\n")
                else:
                    self._write(f"{name:<10}| ".encode() + line + b"\n")

    # -- processes ------------------------------------------------------------------------------
    def add(self, name: str, spawn) -> ManagedProcess:
        child = ManagedProcess(name=name, spawn=spawn)
        self.children.append(child)
        return child

    def start(self, child: ManagedProcess) -> None:
        child.restart_at = None
        child.proc = child.spawn()
        child.started_at = time.monotonic()
        self.by_pid[child.proc.pid] = child
        self._watch(child, child.proc)
        self.say(f"started {child.name} (pid {child.proc.pid})")

    def reap(self) -> None:
        """Collect every exited child, ours and orphans we became the subreaper of."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            child = self.by_pid.pop(pid, None)
            if child is None or child.proc is None:
                continue
            _metrics_process_dead(pid)
            code = os.waitstatus_to_exitcode(status)
            child.proc.returncode = code  # we reaped it: Popen must not wait for it again
            child.proc = None
            if self.stopping:
                continue
            self._schedule_restart(child, code)

    def _schedule_restart(self, child: ManagedProcess, code: int) -> None:
        how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
        if code == os.EX_CONFIG:  # its configuration forbids it to run (runworker): restarting would not help
            child.given_up = True
            self.say(f"{child.name} {how} (configuration refuses it): not restarting")
            return
        ran = time.monotonic() - child.started_at
        child.failures = 0 if ran >= HEALTHY_RUN_SECONDS else child.failures + 1
        delay = min(MAX_BACKOFF_SECONDS, 0.5 * 2**child.failures)
        child.restart_at = time.monotonic() + delay
        self.say(f"{child.name} {how}; restarting in {delay:g}s")

    def restart_due(self) -> None:
        now = time.monotonic()
        for child in self.children:
            if child.proc is None and child.restart_at is not None and child.restart_at <= now:
                try:
                    self.start(child)
                except Exception as exc:  # noqa: BLE001 - keep supervising the others, retry later
                    self.say(f"could not start {child.name}: {exc}")
                    child.started_at = time.monotonic()
                    self._schedule_restart(child, 1)

    def running(self, children) -> list[ManagedProcess]:
        return [c for c in children if c.proc is not None]

    def signal_group(self, child: ManagedProcess, sig: int) -> None:
        if child.proc is None:
            return
        try:
            os.killpg(child.proc.pid, sig)  # pgid == pid: each child leads its own session
        except ProcessLookupError:
            pass

    def wait_for(self, children, seconds: float) -> list[ManagedProcess]:
        deadline = time.monotonic() + seconds
        while self.running(children) and time.monotonic() < deadline and not self.forced:
            self.pump(0.1)
            self.reap()
        return self.running(children)

    def stop(self, children, label: str) -> None:
        """TERM each child's process group, KILL what is left after the grace period."""
        for child in self.running(children):
            self.signal_group(child, signal.SIGTERM)
        left = self.wait_for(children, self.grace)
        if left:
            self.say(f"{label}: still running after {self.grace:g}s, killing {', '.join(c.name for c in left)}")
            for child in left:
                self.signal_group(child, signal.SIGKILL)
            self.forced = False
            self.wait_for(children, 5)

    def sweep_orphans(self, keep: set[int]) -> None:
        """Processes that outlived their parent (e.g. RQ work horses, which leave the worker's group)."""
        orphans = [p for p in psutil.Process().children(recursive=True) if p.pid not in keep]
        if not orphans:
            return
        self.say(f"stopping {len(orphans)} leftover process(es): {', '.join(str(p.pid) for p in orphans)}")
        for proc in orphans:
            try:
                proc.terminate()
            except psutil.NoSuchProcess:
                pass
        _, alive = psutil.wait_procs(orphans, timeout=3)
        for proc in alive:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(alive, timeout=3)
        self.reap()

    def shutdown(self, redis_child: ManagedProcess | None) -> None:
        apps = [c for c in self.children if c is not redis_child]
        self.stop(apps, "shutdown")
        keep = {redis_child.proc.pid} if redis_child and redis_child.proc else set()
        self.sweep_orphans(keep)
        if redis_child is not None:
            self.stop([redis_child], "redis")
        self.sweep_orphans(set())
        self.pump(0)
        for key in list(self.selector.get_map().values()):
            self.selector.unregister(key.fileobj)
            key.fileobj.close()

    # -- signals --------------------------------------------------------------------------------
    def on_signal(self, signum, frame):
        if self.stopping:
            self.forced = True
            return
        self.stopping = True

    def install(self) -> None:
        signal.signal(signal.SIGINT, self.on_signal)
        signal.signal(signal.SIGTERM, self.on_signal)
        signal.signal(signal.SIGHUP, self.on_signal)
        # Orphaned grandchildren are re-parented to us, so we can reap them and stop them at the end.
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def json_line(process: str, message: str, level: str = "INFO") -> str:
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")
    return json.dumps({"time": now, "level": level, "logger": "runplatform", "process": process, "message": redact(message)})


def json_child_line(name: str, line: bytes) -> bytes:
    """LOG_FORMAT=json: a child's JSON line gets its process name; any other line (a crash's traceback,
    Redis' own output) becomes a JSON line too, so the whole output stays one JSON object a line."""
    try:
        record = json.loads(line)
    except ValueError:
        record = None
    if isinstance(record, dict):
        record.setdefault("process", name)
        return json.dumps(record, ensure_ascii=False).encode()
    return json_line(name, line.decode(errors="replace").rstrip("\r")).encode()


def metrics_dir() -> str:
    """prometheus_client's multiprocess directory shared by daphne and the workers, emptied at each start."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or str(settings.VAR_DIR / "prometheus")
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path, exist_ok=True)
    return path


def _metrics_process_dead(pid: int) -> None:
    """Drop a dead child's live gauges (worker slots) from the aggregate."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or str(settings.VAR_DIR / "prometheus")
    try:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, path)
    except OSError:
        pass


def spawner(argv: list[str], env: dict, pass_fds=()):
    def spawn() -> subprocess.Popen:
        return subprocess.Popen(
            argv,
            pass_fds=pass_fds,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=settings.BASE_DIR,
            env=env,
            start_new_session=True,
            preexec_fn=embedded_redis.die_with_parent(),
        )

    return spawn


def start_redis(socket_path) -> subprocess.Popen:
    proc = embedded_redis.start(socket_path, stdout=subprocess.PIPE)
    if proc is None:
        raise RuntimeError(f"another Redis answers at {socket_path}")
    return proc
