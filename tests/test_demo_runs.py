"""`make run`'s demo really shows the platform: the runs seed_demo submits go through a real worker and sandbox
and end with a team where every member speaks, a tool call (scripted by a replay model), and code that ran."""
import io

import pytest
from django.core.management import call_command

from tasks.models import Task, TaskEvent
from tests.execution_support import running, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_the_demo_runs_succeed_with_a_speaking_team_a_tool_call_and_code():
    # given the demo, seeded while Redis is up (the runs are queued at once)
    call_command("seed_demo", stdout=io.StringIO())
    tasks = {(t.agent.name if t.agent else t.team.name): t.pk for t in Task.objects.select_related("agent", "team")}
    assert set(tasks) == {"demo-team", "demo-calculator", "demo-coder", "demo-agent"}

    # when a worker runs them
    with running("demo-w1"):
        wait_for(lambda: all(t.is_finished for t in Task.objects.all()), timeout=120, message="the demo runs")

    # then they all succeed, each showing what it is there for
    assert {pk: Task.objects.get(pk=pk).status for pk in tasks.values()} == {pk: "succeeded" for pk in tasks.values()}

    def events(name, kind):
        return list(TaskEvent.objects.filter(task_id=tasks[name], type=kind).values_list("source", "content"))

    assert [source for source, _ in events("demo-team", "message")] == ["user", "demo-agent", "demo-critic"]
    assert events("demo-calculator", "tool_call")[0][1]["name"] == "calculator"
    assert events("demo-calculator", "tool_result")[0][1]["content"] == "42"
    assert "5050" in events("demo-coder", "code_execution")[0][1]["output"]
    assert Task.objects.get(pk=tasks["demo-calculator"]).tokens_used > 0
