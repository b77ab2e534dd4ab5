"""`manage.py runplatform`: one foreground process manager for everything `make run` starts.

It runs the embedded Redis (when REDIS_URL is unset), the ASGI server (daphne: HTTP and WebSocket),
settings.WORKERS task workers (`manage.py runworker`), settings.WEBHOOK_WORKERS webhook delivery workers
(`manage.py runwebhooks`) and one reaper (`manage.py reaper`, which also fires schedules) under
adminpanel.platform_processes.ProcessManager (start, forward output, restart with backoff, stop all on
SIGINT or SIGTERM; the command exits 0). This command checks the port, the secrets and the migrations,
says which processes to run, and prints the banner.
"""
import ipaddress
import os
import socket
import sys

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from adminpanel.platform_processes import ProcessManager, json_line, metrics_dir, spawner, start_redis
from runtime import embedded_redis


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
            PROMETHEUS_MULTIPROC_DIR=metrics_dir(),
        )
        manager = ProcessManager(sys.stdout.buffer, grace=options["grace"])
        manager.install()

        redis_child = None
        if settings.REDIS_EMBEDDED:
            socket_path = settings.EMBEDDED_REDIS_SOCKET
            if embedded_redis.is_answering(socket_path):
                raise CommandError(
                    f"a Redis already answers at {socket_path}: is another runplatform using "
                    f"PLATFORM_VAR_DIR={settings.VAR_DIR}?"
                )
            redis_child = manager.add("redis", lambda: start_redis(socket_path))
        # -v 0: no daphne access log (it writes query strings, which may hold a token); the platform logs
        # each request itself (autogen_platform.access), path only.
        daphne = [sys.executable, "-m", "daphne", "-v", "0",
                  "--ping-interval", str(settings.WEBSOCKET_PING_INTERVAL),
                  "--ping-timeout", str(settings.WEBSOCKET_PING_TIMEOUT)]
        if options["proxy_headers"]:
            daphne.append("--proxy-headers")
        app = "autogen_platform.asgi:application"
        if settings.WEB_PROCESSES <= 1:
            manager.add("web", spawner([*daphne, "-b", host, "-p", str(port), app], env))
        else:
            # daphne runs Django's synchronous views on one thread per process: several daphne processes
            # accept on one listening socket that this command opens and hands down (`--fd`), so a burst
            # of requests uses every core; the kernel spreads the connections.
            listener = socket.create_server((host, port), backlog=1024)
            fd = listener.fileno()
            for n in range(1, settings.WEB_PROCESSES + 1):
                name = "web" if n == 1 else f"web-{n}"
                manager.add(name, spawner([*daphne, "--fd", str(fd), app], env, pass_fds=(fd,)))
        for n in range(1, workers + 1):
            manager.add(f"worker-{n}", spawner([sys.executable, manage, "runworker"], env))
        for n in range(1, settings.WEBHOOK_WORKERS + 1):
            manager.add(f"webhooks-{n}", spawner([sys.executable, manage, "runwebhooks"], env))
        manager.add("reaper", spawner([sys.executable, manage, "reaper"], env))

        try:
            for child in manager.children:
                if manager.stopping:
                    break
                manager.start(child)
            if not manager.stopping:
                self._banner(manager, host, port, workers, redis_child is not None)
            while not manager.stopping:
                manager.pump(0.2)
                manager.reap()
                manager.restart_due()
        except Exception as exc:
            manager.say(f"error: {exc}; stopping")
            manager.stopping = True
            manager.shutdown(redis_child)
            raise CommandError(str(exc)) from exc
        manager.say("stopping every process started")
        manager.shutdown(redis_child)
        manager.say("stopped")

    def _warn(self, text: str) -> None:
        if settings.LOG_FORMAT == "json":
            self.stderr.write(json_line("supervisor", text, "WARNING"))
        else:
            self.stderr.write(text)

    def _banner(self, manager: ProcessManager, host: str, port: int, workers: int, embedded: bool) -> None:
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
            manager.say(" | ".join(line.strip() for line in lines if line))
            return
        sys.stdout.write("\n".join(lines) + "\n")
        sys.stdout.flush()
