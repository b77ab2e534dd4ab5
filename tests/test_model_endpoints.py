"""Model calls leave from the worker on a customer's behalf: production keeps them off private addresses."""
import pytest

from agents.models import Agent, ModelConfig
from tests.execution_support import running, wait_for
from tests.openai_stub import MODEL_INFO, OpenAIStub

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def strict_worker(django_db_setup, django_db_blocker):
    with running("strict", MODEL_ENDPOINTS_ALLOW_PRIVATE="0") as procs:
        yield procs


def test_a_model_on_a_loopback_address_is_refused_when_private_endpoints_are_off(strict_worker, make_customer, client_for):
    # given a customer whose model points at a server on the platform's own loopback
    org, user = make_customer()
    with OpenAIStub(["Hello TERMINATE"]) as stub:
        model = ModelConfig.objects.create(
            customer=org, name="inside", provider="openai", model="stub-model", base_url=stub.base_url, model_info=MODEL_INFO
        )
        agent = Agent.objects.create(customer=org, name="probe", model=model, system_message="Hi")
        # when a task runs on a worker with MODEL_ENDPOINTS_ALLOW_PRIVATE=0
        response = client_for(user).post("/api/tasks/", {"agent": agent.pk, "input": "Hi"}, format="json")
        assert response.status_code == 201, response.content
        from tasks.models import Task

        task = wait_for(lambda: (t := Task.objects.get(pk=response.json()["id"])).is_finished and t, timeout=30,
                        message="the task to finish")
        # then it fails model_error naming the reason, and the server never saw a request
        assert task.status == "failed" and task.error["code"] == "model_error"
        assert "non-public address" in task.error["message"]
        assert stub.requests == []
