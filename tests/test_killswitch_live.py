"""The killswitch against real workers: tasks of two customers run in sandboxes on two `manage.py runworker`
processes; engaging for one customer kills only its sandboxes, engaging globally kills every sandbox (all
within a second) and refuses new tasks, releasing restores service. The audit trail records all of it."""
import time

import psutil
import pytest
from django.db import connection

from core.models import AuditLog
from tasks.models import Task
from tests.admin_support import make_agent
from tests.execution_support import Processes, running, wait_for, worker_env

SLEEPER = "```python\nimport time\ntime.sleep(120)\n```"
pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def workers():
    import django_rq

    django_rq.get_queue("default").empty()  # no stale jobs from other tests
    # one task a worker: each of the two workers holds one of the sandboxes the killswitch must reach
    with running("ks1", "ks2", WORKER_CONCURRENCY=1) as procs:
        yield procs


def _tree(pid):
    """The sandbox's process tree, root first (empty when gone)."""
    try:
        root = psutil.Process(pid)
        return [root] + root.children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _alive(procs):
    out = []
    for proc in procs:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                out.append(proc)
        except psutil.NoSuchProcess:
            pass
    return out


def _sleeping_sandbox(task_id, timeout=60):
    """Wait until the task's sandbox runs the model's code (the sleep), and return its process tree."""
    def ready():
        task = Task.objects.get(pk=task_id)
        assert task.status in ("queued", "running"), (task.status, task.error)
        if task.status != "running" or not task.pid:
            return None
        tree = _tree(task.pid)
        sleeping = [p for p in tree if "time.sleep" in " ".join(_cmdline(p)) or _runs_code_file(p)]
        return tree if sleeping else None

    return wait_for(ready, timeout=timeout, interval=0.1, message=f"task {task_id}'s sandbox to run its code")


def _cmdline(proc):
    try:
        return proc.cmdline()
    except psutil.Error:
        return []


def _runs_code_file(proc):
    return any(part.endswith(".py") and "tmp_code" in part for part in _cmdline(proc))


def _assert_all_gone_within(trees, seconds, since):
    procs = [p for tree in trees for p in tree]
    wait_for(lambda: not _alive(procs), timeout=seconds + 5, interval=0.01, message="sandboxes to die")
    elapsed = time.monotonic() - since
    assert elapsed < seconds, f"sandboxes took {elapsed:.2f}s to die"


def _submit(client, agent):
    return client.post("/api/tasks/", {"agent": agent.pk, "input": "go"}, format="json")


def _ended_by_killswitch(task_id):
    def ended():
        task = Task.objects.get(pk=task_id)
        return task if task.status not in ("queued", "running") else None

    task = wait_for(ended, timeout=10, message=f"task {task_id} to end")
    assert (task.status, task.error["code"]) == ("cancelled", "killswitch")


