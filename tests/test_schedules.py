"""Schedules as an integrator sees them: two schedulers (reapers) running at once, a real task worker, a
webhook delivery worker and a local HTTP endpoint that verifies each result's signature."""
import json
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from agents.models import Agent, ModelConfig
from integrations.models import Schedule
from tasks.models import Task
from tests.execution_support import running, wait_for
from tests.test_webhooks import verify
from tests.webhook_receiver import Receiver

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def platform(django_db_setup, django_db_blocker):
    # The reapers' passes are 30 s apart: schedules must fire on the scheduler's own clock, not on those passes.
    with running("sched-w1", webhooks=1, REAPER_INTERVAL_SECONDS="30") as procs:
        # two schedulers: every node may run one; each firing must still happen once
        procs.start_reaper("reaper-1")
        procs.start_reaper("reaper-2")
        yield procs


def agent_of(customer) -> Agent:
    model = ModelConfig.objects.create(customer=customer, name="replay", provider="replay", responses=["Report ready. TERMINATE"])
    return Agent.objects.create(customer=customer, name="reporter", model=model, system_message="You report.")


def test_a_missed_firing_is_made_up_once_across_two_schedulers_then_the_next_future_time(platform, make_customer, client_for):
    org, user = make_customer()
    api = client_for(user)
    response = api.post("/api/schedules/", {"name": "hourly", "cron": "0 * * * *", "timezone": "Europe/Paris",
                                            "agent": agent_of(org).pk, "input": "Hourly report"}, format="json")
    assert response.status_code == 201, response.content
    schedule = response.json()
    assert len(schedule["upcoming"]) == 5 and schedule["upcoming"][0] == schedule["next_run_at"]
    # given the platform was down for three hours past the schedule's time
    Schedule.objects.filter(pk=schedule["id"]).update(next_run_at=timezone.now() - timedelta(hours=3))
    # then it fires once (not three times), whichever of the two schedulers gets there first
    wait_for(lambda: Task.objects.filter(schedule_id=schedule["id"]).exists(), timeout=20, message="the firing")
    time.sleep(1.5)
    tasks = list(Task.objects.filter(schedule_id=schedule["id"]))
    assert len(tasks) == 1
    # and goes on at its next time in the future: the next full hour
    after = api.get(f"/api/schedules/{schedule['id']}/").json()
    next_run = timezone.datetime.fromisoformat(after["next_run_at"].replace("Z", "+00:00"))
    assert timezone.now() < next_run <= timezone.now() + timedelta(hours=1)
    assert next_run.minute == 0 and next_run.second == 0
    assert after["last_task"] == tasks[0].pk and after["last_error"] is None
    # the task is an ordinary task, carrying its schedule, and it runs
    wait_for(lambda: Task.objects.get(pk=tasks[0].pk).is_finished, timeout=60, message="the task")
    task = api.get(f"/api/tasks/{tasks[0].pk}/").json()
    assert task["schedule"] == schedule["id"] and task["status"] == "succeeded" and task["input"] == "Hourly report"


def test_each_firing_starts_its_task_within_a_second_of_its_time_with_two_schedulers(
        platform, make_customer, client_for, settings):
    settings.SCHEDULE_MIN_INTERVAL_SECONDS = 1
    org, user = make_customer()
    api = client_for(user)
    # given a schedule created while both schedulers sleep (no other schedule is due)
    schedule = api.post("/api/schedules/", {"name": "on-time", "interval_seconds": 3, "agent": agent_of(org).pk,
                                            "input": "Now"}, format="json").json()
    planned = [timezone.datetime.fromisoformat(t.replace("Z", "+00:00")) for t in schedule["upcoming"][:3]]
    # when its first three times pass
    wait_for(lambda: Task.objects.filter(schedule_id=schedule["id"]).count() >= 3, timeout=40, message="three firings")
    api.post(f"/api/schedules/{schedule['id']}/pause/")
    # then each planned time started exactly one task, and that within a second of the time (not at a reaper pass)
    for at in planned:
        [task] = Task.objects.filter(schedule_id=schedule["id"], idempotency_key=f"schedule-{schedule['id']}-{at.isoformat()}")
        assert timedelta(0) <= task.created_at - at < timedelta(seconds=1), (at, task.created_at)
    wait_for(lambda: not Task.objects.filter(schedule_id=schedule["id"], finished_at__isnull=True).exists(),
             timeout=60, message="the scheduled tasks to end")


def test_a_schedule_runs_an_agent_repeatedly_and_each_result_reaches_a_verifying_endpoint(
        platform, make_customer, client_for, settings):
    settings.SCHEDULE_MIN_INTERVAL_SECONDS = 1
    org, user = make_customer()
    api = client_for(user)
    with Receiver([200]) as receiver:
        hook = api.post("/api/webhooks/", {"url": receiver.url, "events": ["task.succeeded"]}, format="json").json()
        # given a schedule every second (every minute in real life)
        schedule = api.post("/api/schedules/", {"name": "ticker", "interval_seconds": 1, "agent": agent_of(org).pk,
                                                "input": "Tick"}, format="json").json()
        # then its results arrive one by one at the endpoint, each verified
        wait_for(lambda: len(receiver.requests) >= 3, timeout=40, message="three scheduled results")
        # when it is paused, no more tasks start
        paused = api.post(f"/api/schedules/{schedule['id']}/pause/").json()
        assert paused["enabled"] is False and paused["next_run_at"] is None and paused["upcoming"] == []
        count = Task.objects.filter(schedule_id=schedule["id"]).count()
        time.sleep(2.0)
        assert Task.objects.filter(schedule_id=schedule["id"]).count() == count
        messages = [verify(hook["secret"], r) for r in receiver.requests]
        assert all(m["type"] == "task.succeeded" and m["data"]["schedule"] == schedule["id"] for m in messages)
        task_ids = [m["data"]["id"] for m in messages]
        assert len(set(task_ids)) == len(task_ids)
        # one task per firing: never two started for the same second
        created = sorted(t.created_at for t in Task.objects.filter(schedule_id=schedule["id"]))
        assert all((b - a).total_seconds() > 0.5 for a, b in zip(created, created[1:]))
        # resumed, it fires again
        resumed = api.post(f"/api/schedules/{schedule['id']}/resume/").json()
        assert resumed["enabled"] is True and resumed["next_run_at"] is not None
        wait_for(lambda: Task.objects.filter(schedule_id=schedule["id"]).count() > count, timeout=20,
                 message="a firing after resume")
        api.post(f"/api/schedules/{schedule['id']}/pause/")
        assert json.loads(receiver.requests[0]["body"])["data"]["input"] == "Tick"
        # (let the last firing's task end before the test's database is flushed under the running processes)
        wait_for(lambda: not Task.objects.filter(schedule_id=schedule["id"], finished_at__isnull=True).exists(),
                 timeout=30, message="the last scheduled task to end")
        time.sleep(1.0)
