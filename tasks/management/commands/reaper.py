"""`manage.py reaper [--once]`: no task stays queued or running forever.

Every REAPER_INTERVAL_SECONDS: running tasks whose heartbeat is older than TASK_LEASE_SECONDS end
failed/worker_lost (cancelled if a stop had been asked), queued tasks whose RQ job vanished
for longer than TASK_REQUEUE_SECONDS are enqueued again, tasks waiting in input_required past
TASK_INPUT_TIMEOUT_SECONDS end timed_out (input_timeout), and customers deleted more than
CUSTOMER_RETENTION_DAYS ago are purged, a bounded batch per sweep, and the customers' stream notices
beyond the newest CUSTOMER_STREAM_KEEP are pruned; webhook deliveries due for a retry, or whose job or
worker was lost, go back on the `webhooks` queue (tasks.signals.reaper_sweep). It is also the platform's
scheduler: a thread that apps start through tasks.signals.reaper_started (integrations.scheduler) fires
each schedule at its time, not at the next pass (a database lease, so each firing happens once whichever
reapers run). Several reapers may run at once.
"""
import logging
import signal
import threading
import time

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import close_old_connections

from accounts.services import customer_notices_prune
from tasks import signals
from tasks.purge import customer_purge_deleted
from tasks.services import task_expire_input, task_reap_lost, task_requeue_orphans

logger = logging.getLogger("tasks.reaper")

# see Command.sweep: how old a queued task without a job must be for a reaper's first pass to enqueue it again
FIRST_PASS_REQUEUE_SECONDS = 1.0


class Command(BaseCommand):
    help = "End tasks whose worker vanished and re-enqueue queued tasks that lost their job."

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="One pass, then exit.")

    def handle(self, *args, **options):
        self.stopping = False
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        if options["once"]:
            self.sweep(first=True)
            return
        stopping = threading.Event()
        loops = [thread for _, thread in signals.reaper_started.send(sender=self.__class__, stopping=stopping) if thread]
        try:
            first = True
            while not self.stopping:
                self.sweep(first=first)
                first = False
                deadline = time.monotonic() + settings.REAPER_INTERVAL_SECONDS
                while not self.stopping and time.monotonic() < deadline:
                    time.sleep(0.1)
        finally:
            stopping.set()
            for thread in loops:
                thread.join(timeout=10)

    def _stop(self, *_):
        self.stopping = True

    def sweep(self, first: bool = False) -> None:
        """One pass. The first pass of a reaper takes any queued task with no live job that is more than
        FIRST_PASS_REQUEUE_SECONDS old as an orphan, not only those older than TASK_REQUEUE_SECONDS: tasks
        committed while Redis was down (`make run` seeds its demo runs before the embedded Redis starts, and a
        platform coming back after an outage) then run as soon as the platform is up instead of half a minute
        later. A job enqueued twice by that (a create committing at this very moment) is harmless: a task
        starts only from `queued`, under its row lock, so the second job finds it started and does nothing."""
        close_old_connections()
        try:
            lost = task_reap_lost(lease_seconds=settings.TASK_LEASE_SECONDS)
            older_than = settings.TASK_REQUEUE_SECONDS
            if first:
                older_than = min(older_than, FIRST_PASS_REQUEUE_SECONDS)
            # a job a worker took stays the worker's for TASK_REQUEUE_SECONDS, first pass or not
            orphans = task_requeue_orphans(older_than_seconds=older_than,
                                           stale_start_seconds=settings.TASK_REQUEUE_SECONDS)
            if lost or orphans:
                logger.warning("reaper: ended %s lost task(s) %s, re-enqueued %s", len(lost), lost, orphans)
        except Exception:  # noqa: BLE001 - the reaper must outlive a database or Redis hiccup
            logger.exception("reaper sweep failed")
        try:
            signals.reaper_sweep.send(sender=self.__class__)  # integrations: due schedules, webhook retries
        except Exception:  # noqa: BLE001 - retried at the next sweep
            logger.exception("scheduler or webhook sweep failed")
        try:
            expired = task_expire_input()
            if expired:
                logger.warning("reaper: %s task(s) waited too long for input: %s", len(expired), expired)
        except Exception:  # noqa: BLE001 - retried at the next sweep
            logger.exception("ending tasks that waited too long for input failed")
        try:
            purged = customer_purge_deleted()
            if purged:
                logger.warning("reaper: purged %s task(s) of deleted customers", purged)
        except Exception:  # noqa: BLE001 - a failed purge is retried at the next sweep
            logger.exception("purge of deleted customers failed")
        try:
            customer_notices_prune()
        except Exception:  # noqa: BLE001 - retried at the next sweep
            logger.exception("pruning customers' stream notices failed")
