"""Webhooks as an integrator sees them: real task workers, real webhook delivery workers
(`manage.py runwebhooks`), a reaper, and a real local HTTP endpoint (tests/webhook_receiver.py).
Signatures are checked as a receiver would: with the Standard Webhooks library."""
import base64
import hashlib
import hmac
import json
import time

import pytest

from agents.models import Agent, ModelConfig
from tasks.models import Task
from tests.execution_support import running, wait_for
from tests.webhook_receiver import Receiver

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

MAX_ATTEMPTS = 3


@pytest.fixture(scope="module")
def platform(django_db_setup, django_db_blocker):
    with running("hooks-w1", reaper=True, webhooks=2, WEBHOOK_MAX_ATTEMPTS=MAX_ATTEMPTS,
                 WEBHOOK_RETRY_BASE_SECONDS="0.3", WEBHOOK_TIMEOUT_SECONDS="2", WEBHOOKS_ALLOW_PRIVATE="1") as procs:
        yield procs


def verify(secret: str, request: dict) -> dict:
    """What a receiver does: the Standard Webhooks library when installed, else the scheme by hand."""
    headers = request["headers"]
    try:
        from standardwebhooks.webhooks import Webhook as StandardWebhook
    except ImportError:
        key = base64.b64decode(secret.removeprefix("whsec_"))
        signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + request["body"]
        expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
        assert f"v1,{expected}" in headers["webhook-signature"].split(" ")
        assert abs(time.time() - int(headers["webhook-timestamp"])) < 300
        return json.loads(request["body"])
    return StandardWebhook(secret).verify(request["body"], headers)


def agent_of(customer, name="helper") -> Agent:
    model = ModelConfig.objects.create(customer=customer, name=f"{name}-model", provider="replay",
                                       responses=["Hello from the agent. TERMINATE"])
    return Agent.objects.create(customer=customer, name=name, model=model, system_message="You are helpful.")


