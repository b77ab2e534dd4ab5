"""Writers of several rows take their locks in one order, so that two of them never each hold a row the other
waits for (PostgreSQL then aborts one: a killswitch answered 500, a start or a heartbeat failed). Task rows go in
id order, as the finisher takes them (tasks.services.task_finish_many): an UPDATE of several rows alone locks
them in the order of its scan, and a row updated since (a heartbeat, an event) lies after the others. Customer
rows, which each start locks until its batch commits, go in customer id order. Each test holds one row as the
other writer would, lets the writer under test run into it, then takes the next: both must go through."""
import threading
import time

import pytest
from django.db import connection, connections, transaction
from django.utils import timezone

from core.models import AuditLog
from tasks.models import Task
from tests.admin_support import make_agent

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _postgresql():
    if connection.vendor != "postgresql":
        from conftest import host_lacks

        host_lacks("PostgreSQL (row locks; SQLite serialises writers)")


@pytest.fixture
def two_running(make_customer):
    """Two running tasks of one customer, the first one's row written last (it lies after the second's)."""
    from tasks.services import task_create, task_mark_running

    customer, user = make_customer("acme")
    agent = make_agent(customer)
    first, second = (task_create(actor=user, customer=customer, agent=agent, input=str(i))[0] for i in (1, 2))
    for task in (second, first):
        task_mark_running(task_id=task.pk, worker="w")
    Task.objects.filter(pk=first.pk).update(heartbeat_at=timezone.now())
    return customer, first.pk, second.pk


