"""`manage.py runplatform`: one foreground supervisor for everything `make run` starts.

It owns the embedded Redis (when REDIS_URL is unset), the ASGI server (daphne: HTTP and WebSocket),
settings.WORKERS task workers (`manage.py runworker`), settings.WEBHOOK_WORKERS webhook delivery workers
(`manage.py runwebhooks`) and one reaper (`manage.py reaper`, which also fires schedules). Each child
runs in its own process group, is told by the kernel to stop if the supervisor dies
(PR_SET_PDEATHSIG), has its output prefixed and forwarded, and is restarted with backoff when it
dies unexpectedly. SIGINT or SIGTERM stops every process it started (TERM, then KILL after a grace
period), the embedded Redis last and orphaned grandchildren included (the supervisor is their
subreaper), and the command exits 0.
"""
import ctypes
import ipaddress
import json
import os
import shutil
import selectors
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

import psutil
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from runtime import embedded_redis
from runtime.agentchild.linux import PR_SET_CHILD_SUBREAPER

# A child that ran this long before dying starts again at the shortest backoff.
HEALTHY_RUN_SECONDS = 30
MAX_BACKOFF_SECONDS = 30


@dataclass
class Child:
    name: str
    spawn: object  # () -> subprocess.Popen, started in its own process group
    proc: subprocess.Popen | None = None
    started_at: float = 0.0
    failures: int = 0
    restart_at: float | None = None
    given_up: bool = False


class Supervisor:
    def __init__(self, out, *, grace: float):
        self.out = out
        self.grace = grace
        self.children: list[Child] = []
        self.by_pid: dict[int, Child] = {}
        self.selector = selectors.DefaultSelector()
        self.stopping = False
        self.forced = False

    # -- output ---------------------------------------------------------------------------------
    def say(self, message: str) -> None:
        if settings.LOG_FORMAT == "json":
            self._write(_json_line("supervisor", message).encode() + b"\n")
        else:
            self._write(f"{'supervisor':<10}| {message}\n".encode())

    def _write(self, data: bytes) -> None:
        try:
            self.out.write(data)
            self.out.flush()
        except (BrokenPipeError, ValueError):
            pass

    def _watch(self, child: Child, proc: subprocess.Popen) -> None:
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
                    self._write(_json_child_line(name, line) + b"\n")
                else:
                    self._write(f"{name:<10}| ".encode() + line + b"\n")

    # -- processes ------------------------------------------------------------------------------
    def add(self, name: str, spawn) -> Child:
        child = Child(name=name, spawn=spawn)
        self.children.append(child)
        return child

    def start(self, child: Child) -> None:
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

    def _schedule_restart(self, child: Child, code: int) -> None:
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

    def running(self, children) -> list[Child]:
        return [c for c in children if c.proc is not None]

    def signal_group(self, child: Child, sig: int) -> None:
        if child.proc is None:
            return
        try:
            os.killpg(child.proc.pid, sig)  # pgid == pid: each child leads its own session
        except ProcessLookupError:
            pass

    def wait_for(self, children, seconds: float) -> list[Child]:
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

    def shutdown(self, redis_child: Child | None) -> None:
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


def _json_line(process: str, message: str, level: str = "INFO") -> str:
    import datetime

    from autogen_platform.logctx import redact

    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")
    return json.dumps({"time": now, "level": level, "logger": "runplatform", "process": process, "message": redact(message)})


def _json_child_line(name: str, line: bytes) -> bytes:
    """LOG_FORMAT=json: a child's JSON line gets its process name; any other line (a crash's traceback,
    Redis' own output) becomes a JSON line too, so the whole output stays one JSON object a line."""
    try:
        record = json.loads(line)
    except ValueError:
        record = None
    if isinstance(record, dict):
        record.setdefault("process", name)
        return json.dumps(record, ensure_ascii=False).encode()
    return _json_line(name, line.decode(errors="replace").rstrip("\r")).encode()


def _metrics_dir() -> str:
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


def _spawn(argv: list[str], env: dict, pass_fds=()):
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


