"""HTTP tools are called from the platform's own network: with HTTP_TOOLS_ALLOW_PRIVATE=0 (the production
default) a URL on a loopback or private address is refused, on write and again at each call, even when the
customer's allow-list names the host (the same check as model endpoints and webhooks)."""
import json

import pytest

from accounts.models import Customer
from agents.models import Agent, ModelConfig
from agents.tools import tool_create
from tasks.models import Task, TaskEvent
from tests.execution_support import running, wait_for
from tests.http_tool_server import ToolServer

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def strict_worker(django_db_setup, django_db_blocker):
    with running("htpriv", HTTP_TOOLS_ALLOW_PRIVATE="0") as procs:
        yield procs


@pytest.fixture
def customer(make_customer):
    org, user = make_customer()
    hosts = ["127.0.0.1", "10.1.2.3", "169.254.169.254", "::1", "localhost"]
    Customer.objects.filter(pk=org.pk).update(http_tool_hosts=hosts)
    org.refresh_from_db()
    return org, user


def test_a_private_address_is_refused_on_write(customer, client_for, settings):
    settings.HTTP_TOOLS_ALLOW_PRIVATE = False
    _, user = customer
    for url in ("http://127.0.0.1:9/x", "http://10.1.2.3/x", "http://[::1]:8080/", "http://169.254.169.254/latest",
                "http://localhost:9/x"):
        response = client_for(user).post("/api/tools/", {"name": "inside", "kind": "http", "url": url},
                                         format="json")
        assert response.status_code == 400, (url, response.content)
        error = response.json()["error"]
        assert error["code"] == "validation_error" and "non-public address" in error["details"]["url"][0], url


def test_a_private_address_is_never_called_by_the_worker(strict_worker, customer, client_for, settings):
    org, user = customer
    with ToolServer() as server:
        # given a tool that passed its write check (here: written where private addresses were allowed)
        settings.HTTP_TOOLS_ALLOW_PRIVATE = True
        tool_create(actor="test", customer=org, name="inside", kind="http", url=server.base + "/admin",
                    parameters={"type": "object", "properties": {}})
        model = ModelConfig.objects.create(customer=org, name="m", provider="replay", responses=[
            json.dumps({"tool_calls": [{"name": "inside", "arguments": {}}]}), "Refused. TERMINATE"])
        agent = Agent.objects.create(customer=org, name="a", model=model, system_message="Hi", tools=["inside"])
        # when its agent calls it on a worker with HTTP_TOOLS_ALLOW_PRIVATE=0
        response = client_for(user).post("/api/tasks/", {"agent": agent.pk, "input": "Go."}, format="json")
        assert response.status_code == 201, response.content
        task = wait_for(lambda: (t := Task.objects.get(pk=response.json()["id"])).is_finished and t, timeout=90,
                        message="the task")
        # then the call, not the task, fails, saying why, and nothing reached the address
        assert task.status == "succeeded", task.error
        [result] = [e.content for e in TaskEvent.objects.filter(task=task, type="tool_result")]
        assert result["is_error"] is True
        assert result["content"].startswith("Tool inside: refused: 127.0.0.1 resolves to 127.0.0.1, a non-public "
                                            "address"), result
        assert server.requests == []