def _wait_until_blocked(timeout=10):
    """Until another session of this database waits for a lock."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                           "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()")
            if cursor.fetchone()[0]:
                return
        time.sleep(0.02)
    raise TimeoutError("no session waited for a lock")


def _outcome(fn):
    """What fn returned, or its error (the tests report what happened to each side)."""
    try:
        return fn()
    except Exception as error:  # noqa: BLE001
        return repr(error)


def _race(holder, writer):
    """Run `holder(held)` in a thread of its own: it takes a row, sets `held`, and once another session waits
    for a lock takes the next one. Meanwhile `writer()` runs here. Returns what each returned (or its error)."""
    held, out = threading.Event(), {}

    def run():
        try:
            out["holder"] = _outcome(lambda: holder(held))
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    assert held.wait(10)
    result = _outcome(writer)
    thread.join(30)
    return result, out.get("holder")


def _against_the_finisher(first: int, second: int, writer):
    """`writer` while a finisher holds `first` and, once the writer waits, takes `second` (what task_finish_many
    does: the rows in id order, in one transaction)."""
    def finisher(held):
        with transaction.atomic():
            list(Task.objects.select_for_update().filter(pk=first))
            held.set()
            _wait_until_blocked()
            list(Task.objects.select_for_update().filter(pk=second))
        return "ok"

    return _race(finisher, writer)


def test_a_killswitch_and_a_finisher_ending_the_same_tasks_do_not_deadlock(two_running, admin_api):
    customer, first, second = two_running
    response, finisher = _against_the_finisher(first, second, lambda: admin_api.post(
        "/api/admin/killswitch/", {"engaged": True, "customer": customer.pk}, format="json"))
    assert (getattr(response, "status_code", response), finisher) == (200, "ok"), getattr(response, "content", "")
    assert AuditLog.objects.get(action="killswitch.engage").details["running_stopped"] == [first, second]


def test_a_heartbeat_and_a_finisher_of_the_same_tasks_do_not_deadlock(two_running):
    from tasks.services import task_heartbeat_many

    _, first, second = two_running
    before = timezone.now()
    result, finisher = _against_the_finisher(first, second, lambda: task_heartbeat_many(task_ids=[first, second]))
    assert (result, finisher) == (None, "ok")
    assert all(t.heartbeat_at >= before for t in Task.objects.filter(pk__in=[first, second]))


def test_two_workers_starting_tasks_of_the_same_customers_do_not_deadlock(make_customer):
    """Each start locks its customer's row until the batch commits: two workers' batches must take the customers
    in the same order, whatever order their jobs came in (seen on PostgreSQL in a burst of two customers: dozens
    of deadlocks, and a POST /api/tasks/ queued behind them answered 500)."""
    from tasks.runtime_store import DjangoTaskStore
    from tasks.services import task_create

    tasks = {}
    for name in ("acme", "globex"):
        customer, user = make_customer(name)
        agent = make_agent(customer)
        tasks[name] = [task_create(actor=user, customer=customer, agent=agent, input=str(i))[0].pk for i in (1, 2)]

    def first_worker(held):  # acme's task, then globex's; it pauses once it holds acme's row
        def pause_once_locked(execute, sql, params, many, context):
            out = execute(sql, params, many, context)
            if "FOR NO KEY UPDATE" in sql and not held.is_set():
                held.set()
                _wait_until_blocked()
            return out

        with connection.execute_wrapper(pause_once_locked):
            return DjangoTaskStore().start_many([tasks["acme"][0], tasks["globex"][0]], "w1")

    # the second worker's jobs came the other way round: globex's, then acme's
    second, first = _race(first_worker,
                          lambda: DjangoTaskStore().start_many([tasks["globex"][1], tasks["acme"][1]], "w2"))
    assert (first, second) == ([True, True], [True, True])
    assert set(Task.objects.values_list("status", flat=True)) == {"running"}


def test_waking_waiting_tasks_and_cancelling_them_do_not_deadlock(make_customer):
    """A freed slot wakes the customer's waiting tasks (task_wake_waiting) while a killswitch or an agent stop
    may be cancelling the same queued rows (in id order, through the finisher)."""
    from tasks.services import task_create, task_wake_waiting

    customer, user = make_customer("acme")
    agent = make_agent(customer)
    first, second = (task_create(actor=user, customer=customer, agent=agent, input=str(i))[0].pk for i in (1, 2))
    Task.objects.filter(pk=second).update(waiting_since=timezone.now())
    Task.objects.filter(pk=first).update(waiting_since=timezone.now())  # the first's row now lies after the second's
    woken, finisher = _against_the_finisher(first, second, lambda: task_wake_waiting(customer_id=customer.pk))
    assert (woken, finisher) == ([first, second], "ok")
    assert list(Task.objects.filter(waiting_since__isnull=False)) == []


def test_a_killswitch_cancelling_queued_tasks_and_a_batch_of_their_starts_do_not_deadlock(make_customer, admin_api):
    """A batch of starts holds each customer's row, then its task's row; the killswitch cancels the queued tasks
    of every customer at once. The two must take the rows in one order."""
    from tasks.runtime_store import DjangoTaskStore
    from tasks.services import task_create

    customers = {name: make_customer(name) for name in ("acme", "globex")}
    tasks = {}
    for name in ("globex", "acme"):  # globex's task first: the lower task id, of the customer with the higher id
        customer, user = customers[name]
        tasks[name] = task_create(actor=user, customer=customer, agent=make_agent(customer), input="go")[0].pk
    assert tasks["globex"] < tasks["acme"] and customers["acme"][0].pk < customers["globex"][0].pk

    def starter(held):  # acme's start, then globex's; it pauses once it holds acme's task row
        def pause_once_started(execute, sql, params, many, context):
            out = execute(sql, params, many, context)
            if sql.startswith('UPDATE "tasks_task" SET "status"') and not held.is_set():
                held.set()
                _wait_until_blocked()
            return out

        with connection.execute_wrapper(pause_once_started):
            return DjangoTaskStore().start_many([tasks["acme"], tasks["globex"]], "w1")

    response, started = _race(starter, lambda: admin_api.post(
        "/api/admin/killswitch/", {"engaged": True, "reason": "incident"}, format="json"))
    assert (getattr(response, "status_code", response), started) == (200, [True, True]), getattr(response, "content", "")
