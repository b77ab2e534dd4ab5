"""SQLite with a blocking cross-process write lock: `make run`'s embedded database under many writers.

SQLite lets one writer in at a time. A connection that finds the write lock taken waits in SQLite's busy
handler, which does not wait for the lock to be released: it sleeps and retries, in steps of 1, 2, 5, 10,
15, 20, 25, 25, 25, 50, 50 and then 100 ms. With the web processes, the task workers and the reaper writing
at once (a burst of tasks: every create, start and end is a write transaction), a waiting writer goes in
about 30 ms after the lock is free (measured here, tests/test_sqlite_write_lock.py; longer once it has
waited a while), so the lock sits free much of the time while writers sleep. Measured with
bench/bench_scale.py (docs/benchmarks.md): submitting 50 tasks through the API took 2.0 s without this and
1.0 s with it.

Here every write transaction (Django opens them with `BEGIN IMMEDIATE`, settings' transaction_mode) first
takes an exclusive `flock` on a file beside the database and holds it until COMMIT or ROLLBACK: waiting
writers block in the kernel and the next one is woken the moment the lock is released. The SQLite lock is
still taken as before (so nothing changes for correctness, and a writer outside a transaction, one
statement in autocommit mode, still goes through the busy handler). Nothing in SQLite or Django offers a
blocking wait (the sqlite3 module exposes only busy_timeout), hence this small wrapper.

The lock file's descriptor is opened per connection (so threads of one process exclude each other too),
close-on-exec, and released by the kernel if the process dies. A forked child (a plain `rq worker`'s work
horse) drops its copies at once: a copy kept in a child would keep a lock its dead parent held.
"""
import fcntl
import logging
import os
import weakref

from django.conf import settings
from django_prometheus.db.backends.sqlite3 import base

# Django's own logger of every statement (CursorDebugWrapper), with DEBUG on
_statements = logging.getLogger("django.db.backends")

_wrappers = weakref.WeakSet()


def _forget_inherited_locks() -> None:
    for wrapper in list(_wrappers):
        if wrapper._write_lock_fd is not None:
            os.close(wrapper._write_lock_fd)  # the child's copy only: the parent's lock, if any, stays its own
        wrapper._write_lock_fd, wrapper._write_lock_held = None, False


os.register_at_fork(after_in_child=_forget_inherited_locks)


class DatabaseWrapper(base.DatabaseWrapper):
    _write_lock_fd = None
    _write_lock_held = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _wrappers.add(self)

    @property
    def queries_logged(self) -> bool:
        """With DEBUG on (`make run`'s default), Django wraps every cursor in CursorDebugWrapper, which keeps each
        statement in connection.queries and, on SQLite, runs one more statement per statement to quote its
        parameters for that record (`SELECT QUOTE(?), ...`, DatabaseOperations.last_executed_query): the web
        process ran twice the statements it needed for every request. Here the record is kept only when
        someone reads it: a test or a shell that asks for it (force_debug_cursor: assertNumQueries,
        CaptureQueriesContext) or DEBUG with the `django.db.backends` logger enabled for DEBUG (LOG_LEVEL=DEBUG),
        which logs each statement."""
        return self.force_debug_cursor or (settings.DEBUG and _statements.isEnabledFor(logging.DEBUG))

    def _write_lock_path(self) -> str | None:
        name = str(self.settings_dict.get("NAME") or "")
        if not name or name == ":memory:" or name.startswith("file:") or "mode=memory" in name:
            return None
        return name + ".writelock"

    def _write_lock_acquire(self) -> None:
        if self._write_lock_fd is None:
            path = self._write_lock_path()
            if path is None:
                return
            self._write_lock_fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(self._write_lock_fd, fcntl.LOCK_EX)
        self._write_lock_held = True

    def _write_lock_release(self) -> None:
        if self._write_lock_held:
            self._write_lock_held = False
            fcntl.flock(self._write_lock_fd, fcntl.LOCK_UN)

    def _start_transaction_under_autocommit(self):
        self._write_lock_acquire()
        try:
            super()._start_transaction_under_autocommit()
        except BaseException:
            self._write_lock_release()
            raise

    def _commit(self):
        try:
            return super()._commit()
        finally:
            self._write_lock_release()

    def _rollback(self):
        try:
            return super()._rollback()
        finally:
            self._write_lock_release()

    def _close(self):
        try:
            return super()._close()
        finally:
            self._write_lock_release()
            if self._write_lock_fd is not None:
                os.close(self._write_lock_fd)
                self._write_lock_fd = None
