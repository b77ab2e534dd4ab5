"""Tasks and threads through the HTTP API: create, idempotency, list filters, events, cancel."""
import django_rq
import pytest

from core.models import Killswitch
from tasks.models import Task
from tasks.services import task_event_append, task_finish
from tests.api_support import assert_error, make_agent, make_task, make_team

pytestmark = pytest.mark.django_db

TASK_FIELDS = {"id", "agent", "agent_version", "team", "team_version", "member_versions", "thread", "input", "status", "result", "error", "usage",
               "schedule", "webhook", "input_request",
               "created_at", "started_at", "finished_at", "trace_id"}


@pytest.fixture
def agent(owner):
    return make_agent(owner.membership.customer)


def test_create_persists_a_queued_task_on_a_new_thread_and_enqueues_it(api, agent, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post("/api/tasks/", {"agent": agent.pk, "input": "What is 2+2?"}, format="json")

    assert response.status_code == 201
    body = response.json()
    assert set(body) == TASK_FIELDS
    assert (body["status"], body["agent"], body["agent_version"], body["team"]) == ("queued", agent.pk, 1, None)
    assert (body["team_version"], body["member_versions"]) == (None, [])
    assert body["error"] is None and body["usage"]["prompt_tokens"] == 0
    assert body["thread"] is not None
    assert body["trace_id"] is None  # tracing is off here (no OTEL_EXPORTER_OTLP_ENDPOINT)
    job_ids = django_rq.get_queue("default").job_ids
    assert any(job_id.startswith(f"task-{body['id']}-") for job_id in job_ids)
    events = api.get(f"/api/tasks/{body['id']}/events/").json()["results"]
    assert [(e["seq"], e["type"], e["content"]) for e in events] == [(1, "status", {"status": "queued"})]


def test_a_task_may_continue_a_thread_of_the_same_agent(owner, api, agent):
    first = api.post("/api/tasks/", {"agent": agent.pk, "input": "hi"}, format="json").json()

    second = api.post("/api/tasks/", {"agent": agent.pk, "input": "more", "thread": first["thread"]}, format="json")

    assert second.status_code == 201 and second.json()["thread"] == first["thread"]
    thread = api.get(f"/api/threads/{first['thread']}/").json()
    assert thread == {"id": first["thread"], "agent": agent.pk, "team": None, "created_at": thread["created_at"],
                      "tasks": [first["id"], second.json()["id"]]}
    other = make_agent(owner.membership.customer)
    error = assert_error(api.post("/api/tasks/", {"agent": other.pk, "input": "x", "thread": first["thread"]},
                                  format="json"), 400, "validation_error")
    assert "thread" in error["details"]


def test_team_task_and_exactly_one_target(owner, api, agent):
    team = make_team(owner.membership.customer, [agent])

    created = api.post("/api/tasks/", {"team": team.pk, "input": "go"}, format="json")

    assert created.status_code == 201 and created.json()["team"] == team.pk and created.json()["agent"] is None
    assert_error(api.post("/api/tasks/", {"input": "nobody"}, format="json"), 400, "validation_error")


def test_a_team_task_records_the_team_and_member_versions_it_runs(owner, api, agent):
    # given a team at version 1 and a task of it
    customer = owner.membership.customer
    critic = make_agent(customer, name="critic")
    team = make_team(customer, [agent])
    first = api.post("/api/tasks/", {"team": team.pk, "input": "go"}, format="json").json()
    # when the team and a member change, and a new task is created
    assert api.patch(f"/api/teams/{team.pk}/", {"members": [agent.pk, critic.pk]}, format="json").status_code == 200
    assert api.patch(f"/api/agents/{agent.pk}/", {"system_message": "Be brief."}, format="json").status_code == 200
    second = api.post("/api/tasks/", {"team": team.pk, "input": "again"}, format="json").json()

    # then each task shows the versions it was created with, the first one unchanged
    assert (first["team_version"], first["agent_version"]) == (1, None)
    assert first["member_versions"] == [{"agent": agent.pk, "name": agent.name, "version": 1}]
    assert api.get(f"/api/tasks/{first['id']}/").json()["team_version"] == 1
    assert second["team_version"] == 2
    assert second["member_versions"] == [{"agent": agent.pk, "name": agent.name, "version": 2},
                                         {"agent": critic.pk, "name": "critic", "version": 1}]
    listed = {t["id"]: t["team_version"] for t in api.get(f"/api/tasks/?team={team.pk}").json()["results"]}
    assert listed == {first["id"]: 1, second["id"]: 2}
    assert_error(api.post("/api/tasks/", {"agent": agent.pk, "team": team.pk, "input": "both"}, format="json"), 400,
                 "validation_error")
    error = assert_error(api.post("/api/tasks/", {"agent": agent.pk}, format="json"), 400, "validation_error")
    assert "input" in error["details"]


def test_an_unknown_multitask_strategy_names_the_four(api, agent):
    error = assert_error(api.post("/api/tasks/", {"agent": agent.pk, "input": "go", "multitask_strategy": "queue"},
                                  format="json"), 400, "validation_error")
    assert error["details"]["multitask_strategy"] == [
        '"queue" is not a strategy: one of reject, enqueue, interrupt, rollback.']


def test_idempotency_key_returns_the_first_task(owner, api, agent, make_customer, client_for):
    payload = {"agent": agent.pk, "input": "once"}

    first = api.post("/api/tasks/", payload, format="json", HTTP_IDEMPOTENCY_KEY="order-42")
    again = api.post("/api/tasks/", payload, format="json", HTTP_IDEMPOTENCY_KEY="order-42")
    other = api.post("/api/tasks/", payload, format="json", HTTP_IDEMPOTENCY_KEY="order-43")

    assert first.status_code == 201 and again.status_code == 201
    assert again.json()["id"] == first.json()["id"]
    assert again["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first
    assert other.json()["id"] != first.json()["id"]
    assert Task.objects.count() == 2
    # Keys are per customer: another customer's identical key makes its own task.
    globex, stranger = make_customer("globex")
    theirs = client_for(stranger).post("/api/tasks/", {"agent": make_agent(globex).pk, "input": "once"},
                                       format="json", HTTP_IDEMPOTENCY_KEY="order-42")
    assert theirs.status_code == 201 and theirs.json()["id"] != first.json()["id"]
    assert_error(api.post("/api/tasks/", payload, format="json", HTTP_IDEMPOTENCY_KEY="k" * 201), 400,
                 "validation_error")


def test_list_is_newest_first_filtered_and_paginated(owner, api, agent):
    customer = owner.membership.customer
    other = make_agent(customer)
    team = make_team(customer, [other])
    tasks = [make_task(owner, agent=agent) for _ in range(3)] + [make_task(owner, team=team)]
    task_finish(task_id=tasks[0].pk, status="succeeded", result={"message": "4"})

    everything = api.get("/api/tasks/").json()
    assert everything["count"] == 4
    assert [t["id"] for t in everything["results"]] == [t.pk for t in reversed(tasks)]
    assert [t["id"] for t in api.get("/api/tasks/?status=succeeded").json()["results"]] == [tasks[0].pk]
    assert [t["id"] for t in api.get(f"/api/tasks/?team={team.pk}").json()["results"]] == [tasks[3].pk]
    assert api.get(f"/api/tasks/?agent={agent.pk}&status=queued").json()["count"] == 2
    assert api.get("/api/tasks/?status=&agent=&team=").json()["count"] == 4
    page = api.get("/api/tasks/?page_size=3").json()
    assert len(page["results"]) == 3 and page["next"]
    assert_error(api.get("/api/tasks/?status=sleeping"), 400, "validation_error")
    assert_error(api.get("/api/tasks/?agent=x"), 400, "validation_error")


def test_events_after_and_limit(owner, api, agent):
    task = make_task(owner, agent=agent)
    for i in range(5):
        task_event_append(task_id=task.pk, type="log", source="test", content={"i": i})

    after_two = api.get(f"/api/tasks/{task.pk}/events/?after=2").json()["results"]
    limited = api.get(f"/api/tasks/{task.pk}/events/?after=1&limit=2").json()["results"]

    assert [e["seq"] for e in after_two] == [3, 4, 5, 6]
    assert set(after_two[0]) == {"seq", "type", "source", "content", "created_at"}
    assert after_two[0]["content"] == {"i": 1} and after_two[0]["source"] == "test"
    assert [e["seq"] for e in limited] == [2, 3]
    assert api.get(f"/api/tasks/{task.pk}/events/?after=6").json() == {"results": []}
    assert_error(api.get(f"/api/tasks/{task.pk}/events/?limit=1001"), 400, "validation_error")
    assert_error(api.get(f"/api/tasks/{task.pk}/events/?after=-1"), 400, "validation_error")


def test_cancel_a_queued_task_then_again_is_a_conflict(owner, api, agent):
    task = make_task(owner, agent=agent)

    response = api.post(f"/api/tasks/{task.pk}/cancel/")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "cancelled" and body["error"]["code"] == "cancelled" and body["finished_at"]
    assert_error(api.post(f"/api/tasks/{task.pk}/cancel/"), 409, "conflict")


def test_killswitch_refuses_new_tasks(api, agent):
    Killswitch.objects.create(scope="global", engaged=True, reason="incident")

    assert_error(api.post("/api/tasks/", {"agent": agent.pk, "input": "hi"}, format="json"), 423,
                 "killswitch_engaged")


def test_daily_task_quota_is_429_with_retry_after(make_customer, client_for):
    customer, owner = make_customer("tiny", max_tasks_per_day=1)
    api = client_for(owner)
    agent = make_agent(customer)
    assert api.post("/api/tasks/", {"agent": agent.pk, "input": "one"}, format="json").status_code == 201

    response = api.post("/api/tasks/", {"agent": agent.pk, "input": "two"}, format="json")

    error = assert_error(response, 429, "quota_exceeded")
    assert error["details"]["quota"] == "max_tasks_per_day"
    assert int(response["Retry-After"]) > 0


def _waiting_for(task, kind="input"):
    """The task as a worker leaves it when its run stopped to ask a person."""
    from tasks.services import task_mark_running, task_suspend

    task_mark_running(task_id=task.pk, worker="test")
    request = {"prompt": "Which colour?", "kind": kind, "agent": "customer"}
    assert task_suspend(task_id=task.pk, request=request, suspension={"state": {}, "pending": {"kind": kind}},
                        usage={"prompt_tokens": 3, "completion_tokens": 4})


def test_input_to_a_task_not_waiting_is_a_conflict(owner, api, agent):
    task = make_task(owner, agent=agent)
    assert_error(api.post(f"/api/tasks/{task.pk}/input/", {"text": "hi"}, format="json"), 409, "conflict")
    task_finish(task_id=task.pk, status="succeeded")
    assert_error(api.post(f"/api/tasks/{task.pk}/input/", {"approve": True}, format="json"), 409, "conflict")


def test_answering_a_waiting_task_queues_it_again(owner, api, agent, django_capture_on_commit_callbacks):
    task = make_task(owner, agent=agent)
    _waiting_for(task)
    shown = api.get(f"/api/tasks/{task.pk}/").json()
    assert shown["status"] == "input_required" and shown["usage"]["completion_tokens"] == 4
    assert shown["input_request"]["prompt"] == "Which colour?" and shown["input_request"]["expires_at"]
    assert api.get("/api/tasks/?status=input_required").json()["count"] == 1
    assert_error(api.post(f"/api/tasks/{task.pk}/input/", {}, format="json"), 400, "validation_error")
    assert_error(api.post(f"/api/tasks/{task.pk}/input/", {"approve": True}, format="json"), 400, "validation_error")

    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(f"/api/tasks/{task.pk}/input/", {"text": "Blue"}, format="json")

    assert response.status_code == 200 and response.json()["status"] == "queued"
    events = api.get(f"/api/tasks/{task.pk}/events/").json()["results"]
    assert [e["type"] for e in events][-4:] == ["input_request", "status", "input_response", "status"]
    assert events[-2]["content"] == {"kind": "input", "text": "Blue"}
    task.refresh_from_db()
    job_ids = django_rq.get_queue("default").job_ids
    assert f"task-{task.pk}-{task.attempts}-{task.requeues}" in job_ids


def test_a_waiting_task_can_be_cancelled(owner, api, agent):
    task = make_task(owner, agent=agent)
    _waiting_for(task, kind="approval")
    response = api.post(f"/api/tasks/{task.pk}/cancel/")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    assert response.json()["input_request"] is None


def test_viewers_cannot_answer(make_customer, client_for, agent):
    from tests.api_support import make_agent as _make_agent

    org, owner_user = make_customer("viewing", role="owner")
    _, viewer = make_customer("viewing", role="viewer", username="viewer1")
    task = make_task(owner_user, agent=_make_agent(org))
    _waiting_for(task)
    assert_error(client_for(viewer).post(f"/api/tasks/{task.pk}/input/", {"text": "x"}, format="json"), 403,
                 "permission_denied")


def test_expired_waits_end_input_timeout(owner, agent):
    from datetime import timedelta

    from django.utils import timezone

    from tasks.services import task_expire_input

    task = make_task(owner, agent=agent)
    _waiting_for(task)
    assert task_expire_input() == []
    assert task_expire_input(now=timezone.now() + timedelta(days=2)) == [task.pk]
    task.refresh_from_db()
    assert task.status == "timed_out" and task.error["code"] == "input_timeout" and task.suspension is None


def test_stopping_the_agent_cancels_a_waiting_task_and_deleting_it_is_a_conflict(owner, api, agent):
    task = make_task(owner, agent=agent)
    _waiting_for(task)
    assert_error(api.delete(f"/api/agents/{agent.pk}/"), 409, "conflict")
    assert api.post(f"/api/agents/{agent.pk}/restart/").status_code == 200
    assert api.get(f"/api/tasks/{task.pk}/").json()["status"] == "input_required"
    assert api.post(f"/api/agents/{agent.pk}/stop/").status_code == 200
    assert api.get(f"/api/tasks/{task.pk}/").json()["status"] == "cancelled"


def test_a_restarted_team_task_records_the_version_it_runs_then(owner, api, agent):
    from tasks.services import task_requeue
    from teams.services import team_update

    customer = owner.membership.customer
    team = make_team(customer, [agent])
    task = api.post("/api/tasks/", {"team": team.pk, "input": "go"}, format="json").json()
    team_update(actor="test", team=team, data={"members": [agent, make_agent(customer, name="second")]})

    assert task_requeue(task_id=task["id"])

    again = api.get(f"/api/tasks/{task['id']}/").json()
    assert again["team_version"] == 2 and [m["name"] for m in again["member_versions"]] == [agent.name, "second"]
