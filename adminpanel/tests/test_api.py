"""The admin API as an operator uses it: statistics, customers and quotas, agents, broadcasts, audit, runtime."""
from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import Customer, CustomerUsage
from accounts.models import Notification
from core.models import AuditLog
from tasks.models import Task
from tests.admin_support import GroupListener, make_agent

pytestmark = pytest.mark.django_db

QUOTA_KEYS = {"max_agents", "max_concurrent_tasks", "max_tasks_per_day", "monthly_token_budget", "max_memory_mb",
              "max_cpu_seconds", "max_timeout_seconds"}


def _task(customer, agent, *, status="queued", tokens=0):
    """A task in `status` whose tokens were recorded as a worker records them (the usage counters follow)."""
    from tasks.services import task_create, task_finish, task_record_tokens

    task, _ = task_create(actor="test", customer=customer, agent=agent, input="hi")
    if status != "queued":
        Task.objects.filter(pk=task.pk).update(status="running")
        task_record_tokens(task_id=task.pk, tokens=tokens)
        if status != "running":
            task_finish(task_id=task.pk, status=status, usage={"prompt_tokens": tokens, "completion_tokens": 0})
    return task


def test_stats_count_the_whole_platform(admin_api, make_customer, django_capture_on_commit_callbacks):
    import django_rq

    django_rq.get_queue("default").empty()
    acme, _ = make_customer("acme")
    globex, _ = make_customer("globex")
    a1, a2 = make_agent(acme), make_agent(globex)
    with django_capture_on_commit_callbacks(execute=True):
        _task(acme, a1)
    _task(acme, a1, status="running", tokens=70)
    _task(globex, a2, status="succeeded", tokens=30)
    response = admin_api.get("/api/admin/stats/")
    assert response.status_code == 200
    stats = response.json()
    assert stats["customers"] == 2
    assert stats["agents"] == 2
    assert stats["tasks_by_status"] == {"queued": 1, "running": 1, "succeeded": 1, "failed": 0, "cancelled": 0,
                                        "timed_out": 0, "input_required": 0}
    assert stats["running_sandboxes"] == 1
    assert stats["queue_depth"] == 1  # the queued task's job waits on the real RQ queue (no worker here)
    assert stats["tokens_today"] == 100
    assert stats["killswitch"] == {"global": False, "customers": []}


def _counted_in_the_table() -> dict:
    from django.db.models import Count

    counts = {status: 0 for status in Task.Status.values}
    counts.update(dict(Task.objects.order_by().values_list("status").annotate(n=Count("id"))))
    return counts


def test_stats_count_every_status_as_the_tasks_table_holds_them(admin_api, make_customer, settings):
    """tasks_by_status reads the unfinished tasks and the usage counters, not the whole table: whatever ends,
    is rolled back (deleted) or purged with its customer, the figures stay those of the table."""
    from tasks.purge import customer_purge_deleted
    from tasks.services import task_finish

    acme, _ = make_customer("acme")
    globex, _ = make_customer("globex")
    a1, a2 = make_agent(acme), make_agent(globex)
    for status in ("queued", "running", "succeeded", "failed", "cancelled", "timed_out", "succeeded"):
        _task(acme, a1, status=status, tokens=5)
    for status in ("succeeded", "failed", "cancelled", "cancelled"):
        _task(globex, a2, status=status)

    def stats():
        return admin_api.get("/api/admin/stats/").json()["tasks_by_status"]

    assert stats() == _counted_in_the_table() == {"queued": 1, "running": 1, "input_required": 0, "succeeded": 3,
                                                  "failed": 2, "cancelled": 3, "timed_out": 1}
    # a running task rolled back (multitask_strategy rollback): it ends and is deleted, and counts no more
    rolled = _task(acme, a1, status="running")
    Task.objects.filter(pk=rolled.pk).update(stop_requested="rollback")
    assert task_finish(task_id=rolled.pk, status="cancelled", error={"code": "cancelled", "message": "rolled back"})
    assert not Task.objects.filter(pk=rolled.pk).exists()
    assert stats() == _counted_in_the_table() and stats()["cancelled"] == 3
    # a finished task never ends twice
    done = Task.objects.filter(customer=globex, status="succeeded").get()
    assert not task_finish(task_id=done.pk, status="failed")
    assert stats()["succeeded"] == 3 and stats()["failed"] == 2
    # globex deleted and purged in batches of two: the figures follow every batch
    assert admin_api.delete(f"/api/admin/customers/{globex.pk}/").status_code == 204
    Customer.objects.filter(pk=globex.pk).update(
        deleted_at=timezone.now() - timedelta(days=settings.CUSTOMER_RETENTION_DAYS + 1))
    while Customer.objects.filter(pk=globex.pk).exists():
        customer_purge_deleted(batch=2)
        assert stats() == _counted_in_the_table()
    assert stats() == {"queued": 1, "running": 1, "input_required": 0, "succeeded": 2, "failed": 1, "cancelled": 1,
                       "timed_out": 1}
    assert set(Task.FINISHED) == set(CustomerUsage.ENDED)  # one counter for every final status


