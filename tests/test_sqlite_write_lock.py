"""`make run`'s SQLite backend (autogen_platform.sqlite_backend): a write transaction waiting for another is
let in the moment that one commits or rolls back, and a failed or closed transaction leaves no lock behind."""
import threading
import time

from django.db import DEFAULT_DB_ALIAS
from django.db.backends.sqlite3.base import Database
from django.db.utils import ConnectionHandler


def _connections(path):
    settings = {
        DEFAULT_DB_ALIAS: {
            "ENGINE": "autogen_platform.sqlite_backend", "NAME": str(path), "TIME_ZONE": None,
            "OPTIONS": {"timeout": 30, "transaction_mode": "IMMEDIATE",
                        "init_command": "PRAGMA journal_mode=WAL; PRAGMA busy_timeout=30000;"},
        }
    }
    return ConnectionHandler(settings)


def test_a_waiting_writer_goes_in_when_the_other_commits_and_nothing_stays_locked(tmp_path, django_db_blocker):
    with django_db_blocker.unblock():  # connections of its own, to a file of its own
        _check(tmp_path)


def _check(tmp_path):
    path = tmp_path / "db.sqlite3"
    first, second = _connections(path)[DEFAULT_DB_ALIAS], _connections(path)[DEFAULT_DB_ALIAS]
    second.inc_thread_sharing()  # used by the writer thread, then here
    with first.cursor() as cursor:
        cursor.execute("CREATE TABLE t (v INTEGER)")
    waits = []
    for n in range(5):
        order = []

        def writer():
            with _atomic(second):
                with second.cursor() as cursor:
                    cursor.execute("INSERT INTO t VALUES (2)")
            order.append(time.monotonic())

        with _atomic(first):
            with first.cursor() as cursor:
                cursor.execute("INSERT INTO t VALUES (1)")
            thread = threading.Thread(target=writer)
            thread.start()
            time.sleep(0.5)
            assert order == []  # it waits for the first transaction
            released = time.monotonic()
        thread.join(10)
        assert len(order) == 1
        waits.append(order[0] - released)
    # let in at once; SQLite's own busy handler would have it sleep in 100 ms steps by then (~50 ms on average)
    assert sorted(waits)[2] < 0.02, waits

    # a rolled-back and a closed transaction leave nothing locked
    try:
        with _atomic(first):
            with first.cursor() as cursor:
                cursor.execute("INSERT INTO t VALUES (3)")
            raise RuntimeError("rolled back")
    except RuntimeError:
        pass
    first.set_autocommit(False, force_begin_transaction_with_broken_autocommit=True)
    first.close()
    with _atomic(second):
        with second.cursor() as cursor:
            cursor.execute("INSERT INTO t VALUES (4)")
    raw = Database.connect(str(path))
    assert [v for (v,) in raw.execute("SELECT v FROM t ORDER BY v")] == [1] * 5 + [2] * 5 + [4]
    raw.close()
    second.close()


class _atomic:
    """transaction.atomic for a connection outside django.db.connections."""

    def __init__(self, connection):
        self.connection = connection

    def __enter__(self):
        self.connection.set_autocommit(False, force_begin_transaction_with_broken_autocommit=True)

    def __exit__(self, kind, value, tb):
        if kind is None:
            self.connection.commit()
        else:
            self.connection.rollback()
        self.connection.set_autocommit(True)
        return False


def test_a_forked_child_keeps_no_copy_of_its_parents_write_lock(tmp_path, django_db_blocker):
    # a plain `rq worker` forks a work horse per job: if the parent dies inside a transaction, a copy of the lock
    # left in the horse must not keep every other writer out
    import os
    import signal

    with django_db_blocker.unblock():
        path = tmp_path / "db.sqlite3"
        parent = _connections(path)[DEFAULT_DB_ALIAS]
        with parent.cursor() as cursor:
            cursor.execute("CREATE TABLE t (v INTEGER)")
        pid = os.fork()
        if pid == 0:  # the parent-to-be-killed: holds the lock, forks a long-lived child, dies
            try:
                parent.set_autocommit(False, force_begin_transaction_with_broken_autocommit=True)
                if os.fork() == 0:
                    time.sleep(8)  # outlives the check below
                    os._exit(0)
                os.kill(os.getpid(), signal.SIGKILL)
            finally:
                os._exit(1)
        os.waitpid(pid, 0)
        other = _connections(path)[DEFAULT_DB_ALIAS]
        done = []

        def write():
            with _atomic(other):
                with other.cursor() as cursor:
                    cursor.execute("INSERT INTO t VALUES (1)")
            done.append(True)

        thread = threading.Thread(target=write, daemon=True)
        other.inc_thread_sharing()
        thread.start()
        thread.join(5)
        assert done == [True]  # the dead parent's lock went with it, though its child lives on
