"""Webhooks and schedules through the API and the services, without workers (tests/test_webhooks.py and
tests/test_schedules.py run them for real)."""
import base64
import threading
from datetime import datetime, timedelta, timezone as dt_timezone

import pytest
from django.db import connection
from django.utils import timezone

from core.models import AuditLog
from integrations import scheduling
from integrations.models import Schedule, WebhookDelivery
from integrations.services import schedules_fire_due
from tasks.models import Task
from tests.api_support import make_agent

pytestmark = pytest.mark.django_db


@pytest.fixture
def org_user(make_customer):
    return make_customer("hooks-org")


def test_a_webhook_secret_is_shown_once_and_never_again(org_user, client_for):
    org, user = org_user
    api = client_for(user)
    response = api.post("/api/webhooks/", {"url": "https://example.com/hooks"}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["secret"].startswith("whsec_") and len(base64.b64decode(body["secret"][6:])) == 32
    assert body["events"] == ["task.succeeded", "task.failed", "task.cancelled", "task.timed_out"]
    assert body["enabled"] is True
    assert "secret" not in api.get(f"/api/webhooks/{body['id']}/").json()
    assert "secret" not in api.get("/api/webhooks/").json()["results"][0]
    rotated = api.post(f"/api/webhooks/{body['id']}/rotate-secret/").json()["secret"]
    assert rotated.startswith("whsec_") and rotated != body["secret"]
    assert AuditLog.objects.filter(action="webhook.create").exists()


def test_webhook_input_is_validated(org_user, client_for):
    _, user = org_user
    api = client_for(user)
    response = api.post("/api/webhooks/", {"url": "https://example.com/h", "events": ["task.exploded"]}, format="json")
    assert response.status_code == 400 and "events" in response.json()["error"]["details"]
    response = api.post("/api/webhooks/", {"url": "ftp://example.com/h"}, format="json")
    assert response.status_code == 400 and "url" in response.json()["error"]["details"]
    response = api.post("/api/webhooks/", {"url": "https://example.com/h", "secret": "plain"}, format="json")
    assert response.status_code == 400 and "secret" in response.json()["error"]["details"]
    mine = "whsec_" + base64.b64encode(b"k" * 32).decode()
    response = api.post("/api/webhooks/", {"url": "https://example.com/h", "secret": mine}, format="json")
    assert response.status_code == 201 and response.json()["secret"] == mine


def test_webhooks_are_the_customers_own(org_user, make_customer, client_for):
    _, user = org_user
    hook = client_for(user).post("/api/webhooks/", {"url": "https://example.com/h"}, format="json").json()
    _, stranger = make_customer("elsewhere")
    assert client_for(stranger).get(f"/api/webhooks/{hook['id']}/").status_code == 404
    assert client_for(stranger).get(f"/api/webhooks/{hook['id']}/deliveries/").status_code == 404
    _, viewer = make_customer("hooks-org", role="viewer")
    assert client_for(viewer).post("/api/webhooks/", {"url": "https://example.com/v"}, format="json").status_code == 403


def test_a_task_end_writes_one_delivery_per_subscribed_endpoint(org_user, client_for):
    from tasks.services import task_create, task_finish

    org, user = org_user
    api = client_for(user)
    failures = api.post("/api/webhooks/", {"url": "https://example.com/f", "events": ["task.failed"]}, format="json").json()
    successes = api.post("/api/webhooks/", {"url": "https://example.com/s", "events": ["task.succeeded"]},
                         format="json").json()
    task, _ = task_create(actor=user, customer=org, input="Hi", agent=make_agent(org))
    task_finish(task_id=task.pk, status="succeeded", result={"text": "done"})
    assert api.get(f"/api/webhooks/{failures['id']}/deliveries/").json()["results"] == []
    [delivery] = api.get(f"/api/webhooks/{successes['id']}/deliveries/").json()["results"]
    assert delivery["event"] == "task.succeeded" and delivery["task"] == task.pk
    assert delivery["payload"]["data"]["result"] == {"text": "done"} and delivery["message_id"].startswith("msg_")
    # a finished task never changes again, so it is never reported twice
    task_finish(task_id=task.pk, status="failed")
    assert WebhookDelivery.objects.count() == 1


def schedule_body(agent, **fields):
    return {"name": "nightly", "cron": "0 3 * * *", "timezone": "Europe/Paris", "agent": agent.pk, "input": "Go", **fields}


def test_a_schedule_lists_its_next_firing_times_in_its_time_zone(org_user, client_for):
    org, user = org_user
    response = client_for(user).post("/api/schedules/", schedule_body(make_agent(org)), format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["enabled"] is True and len(body["upcoming"]) == 5
    firsts = [datetime.fromisoformat(t.replace("Z", "+00:00")) for t in body["upcoming"]]
    assert all(t.astimezone(scheduling.ZoneInfo("Europe/Paris")).hour == 3 for t in firsts)
    assert all((b - a) >= timedelta(hours=23) for a, b in zip(firsts, firsts[1:]))


@pytest.mark.parametrize("fields, field", [
    ({"cron": "not a cron"}, "cron"),
    ({"cron": "* * * * * *"}, "cron"),
    ({"timezone": "Mars/Olympus"}, "timezone"),
    ({"cron": "", "interval_seconds": 5}, "interval_seconds"),
    ({"cron": "* * * * *", "interval_seconds": 120}, "non_field_errors"),
    ({"cron": ""}, "non_field_errors"),
])
def test_schedule_input_is_validated(org_user, client_for, fields, field):
    org, user = org_user
    response = client_for(user).post("/api/schedules/", schedule_body(make_agent(org), **fields), format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["details"]


def test_schedule_names_are_unique_per_customer(org_user, client_for):
    org, user = org_user
    agent = make_agent(org)
    assert client_for(user).post("/api/schedules/", schedule_body(agent), format="json").status_code == 201
    response = client_for(user).post("/api/schedules/", schedule_body(agent), format="json")
    assert response.status_code == 409 and response.json()["error"]["code"] == "conflict"


def test_cron_times_follow_daylight_saving_time():
    # 09:00 in Paris is 08:00 UTC before the change of 29 March 2026 and 07:00 UTC after it
    times = scheduling.next_runs(cron="0 9 * * *", interval_seconds=None, tz="Europe/Paris",
                                 after=datetime(2026, 3, 27, 12, tzinfo=dt_timezone.utc), count=2)
    assert [t.hour for t in times] == [8, 7]


def test_a_firing_is_an_ordinary_task_and_a_refused_one_is_skipped_with_its_reason(org_user, client_for, admin_api):
    org, user = org_user
    api = client_for(user)
    schedule = api.post("/api/schedules/", schedule_body(make_agent(org)), format="json").json()
    Schedule.objects.filter(pk=schedule["id"]).update(next_run_at=timezone.now() - timedelta(seconds=1))
    [task_id] = schedules_fire_due()
    task = api.get(f"/api/tasks/{task_id}/").json()
    assert task["schedule"] == schedule["id"] and task["status"] == "queued"
    assert AuditLog.objects.filter(action="task.create", target=f"task:{task_id}", actor=f"schedule:{schedule['id']}").exists()
    assert schedules_fire_due() == []  # not due again before its next time
    # given the killswitch is engaged for the customer, the next firing starts nothing and says why
    assert admin_api.post("/api/admin/killswitch/", {"engaged": True, "customer": org.pk, "reason": "t"},
                          format="json").status_code in (200, 201)
    Schedule.objects.filter(pk=schedule["id"]).update(next_run_at=timezone.now() - timedelta(seconds=1))
    assert schedules_fire_due() == []
    after = api.get(f"/api/schedules/{schedule['id']}/").json()
    assert after["last_error"]["code"] == "killswitch_engaged"
    assert datetime.fromisoformat(after["next_run_at"].replace("Z", "+00:00")) > timezone.now()


@pytest.mark.django_db(transaction=True)
def test_two_schedulers_racing_fire_a_due_schedule_once(org_user, client_for):
    if connection.vendor != "postgresql":
        from conftest import host_lacks

        host_lacks("PostgreSQL (concurrent writers; SQLite serialises them)")
    org, user = org_user
    schedule = client_for(user).post("/api/schedules/", schedule_body(make_agent(org)), format="json").json()
    for n in range(5):
        Schedule.objects.filter(pk=schedule["id"]).update(next_run_at=timezone.now() - timedelta(minutes=1 + n))
        barrier, fired = threading.Barrier(4), []

        def scheduler():
            barrier.wait()
            try:
                fired.extend(schedules_fire_due())
            finally:
                connection.close()  # this thread's own connection

        threads = [threading.Thread(target=scheduler) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(fired) == 1
    assert Task.objects.filter(schedule_id=schedule["id"]).count() == 5
