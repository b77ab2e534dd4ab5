"""POST /api/tasks/batch/: several tasks in one request, all created in one transaction or none, each through
the same checks as POST /api/tasks/ (validation, tenancy, roles, quotas, killswitch, stopped agents,
idempotency); and a batch's tasks really run, each in its own thread, with a real worker."""
import pytest

from accounts.models import CustomerNotice, CustomerUsage
from adminpanel.services import killswitch_set
from agents.services import agent_stop
from tasks.models import Task
from tests.admin_support import make_agent
from tests.execution_support import running, wait_for

BATCH = "/api/tasks/batch/"


def _items(agent, n, **extra):
    return [{"agent": agent.pk, "input": f"Question {i}", **extra} for i in range(n)]


def _error(response, status, code):
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert error["code"] == code, error
    return error


def _refused(client, customer, body, status, code):
    """POST the batch: refused with this error, and nothing of it stored (no task, no status notice)."""
    error = _error(client.post(BATCH, body, format="json"), status, code)
    assert not Task.objects.filter(customer=customer).exists()
    assert not CustomerNotice.objects.filter(customer=customer, payload__type="task_status").exists()
    return error


@pytest.mark.django_db
def test_a_batch_creates_its_tasks_in_order_each_in_a_thread_of_its_own(make_customer, client_for):
    customer, user = make_customer("acme")
    agent = make_agent(customer)
    response = client_for(user).post(BATCH, {"tasks": _items(agent, 4)}, format="json")
    assert response.status_code == 201, response.content
    results = response.json()["results"]
    assert [t["input"] for t in results] == [f"Question {i}" for i in range(4)]
    assert {t["status"] for t in results} == {"queued"} and {t["agent"] for t in results} == {agent.pk}
    assert len({t["thread"] for t in results}) == 4
    # the same tasks as the API lists them, the customer's usage counting each
    listed = client_for(user).get(f"/api/tasks/?agent={agent.pk}").json()
    assert sorted(t["id"] for t in listed["results"]) == sorted(t["id"] for t in results)
    assert sum(CustomerUsage.objects.filter(customer=customer).values_list("tasks", flat=True)) == 4
    # the customer's stream has a `queued` notice of each, in order (what /ws/events/ replays)
    notices = [n.payload for n in CustomerNotice.objects.filter(customer=customer).order_by("seq")]
    assert [(n["task"], n["status"]) for n in notices if n["type"] == "task_status"] == [
        (t["id"], "queued") for t in results]


@pytest.mark.django_db
def test_an_invalid_item_refuses_the_whole_batch_and_says_which(make_customer, client_for):
    customer, user = make_customer("acme")
    other, _ = make_customer("globex")
    agent, foreign = make_agent(customer), make_agent(other)
    api = client_for(user)
    items = _items(agent, 3)
    items[1] = {"agent": foreign.pk, "input": "not mine"}  # another customer's agent: as unknown as a missing one
    items[2] = {"agent": agent.pk, "input": "x", "colour": "blue"}
    error = _refused(api, customer, {"tasks": items}, 400, "validation_error")
    details = error["details"]["tasks"]  # each refused item's index -> its errors
    assert set(details) == {"1", "2"} and "agent" in details["1"] and "colour" in details["2"], details


@pytest.mark.django_db
@pytest.mark.parametrize("body", [{"tasks": []}, {"tasks": "all of them"}, {}, {"tasks": [{}] * 2, "extra": 1}])
def test_a_batch_of_nothing_or_not_a_list_is_refused(make_customer, client_for, body):
    customer, user = make_customer("acme")
    error = _refused(client_for(user), customer, body, 400, "validation_error")
    assert set(error["details"]) & {"tasks", "extra"}, error
    if body == {"tasks": []}:
        assert error["details"]["tasks"] == {"non_field_errors": ["Give at least one task."]}


@pytest.mark.django_db
def test_a_batch_over_max_task_batch_is_refused(make_customer, client_for, settings):
    customer, user = make_customer("acme")
    agent = make_agent(customer)
    error = _refused(client_for(user), customer, {"tasks": _items(agent, settings.MAX_TASK_BATCH + 1)}, 400,
                     "validation_error")
    assert error["details"]["tasks"] == {
        "non_field_errors": [f"At most {settings.MAX_TASK_BATCH} tasks in one batch (MAX_TASK_BATCH)."]}
    assert client_for(user).post(BATCH, {"tasks": _items(agent, settings.MAX_TASK_BATCH)}, format="json").status_code == 201


