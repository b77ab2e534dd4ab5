"""The killswitch as an operator drives it (API, `manage.py killswitch`, Django admin), without live workers:
what it does to queued and running task rows, to new tasks, to the audit trail and to customers' streams.
The live kill of running sandboxes on real workers is tests/test_killswitch_live.py."""
import json
import time

import pytest
import redis
from django.conf import settings
from django.core.management import call_command

from autogen_platform.realtime import ALL_CUSTOMERS_GROUP, customer_group
from core.models import AuditLog, Killswitch
from runtime.control import control_channel
from tasks.models import Task
from tests.admin_support import GroupListener, make_agent

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_customers(make_customer, client_for):
    """Two customers, each with an agent, a queued task and a task a worker is running."""
    from tasks.services import task_create, task_mark_running

    out = {}
    for name in ("acme", "globex"):
        customer, user = make_customer(name)
        agent = make_agent(customer)
        queued, _ = task_create(actor=user, customer=customer, agent=agent, input="wait")
        running, _ = task_create(actor=user, customer=customer, agent=agent, input="run")
        task_mark_running(task_id=running.pk, worker="test-worker")
        out[name] = {"customer": customer, "client": client_for(user), "agent": agent, "queued": queued,
                     "running": running}
    return out


@pytest.fixture
def control_messages():
    """Kill orders published on the platform's control channel, read like a worker's supervisor reads them."""
    pubsub = redis.Redis.from_url(settings.REDIS_URL).pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(control_channel())

    def read(quiet=0.5):
        """Everything published so far (until the channel has been quiet for `quiet` seconds)."""
        out, deadline = [], time.monotonic() + quiet
        while time.monotonic() < deadline:
            message = pubsub.get_message(timeout=0.1)
            if message is not None:
                out.append(json.loads(message["data"]))
                deadline = time.monotonic() + quiet
        return out

    yield read
    pubsub.close()


def _submit(world, name):
    return world[name]["client"].post("/api/tasks/", {"agent": world[name]["agent"].pk, "input": "hi"}, format="json")


def _task(world, name, which):
    return Task.objects.get(pk=world[name][which].pk)


def test_engaging_for_one_customer_affects_only_that_customer(
    admin_api, two_customers, control_messages, django_capture_on_commit_callbacks
):
    world = two_customers
    acme = world["acme"]["customer"]
    acme_stream, globex_stream = GroupListener(customer_group(acme.pk)), GroupListener(
        customer_group(world["globex"]["customer"].pk))
    try:
        with django_capture_on_commit_callbacks(execute=True):
            response = admin_api.post("/api/admin/killswitch/",
                                      {"engaged": True, "customer": acme.pk, "reason": "abuse report"}, format="json")
        assert response.status_code == 200, response.content
        assert response.json() | {"changed_at": None} == {
            "engaged": True, "customer": acme.pk, "reason": "abuse report", "changed_by": "admin:ops-admin",
            "changed_at": None}

        # acme: the queued task ended cancelled/killswitch, the running one was told to stop, new tasks are refused
        queued = _task(world, "acme", "queued")
        assert (queued.status, queued.error["code"]) == ("cancelled", "killswitch")
        assert _task(world, "acme", "running").stop_requested == "killswitch"
        refused = _submit(world, "acme")
        assert (refused.status_code, refused.json()["error"]["code"]) == (423, "killswitch_engaged")

        # globex: untouched, and still served
        assert _task(world, "globex", "queued").status == "queued"
        assert _task(world, "globex", "running").stop_requested == ""
        assert _submit(world, "globex").status_code == 201

        # the workers got one kill order for the customer's scope (each worker stops its tasks in it)
        orders = control_messages()
        assert {"kind": "kill_scope", "customer": acme.pk, "reason": "killswitch"} in orders
        assert not [o for o in orders if o.get("customer") not in (acme.pk,) and o["kind"] == "kill_scope"]

        # acme's stream announced it; globex's stream heard nothing
        frames = []
        while True:
            frame = acme_stream.receive()["payload"]
            frames.append(frame)
            if frame["type"] == "killswitch":
                break
        assert frames[-1] | {"notification": None, "seq": None} == {
            "type": "killswitch", "engaged": True, "scope": "customer", "customer": acme.pk, "reason": "abuse report",
            "notification": None, "seq": None}
        assert [f["seq"] for f in frames] == list(range(frames[0]["seq"], frames[0]["seq"] + len(frames)))
        assert all(f["type"] == "task_status" for f in frames[:-1])
        with pytest.raises(TimeoutError):
            while True:  # task status frames are fine for globex's own new task; no killswitch notice
                assert globex_stream.receive(timeout=0.5)["payload"]["type"] != "killswitch"
    finally:
        acme_stream.close()
        globex_stream.close()

    # the operator's views agree
    assert admin_api.get("/api/admin/killswitch/").json()["customers"][0]["customer"] == acme.pk
    assert admin_api.get(f"/api/admin/killswitch/?customer={acme.pk}").json()["engaged"] is True
    assert admin_api.get("/api/admin/stats/").json()["killswitch"] == {"global": False, "customers": [acme.pk]}

    # the audit trail says who, what and what it stopped
    row = AuditLog.objects.get(action="killswitch.engage")
    assert (row.actor, row.target, row.customer_id, row.ip) == ("admin:ops-admin", f"customer:{acme.pk}", acme.pk,
                                                                "127.0.0.1")
    assert row.details == {"reason": "abuse report", "was_engaged": False,
                           "running_stopped": [world["acme"]["running"].pk],
                           "queued_cancelled": [world["acme"]["queued"].pk]}

    # release restores service for acme
    with django_capture_on_commit_callbacks(execute=True):
        released = admin_api.post("/api/admin/killswitch/", {"engaged": False, "customer": acme.pk}, format="json")
    assert released.json()["engaged"] is False
    assert _submit(world, "acme").status_code == 201
    assert AuditLog.objects.filter(action="killswitch.release", target=f"customer:{acme.pk}").count() == 1


