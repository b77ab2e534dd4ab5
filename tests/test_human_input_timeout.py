"""A task nobody answers ends timed_out with input_timeout (TASK_INPUT_TIMEOUT_SECONDS, enforced by the reaper).

A module of its own: its worker computes the deadline, so no worker with the default wait may share its queue.
"""
import pytest

from tasks.models import TaskEvent
from tests.execution_support import running
from tests.test_human_input import finished, replay_model, submit, team_with_person, waiting

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def customer(make_customer):
    return make_customer()


def test_unanswered_task_ends_input_timeout(django_db_setup, customer, client_for):
    org, user = customer
    client = client_for(user)
    team, _ = team_with_person(org, replay_model(org, ["Which colour do you like?", "Never said. TERMINATE"]))
    with running("hitl-timeout", reaper=True, TASK_INPUT_TIMEOUT_SECONDS="1"):
        created = submit(client, team=team.pk, input="Pick a colour")
        task = waiting(client, created["id"])
        assert task["input_request"]["expires_at"]
        done = finished(created["id"], timeout=30)
    assert done.status == "timed_out"
    assert done.error["code"] == "input_timeout"
    assert client.get(f"/api/tasks/{created['id']}/").json()["error"]["code"] == "input_timeout"
    assert TaskEvent.objects.filter(task_id=created["id"], type="error", content__code="input_timeout").exists()
