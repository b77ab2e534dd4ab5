"""A second message on a busy thread: POST /api/tasks/ `multitask_strategy`, observed through the API and the
events, with a real worker and a model (tests/openai_stub.py) that holds its first answer until the test
lets it go, so that the thread's first task is still running when the second arrives."""
import threading

import pytest

from accounts.crypto import encrypt
from agents.models import Agent, ModelConfig
from tasks.models import Task
from tests.execution_support import running, wait_for
from tests.openai_stub import MODEL_INFO, OpenAIStub

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def workers(django_db_setup, django_db_blocker):
    with running("multi-w1", "multi-w2", reaper=True) as procs:
        yield procs


@pytest.fixture
def busy_thread(make_customer, client_for):
    """(api, stub, release, first task): the thread's first task is running, its model answer held."""
    org, user = make_customer()
    api = client_for(user)
    release = threading.Event()
    with OpenAIStub([{"hold": release, "text": "First answer. TERMINATE"}, "Second answer. TERMINATE"]) as stub:
        model = ModelConfig.objects.create(customer=org, name="stub", provider="openai", model="stub-model",
                                           base_url=stub.base_url, api_key_encrypted=encrypt("k"), model_info=MODEL_INFO)
        agent = Agent.objects.create(customer=org, name="talker", model=model, system_message="You talk.")
        first = api.post("/api/tasks/", {"agent": agent.pk, "input": "First"}, format="json").json()
        wait_for(lambda: stub.requests, timeout=30, message="the first task's model call")
        yield api, agent, release, first
        release.set()


def second(api, agent, first, strategy=None):
    body = {"agent": agent.pk, "input": "Second", "thread": first["thread"]}
    if strategy:
        body["multitask_strategy"] = strategy
    return api.post("/api/tasks/", body, format="json")


def finished(api, task_id, timeout=30):
    return wait_for(lambda: (t := api.get(f"/api/tasks/{task_id}/").json()).get("finished_at") and t, timeout=timeout,
                    message=f"task {task_id} to finish")


def statuses(api, task_id):
    return [e["content"]["status"] for e in api.get(f"/api/tasks/{task_id}/events/").json()["results"]
            if e["type"] == "status"]


def test_reject_refuses_a_second_task_while_the_thread_is_busy(workers, busy_thread):
    api, agent, release, first = busy_thread
    response = second(api, agent, first, "reject")
    assert response.status_code == 409 and response.json()["error"]["code"] == "conflict"
    assert response.json()["error"]["details"]["tasks"] == [first["id"]]
    release.set()
    assert finished(api, first["id"])["status"] == "succeeded"
    # once the thread is free, the same request is accepted
    assert second(api, agent, first, "reject").status_code == 201


def test_enqueue_by_default_waits_for_the_running_task(workers, busy_thread):
    api, agent, release, first = busy_thread
    response = second(api, agent, first)
    assert response.status_code == 201 and response.json()["status"] == "queued"
    later = response.json()
    # it does not start while the first one runs (two workers are free)
    threading.Event().wait(2.0)
    assert api.get(f"/api/tasks/{later['id']}/").json()["status"] == "queued"
    assert api.get(f"/api/tasks/{first['id']}/").json()["status"] == "running"
    release.set()
    one, two = finished(api, first["id"]), finished(api, later["id"])
    assert one["status"] == two["status"] == "succeeded"
    assert two["result"]["text"].startswith("Second answer") and two["started_at"] >= one["finished_at"]
    assert statuses(api, later["id"]) == ["queued", "running", "succeeded"]


def test_interrupt_stops_the_running_task_and_the_new_one_runs(workers, busy_thread):
    api, agent, release, first = busy_thread
    response = second(api, agent, first, "interrupt")
    assert response.status_code == 201, response.content
    one = finished(api, first["id"], timeout=15)
    assert one["status"] == "cancelled" and one["error"]["code"] == "cancelled"
    assert statuses(api, first["id"])[-1] == "cancelled"
    two = finished(api, response.json()["id"])
    assert two["status"] == "succeeded" and two["result"]["text"].startswith("Second answer")
    assert two["started_at"] >= one["finished_at"]
    assert api.get(f"/api/threads/{first['thread']}/").json()["tasks"] == [first["id"], two["id"]]


def test_rollback_stops_the_running_task_and_forgets_it(workers, busy_thread):
    api, agent, release, first = busy_thread
    response = second(api, agent, first, "rollback")
    assert response.status_code == 201, response.content
    wait_for(lambda: api.get(f"/api/tasks/{first['id']}/").status_code == 404, timeout=15,
             message="the rolled-back task to be gone")
    assert api.get(f"/api/tasks/{first['id']}/events/").status_code == 404
    two = finished(api, response.json()["id"])
    assert two["status"] == "succeeded" and two["result"]["text"].startswith("Second answer")
    assert api.get(f"/api/threads/{first['thread']}/").json()["tasks"] == [two["id"]]
    assert not Task.objects.filter(pk=first["id"]).exists()


def test_interrupt_continues_from_the_last_finished_turn_without_the_interrupted_one(workers, make_customer, client_for):
    org, user = make_customer()
    api = client_for(user)
    release = threading.Event()
    script = ["The code word is heron. TERMINATE", {"hold": release, "text": "Never said. TERMINATE"}, "Heron. TERMINATE"]
    with OpenAIStub(script) as stub:
        model = ModelConfig.objects.create(customer=org, name="stub", provider="openai", model="stub-model",
                                           base_url=stub.base_url, api_key_encrypted=encrypt("k"), model_info=MODEL_INFO)
        agent = Agent.objects.create(customer=org, name="talker", model=model, system_message="You talk.")
        # given a thread whose first turn ended, and whose second turn is running (its model answer held)
        first = api.post("/api/tasks/", {"agent": agent.pk, "input": "Remember the code word"}, format="json").json()
        assert finished(api, first["id"])["status"] == "succeeded"
        body = {"agent": agent.pk, "thread": first["thread"], "input": "A turn to interrupt"}
        busy = api.post("/api/tasks/", body, format="json").json()
        wait_for(lambda: len(stub.requests) == 2, timeout=30, message="the second turn's model call")
        # when a third message interrupts it
        third = api.post("/api/tasks/", {**body, "input": "What is the code word?", "multitask_strategy": "interrupt"},
                         format="json").json()
        release.set()
        # then the second turn ends cancelled, and the third answers from the first turn's conversation only
        assert finished(api, busy["id"], timeout=15)["status"] == "cancelled"
        assert finished(api, third["id"])["result"]["text"].startswith("Heron")
        seen = [m.get("content") for m in stub.requests[2]["body"]["messages"]]
        assert "Remember the code word" in seen and "The code word is heron. TERMINATE" in seen
        assert "What is the code word?" in seen and "A turn to interrupt" not in seen