def test_global_engage_refuses_everyone_and_release_restores(
    admin_api, two_customers, control_messages, django_capture_on_commit_callbacks
):
    world = two_customers
    everyone = GroupListener(ALL_CUSTOMERS_GROUP)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            response = admin_api.post("/api/admin/killswitch/", {"engaged": True, "reason": "incident 42"},
                                      format="json")
        assert response.status_code == 200
        assert response.json()["customer"] is None and response.json()["engaged"] is True
        notice = everyone.receive()["payload"]
        assert (notice["type"], notice["scope"], notice["engaged"]) == ("killswitch", "global", True)
    finally:
        everyone.close()
    for name in ("acme", "globex"):
        assert (_task(world, name, "queued").status, _task(world, name, "queued").error["code"]) == ("cancelled",
                                                                                                      "killswitch")
        assert _task(world, name, "running").stop_requested == "killswitch"
        assert _submit(world, name).json()["error"]["code"] == "killswitch_engaged"
    assert {"kind": "kill_scope", "customer": None, "reason": "killswitch"} in control_messages()
    assert admin_api.get("/api/admin/killswitch/").json()["engaged"] is True
    assert admin_api.get("/api/admin/stats/").json()["killswitch"]["global"] is True

    # customers see why in their notifications
    notes = world["acme"]["client"].get("/api/notifications/").json()["results"]
    assert "incident 42" in notes[0]["message"]

    admin_api.post("/api/admin/killswitch/", {"engaged": False, "reason": "resolved"}, format="json")
    for name in ("acme", "globex"):
        assert _submit(world, name).status_code == 201
    assert list(AuditLog.objects.filter(action__startswith="killswitch.").order_by("id").values_list(
        "action", "target")) == [("killswitch.engage", "global"), ("killswitch.release", "global")]


@pytest.mark.django_db(transaction=True)
def test_a_task_a_worker_ends_the_moment_the_switch_commits_is_in_the_audit(admin_api, two_customers):
    """A worker's stop poll that sees the engaged switch ends its tasks at once, maybe before the service
    has read what was running. The engage row must still name every task the switch stopped (CI once saw
    one of two missing)."""
    from django.db import connection, transaction

    from tasks.services import task_finish

    world = two_customers
    running = [world[name]["running"].pk for name in ("acme", "globex")]

    def as_a_worker_would(execute, sql, params, many, context):
        out = execute(sql, params, many, context)
        if sql.startswith(f'UPDATE "{Killswitch._meta.db_table}"'):
            # the moment the switch commits, a worker's poll sees it and stores its tasks' end
            transaction.on_commit(lambda: [task_finish(task_id=pk, status="cancelled", error={
                "code": "killswitch", "message": "Stopped by the killswitch"}) for pk in running])
        return out

    with connection.execute_wrapper(as_a_worker_would):
        response = admin_api.post("/api/admin/killswitch/", {"engaged": True, "reason": "incident"}, format="json")
    assert response.status_code == 200
    assert [Task.objects.get(pk=pk).status for pk in running] == ["cancelled", "cancelled"]
    engage = AuditLog.objects.get(action="killswitch.engage")
    assert engage.details["running_stopped"] == running
    assert sorted(engage.details["queued_cancelled"]) == sorted(world[n]["queued"].pk for n in ("acme", "globex"))


