"""Webhook deliveries leave from the platform's own network: with WEBHOOKS_ALLOW_PRIVATE=0 (the production
default) an endpoint on a loopback or private address is refused, at registration and again at delivery."""
import time

import pytest

from agents.models import Agent, ModelConfig
from integrations.services import webhook_create
from tasks.models import Task
from tests.execution_support import running, wait_for
from tests.webhook_receiver import Receiver

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def strict_platform(django_db_setup, django_db_blocker):
    with running("hookpriv-w1", webhooks=1, WEBHOOKS_ALLOW_PRIVATE="0") as procs:
        yield procs


def test_a_private_address_is_refused_at_registration(make_customer, client_for, settings):
    settings.WEBHOOKS_ALLOW_PRIVATE = False
    _, user = make_customer()
    for url in ("http://127.0.0.1:9/hooks", "http://10.1.2.3/hooks", "http://[::1]:8080/", "http://169.254.169.254/"):
        response = client_for(user).post("/api/webhooks/", {"url": url}, format="json")
        assert response.status_code == 400, url
        assert "non-public address" in response.json()["error"]["details"]["url"][0]


def test_a_private_address_is_never_called_by_the_delivery_worker(strict_platform, make_customer, client_for):
    org, user = make_customer()
    with Receiver([200]) as receiver:
        # given an endpoint that passed registration (here: registered where private addresses were allowed)
        webhook, _ = webhook_create(actor="test", customer=org, url=receiver.url)
        model = ModelConfig.objects.create(customer=org, name="m", provider="replay", responses=["Hi TERMINATE"])
        agent = Agent.objects.create(customer=org, name="a", model=model, system_message="Hi")
        # when a task ends on a platform whose delivery workers refuse private addresses
        response = client_for(user).post("/api/tasks/", {"agent": agent.pk, "input": "Hi"}, format="json")
        task_id = response.json()["id"]
        wait_for(lambda: Task.objects.get(pk=task_id).is_finished, timeout=60, message="the task")

        def delivered():
            results = client_for(user).get(f"/api/webhooks/{webhook.pk}/deliveries/").json()["results"]
            return results and results[0]["status"] == "failed" and results[0]

        delivery = wait_for(delivered, timeout=20, message="the refusal")
        time.sleep(1.0)
        # then the delivery fails at once, without retries, and nothing reached the address
        assert "non-public address" in delivery["error"] and delivery["attempts"] == 1
        assert delivery["status_code"] is None
        assert receiver.requests == []
