"""Quotas the workers enforce while tasks run: max_concurrent_tasks and the monthly token budget.

Real `manage.py runworker` processes (two), a reaper, sandboxed AgentChat children; the model is
AutoGen's replay client.
"""
import time

import pytest

from accounts.models import Customer, CustomerNotice
from agents.models import Agent, ModelConfig
from tasks.models import Task
from tests.execution_support import running, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

SLEEPY_CODE = "```python\nimport time\ntime.sleep({seconds})\nprint('slept')\n```"


@pytest.fixture(scope="module")
def workers(django_db_setup, django_db_blocker):
    with running("quota1", "quota2", reaper=True) as procs:
        yield procs


def make_agent(customer, responses, name="helper", **fields) -> Agent:
    model = ModelConfig.objects.create(customer=customer, name=f"{name}-model", provider="replay", responses=responses)
    return Agent.objects.create(customer=customer, name=name, model=model, system_message="You are helpful.", **fields)


def sleeper(customer, seconds: float, name="sleeper") -> Agent:
    return make_agent(customer, [SLEEPY_CODE.format(seconds=seconds), "Done. TERMINATE"], name=name, code_execution=True)


def submit(client, agent, text="Go") -> int:
    response = client.post("/api/tasks/", {"agent": agent.pk, "input": text}, format="json")
    assert response.status_code == 201, response.content
    return response.json()["id"]


def all_finished(ids, timeout=40.0) -> list[Task]:
    def done():
        tasks = list(Task.objects.filter(pk__in=ids).order_by("pk"))
        return all(t.is_finished for t in tasks) and tasks

    return wait_for(done, timeout=timeout, message=f"tasks {ids} to finish")


def queued_task(customer, agent, text="Go") -> Task:
    """A queued task without a job (as if a worker were about to take it)."""
    from tasks.models import Thread
    from tasks.services import build_task_spec

    thread = Thread.objects.create(customer=customer, agent=agent)
    return Task.objects.create(customer=customer, agent=agent, agent_version=1, thread=thread, input=text,
                               spec=build_task_spec(agent=agent))


def test_workers_racing_for_the_last_slot_start_one_task_and_the_other_waits_for_it(make_customer):
    # (no worker runs in this test: the module's workers start with the next one)
    import threading

    import django_rq
    from django.db import connection

    from tasks.services import task_finish, task_start

    acme, _ = make_customer("acme", max_concurrent_tasks=1)
    agent = make_agent(acme, ["Hi. TERMINATE"])
    first, second = queued_task(acme, agent, "one"), queued_task(acme, agent, "two")
    # when: two workers claim at the same moment
    barrier, started = threading.Barrier(2), {}

    def claim(task, worker):
        barrier.wait()
        try:
            started[task.pk] = task_start(task_id=task.pk, worker=worker)
        finally:
            connection.close()

    threads = [threading.Thread(target=claim, args=(t, f"w{i}")) for i, t in enumerate((first, second))]
    [t.start() for t in threads]
    [t.join(10) for t in threads]
    # then: one runs, the other waits queued with no job
    assert sorted(started.values()) == [False, True]
    winner, loser = (first, second) if started[first.pk] else (second, first)
    assert Task.objects.get(pk=winner.pk).status == "running"
    waiting = Task.objects.get(pk=loser.pk)
    assert waiting.status == "queued" and waiting.waiting_since is not None
    # when the running one ends, the waiting one is enqueued again under a new job id, and may start
    task_finish(task_id=winner.pk, status="succeeded")
    woken = Task.objects.get(pk=loser.pk)
    assert woken.waiting_since is None and woken.requeues == 1
    assert f"task-{loser.pk}-0-1" in django_rq.get_queue("default").get_job_ids()
    assert task_start(task_id=loser.pk, worker="w1") is True
    django_rq.get_queue("default").empty()


def test_the_reapers_wake_up_never_starts_a_waiting_task_before_an_older_one_on_its_way(make_customer):
    # (no worker runs in this test either) A reaper pass between an older task's enqueue and a worker taking
    # it used to wake the waiting task too: two jobs for one slot, and whichever worker came first won.
    import django_rq

    from tasks.services import task_create, task_finish, task_requeue_orphans, task_start

    acme, actor = make_customer("acme", max_concurrent_tasks=1)
    agent = make_agent(acme, ["Hi. TERMINATE"])
    queue = django_rq.get_queue("default")
    queue.empty()
    first, _ = task_create(actor=actor, customer=acme, input="one", agent=agent)
    second, _ = task_create(actor=actor, customer=acme, input="two", agent=agent)
    assert Task.objects.get(pk=second.pk).waiting_since is not None
    # when: the reaper passes while the first task's job is still in the queue
    task_requeue_orphans(older_than_seconds=30)
    # then: only the first task has a job; if the second had been handed one too, a worker could start it first
    assert queue.get_job_ids() == [f"task-{first.pk}-0"]
    assert Task.objects.get(pk=second.pk).waiting_since is not None
    assert task_start(task_id=first.pk, worker="w0") is True
    task_finish(task_id=first.pk, status="succeeded")
    assert f"task-{second.pk}-0-1" in queue.get_job_ids()
    assert task_start(task_id=second.pk, worker="w1") is True
    queue.empty()