@pytest.mark.django_db(transaction=True)
def test_upgrading_counts_the_tasks_that_ended_before(make_customer):
    """The migration that adds the final-status counters fills them from the tasks already stored."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    from tasks.selectors import tasks_by_status

    acme, _ = make_customer("acme")
    agent = make_agent(acme)
    for status in ("succeeded", "succeeded", "failed", "timed_out", "running", "queued"):
        _task(acme, agent, status=status)
    executor = MigrationExecutor(connection)
    executor.migrate([("accounts", "0006_customer_http_tool_hosts")])  # the counters' columns are gone
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
    assert tasks_by_status() == _counted_in_the_table() == {
        "queued": 1, "running": 1, "input_required": 0, "succeeded": 2, "failed": 1, "cancelled": 0, "timed_out": 1}


def test_tokens_today_is_what_the_customers_tasks_show(admin_api, make_customer, client_for):
    """tokens_today is read from the per-day usage counters; it equals the sum of the usage every customer
    sees on its own tasks (GET /api/tasks/), counts a running task's tokens as they are recorded, and does
    not count a task that was rolled back (deleted)."""
    from tasks.runtime_store import DjangoTaskStore
    from tasks.services import task_finish

    store = DjangoTaskStore()  # what a worker calls
    seen = {}
    for name, spend in (("acme", [(120, 30), (7, 0), None]), ("globex", [(1000, 234)])):
        customer, user = make_customer(name)
        api = client_for(user)
        agent = make_agent(customer)
        for tokens in spend:
            response = api.post("/api/tasks/", {"agent": agent.pk, "input": "hi"}, format="json")
            assert response.status_code == 201, response.content
            task_id = response.json()["id"]
            if tokens is None:  # cancelled before it started: no tokens
                assert api.post(f"/api/tasks/{task_id}/cancel/").status_code == 200
                continue
            assert store.start(task_id, "test-worker")
            store.tokens_left(task_id, customer.pk, tokens[0])  # the budget check after a model call (a read)
            store.heartbeat([task_id], tokens={task_id: tokens[0]})  # its tokens ride with the worker's next write
            assert admin_api.get("/api/admin/stats/").json()["tokens_today"] == sum(seen.values()) + tokens[0]
            store.finish_many([(task_id, {"status": "succeeded", "usage": {
                "prompt_tokens": tokens[0], "completion_tokens": tokens[1], "cpu_seconds": 0.1,
                "peak_memory_mb": 1.0, "wall_seconds": 0.2}})])
            seen[task_id] = sum(tokens)
        shown = api.get("/api/tasks/?page_size=100").json()["results"]
        assert {t["id"]: t["usage"]["prompt_tokens"] + t["usage"]["completion_tokens"] for t in shown
                if t["status"] == "succeeded"} == {k: v for k, v in seen.items() if k in {t["id"] for t in shown}}
    assert admin_api.get("/api/admin/stats/").json()["tokens_today"] == sum(seen.values()) == 1391

    # a task ended by a rollback is deleted: its tokens count no more, for the customer nor here
    customer = Customer.objects.get(name="globex")
    doomed = _task(customer, make_agent(customer), status="running", tokens=50)
    assert admin_api.get("/api/admin/stats/").json()["tokens_today"] == 1441
    Task.objects.filter(pk=doomed.pk).update(stop_requested="rollback")
    task_finish(task_id=doomed.pk, status="cancelled", usage={"prompt_tokens": 50, "completion_tokens": 0})
    assert not Task.objects.filter(pk=doomed.pk).exists()
    assert admin_api.get("/api/admin/stats/").json()["tokens_today"] == 1391


def test_customer_crud_with_partial_quota_changes(admin_api, staff_user):
    # create: quotas not named take the defaults
    response = admin_api.post("/api/admin/customers/", {"name": "acme", "quotas": {"max_agents": 3}}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == {"id", "name", "quotas", "http_tool_hosts", "created_at"}
    assert body["http_tool_hosts"] == []
    assert set(body["quotas"]) == QUOTA_KEYS
    assert body["quotas"]["max_agents"] == 3
    assert body["quotas"]["max_tasks_per_day"] == 1000
    cid = body["id"]

    # PATCH names one quota: the others keep their values
    response = admin_api.patch(f"/api/admin/customers/{cid}/", {"quotas": {"max_tasks_per_day": 7}}, format="json")
    assert response.status_code == 200
    assert response.json()["quotas"] == {**body["quotas"], "max_tasks_per_day": 7}
    assert response.json()["name"] == "acme"
    assert Customer.objects.get(pk=cid).max_agents == 3

    # list and detail
    listed = admin_api.get("/api/admin/customers/").json()
    assert [c["name"] for c in listed["results"]] == ["acme"]
    assert admin_api.get(f"/api/admin/customers/{cid}/").json()["quotas"]["max_tasks_per_day"] == 7

    # duplicate names conflict, unknown or invalid quotas are validation errors
    assert admin_api.post("/api/admin/customers/", {"name": "acme"}, format="json").json()["error"]["code"] == "conflict"
    bad = admin_api.patch(f"/api/admin/customers/{cid}/", {"quotas": {"max_gpus": 1}}, format="json")
    assert (bad.status_code, bad.json()["error"]["code"]) == (400, "validation_error")
    assert "max_gpus" in bad.json()["error"]["details"]["quotas"]
    bad = admin_api.patch(f"/api/admin/customers/{cid}/", {"quotas": {"max_agents": -1}}, format="json")
    assert bad.status_code == 400
    assert admin_api.post("/api/admin/customers/", {}, format="json").json()["error"]["details"] == {
        "name": ["This field is required."]
    }

    # delete: gone, and audited
    assert admin_api.delete(f"/api/admin/customers/{cid}/").status_code == 204
    assert admin_api.get(f"/api/admin/customers/{cid}/").status_code == 404
    actions = list(AuditLog.objects.filter(actor="admin:ops-admin").order_by("id").values_list("action", "target"))
    assert actions == [("customer.create", f"customer:{cid}"), ("customer.update", f"customer:{cid}"),
                       ("customer.delete", f"customer:{cid}")]
    update = AuditLog.objects.get(action="customer.update")
    assert update.details == {"changes": {"max_tasks_per_day": [1000, 7]}}


def test_deleting_a_customer_removes_everything_it_owns_after_the_retention(admin_api, make_customer):
    from datetime import timedelta

    from django.conf import settings
    from django.utils import timezone

    from tasks.purge import customer_purge_deleted
    from agents.models import Agent, ModelConfig
    from teams.models import Team, TeamMember

    acme, _ = make_customer("acme")
    other, _ = make_customer("other")
    agent = make_agent(acme)
    keep = make_agent(other)
    team = Team.objects.create(customer=acme, name="duo", selector_model=agent.model)
    TeamMember.objects.create(team=team, agent=agent, position=0)
    _task(acme, agent)
    _task(acme, agent, status="running")
    _task(other, keep)
    assert admin_api.delete(f"/api/admin/customers/{acme.pk}/").status_code == 204
    assert Customer.objects.get(pk=acme.pk).deleted_at is not None  # a soft delete: kept for the retention
    expired = timezone.now() - timedelta(days=settings.CUSTOMER_RETENTION_DAYS + 1)
    Customer.objects.filter(pk=acme.pk).update(deleted_at=expired)
    customer_purge_deleted()
    assert not Customer.objects.filter(pk=acme.pk).exists()
    assert not Agent.objects.filter(customer_id=acme.pk).exists()
    assert not ModelConfig.objects.filter(customer_id=acme.pk).exists()
    assert list(Task.objects.values_list("customer_id", flat=True)) == [other.pk]
    assert Agent.objects.filter(pk=keep.pk).exists()


def test_agents_of_every_customer_and_stop(admin_api, make_customer):
    acme, _ = make_customer("acme")
    globex, _ = make_customer("globex")
    a1, a2 = make_agent(acme, name="writer"), make_agent(globex, name="critic")
    everyone = admin_api.get("/api/admin/agents/").json()["results"]
    assert {(a["name"], a["customer"], a["customer_name"]) for a in everyone} == {
        ("writer", acme.pk, "acme"), ("critic", globex.pk, "globex")}
    only = admin_api.get(f"/api/admin/agents/?customer={globex.pk}").json()["results"]
    assert [a["id"] for a in only] == [a2.pk]
    assert admin_api.get("/api/admin/agents/?customer=abc").status_code == 400

    queued = _task(acme, a1)
    response = admin_api.post(f"/api/admin/agents/{a1.pk}/stop/")
    assert response.status_code == 200
    assert response.json()["status"] == "stopped"
    queued.refresh_from_db()
    assert queued.status == "cancelled"
    row = AuditLog.objects.get(action="agent.stop")
    assert (row.actor, row.target, row.customer_id) == ("admin:ops-admin", f"agent:{a1.pk}", acme.pk)
    assert admin_api.post("/api/admin/agents/999999/stop/").status_code == 404


def test_broadcast_is_stored_and_delivered_live_to_every_customer(admin_api, make_customer,
                                                                  django_capture_on_commit_callbacks):
    from autogen_platform.realtime import ALL_CUSTOMERS_GROUP

    acme, _ = make_customer("acme")
    listener = GroupListener(ALL_CUSTOMERS_GROUP)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            response = admin_api.post("/api/admin/broadcast/", {"message": "Maintenance at noon", "level": "warning"},
                                      format="json")
        assert response.status_code == 201, response.content
        frame = listener.receive()
    finally:
        listener.close()
    note = Notification.objects.get()
    assert (note.customer_id, note.message, note.level, note.created_by) == (None, "Maintenance at noon", "warning",
                                                                           "admin:ops-admin")
    assert frame["payload"]["type"] == "broadcast"
    assert frame["payload"]["notification"]["id"] == note.pk
    assert frame["payload"]["notification"]["message"] == "Maintenance at noon"
    assert frame["seqs"] == {str(acme.pk): 1}  # stored on acme's events stream as its notice 1
    row = AuditLog.objects.get(action="broadcast.send")
    assert (row.actor, row.target, row.details["level"]) == ("admin:ops-admin", f"notification:{note.pk}", "warning")

    bad = admin_api.post("/api/admin/broadcast/", {"message": "x", "level": "shouting"}, format="json")
    assert (bad.status_code, list(bad.json()["error"]["details"])) == (400, ["level"])
    assert admin_api.post("/api/admin/broadcast/", {"message": ""}, format="json").status_code == 400


def test_broadcast_reaches_customers_notifications(admin_api, make_customer, client_for):
    _, user = make_customer("acme")
    admin_api.post("/api/admin/broadcast/", {"message": "Hello all", "level": "info"}, format="json")
    response = client_for(user).get("/api/notifications/")
    assert response.status_code == 200
    assert [n["message"] for n in response.json()["results"]] == ["Hello all"]


def test_audit_log_filters_and_pages_newest_first(admin_api, make_customer, staff_user):
    from core.services import audit_record

    acme, alice = make_customer("acme", username="alice")
    globex, bob = make_customer("globex", username="bob")
    audit_record(actor=alice, action="agent.create", target="agent:1")
    audit_record(actor=bob, action="agent.create", target="agent:2")
    audit_record(actor=staff_user, action="killswitch.engage", target="global")
    old = audit_record(actor=alice, action="task.create", target="task:1")
    AuditLog.objects.filter(pk=old.pk).update(at=timezone.now() - timedelta(days=3))

    def get(query=""):
        response = admin_api.get(f"/api/admin/audit/{query}")
        assert response.status_code == 200, response.content
        return [(r["actor"], r["action"]) for r in response.json()["results"]]

    assert get() == [("admin:ops-admin", "killswitch.engage"), ("bob", "agent.create"), ("alice", "agent.create"),
                     ("alice", "task.create")]
    assert get("?actor=alice") == [("alice", "agent.create"), ("alice", "task.create")]
    assert get("?action=agent.create") == [("bob", "agent.create"), ("alice", "agent.create")]
    assert get("?action=killswitch.") == [("admin:ops-admin", "killswitch.engage")]
    assert get(f"?customer={globex.pk}") == [("bob", "agent.create")]
    two_days_ago = (timezone.now() - timedelta(days=2)).date().isoformat()
    assert ("alice", "task.create") not in get(f"?since={two_days_ago}")
    assert get(f"?until={two_days_ago}") == [("alice", "task.create")]
    page = admin_api.get("/api/admin/audit/?page_size=2").json()
    assert page["count"] == 4 and len(page["results"]) == 2 and page["next"]
    first = page["results"][0]
    assert set(first) == {"id", "actor", "action", "target", "ip", "at", "details", "customer"}
    assert admin_api.get("/api/admin/audit/?since=yesterday").status_code == 400


def test_runtime_reports_worker_layers_and_live_sandboxes(admin_api):
    from runtime.models import WorkerHost

    now = timezone.now()
    caps = {"level": "namespaces", "layers": {"netns": {"active": True, "detail": "loopback only"},
                                              "seccomp": {"active": False, "detail": "no libseccomp"}}}
    WorkerHost.objects.create(hostname="w1", capabilities=caps, started_at=now, last_seen=now)
    WorkerHost.objects.create(hostname="w0", capabilities={}, started_at=now - timedelta(days=1),
                              last_seen=now - timedelta(hours=1))
    body = admin_api.get("/api/admin/runtime/").json()
    assert [(h["hostname"], h["alive"]) for h in body["hosts"]] == [("w0", False), ("w1", True)]
    w1 = body["hosts"][1]
    assert w1["layers"]["seccomp"] == {"active": False, "detail": "no libseccomp"}
    assert w1["level"] == "namespaces"
    assert body["sandboxes"] == []