@pytest.mark.django_db
def test_a_batch_past_the_daily_quota_creates_nothing_and_uses_none_of_it(make_customer, client_for):
    customer, user = make_customer("acme", max_tasks_per_day=3)
    agent = make_agent(customer)
    api = client_for(user)
    error = _refused(api, customer, {"tasks": _items(agent, 5)}, 429, "quota_exceeded")
    assert error["details"]["quota"] == "max_tasks_per_day" and error["details"]["task"] == 3
    assert error["message"].startswith("Task 3 of the batch: ")
    # nothing of the refused batch counts: the whole quota is still there
    assert api.post(BATCH, {"tasks": _items(agent, 3)}, format="json").status_code == 201
    _error(api.post("/api/tasks/", {"agent": agent.pk, "input": "one more"}, format="json"), 429, "quota_exceeded")


@pytest.mark.django_db
def test_a_batch_naming_a_stopped_agent_is_a_conflict_naming_the_item(make_customer, client_for):
    customer, user = make_customer("acme")
    agent, stopped = make_agent(customer), make_agent(customer)
    agent_stop(actor="test", agent=stopped)
    items = _items(agent, 2) + [{"agent": stopped.pk, "input": "hi"}]
    error = _refused(client_for(user), customer, {"tasks": items}, 409, "conflict")
    assert error["details"]["task"] == 2


@pytest.mark.django_db
def test_a_batch_under_the_killswitch_is_refused(make_customer, client_for):
    customer, user = make_customer("acme")
    agent = make_agent(customer)
    killswitch_set(actor="test", engaged=True, customer=customer, reason="test")
    _refused(client_for(user), customer, {"tasks": _items(agent, 2)}, 423, "killswitch_engaged")


@pytest.mark.django_db
def test_a_viewer_cannot_submit_a_batch(make_customer, client_for):
    customer, viewer = make_customer("acme", role="viewer")
    agent = make_agent(customer)
    _refused(client_for(viewer), customer, {"tasks": _items(agent, 1)}, 403, "permission_denied")


@pytest.mark.django_db
def test_a_retried_batch_with_its_idempotency_key_returns_the_same_tasks(make_customer, client_for):
    customer, user = make_customer("acme")
    agent = make_agent(customer)
    api = client_for(user)
    first = api.post(BATCH, {"tasks": _items(agent, 3)}, format="json", HTTP_IDEMPOTENCY_KEY="nightly-42")
    again = api.post(BATCH, {"tasks": _items(agent, 3)}, format="json", HTTP_IDEMPOTENCY_KEY="nightly-42")
    assert (first.status_code, again.status_code) == (201, 201)
    assert "Idempotent-Replayed" not in first and again["Idempotent-Replayed"] == "true"
    assert [t["id"] for t in again.json()["results"]] == [t["id"] for t in first.json()["results"]]
    assert Task.objects.filter(customer=customer).count() == 3
    _error(api.post(BATCH, {"tasks": _items(agent, 1)}, format="json", HTTP_IDEMPOTENCY_KEY="k" * 191),
           400, "validation_error")


@pytest.fixture(scope="module")
def workers(django_db_setup, django_db_blocker):
    with running("batch-w1") as procs:
        yield procs


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_tasks_of_a_batch_run_each_with_its_own_input(workers, make_customer, client_for):
    customer, user = make_customer("acme")
    agent = make_agent(customer, responses=["Done. TERMINATE"])
    api = client_for(user)
    response = api.post(BATCH, {"tasks": _items(agent, 5)}, format="json")
    assert response.status_code == 201, response.content
    ids = [t["id"] for t in response.json()["results"]]

    def finished():
        tasks = [api.get(f"/api/tasks/{i}/").json() for i in ids]
        return tasks if all(t["status"] in ("succeeded", "failed", "cancelled") for t in tasks) else None

    tasks = wait_for(finished, timeout=60, message="the batch's tasks to finish")
    assert [t["status"] for t in tasks] == ["succeeded"] * 5, [t.get("error") for t in tasks]
    for i, task_id in enumerate(ids):
        events = api.get(f"/api/tasks/{task_id}/events/").json()["results"]
        said = [e["content"].get("text") for e in events if e["type"] == "message" and e["source"] == "user"]
        assert said == [f"Question {i}"]