def _start_redis(socket_path) -> subprocess.Popen:
    proc = embedded_redis.start(socket_path, stdout=subprocess.PIPE)
    if proc is None:
        raise RuntimeError(f"another Redis answers at {socket_path}")
    return proc


def _is_loopback(host: str) -> bool:
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface


def development_secrets_in_use() -> list[str]:
    """The secrets still at their public development defaults (DJANGO_DEBUG=0 refuses them in settings)."""
    used = []
    if settings.SECRET_KEY == settings.DEV_SECRET_KEY:
        used.append("DJANGO_SECRET_KEY")
    if settings.ADMIN_API_KEY == settings.DEV_ADMIN_API_KEY:
        used.append("ADMIN_API_KEY")
    if settings.FIELD_ENCRYPTION_KEY == settings.DEV_SECRET_KEY:
        used.append("FIELD_ENCRYPTION_KEY")
    return used


def development_secrets_warning(host: str) -> str | None:
    """A loud warning when the public development secrets would be served beyond this machine."""
    used = development_secrets_in_use()
    if not used or _is_loopback(host):
        return None
    bar = "!" * 100
    return "\n".join([
        bar,
        f"WARNING: listening on {host} (not loopback) with the public development secrets: {', '.join(used)}.",
        "  Anyone who can reach this port can forge access tokens for any user (the development DJANGO_SECRET_KEY",
        "  signs them and is in the source code) and call the admin API with X-Admin-Key: dev-admin-key.",
        "  Set DJANGO_SECRET_KEY, ADMIN_API_KEY and FIELD_ENCRYPTION_KEY to random values (DJANGO_DEBUG=0 then",
        "  insists on it), or bind to 127.0.0.1 (BIND_HOST).",
        bar,
    ])