def test_the_kill_order_goes_out_before_the_customers_are_told(
    admin_api, two_customers, control_messages, django_capture_on_commit_callbacks
):
    """Once the switch commits, the first thing sent is the kill order; the customers' notice (stored on their
    streams, then pushed live) comes after it, and so does the second kill order no more."""
    from accounts.models import CustomerNotice

    acme = two_customers["acme"]["customer"]
    with django_capture_on_commit_callbacks(execute=False) as after_commit:
        response = admin_api.post("/api/admin/killswitch/", {"engaged": True, "customer": acme.pk}, format="json")
    assert response.status_code == 200

    def told():
        return CustomerNotice.objects.filter(customer=acme, payload__type="killswitch").exists()

    after_commit[0]()
    assert control_messages() == [{"kind": "kill_scope", "customer": acme.pk, "reason": "killswitch"}]
    assert not told()
    for callback in after_commit[1:]:
        callback()
    assert told()
    assert [m for m in control_messages() if m["kind"] == "kill_scope"] == []  # one kill order, not two


def test_a_customer_switch_released_under_an_engaged_global_switch_still_refuses(admin_api, two_customers):
    acme = two_customers["acme"]["customer"]
    admin_api.post("/api/admin/killswitch/", {"engaged": True}, format="json")
    admin_api.post("/api/admin/killswitch/", {"engaged": True, "customer": acme.pk}, format="json")
    admin_api.post("/api/admin/killswitch/", {"engaged": False, "customer": acme.pk}, format="json")
    assert _submit(two_customers, "acme").status_code == 423
    admin_api.post("/api/admin/killswitch/", {"engaged": False}, format="json")
    assert _submit(two_customers, "acme").status_code == 201


def test_killswitch_input_is_validated(admin_api):
    missing = admin_api.post("/api/admin/killswitch/", {"reason": "x"}, format="json")
    assert (missing.status_code, list(missing.json()["error"]["details"])) == (400, ["engaged"])
    unknown = admin_api.post("/api/admin/killswitch/", {"engaged": True, "customer": 999999}, format="json")
    assert (unknown.status_code, list(unknown.json()["error"]["details"])) == (400, ["customer"])
    assert admin_api.get("/api/admin/killswitch/?customer=999999").status_code == 404
    assert not Killswitch.objects.exists()


def test_manage_py_killswitch(two_customers, capsys):
    world = two_customers
    acme = world["acme"]["customer"]
    call_command("killswitch", "on", "--customer", str(acme.pk), "--reason", "from the shell")
    assert f"killswitch customer {acme.pk} (acme): ENGAGED (from the shell)" in capsys.readouterr().out
    assert _task(world, "acme", "queued").error["code"] == "killswitch"
    assert _submit(world, "acme").status_code == 423
    assert _submit(world, "globex").status_code == 201

    call_command("killswitch", "on", "--reason", "everything")
    call_command("killswitch")
    out = capsys.readouterr().out
    assert "killswitch global: ENGAGED (everything)" in out
    assert f"killswitch customer {acme.pk}: ENGAGED (from the shell)" in out
    assert _submit(world, "globex").status_code == 423

    call_command("killswitch", "off")
    call_command("killswitch", "off", "--customer", "acme")  # by name too
    assert _submit(world, "acme").status_code == 201
    rows = AuditLog.objects.filter(action__startswith="killswitch.").order_by("id")
    assert [(r.action, r.target, r.actor.startswith("cli:")) for r in rows] == [
        ("killswitch.engage", f"customer:{acme.pk}", True), ("killswitch.engage", "global", True),
        ("killswitch.release", "global", True), ("killswitch.release", f"customer:{acme.pk}", True)]
    with pytest.raises(Exception, match="No customer"):
        call_command("killswitch", "on", "--customer", "nobody")


def test_django_admin_engages_and_releases_through_the_service(client, two_customers, django_user_model):
    world = two_customers
    from tests.admin_support import admin_site_login

    superuser = django_user_model.objects.create_superuser("root-admin", "root@example.com", "password123")
    admin_site_login(client, superuser)
    # engage the global switch from the add form
    # (engaging asks for a confirmation first: tests/test_admin_site_pages.py)
    response = client.post("/admin/core/killswitch/add/", {"customer": "", "engaged": "on", "confirm": "on",
                                                                 "reason": "from the admin site"})
    assert response.status_code == 302, response.content[:2000]
    switch = Killswitch.objects.get(scope="global")
    assert switch.engaged and switch.changed_by == "admin:root-admin"
    assert _task(world, "globex", "queued").error["code"] == "killswitch"
    assert _submit(world, "globex").status_code == 423
    # release it with the changelist action
    response = client.post("/admin/core/killswitch/", {"action": "release_selected",
                                                             "_selected_action": [switch.pk]})
    assert response.status_code == 302
    assert not Killswitch.objects.get(scope="global").engaged
    assert _submit(world, "globex").status_code == 201
    assert list(AuditLog.objects.filter(action__startswith="killswitch.").order_by("id").values_list(
        "action", "actor")) == [("killswitch.engage", "admin:root-admin"), ("killswitch.release", "admin:root-admin")]
