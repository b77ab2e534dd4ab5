"""The scheduler loop: fires each schedule at its time, not at the next reaper pass.

It runs in a thread of every reaper process (started through tasks.signals.reaper_started). It sleeps
until the soonest next_run_at of all enabled schedules, never longer than SCHEDULER_POLL_SECONDS: that
bound is how a schedule created, changed or resumed on any node is noticed (one indexed query per poll,
no message to lose). Firing is schedules_fire_due: the database lease makes each firing happen once
however many reapers run this loop."""
import logging
import threading

from django.conf import settings
from django.db import close_old_connections, connections
from django.utils import timezone

from .selectors import schedules_earliest_run_at
from .services import schedules_fire_due

logger = logging.getLogger("tasks.reaper")


def scheduler_wait(earliest, now) -> float:
    """Seconds to sleep before looking again: until the earliest firing, at most SCHEDULER_POLL_SECONDS."""
    poll = settings.SCHEDULER_POLL_SECONDS
    if earliest is None:
        return poll
    return min(poll, max(0.0, (earliest - now).total_seconds()))


def scheduler_run(stopping: threading.Event) -> None:
    """Until `stopping` is set: fire what is due, then sleep until the next firing (bounded)."""
    while not stopping.is_set():
        close_old_connections()
        try:
            earliest = schedules_earliest_run_at()
            if earliest is not None and earliest <= timezone.now():
                fired = schedules_fire_due()
                if fired:
                    logger.info("scheduler: started task(s) %s", fired)
                continue
            wait = scheduler_wait(earliest, timezone.now())
        except Exception:  # noqa: BLE001 - the scheduler must outlive a database hiccup; it looks again soon
            logger.exception("scheduler pass failed")
            wait = settings.SCHEDULER_POLL_SECONDS
        stopping.wait(wait)
    connections.close_all()  # this thread's own


def scheduler_start(stopping: threading.Event) -> threading.Thread:
    thread = threading.Thread(target=scheduler_run, args=(stopping,), name="scheduler", daemon=True)
    thread.start()
    return thread