def _check_port_free(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise CommandError(f"cannot listen on {host}:{port} ({exc.strerror}): is something else using PORT={port}?")


def _unapplied_migrations() -> int:
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    try:
        executor = MigrationExecutor(connection)
        return len(executor.migration_plan(executor.loader.graph.leaf_nodes()))
    finally:
        connection.close()


class Command(BaseCommand):
    help = "Run the whole platform in the foreground: ASGI server, task workers, reaper (and the embedded Redis)."

    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=settings.PORT, help="HTTP port (default: PORT, 8000).")
        parser.add_argument("--bind", default=settings.BIND_HOST, help="Bind address (default: BIND_HOST, 127.0.0.1).")
        parser.add_argument("--workers", type=int, default=settings.WORKERS, help="Task workers (default: WORKERS, 2).")
        parser.add_argument(
            "--grace", type=float, default=settings.WORKER_SHUTDOWN_GRACE_SECONDS + 10,
            help="Seconds between TERM and KILL at shutdown (workers first let their tasks run WORKER_SHUTDOWN_GRACE_SECONDS).",
        )
        parser.add_argument(
            "--proxy-headers", action="store_true", help="Trust X-Forwarded-For/-Proto from a reverse proxy in front."
        )

    def handle(self, *args, **options):
        host, port, workers = options["bind"], options["port"], options["workers"]
        warning = development_secrets_warning(host)
        if warning:
            self._warn(warning)
        _check_port_free(host, port)
        try:
            pending = _unapplied_migrations()
        except DatabaseError as exc:  # the children retry: a database still starting is not fatal
            self._warn(f"warning: the database does not answer yet ({exc.__class__.__name__}: {exc})")
            pending = 0
        if pending:
            self._warn(f"warning: {pending} unapplied migration(s): run `manage.py migrate` first")

        manage = str(settings.BASE_DIR / "manage.py")
        env = dict(
            os.environ,
            PYTHONUNBUFFERED="1",
            PLATFORM_VAR_DIR=str(settings.VAR_DIR),
            DJANGO_SETTINGS_MODULE=os.environ.get("DJANGO_SETTINGS_MODULE", "autogen_platform.settings.dev"),
            PROMETHEUS_MULTIPROC_DIR=_metrics_dir(),
        )
        supervisor = Supervisor(sys.stdout.buffer, grace=options["grace"])
        supervisor.install()

        redis_child = None
        if settings.REDIS_EMBEDDED:
            socket_path = settings.EMBEDDED_REDIS_SOCKET
            if embedded_redis.is_answering(socket_path):
                raise CommandError(
                    f"a Redis already answers at {socket_path}: is another runplatform using "
                    f"PLATFORM_VAR_DIR={settings.VAR_DIR}?"
                )
            redis_child = supervisor.add("redis", lambda: _start_redis(socket_path))
        # -v 0: no daphne access log (it writes query strings, which may hold a token); the platform logs
        # each request itself (autogen_platform.access), path only.
        daphne = [sys.executable, "-m", "daphne", "-v", "0",
                  "--ping-interval", str(settings.WEBSOCKET_PING_INTERVAL),
                  "--ping-timeout", str(settings.WEBSOCKET_PING_TIMEOUT)]
        if options["proxy_headers"]:
            daphne.append("--proxy-headers")
        app = "autogen_platform.asgi:application"
        if settings.WEB_PROCESSES <= 1:
            supervisor.add("web", _spawn([*daphne, "-b", host, "-p", str(port), app], env))
        else:
            # daphne runs Django's synchronous views on one thread per process: several daphne processes
            # accept on one listening socket that this command opens and hands down (`--fd`), so a burst
            # of requests uses every core; the kernel spreads the connections.
            listener = socket.create_server((host, port), backlog=1024)
            fd = listener.fileno()
            for n in range(1, settings.WEB_PROCESSES + 1):
                name = "web" if n == 1 else f"web-{n}"
                supervisor.add(name, _spawn([*daphne, "--fd", str(fd), app], env, pass_fds=(fd,)))
        for n in range(1, workers + 1):
            supervisor.add(f"worker-{n}", _spawn([sys.executable, manage, "runworker"], env))
        for n in range(1, settings.WEBHOOK_WORKERS + 1):
            supervisor.add(f"webhooks-{n}", _spawn([sys.executable, manage, "runwebhooks"], env))
        supervisor.add("reaper", _spawn([sys.executable, manage, "reaper"], env))

        try:
            for child in supervisor.children:
                if supervisor.stopping:
                    break
                supervisor.start(child)
            if not supervisor.stopping:
                self._banner(supervisor, host, port, workers, redis_child is not None)
            while not supervisor.stopping:
                supervisor.pump(0.2)
                supervisor.reap()
                supervisor.restart_due()
        except Exception as exc:
            supervisor.say(f"error: {exc}; stopping")
            supervisor.stopping = True
            supervisor.shutdown(redis_child)
            raise CommandError(str(exc)) from exc
        supervisor.say("stopping every process started")
        supervisor.shutdown(redis_child)
        supervisor.say("stopped")

    def _warn(self, text: str) -> None:
        if settings.LOG_FORMAT == "json":
            self.stderr.write(_json_line("supervisor", text, "WARNING"))
        else:
            self.stderr.write(text)

    def _banner(self, supervisor: Supervisor, host: str, port: int, workers: int, embedded: bool) -> None:
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        base = f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"
        database = settings.DATABASES["default"]
        if "sqlite" in database["ENGINE"]:
            db = f"sqlite {database['NAME']}"
        else:
            db = f"{database['ENGINE'].rsplit('.', 1)[-1]} {database.get('HOST') or 'localhost'}:{database.get('PORT') or ''}/{database['NAME']}"
        redis = f"embedded ({settings.REDIS_URL})" if embedded else "REDIS_URL"
        lines = [
            "",
            "AutoGen agent platform is starting",
            f"  API (browsable)  {base}/api/",
            f"  API docs         {base}/api/docs/",
            f"  Admin            {base}/admin/",
            f"  Studio           {base}/studio/",
            f"  Health           {base}/healthz   {base}/readyz",
            f"  Database         {db}",
            f"  Redis            {redis}",
            f"  Workers          {workers}",
            "Press Ctrl-C to stop.",
            "",
        ]
        if settings.LOG_FORMAT == "json":
            supervisor.say(" | ".join(line.strip() for line in lines if line))
            return
        sys.stdout.write("\n".join(lines) + "\n")
        sys.stdout.flush()
