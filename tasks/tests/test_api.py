"""Tasks and threads through the HTTP API: create, idempotency, list filters, events, cancel."""
import django_rq
import pytest

from adminpanel.models import Killswitch
from tasks.models import Task
from tasks.services import task_event_append, task_finish
from tests.api_support import assert_error, make_agent, make_task, make_team

pytestmark = pytest.mark.django_db

TASK_FIELDS = {"id", "agent", "agent_version", "team", "thread", "input", "status", "result", "error", "usage",
               "schedule", "webhook",
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
    assert_error(api.post("/api/tasks/", {"agent": agent.pk, "team": team.pk, "input": "both"}, format="json"), 400,
                 "validation_error")
    error = assert_error(api.post("/api/tasks/", {"agent": agent.pk}, format="json"), 400, "validation_error")
    assert "input" in error["details"]


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