def test_killswitch_kills_sandboxes_in_scope_on_every_worker(workers, make_customer, client_for, admin_api):
    # given: one slow task per customer, each sleeping in a sandbox on its own worker
    acme, acme_user = make_customer("acme")
    globex, globex_user = make_customer("globex")
    acme_api, globex_api = client_for(acme_user), client_for(globex_user)
    limits = {"timeout_seconds": 300}
    acme_slow = make_agent(acme, responses=[SLEEPER, "TERMINATE"], code_execution=True, limits=limits)
    globex_slow = make_agent(globex, responses=[SLEEPER, "TERMINATE"], code_execution=True, limits=limits)
    a1 = _submit(acme_api, acme_slow).json()["id"]
    g1 = _submit(globex_api, globex_slow).json()["id"]
    a1_tree, g1_tree = _sleeping_sandbox(a1), _sleeping_sandbox(g1)
    assert Task.objects.get(pk=a1).worker != Task.objects.get(pk=g1).worker  # two workers
    # the operator sees them: the worker host's sandbox layers and both live sandboxes
    runtime = wait_for(lambda: (r := admin_api.get("/api/admin/runtime/").json()) and len(r["sandboxes"]) == 2 and r,
                       timeout=10, message="both sandboxes in /api/admin/runtime/")
    assert {(s["task"], s["customer"]) for s in runtime["sandboxes"]} == {(a1, acme.pk), (g1, globex.pk)}
    assert {s["pid"] for s in runtime["sandboxes"]} == {Task.objects.get(pk=a1).pid, Task.objects.get(pk=g1).pid}
    assert [h["alive"] for h in runtime["hosts"]] == [True] and runtime["hosts"][0]["layers"]
    assert admin_api.get("/api/admin/stats/").json()["running_sandboxes"] == 2

    # when: the killswitch is engaged for acme only
    started = time.monotonic()
    response = admin_api.post("/api/admin/killswitch/", {"engaged": True, "customer": acme.pk, "reason": "abuse"},
                              format="json")
    assert response.status_code == 200
    # then: acme's sandbox is gone within a second, globex's keeps running
    _assert_all_gone_within([a1_tree], 1.0, started)
    _ended_by_killswitch(a1)
    assert _alive(g1_tree) == g1_tree and Task.objects.get(pk=g1).status == "running"
    assert _submit(acme_api, acme_slow).json()["error"]["code"] == "killswitch_engaged"

    # globex still gets work done: a second slow task starts on the worker acme's task freed
    g2 = _submit(globex_api, globex_slow)
    assert g2.status_code == 201
    g2 = g2.json()["id"]
    g2_tree = _sleeping_sandbox(g2)
    assert Task.objects.get(pk=g1).worker != Task.objects.get(pk=g2).worker

    # when: the killswitch is engaged globally
    started = time.monotonic()
    admin_api.post("/api/admin/killswitch/", {"engaged": True, "reason": "incident"}, format="json")
    # then: every sandbox on both workers is gone within a second, and nobody can start a task
    _assert_all_gone_within([g1_tree, g2_tree], 1.0, started)
    _ended_by_killswitch(g1)
    _ended_by_killswitch(g2)
    for api, agent in ((acme_api, acme_slow), (globex_api, globex_slow)):
        assert _submit(api, agent).json()["error"]["code"] == "killswitch_engaged"

    # when: both switches are released, then: work resumes for both customers
    admin_api.post("/api/admin/killswitch/", {"engaged": False}, format="json")
    admin_api.post("/api/admin/killswitch/", {"engaged": False, "customer": acme.pk}, format="json")
    quick = {name: make_agent(customer, responses=["Done. TERMINATE"])
             for name, customer in (("acme", acme), ("globex", globex))}
    ids = [_submit(acme_api, quick["acme"]).json()["id"], _submit(globex_api, quick["globex"]).json()["id"]]
    for task_id in ids:
        task = wait_for(lambda: (t := Task.objects.get(pk=task_id)).status not in ("queued", "running") and t,
                        timeout=60, message=f"task {task_id} to finish")
        assert task.status == "succeeded", task.error

    # and the audit trail tells the story
    trail = list(AuditLog.objects.filter(action__startswith="killswitch.").order_by("at", "id")
                 .values_list("action", "target", "actor"))
    assert trail == [
        ("killswitch.engage", f"customer:{acme.pk}", "admin:ops-admin"),
        ("killswitch.engage", "global", "admin:ops-admin"),
        ("killswitch.release", "global", "admin:ops-admin"),
        ("killswitch.release", f"customer:{acme.pk}", "admin:ops-admin"),
    ]
    engage = AuditLog.objects.get(action="killswitch.engage", target="global")
    assert sorted(engage.details["running_stopped"]) == sorted([g1, g2])


def test_a_worker_started_later_honours_an_engaged_killswitch(make_customer):
    import django_rq

    from core.models import Killswitch
    from tasks.services import task_create

    # given: a task queued while no worker runs, then the killswitch engaged for its customer
    django_rq.get_queue("default").empty()
    acme, user = make_customer("acme")
    agent = make_agent(acme, responses=["Done. TERMINATE"])

    task, _ = task_create(actor=user, customer=acme, agent=agent, input="hi")
    # the switch is set in the database only (as if the Redis message were lost): workers must read the record
    Killswitch.objects.create(scope=f"customer:{acme.pk}", customer=acme, engaged=True, reason="db only")
    # when: a worker starts and handles the queue (--burst: it exits once the queue is empty)
    later = Processes(worker_env(connection.settings_dict))
    worker = later._start("late", ["runworker", "--burst"])
    try:
        assert worker.wait(60) == 0
    finally:
        later.stop()
    done = Task.objects.get(pk=task.pk)
    # then: it did not run
    assert (done.status, done.error["code"], done.started_at) == ("cancelled", "killswitch", None)
