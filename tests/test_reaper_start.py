"""A reaper that starts enqueues at once the queued tasks whose jobs never reached the queue (`make run` seeds its
demo runs before the embedded Redis starts), not only after TASK_REQUEUE_SECONDS. Its own module: no other
test's reaper may be running beside it."""
import pytest

from tests.execution_support import running
from tests.test_execution import finished, make_agent, queued_without_job, replay_model

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def customer(make_customer):
    return make_customer()


def test_a_starting_reaper_enqueues_tasks_committed_while_the_queue_was_unreachable_at_once(customer):
    # `make run` seeds its demo runs before the embedded Redis starts: their jobs never reach the queue
    org, _ = customer
    agent = make_agent(org, replay_model(org, ["Up at once. TERMINATE"]))
    # given: a queued task, a few seconds old, whose job never reached Redis
    task = queued_without_job(org, agent, age_seconds=3)
    # when: the platform starts, its orphan rule set to an hour
    with running("w-start", reaper=True, TASK_REQUEUE_SECONDS="3600"):
        # then: the reaper's first pass puts it on the queue, and it runs without waiting the hour
        task = finished(task.pk, timeout=30)
    assert task.status == "succeeded" and task.result["text"] == "Up at once. TERMINATE"
