"""Each customer quota at its edge, through the API, including concurrent creations racing for the last slot."""
import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from django.db.models import Count, Sum
from django.test.utils import CaptureQueriesContext

from accounts.models import Customer, CustomerUsage
from agents.models import Agent
from conftest import token_for
from tasks.models import Task
from tasks.services import task_finish
from tests.admin_support import make_agent


def _client(user):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_for(user)}")
    return client


def _submit(client, agent):
    return client.post("/api/tasks/", {"agent": agent.pk, "input": "hi"}, format="json")


def _created_at(customer, when):
    """As if all the customer's tasks had been created at `when` (the clock cannot be turned in a test): their
    created_at, and the usage counters kept by the day of creation."""
    Task.objects.filter(customer=customer).update(created_at=when)
    usage = CustomerUsage.objects.filter(customer=customer)
    totals = usage.aggregate(tasks=Sum("tasks"), tokens=Sum("tokens"))
    usage.delete()
    CustomerUsage.objects.create(customer=customer, day=when.date(), tasks=totals["tasks"] or 0,
                                 tokens=totals["tokens"] or 0)


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
    _created_at(customer, now - timedelta(days=1, minutes=1))
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
    task_finish(task_id=first, status="succeeded", usage={"prompt_tokens": 900, "completion_tokens": 99})
    second = _submit(client, agent)
    assert second.status_code == 201  # one token left
    task_finish(task_id=second.json()["id"], status="succeeded", usage={"prompt_tokens": 1, "completion_tokens": 0})
    refused = _submit(client, agent)
    error = _quota_error(refused, "monthly_token_budget")
    assert error["details"]["used"] == 1000 and error["details"]["limit"] == 1000
    assert int(refused["Retry-After"]) > 0
    # last month's tokens do not count against this month
    month_start = timezone.now().replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    _created_at(customer, month_start - timedelta(minutes=1))
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


@pytest.mark.django_db
def test_usage_counters_stay_the_sum_over_the_tasks_and_the_checks_never_read_the_tasks(make_customer):
    """The quotas read per-day counters, not the tasks: every write of a task's existence or tokens keeps them
    equal to what counting the tasks gives, whatever way the task went."""
    from tasks.quotas import customer_tokens_left, quota_check_task_create
    from tasks.services import task_create, task_mark_running, task_record_tokens, task_suspend

    customer, user = make_customer("acme", monthly_token_budget=10_000)
    agent = make_agent(customer)

    def submit(**kwargs):
        return task_create(actor=user, customer=customer, input="hi", agent=agent, **kwargs)[0]

    finished, suspended, interrupted = submit(), submit(), submit()
    for task in (finished, suspended):
        task_mark_running(task_id=task.pk, worker="w")
        task_record_tokens(task_id=task.pk, tokens=40)
        task_record_tokens(task_id=task.pk, tokens=70)  # the tokens so far, not an increment
    task_finish(task_id=finished.pk, status="succeeded", usage={"prompt_tokens": 100, "completion_tokens": 25})
    task_suspend(task_id=suspended.pk, request={"prompt": "?", "kind": "input"}, suspension={},
                 usage={"prompt_tokens": 80, "completion_tokens": 0})
    # a task on the same thread with multitask_strategy rollback deletes the queued one before it
    submit(thread=interrupted.thread, multitask_strategy="rollback")
    assert not Task.objects.filter(pk=interrupted.pk).exists()

    counted = Task.objects.filter(customer=customer).aggregate(tasks=Count("pk"), tokens=Sum("tokens_used"))
    usage = CustomerUsage.objects.filter(customer=customer).aggregate(tasks=Sum("tasks"), tokens=Sum("tokens"))
    assert (usage["tasks"], usage["tokens"]) == (counted["tasks"], counted["tokens"]) == (3, 125 + 80)
    with CaptureQueriesContext(connection) as queries:
        quota_check_task_create(customer)
        assert customer_tokens_left(customer.pk) == 10_000 - 205
    assert queries.captured_queries and not any("tasks_task" in q["sql"] for q in queries.captured_queries)
