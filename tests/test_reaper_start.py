"""A reaper that starts enqueues at once the queued tasks whose jobs never reached the queue (`make run` seeds its
demo runs before the embedded Redis starts), not only after TASK_REQUEUE_SECONDS. Its own module: no other
test's reaper may be running beside it."""
import pytest

from tasks.models import Task, TaskEvent
from tests.execution_support import running
from tests.test_execution import finished, make_agent, replay_model

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def customer(make_customer):
    return make_customer()


def test_a_starting_reaper_enqueues_tasks_committed_while_the_queue_was_unreachable_at_once(customer):
    # `make run` seeds its demo runs before the embedded Redis starts: their jobs never reach the queue
    from datetime import timedelta

    from django.utils import timezone

    from tasks.models import Thread
    from tasks.services import build_task_spec

    org, _ = customer
    agent = make_agent(org, replay_model(org, ["Up at once. TERMINATE"]))
    # given: a queued task, a few seconds old, whose job never reached Redis
    task = Task.objects.create(
        customer=org, agent=agent, agent_version=1, thread=Thread.objects.create(customer=org, agent=agent),
        input="Hello?", spec=build_task_spec(agent=agent),
    )
    TaskEvent.objects.create(task=task, seq=1, type="status", content={"status": "queued"})
    Task.objects.filter(pk=task.pk).update(last_seq=1, created_at=timezone.now() - timedelta(seconds=3))
    # when: the platform starts, its orphan rule set to an hour
    with running("w-start", reaper=True, TASK_REQUEUE_SECONDS="3600"):
        # then: the reaper's first pass puts it on the queue, and it runs without waiting the hour
        task = finished(task.pk, timeout=30)
    assert task.status == "succeeded" and task.result["text"] == "Up at once. TERMINATE"
