"""`manage.py platform_status`: what an operator checks first. Exit status 0 only when the platform is ready.

Prints the database, Redis and live workers (the checks of /readyz), the workers' task slots
(total, busy), the queue depth, the live sandboxes, the worker hosts, tasks by status and the
killswitch state; `--json` prints the same as one JSON object.
"""
import json

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from core.models import Killswitch
from runtime import health
from runtime.models import WorkerHost
from runtime.services import sandbox_running
from tasks.selectors import tasks_by_status

NOT_READY_EXIT = 1


class Command(BaseCommand):
    help = "Show database, Redis, workers, queue depth, tasks by status and the killswitch; non-zero exit when not ready."

    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="Print one JSON object instead of text.")

    def handle(self, *args, **options):
        checks, failing = health.readiness()
        status = {
            "ready": not failing,
            "failing": failing,
            "database": {"state": checks["database"], "engine": _database_label()},
            "redis": {"state": checks["redis"], "url": _redis_label()},
            "workers": _workers(checks),
            "queue_depth": _queue_depth() if checks["redis"] == "ok" else None,
            "live_sandboxes": _live_sandboxes() if checks["redis"] == "ok" else None,
            "hosts": _read(_hosts) if checks["database"] == "ok" else None,
            "tasks_by_status": _read(_tasks_by_status) if checks["database"] == "ok" else None,
            "killswitch": _read(_killswitch) if checks["database"] == "ok" else None,
        }
        if options["json"]:
            self.stdout.write(json.dumps(status, indent=2, default=str))
        else:
            self._print(status)
        if failing:
            raise CommandError(f"not ready: {', '.join(failing)}", returncode=NOT_READY_EXIT)

    def _print(self, s: dict) -> None:
        out = self.stdout.write
        ok, bad = self.style.SUCCESS, self.style.ERROR
        out((ok("READY") if s["ready"] else bad(f"NOT READY ({', '.join(s['failing'])})")))
        out(f"database      {_mark(s['database']['state'], ok, bad)}  {s['database']['engine']}")
        out(f"redis         {_mark(s['redis']['state'], ok, bad)}  {s['redis']['url']}")
        workers = s["workers"]
        label = f"{workers['live']} live" if isinstance(workers["live"], int) else str(workers["live"])
        out(f"workers       {(ok if workers['live'] not in (0, 'unknown') else bad)(label)}")
        for worker in workers["list"]:
            out(f"  {worker['name']}  slots {worker['busy']}/{worker['total']} busy  reported {worker['age_seconds']}s ago")
        slots = workers["slots"]
        out(f"slots         {slots['busy']} busy, {slots['total'] - slots['busy']} free of {slots['total']}" if slots else "slots         unknown")
        out(f"queue depth   {s['queue_depth'] if s['queue_depth'] is not None else 'unknown'}")
        out(f"sandboxes     {s['live_sandboxes'] if s['live_sandboxes'] is not None else 'unknown'} live")
        for host in s["hosts"] or []:
            out(f"  host {host['hostname']}  level {host['level']}  last seen {host['last_seen']}")
        tasks = s["tasks_by_status"]
        if tasks is None:
            out("tasks         unknown")
        else:
            out("tasks         " + (", ".join(f"{k} {v}" for k, v in tasks.items()) or "none"))
        kill = s["killswitch"]
        if kill is None:
            out("killswitch    unknown")
        elif not kill:
            out(f"killswitch    {ok('released')}")
        else:
            for row in kill:
                out(f"killswitch    {bad('ENGAGED')} {row['scope']} by {row['changed_by'] or '?'}: {row['reason']}")


def _mark(state, ok, bad) -> str:
    return ok("ok") if state == "ok" else bad(str(state))


def _database_label() -> str:
    db = settings.DATABASES["default"]
    vendor = db["ENGINE"].rsplit(".", 1)[-1]
    if "sqlite" in vendor:
        return f"sqlite {db['NAME']}"
    return f"{vendor} {db.get('HOST') or 'localhost'}:{db.get('PORT') or ''}/{db['NAME']}"


def _redis_label() -> str:
    if settings.REDIS_EMBEDDED:
        return f"embedded {settings.REDIS_URL}"
    # Never print a password that may stand in REDIS_URL.
    from urllib.parse import urlsplit

    url = urlsplit(settings.REDIS_URL)
    host = url.hostname or ""
    return f"{url.scheme}://{host}{':' + str(url.port) if url.port else ''}{url.path}"


def _workers(checks: dict) -> dict:
    if checks["redis"] != "ok":
        return {"live": "unknown", "list": [], "slots": None}
    try:
        workers = health.live_workers(health.redis_connection())
    except Exception:  # noqa: BLE001 - Redis went away between the checks
        return {"live": "unknown", "list": [], "slots": None}
    slots = {"total": sum(w["total"] for w in workers), "busy": sum(w["busy"] for w in workers)}
    return {"live": len(workers), "list": workers, "slots": slots}


def _live_sandboxes() -> int | None:
    try:
        return len(sandbox_running())
    except Exception:  # noqa: BLE001
        return None


def _hosts() -> list[dict]:
    return [
        {"hostname": h.hostname, "level": (h.capabilities or {}).get("level"), "last_seen": h.last_seen.isoformat()}
        for h in WorkerHost.objects.order_by("-last_seen")[:20]
    ]


def _queue_depth() -> int | None:
    import django_rq

    try:
        return django_rq.get_queue("default").count
    except Exception:  # noqa: BLE001 - Redis went away between the checks
        return None


def _read(query):
    """A query's rows, or None when the database answers but cannot give them (e.g. not migrated)."""
    try:
        return query()
    except DatabaseError:
        return None


def _tasks_by_status() -> dict:
    return {status: n for status, n in sorted(tasks_by_status().items()) if n}


def _killswitch() -> list[dict]:
    return list(
        Killswitch.objects.filter(engaged=True).order_by("scope").values("scope", "reason", "changed_by", "changed_at")
    )
