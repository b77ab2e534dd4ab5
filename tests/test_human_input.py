"""A person in the middle of a run: a user proxy's question and tool-call / code approvals.

Real workers (`manage.py runworker`), reaper, sandboxed AgentChat children; the model is AutoGen's replay
client or tests/openai_stub.py. A waiting task holds no process and no worker slot, survives a worker
restart, resumes in a new sandbox from its saved state when answered, and ends input_timeout unanswered.
"""
import signal

import pytest

from agents.models import Agent, ModelConfig
from runtime.services import worker_slots
from tasks.models import Task, TaskEvent
from teams.models import Team, TeamMember
from tests.execution_support import running, wait_for
from tests.openai_stub import MODEL_INFO, OpenAIStub

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def workers(django_db_setup, django_db_blocker):
    with running("hitl1", reaper=True) as procs:
        yield procs


@pytest.fixture
def customer(make_customer):
    return make_customer()


def replay_model(customer, responses, name="replay"):
    return ModelConfig.objects.create(customer=customer, name=name, provider="replay", responses=responses)


def stub_model(customer, stub):
    return ModelConfig.objects.create(customer=customer, name="local", provider="openai", model="stub-model",
                                      base_url=stub.base_url, model_info=MODEL_INFO)


def make_agent(customer, model, name="helper", **fields):
    return Agent.objects.create(customer=customer, name=name, model=model, system_message="You are helpful.", **fields)