def register(api, url, **fields) -> dict:
    response = api.post("/api/webhooks/", {"url": url, **fields}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def run_task(api, agent, **fields) -> dict:
    response = api.post("/api/tasks/", {"agent": agent.pk, "input": "Say hello", **fields}, format="json")
    assert response.status_code == 201, response.content
    task_id = response.json()["id"]
    wait_for(lambda: Task.objects.get(pk=task_id).is_finished, timeout=60, message=f"task {task_id} to finish")
    return api.get(f"/api/tasks/{task_id}/").json()


def deliveries(api, webhook_id) -> list[dict]:
    response = api.get(f"/api/webhooks/{webhook_id}/deliveries/")
    assert response.status_code == 200, response.content
    return response.json()["results"]


def test_a_finished_task_is_delivered_once_with_a_signature_the_receiver_verifies(platform, make_customer, client_for):
    org, user = make_customer()
    api = client_for(user)
    with Receiver([200]) as receiver:
        # given an endpoint registered for task endings; its secret is shown once
        hook = register(api, receiver.url, events=["task.succeeded", "task.failed"])
        assert hook["secret"].startswith("whsec_")
        assert "secret" not in api.get(f"/api/webhooks/{hook['id']}/").json()
        # when a task ends
        task = run_task(api, agent_of(org))
        assert task["status"] == "succeeded"
        # then one signed POST arrives, and only one
        wait_for(lambda: receiver.requests, timeout=20, message="the delivery")
        time.sleep(1.0)
        assert len(receiver.requests) == 1
        message = verify(hook["secret"], receiver.requests[0])
        assert message["type"] == "task.succeeded"
        assert message["data"]["id"] == task["id"] and message["data"]["status"] == "succeeded"
        assert message["data"]["result"] == task["result"]
        # and the delivery is recorded: status code, latency, attempts, no next try
        [delivery] = deliveries(api, hook["id"])
        assert delivery["status"] == "succeeded" and delivery["status_code"] == 200 and delivery["attempts"] == 1
        assert delivery["latency_ms"] is not None and delivery["next_attempt_at"] is None
        assert delivery["message_id"] == receiver.requests[0]["headers"]["webhook-id"]
        # when it is re-sent, the same message (same id, same body) arrives again, freshly signed
        response = api.post(f"/api/webhooks/{hook['id']}/deliveries/{delivery['id']}/resend/")
        assert response.status_code == 202, response.content
        wait_for(lambda: len(receiver.requests) == 2, timeout=20, message="the re-sent delivery")
        again = receiver.requests[1]
        assert again["headers"]["webhook-id"] == delivery["message_id"] and again["body"] == receiver.requests[0]["body"]
        verify(hook["secret"], again)
        assert len(deliveries(api, hook["id"])) == 2


def test_a_failing_endpoint_is_retried_with_growing_delays_then_given_up(platform, make_customer, client_for):
    org, user = make_customer()
    api = client_for(user)
    with Receiver([500]) as receiver:
        hook = register(api, receiver.url)
        task = run_task(api, agent_of(org))
        # the delivery fails MAX_ATTEMPTS times, then is given up
        wait_for(lambda: deliveries(api, hook["id"])[0]["status"] == "failed", timeout=30, message="the give-up")
        time.sleep(1.5)
        assert len(receiver.requests) == MAX_ATTEMPTS
        assert {r["headers"]["webhook-id"] for r in receiver.requests} == {deliveries(api, hook["id"])[0]["message_id"]}
        times = [r["at"] for r in receiver.requests]
        assert times[2] - times[1] > times[1] - times[0] > 0.2  # exponential backoff
        [delivery] = deliveries(api, hook["id"])
        assert delivery["attempts"] == MAX_ATTEMPTS and delivery["status_code"] == 500
        assert delivery["error"] == "HTTP 500" and delivery["next_attempt_at"] is None
        assert delivery["task"] == task["id"]
    with Receiver([503, 200]) as receiver:
        # an endpoint that recovers gets the message on the second attempt
        api.patch(f"/api/webhooks/{hook['id']}/", {"url": receiver.url}, format="json")
        run_task(api, agent_of(org, "second"))
        wait_for(lambda: deliveries(api, hook["id"])[0]["status"] == "succeeded", timeout=30, message="the retry")
        assert deliveries(api, hook["id"])[0]["attempts"] == 2 and len(receiver.requests) == 2


def test_a_redirect_is_not_followed(platform, make_customer, client_for):
    org, user = make_customer()
    api = client_for(user)
    with Receiver([302, 200]) as receiver:
        hook = register(api, receiver.url)
        run_task(api, agent_of(org))
        wait_for(lambda: len(receiver.requests) >= 2, timeout=30, message="the retry after the redirect")
        # the receiver was asked again at its own URL; the redirect's target was never called
        assert [r["path"] for r in receiver.requests] == ["/hooks", "/hooks"]
        wait_for(lambda: deliveries(api, hook["id"])[0]["status"] == "succeeded", timeout=10, message="success")


def test_a_webhook_without_events_hears_only_the_tasks_that_name_it(platform, make_customer, client_for):
    org, user = make_customer()
    api = client_for(user)
    with Receiver([200]) as receiver:
        hook = register(api, receiver.url, events=[])
        agent = agent_of(org)
        run_task(api, agent)
        named = run_task(api, agent, webhook=hook["id"])
        assert named["webhook"] == hook["id"]
        wait_for(lambda: receiver.requests, timeout=20, message="the delivery")
        time.sleep(1.0)
        assert [json.loads(r["body"])["data"]["id"] for r in receiver.requests] == [named["id"]]
    # another customer's webhook cannot be named
    other_org, other = make_customer()
    response = client_for(other).post("/api/tasks/", {"agent": agent_of(other_org, "x").pk, "input": "Hi",
                                                      "webhook": hook["id"]}, format="json")
    assert response.status_code == 400 and "webhook" in response.json()["error"]["details"]


def test_a_slow_endpoint_does_not_hold_up_another_customers_deliveries(platform, make_customer, client_for):
    slow_org, slow_user = make_customer()
    fast_org, fast_user = make_customer()
    slow_api, fast_api = client_for(slow_user), client_for(fast_user)
    with Receiver([200], delay=5) as slow, Receiver([200]) as fast:
        slow_hook = register(slow_api, slow.url)
        register(fast_api, fast.url)
        agent = agent_of(slow_org)
        # given six finished tasks whose endpoint answers only after the 2 s timeout
        for n in range(6):
            slow_api.post("/api/tasks/", {"agent": agent.pk, "input": f"task {n}"}, format="json")
        wait_for(lambda: Task.objects.filter(customer=slow_org, status="succeeded").count() == 6, timeout=60,
                 message="the slow customer's tasks")
        wait_for(lambda: slow.requests, timeout=10, message="the slow endpoint to be called")
        # when another customer's task ends, its delivery is not stuck behind them
        task = run_task(fast_api, agent_of(fast_org, "fast"))
        finished = Task.objects.get(pk=task["id"]).finished_at.timestamp()
        wait_for(lambda: fast.requests, timeout=20, message="the fast delivery")
        assert fast.requests[0]["at"] - finished < 3.0
        # and the slow endpoint is called one delivery at a time
        starts = sorted(r["at"] for r in slow.requests)
        assert all(b - a > 1.5 for a, b in zip(starts, starts[1:]))
        wait_for(lambda: any(d["error"].startswith("no answer within 2 s") for d in deliveries(slow_api, slow_hook["id"])),
                 timeout=10, message="a timed-out attempt recorded")
