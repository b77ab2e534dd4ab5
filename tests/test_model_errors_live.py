"""A task whose model endpoint fails ends model_error naming the endpoint and the cause; one whose endpoint
accepts the request and never answers shows a `model_waiting` event while it waits, then ends after
MODEL_CALL_TIMEOUT_SECONDS instead of the task's whole timeout. Real workers, real sandboxed children."""
import threading

import pytest

from agents.models import Agent, ModelConfig
from tasks.models import Task
from tests.execution_support import running, wait_for
from tests.live_server import free_port
from tests.openai_stub import MODEL_INFO, OpenAIStub

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def worker(django_db_setup, django_db_blocker):
    with running("door", MODEL_CALL_TIMEOUT_SECONDS="3", MODEL_WAITING_SECONDS="1") as procs:
        yield procs


def run_task(client, org, base_url):
    model = ModelConfig.objects.create(customer=org, name="endpoint", provider="openai", model="stub-model",
                                       base_url=base_url, model_info=MODEL_INFO)
    agent = Agent.objects.create(customer=org, name="asker", model=model, system_message="Answer.")
    response = client.post("/api/tasks/", {"agent": agent.pk, "input": "Hi"}, format="json")
    assert response.status_code == 201, response.content
    return response.json()["id"]


def finished(task_id, timeout=60):
    return wait_for(lambda: (t := Task.objects.get(pk=task_id)).is_finished and t, timeout=timeout,
                    message="the task to finish")


def test_a_refused_connection_names_the_endpoint_and_the_cause(worker, make_customer, client_for):
    org, user = make_customer()
    base_url = f"http://127.0.0.1:{free_port()}/v1"
    task = finished(run_task(client_for(user), org, base_url))
    assert task.status == "failed" and task.error["code"] == "model_error", task.error
    assert task.error["message"].startswith(f"Model 'endpoint' at {base_url}: connection refused"), task.error


def test_an_http_error_carries_the_providers_message(worker, make_customer, client_for):
    org, user = make_customer()
    with OpenAIStub([{"status": 404, "message": "The model `stub-model` does not exist"}]) as stub:
        task = finished(run_task(client_for(user), org, stub.base_url))
    assert task.status == "failed" and task.error["code"] == "model_error", task.error
    assert "HTTP 404 from the provider: The model `stub-model` does not exist" in task.error["message"]
    assert stub.base_url in task.error["message"]


def test_a_stuck_endpoint_is_visible_while_it_waits_and_times_out(worker, make_customer, client_for):
    org, user = make_customer()
    release = threading.Event()
    with OpenAIStub([{"hold": release, "text": "too late", "timeout": 30}]) as stub:
        task_id = run_task(client_for(user), org, stub.base_url)
        api = client_for(user)

        def waiting_event():
            events = api.get(f"/api/tasks/{task_id}/events/").json()["results"]
            return next((e for e in events if e["type"] == "model_waiting"), None)

        # while the call hangs, the task's stream says what it waits for
        event = wait_for(waiting_event, timeout=30, message="a model_waiting event")
        assert Task.objects.get(pk=task_id).status == "running"
        assert event["source"] == "asker"
        assert event["content"] == {"model": "endpoint", "endpoint": stub.base_url, "waited_seconds": 1.0,
                                    "timeout_seconds": 3.0}
        # then the call times out (MODEL_CALL_TIMEOUT_SECONDS=3), long before the task's own 300 s
        task = finished(task_id, timeout=30)
        release.set()
    assert task.status == "failed" and task.error["code"] == "model_error", task.error
    assert "no answer in 3 s (MODEL_CALL_TIMEOUT_SECONDS)" in task.error["message"]
    assert stub.base_url in task.error["message"]
    assert (task.finished_at - task.started_at).total_seconds() < 20