def submit(client, **data) -> dict:
    response = client.post("/api/tasks/", data, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def waiting(client, task_id: int, timeout: float = 30.0) -> dict:
    def check():
        task = client.get(f"/api/tasks/{task_id}/").json()
        assert task["status"] not in ("succeeded", "failed", "cancelled", "timed_out"), task
        return task["status"] == "input_required" and task

    return wait_for(check, timeout=timeout, message=f"task {task_id} to wait for input")


def finished(task_id: int, timeout: float = 30.0) -> Task:
    return wait_for(lambda: (t := Task.objects.get(pk=task_id)).is_finished and t, timeout=timeout,
                    message=f"task {task_id} to finish")


def events_of(client, task_id: int) -> list[dict]:
    return client.get(f"/api/tasks/{task_id}/events/").json()["results"]


def no_sandbox_and_no_busy_slot(client, agent_id: int) -> bool:
    return client.get(f"/api/agents/{agent_id}/processes/").json() == [] and worker_slots()["busy"] == 0


def team_with_person(org, model) -> tuple[Team, Agent]:
    writer = make_agent(org, model, "writer")
    person = make_agent(org, model, "customer", human_input=True, description="The customer who decides")
    team = Team.objects.create(customer=org, name="ask-me", mode="round_robin",
                               termination={"max_messages": 10, "text_mention": "TERMINATE"})
    TeamMember.objects.create(team=team, agent=writer, position=0)
    TeamMember.objects.create(team=team, agent=person, position=1)
    return team, writer


def test_user_proxy_question_waits_without_a_process_survives_a_worker_restart_and_resumes(workers, customer,
                                                                                           client_for):
    # given a team whose second member is a person
    org, user = customer
    client = client_for(user)
    team, writer = team_with_person(org, replay_model(org, ["Which colour do you like?", "Blue it is. TERMINATE"]))
    # when the task runs, the writer asks and the person's turn comes
    created = submit(client, team=team.pk, input="Pick a colour for the logo")
    task = waiting(client, created["id"])
    # then the task waits with the question, holding no process and no worker slot
    assert task["input_request"]["kind"] == "input"
    assert task["input_request"]["agent"] == "customer"
    assert "Which colour do you like?" in task["input_request"]["prompt"]
    events = events_of(client, created["id"])
    request = [e for e in events if e["type"] == "input_request"]
    assert len(request) == 1 and request[0]["content"]["prompt"] == task["input_request"]["prompt"]
    assert events[-1]["type"] == "status" and events[-1]["content"]["status"] == "input_required"
    assert Task.objects.get(pk=created["id"]).pid is None
    wait_for(lambda: no_sandbox_and_no_busy_slot(client, writer.pk), timeout=10, message="no sandbox, no busy slot")

    # when the worker restarts while the task waits
    proc = workers.procs["hitl1"]
    proc.send_signal(signal.SIGTERM)
    proc.wait(20)
    workers.start_worker("hitl1")
    assert client.get(f"/api/tasks/{created['id']}/").json()["status"] == "input_required"
    # and the person answers
    response = client.post(f"/api/tasks/{created['id']}/input/", {"text": "Blue, please"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "queued" and response.json()["input_request"] is None

    # then a worker resumes it from its saved state: the answer reaches the team, which goes on to the end
    done = finished(created["id"], timeout=60)
    assert done.status == "succeeded", done.error
    assert done.result["text"] == "Blue it is. TERMINATE"
    events = events_of(client, created["id"])
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    messages = [(e["source"], e["content"]["text"]) for e in events if e["type"] == "message"]
    assert messages == [("user", "Pick a colour for the logo"), ("writer", "Which colour do you like?"),
                        ("customer", "Blue, please"), ("writer", "Blue it is. TERMINATE")]
    answer = next(e for e in events if e["type"] == "input_response")
    assert answer["content"] == {"kind": "input", "text": "Blue, please"}
    statuses = [e["content"]["status"] for e in events if e["type"] == "status"]
    assert statuses == ["queued", "running", "input_required", "queued", "running", "succeeded"]
    assert done.usage["completion_tokens"] > 0 and done.usage["wall_seconds"] > 0

    # and it is not waiting any more
    again = client.post(f"/api/tasks/{created['id']}/input/", {"text": "Red"}, format="json")
    assert again.status_code == 409 and again.json()["error"]["code"] == "conflict"


def test_denied_tool_call_is_not_run_and_the_agent_is_told(workers, customer, client_for):
    org, user = customer
    client = client_for(user)
    with OpenAIStub([{"tool_calls": [{"name": "calculator", "arguments": {"expression": "6*7"}}]},
                     "I may not compute it. TERMINATE"]) as stub:
        agent = make_agent(org, stub_model(org, stub), tools=["calculator"], approval=["calculator"])
        created = submit(client, agent=agent.pk, input="What is 6*7?")
        task = waiting(client, created["id"])
        assert task["input_request"]["kind"] == "approval"
        assert task["input_request"]["tool_calls"][0]["name"] == "calculator"
        assert task["input_request"]["tool_calls"][0]["arguments"] == {"expression": "6*7"}
        # an approval is answered with approve, not text
        wrong = client.post(f"/api/tasks/{created['id']}/input/", {"text": "ok"}, format="json")
        assert wrong.status_code == 400 and wrong.json()["error"]["code"] == "validation_error"
        # when
        denied = client.post(f"/api/tasks/{created['id']}/input/", {"approve": False}, format="json")
        assert denied.status_code == 200, denied.content
        done = finished(created["id"], timeout=60)
    # then
    assert done.status == "succeeded", done.error
    events = events_of(client, created["id"])
    results = [e for e in events if e["type"] == "tool_result"]
    assert len(results) == 1 and results[0]["content"]["is_error"] is True
    assert "denied" in results[0]["content"]["content"] and "42" not in results[0]["content"]["content"]
    assert done.result["text"] == "I may not compute it. TERMINATE"
    told = [m for m in stub.requests[1]["body"]["messages"] if m.get("role") == "tool"]
    assert told and "denied" in told[0]["content"]


def test_approved_tool_call_runs(workers, customer, client_for):
    org, user = customer
    client = client_for(user)
    with OpenAIStub([{"tool_calls": [{"name": "calculator", "arguments": {"expression": "6*7"}}]},
                     "It is 42. TERMINATE"]) as stub:
        agent = make_agent(org, stub_model(org, stub), tools=["calculator"], approval=["calculator"])
        created = submit(client, agent=agent.pk, input="What is 6*7?")
        waiting(client, created["id"])
        assert client.post(f"/api/tasks/{created['id']}/input/", {"approve": True}, format="json").status_code == 200
        done = finished(created["id"], timeout=60)
    assert done.status == "succeeded", done.error
    results = [e for e in events_of(client, created["id"]) if e["type"] == "tool_result"]
    assert [(r["content"]["content"], r["content"]["is_error"]) for r in results] == [("42", False)]
    assert done.result["text"] == "It is 42. TERMINATE"


def test_denied_code_run_does_not_run_the_code(workers, customer, client_for):
    org, user = customer
    client = client_for(user)
    code = "```python\nprint('RAN' + 'CODE')\n```"
    agent = make_agent(org, replay_model(org, [code, "Understood. TERMINATE"]), code_execution=True,
                       approval=["code_execution"])
    created = submit(client, agent=agent.pk, input="Print something")
    task = waiting(client, created["id"])
    assert task["input_request"]["kind"] == "approval" and "print('RAN' + 'CODE')" in task["input_request"]["code"]
    assert client.post(f"/api/tasks/{created['id']}/input/", {"approve": False}, format="json").status_code == 200
    done = finished(created["id"], timeout=60)
    assert done.status == "succeeded", done.error
    events = events_of(client, created["id"])
    assert not any("RANCODE" in str(e["content"]) for e in events)
    runs = [e for e in events if e["type"] == "code_execution"]
    assert len(runs) == 1 and runs[0]["content"]["exit_code"] != 0 and "not approved" in runs[0]["content"]["output"]
    assert done.result["text"] == "Understood. TERMINATE"


def test_a_single_agent_with_human_input_asks_after_its_reply(workers, customer, client_for):
    org, user = customer
    client = client_for(user)
    agent = make_agent(org, replay_model(org, ["What is your name?", "Hello Ada. TERMINATE"]), human_input=True)
    created = submit(client, agent=agent.pk, input="Greet me")
    task = waiting(client, created["id"])
    assert task["input_request"]["prompt"] == "What is your name?"
    assert client.post(f"/api/tasks/{created['id']}/input/", {"text": "Ada"}, format="json").status_code == 200
    done = finished(created["id"], timeout=60)
    assert done.status == "succeeded", done.error
    assert done.result["text"] == "Hello Ada. TERMINATE"
    messages = [e["content"]["text"] for e in events_of(client, created["id"]) if e["type"] == "message"]
    assert messages == ["Greet me", "What is your name?", "Ada", "Hello Ada. TERMINATE"]


def test_an_approved_call_of_a_team_member_runs_and_the_team_goes_on(workers, customer, client_for):
    org, user = customer
    client = client_for(user)
    with OpenAIStub([{"tool_calls": [{"name": "calculator", "arguments": {"expression": "6*7"}}]},
                     "It is 42.", "Correct. TERMINATE"]) as stub:
        model = stub_model(org, stub)
        counter = make_agent(org, model, "counter", tools=["calculator"], approval=["calculator"])
        checker = make_agent(org, model, "checker")
        team = Team.objects.create(customer=org, name="check", mode="round_robin",
                                   termination={"max_messages": 6, "text_mention": "TERMINATE"})
        TeamMember.objects.create(team=team, agent=counter, position=0)
        TeamMember.objects.create(team=team, agent=checker, position=1)
        created = submit(client, team=team.pk, input="What is 6*7?")
        task = waiting(client, created["id"])
        assert task["input_request"]["agent"] == "counter"
        assert client.post(f"/api/tasks/{created['id']}/input/", {"approve": True}, format="json").status_code == 200
        done = finished(created["id"], timeout=60)
    assert done.status == "succeeded", done.error
    events = events_of(client, created["id"])
    assert [r["content"]["content"] for r in events if r["type"] == "tool_result"] == ["42"]
    messages = [(e["source"], e["content"]["text"]) for e in events if e["type"] == "message"]
    assert messages == [("user", "What is 6*7?"), ("counter", "It is 42."), ("checker", "Correct. TERMINATE")]
    # the checker saw the counter's answer once, after the question
    seen = [m.get("content") for m in stub.requests[2]["body"]["messages"]]
    assert seen.count("It is 42.") == 1
