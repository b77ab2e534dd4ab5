"""Each customer quota at its edge, through the API, including concurrent creations racing for the last slot."""
import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import Customer
from agents.models import Agent
from conftest import token_for
from tasks.models import Task
from tests.admin_support import make_agent


def _client(user):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_for(user)}")
    return client


def _submit(client, agent):
    return client.post("/api/tasks/", {"agent": agent.pk, "input": "hi"}, format="json")


def _quota_error(response, quota):
    assert response.status_code == 429, response.content
    error = response.json()["error"]
    assert error["code"] == "quota_exceeded"
    assert error["details"]["quota"] == quota
    return error


@pytest.mark.django_db
def test_max_tasks_per_day_refuses_the_task_after_the_last(make_customer):
    customer, user = make_customer("acme", max_tasks_per_day=2)
    other, other_user = make_customer("globex", max_tasks_per_day=2)
    agent, other_agent = make_agent(customer), make_agent(other)
    client = _client(user)
    assert [_submit(client, agent).status_code for _ in range(2)] == [201, 201]
    # a cancelled task still counts: the quota is on tasks submitted today
    client.post(f"/api/tasks/{Task.objects.filter(customer=customer).first().pk}/cancel/")
    refused = _submit(client, agent)
    _quota_error(refused, "max_tasks_per_day")
    now = timezone.now()
    seconds_to_midnight = (now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1) - now)
    assert 0 < int(refused["Retry-After"]) <= seconds_to_midnight.total_seconds() + 2
    assert Task.objects.filter(customer=customer).count() == 2
    # another customer is not affected
    assert _submit(_client(other_user), other_agent).status_code == 201
    # yesterday's tasks do not count
    Task.objects.filter(customer=customer).update(created_at=now - timedelta(days=1, minutes=1))
    assert _submit(client, agent).status_code == 201


@pytest.mark.django_db
def test_an_admin_raising_the_daily_quota_applies_at_once(make_customer, admin_api):
    customer, user = make_customer("acme", max_tasks_per_day=1)
    agent, client = make_agent(customer), _client(user)
    assert _submit(client, agent).status_code == 201
    _quota_error(_submit(client, agent), "max_tasks_per_day")
    admin_api.patch(f"/api/admin/customers/{customer.pk}/", {"quotas": {"max_tasks_per_day": 2}}, format="json")
    assert _submit(client, agent).status_code == 201


@pytest.mark.django_db
def test_monthly_token_budget_refuses_new_tasks_once_used_up(make_customer):
    customer, user = make_customer("acme", monthly_token_budget=1000)
    agent, client = make_agent(customer), _client(user)
    first = _submit(client, agent).json()["id"]
    Task.objects.filter(pk=first).update(status="succeeded", tokens_used=999)
    second = _submit(client, agent)
    assert second.status_code == 201  # one token left
    Task.objects.filter(pk=second.json()["id"]).update(status="succeeded", tokens_used=1)
    refused = _submit(client, agent)
    error = _quota_error(refused, "monthly_token_budget")
    assert error["details"]["used"] == 1000 and error["details"]["limit"] == 1000
    assert int(refused["Retry-After"]) > 0
    # last month's tokens do not count against this month
    month_start = timezone.now().replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    Task.objects.filter(customer=customer).update(created_at=month_start - timedelta(minutes=1))
    assert _submit(client, agent).status_code == 201


@pytest.mark.django_db
def test_max_agents_refuses_the_agent_after_the_last(make_customer):
    customer, user = make_customer("acme", max_agents=2)
    client = _client(user)
    model = client.post("/api/models/", {"name": "m", "provider": "replay", "responses": ["Hi. TERMINATE"]},
                        format="json").json()["id"]
    created = [client.post("/api/agents/", {"name": f"a{i}", "model": model}, format="json").status_code
               for i in range(2)]
    assert created == [201, 201]
    refused = client.post("/api/agents/", {"name": "a3", "model": model}, format="json")
    _quota_error(refused, "max_agents")
    assert Agent.objects.filter(customer=customer).count() == 2


@pytest.mark.django_db
@pytest.mark.parametrize("limit,quota,maximum", [("memory_mb", "max_memory_mb", 256),
                                                 ("cpu_seconds", "max_cpu_seconds", 30),
                                                 ("timeout_seconds", "max_timeout_seconds", 120)])
def test_agent_limits_are_capped_by_the_customer_maxima(make_customer, limit, quota, maximum):
    customer, user = make_customer("acme", **{quota: maximum})
    client = _client(user)
    model = client.post("/api/models/", {"name": "m", "provider": "replay", "responses": ["Hi. TERMINATE"]},
                        format="json").json()["id"]
    at_edge = client.post("/api/agents/", {"name": "edge", "model": model, "limits": {limit: maximum}},
                          format="json")
    assert at_edge.status_code == 201, at_edge.content
    over = client.post("/api/agents/", {"name": "over", "model": model, "limits": {limit: maximum + 1}},
                       format="json")
    assert over.status_code == 429
    assert over.json()["error"]["code"] == "quota_exceeded"
    # raising the limit of an existing agent over the quota is refused the same way
    raised = client.patch(f"/api/agents/{at_edge.json()['id']}/", {"limits": {limit: maximum + 1}}, format="json")
    assert raised.json()["error"]["code"] == "quota_exceeded"


def _race(requests):
    """Run the callables at the same instant, each on its own thread (so its own database connection)."""
    barrier = threading.Barrier(len(requests))
    results = [None] * len(requests)

    def run(i, request):
        try:
            barrier.wait()
            results[i] = request()
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, r)) for i, r in enumerate(requests)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


@pytest.mark.django_db(transaction=True)
def test_concurrent_task_creations_get_the_last_daily_slot_once(make_customer):
    customer, user = make_customer("acme", max_tasks_per_day=3)
    agent = make_agent(customer)
    client = _client(user)
    assert _submit(client, agent).status_code == 201  # two slots left, four callers
    statuses = _race([lambda: _submit(_client(user), agent).status_code for _ in range(4)])
    assert sorted(statuses) == [201, 201, 429, 429]
    assert Task.objects.filter(customer=customer).count() == 3


@pytest.mark.django_db(transaction=True)
def test_concurrent_agent_creations_get_the_last_slot_once(make_customer):
    customer, user = make_customer("acme", max_agents=1)
    client = _client(user)
    model = client.post("/api/models/", {"name": "m", "provider": "replay", "responses": ["Hi"]},
                        format="json").json()["id"]

    def create(i):
        return lambda: _client(user).post("/api/agents/", {"name": f"a{i}", "model": model}, format="json").status_code

    assert sorted(_race([create(i) for i in range(3)])) == [201, 429, 429]
    assert Customer.objects.get(pk=customer.pk).agents.count() == 1
