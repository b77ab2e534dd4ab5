"""Helpers for the customer API tests: a customer's objects made through the services, error assertions."""
import itertools
from dataclasses import dataclass, field

_n = itertools.count(1)


def assert_error(response, status: int, code: str):
    """The response is the contract's error envelope with this status and code; returns the error object."""
    assert response.status_code == status, (response.status_code, getattr(response, "content", b"")[:500])
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "details"}, body
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]


def make_model(customer, *, actor="test", name=None, responses=("Hello. TERMINATE",), **fields):
    from agents.services import model_config_create

    fields.setdefault("provider", "replay")
    if fields["provider"] == "replay":
        fields.setdefault("responses", list(responses))
    return model_config_create(actor=actor, customer=customer, name=name or f"model-{next(_n)}", **fields)


def make_agent(customer, *, actor="test", model=None, name=None, **fields):
    from agents.services import agent_create

    model = model or make_model(customer, actor=actor)
    return agent_create(actor=actor, customer=customer, name=name or f"agent-{next(_n)}", model=model, **fields)


def make_team(customer, agents, *, actor="test", name=None, **fields):
    from teams.services import team_create

    return team_create(actor=actor, customer=customer, name=name or f"team-{next(_n)}", members=agents, **fields)


def make_task(user, *, agent=None, team=None, thread=None, input="hello", idempotency_key=None):
    from tasks.services import task_create

    task, _ = task_create(actor=user, customer=user.membership.customer, input=input, agent=agent, team=team,
                          thread=thread, idempotency_key=idempotency_key)
    return task


@dataclass
class Tenant:
    """One customer with one of every customer-scoped object."""

    customer: object
    owner: object
    viewer: object
    model: object
    selector_model: object
    agent: object
    other_agent: object
    team: object
    task: object
    running_task: object
    thread: object
    api_key: object
    notification: object
    ids: dict = field(default_factory=dict)


def make_tenant(make_customer, name: str) -> Tenant:
    """Every kind of object a customer can own, one running task included (marked running as a worker would)."""
    from accounts.services import api_key_create
    from accounts.models import Notification
    from tasks.services import task_mark_running

    customer, owner = make_customer(name, role="owner")
    _, viewer = make_customer(name, role="viewer")
    model = make_model(customer, name=f"{name}-model")
    selector_model = make_model(customer, name=f"{name}-selector")
    agent = make_agent(customer, model=model, name=f"{name}-agent")
    other_agent = make_agent(customer, model=model, name=f"{name}-other")
    team = make_team(customer, [agent, other_agent], name=f"{name}-team")
    task = make_task(owner, agent=agent)
    running_task = make_task(owner, agent=other_agent)
    task_mark_running(task_id=running_task.pk, worker="test-worker")
    running_task.refresh_from_db()
    key, _raw = api_key_create(actor=owner, name=f"{name}-key")
    notification = Notification.objects.create(customer=customer, message=f"for {name} only")
    from integrations.models import WebhookDelivery
    from integrations.services import schedule_create, webhook_create

    webhook, _secret = webhook_create(actor=owner, customer=customer, url=f"https://{name}.example/hooks")
    delivery = WebhookDelivery.objects.create(webhook=webhook, customer=customer, task=task, event="task.succeeded",
                                              message_id=f"msg_{name}", payload={}, status="failed")
    schedule = schedule_create(actor=owner, customer=customer, name=f"{name}-nightly", cron="0 3 * * *",
                               agent=agent, input="Nightly")
    tenant = Tenant(customer, owner, viewer, model, selector_model, agent, other_agent, team, task, running_task,
                    task.thread, key, notification)
    tenant.ids = {
        "model": model.pk, "selector_model": selector_model.pk, "agent": agent.pk, "other_agent": other_agent.pk,
        "team": team.pk, "task": task.pk, "running_task": running_task.pk, "thread": task.thread_id,
        "api_key": key.pk, "notification": notification.pk, "webhook": webhook.pk, "delivery": delivery.pk,
        "schedule": schedule.pk,
    }
    return tenant