def test_starts_stored_together_hold_the_limit_in_order_and_leave_the_rest_alone(make_customer):
    # (no worker runs here) A worker stores the starts handed in together in one transaction (start_many):
    # within it each start sees the ones before it, so the limit and FIFO hold; what cannot start does not
    # undo the others.
    import django_rq

    from tasks.runtime_store import DjangoTaskStore
    from tasks.services import task_finish

    acme, _ = make_customer("acme", max_concurrent_tasks=2)
    globex, _ = make_customer("globex")
    agent, other = make_agent(acme, ["Hi. TERMINATE"]), make_agent(globex, ["Hi. TERMINATE"])
    mine = [queued_task(acme, agent, f"t{i}") for i in range(4)]
    done = queued_task(acme, agent, "done")
    task_finish(task_id=done.pk, status="cancelled")
    theirs = queued_task(globex, other)
    ids = [t.pk for t in mine] + [done.pk, 10**9, theirs.pk]
    # when
    results = DjangoTaskStore().start_many(ids, "w0")
    # then: acme's two oldest run, the next two wait their turn; the finished and the missing ones are not
    # started; globex's task starts all the same
    assert results == [True, True, False, False, False, False, True]
    statuses = dict(Task.objects.filter(pk__in=ids).values_list("pk", "status"))
    assert [statuses[t.pk] for t in mine] == ["running", "running", "queued", "queued"]
    assert statuses[theirs.pk] == "running" and statuses[done.pk] == "cancelled"
    assert all(Task.objects.get(pk=t.pk).waiting_since is not None for t in mine[2:])
    assert [e.type for e in Task.objects.get(pk=mine[0].pk).events.order_by("seq")][-1] == "status"
    # each customer's stream got a `running` notice for each of its started tasks, in order (stored together)
    def running_notices(customer):
        return [n["task"] for n in CustomerNotice.objects.filter(customer=customer).order_by("seq").values_list("payload", flat=True)
                if n.get("type") == "task_status" and n.get("status") == "running"]
    assert running_notices(acme) == [mine[0].pk, mine[1].pk] and running_notices(globex) == [theirs.pk]
    django_rq.get_queue("default").empty()


def test_a_batch_of_starts_honours_the_killswitch_and_reads_what_each_started_task_runs(make_customer):
    # (no worker runs here) The batch reads the engaged scopes once: a customer's switch holds its tasks, the
    # global one everybody's; the started tasks' contexts come from the batch's own read, each with its own
    # customer's model configuration only.
    import django_rq

    from core.models import Killswitch
    from tasks.runtime_store import DjangoTaskStore

    acme, _ = make_customer("acme")
    globex, _ = make_customer("globex")
    acme_agent, globex_agent = make_agent(acme, ["Hi. TERMINATE"]), make_agent(globex, ["Hello. TERMINATE"])
    Killswitch.objects.create(scope=f"customer:{acme.pk}", customer=acme, engaged=True, reason="test")
    held, started = queued_task(acme, acme_agent), queued_task(globex, globex_agent)
    # when
    out = DjangoTaskStore().start_and_load_many([held.pk, started.pk], "w0")
    # then: acme's task ended cancelled/killswitch without starting; globex's runs with its own model
    assert out[0] is None
    held.refresh_from_db()
    assert (held.status, held.error["code"], held.started_at) == ("cancelled", "killswitch", None)
    context, error = out[1]
    assert error is None and context.task_id == started.pk and context.customer_id == globex.pk
    assert list(context.models) == [globex_agent.model_id]
    assert context.models[globex_agent.model_id]["responses"] == ["Hello. TERMINATE"]
    # and under the global switch nobody's task starts
    Killswitch.objects.create(scope="global", engaged=True, reason="test")
    late = queued_task(globex, globex_agent, "late")
    assert DjangoTaskStore().start_and_load_many([late.pk], "w0") == [None]
    late.refresh_from_db()
    assert (late.status, late.error["code"]) == ("cancelled", "killswitch")
    django_rq.get_queue("default").empty()


def test_tasks_over_max_concurrent_wait_queued_without_blocking_other_customers(workers, make_customer, client_for):
    # given: a customer allowed one running task at a time, two workers, and another customer
    acme, acme_user = make_customer("acme", max_concurrent_tasks=1)
    globex, globex_user = make_customer("globex")
    slow = sleeper(acme, 0.5)
    quick = make_agent(globex, ["Hello. TERMINATE"])
    # when: acme submits three slow tasks, then globex one quick task
    acme_ids = [submit(client_for(acme_user), slow, f"job {i}") for i in range(3)]
    globex_id = submit(client_for(globex_user), quick)
    # then: never two of acme's tasks run at once (polled while they work through)
    most_running, deadline = 0, time.monotonic() + 40
    while time.monotonic() < deadline:
        statuses = dict(Task.objects.filter(pk__in=[*acme_ids, globex_id]).values_list("pk", "status"))
        most_running = max(most_running, sum(statuses[i] == "running" for i in acme_ids))
        if all(s in Task.FINISHED for s in statuses.values()):
            break
        time.sleep(0.02)
    tasks = all_finished(acme_ids)
    assert most_running == 1
    assert [t.status for t in tasks] == ["succeeded"] * 3, [t.error for t in tasks]
    # first in, first out within the customer: each started after the one before it finished
    for before, after in zip(tasks, tasks[1:]):
        assert before.finished_at <= after.started_at
    # a customer at its limit holds no worker: globex's later task ran while acme's waited
    other = Task.objects.get(pk=globex_id)
    assert other.status == "succeeded", other.error
    assert other.finished_at < tasks[-1].started_at
    assert all(t.waiting_since is None for t in tasks)


def test_raising_max_concurrent_starts_a_waiting_task(workers, make_customer, client_for, admin_api):
    acme, user = make_customer("acme", max_concurrent_tasks=1)
    slow = sleeper(acme, 30)
    client = client_for(user)
    first, second = submit(client, slow, "one"), submit(client, slow, "two")
    wait_for(lambda: Task.objects.filter(pk=first, status="running").exists(), message="the first task to run")
    wait_for(lambda: Task.objects.filter(pk=second, waiting_since__isnull=False).exists(), message="the second to wait")
    assert Task.objects.get(pk=second).status == "queued"
    # when: an admin raises the limit (no task finished: the reaper hands out the new slot)
    response = admin_api.patch(f"/api/admin/customers/{acme.pk}/", {"quotas": {"max_concurrent_tasks": 2}}, format="json")
    assert response.status_code == 200, response.content
    # then
    wait_for(lambda: Task.objects.filter(pk=second, status="running").exists(), timeout=10, message="the second to run")
    for task_id in (first, second):
        client.post(f"/api/tasks/{task_id}/cancel/")
    assert [t.status for t in all_finished([first, second], timeout=10)] == ["cancelled", "cancelled"]


def test_monthly_token_budget_ends_running_tasks_and_refuses_new_ones(workers, make_customer, client_for):
    # given: a customer with a small monthly budget; one task runs (its code sleeps between two model calls)
    acme, user = make_customer("acme", monthly_token_budget=60)
    client = client_for(user)
    patient = sleeper(acme, 2.5, name="patient")
    first = submit(client, patient, "Sleep a little")
    # its first call's tokens count against the budget while it runs
    wait_for(lambda: Task.objects.filter(pk=first, status="running", tokens_used__gt=0).exists(), message="tokens in flight")
    # when: another task's model answer takes the budget over the limit
    chatty = make_agent(acme, [" ".join(["word"] * 80)], name="chatty")
    second = submit(client, chatty, "Talk a lot")
    # then: that task ends token_budget at once, and the first one as soon as it calls the model again
    talked = all_finished([second], timeout=20)[0]
    assert talked.status == "failed" and talked.error["code"] == "token_budget", talked.error
    assert talked.usage["completion_tokens"] == 80
    assert Task.objects.get(pk=first).status == "running"
    slept = all_finished([first], timeout=20)[0]
    assert slept.status == "failed" and slept.error["code"] == "token_budget", slept.error
    assert "monthly token budget" in slept.error["message"]
    # and new tasks are refused
    refused = client.post("/api/tasks/", {"agent": patient.pk, "input": "More"}, format="json")
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "quota_exceeded"
    assert refused.json()["error"]["details"]["quota"] == "monthly_token_budget"
    assert Customer.objects.get(pk=acme.pk).tasks.count() == 2


def test_a_model_answers_tokens_count_in_the_monthly_budget_once_the_answer_is_shown(workers, make_customer, client_for):
    # given: a task whose agent answers with code that sleeps (the task keeps running after that answer)
    from tasks.quotas import customer_tokens_this_month

    acme, user = make_customer("acme", monthly_token_budget=100_000)
    client = client_for(user)
    patient = sleeper(acme, 3, name="patient")
    # when: the agent's answer shows in the task's events (the API a user reads)
    task_id = submit(client, patient, "Sleep a little")

    def answer_shown():
        events = client.get(f"/api/tasks/{task_id}/events/").json()["results"]
        return any(e["type"] == "message" and e["source"] == "patient" for e in events)

    wait_for(answer_shown, timeout=30, message="the agent's answer")
    # then: its tokens already count in the customer's monthly budget, while the task still runs (they are
    # stored with the events that follow the model call, not at the task's end)
    task = Task.objects.get(pk=task_id)
    assert task.status == "running"
    assert task.tokens_used > 0
    assert customer_tokens_this_month(acme) == task.tokens_used
    assert [t.status for t in all_finished([task_id], timeout=30)] == ["succeeded"]
