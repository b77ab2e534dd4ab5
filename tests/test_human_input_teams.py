"""A person answering in the middle of a run, in every team mode (round robin is in test_human_input.py).

Real workers, sandboxed AgentChat children; the model is AutoGen's replay client or tests/openai_stub.py.
Each task moves to input_required with the question, holds no process and no worker slot, and resumes
from its saved AgentChat state when answered: the answer is the asking member's turn, and the team goes
on from there to its termination with the expected speakers.
"""
import json

import pytest

from tests.execution_support import running, wait_for
from tests.openai_stub import OpenAIStub
from tests.test_team_modes import make_team
from tests.test_human_input import (
    events_of,
    finished,
    make_agent,
    no_sandbox_and_no_busy_slot,
    replay_model,
    stub_model,
    submit,
    waiting,
)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def workers(django_db_setup, django_db_blocker):
    with running("hitl2", reaper=True) as procs:
        yield procs


@pytest.fixture
def customer(make_customer):
    return make_customer()


def ask_and_answer(client, team: dict, agent, text: str, task_input: str = "Make a logo") -> tuple[dict, object]:
    """Submit, wait for the question (no process, no slot while waiting), answer it, wait for the end."""
    created = submit(client, team=team["id"], input=task_input)
    task = waiting(client, created["id"])
    wait_for(lambda: no_sandbox_and_no_busy_slot(client, agent.pk), timeout=10, message="no sandbox, no busy slot")
    answered = client.post(f"/api/tasks/{created['id']}/input/", {"text": text}, format="json")
    assert answered.status_code == 200, answered.content
    return task, finished(created["id"], timeout=60)


def said(task_id: int, client) -> list[tuple[str, str]]:
    return [(e["source"], e["content"]["text"]) for e in events_of(client, task_id) if e["type"] == "message"]


def statuses(task_id: int, client) -> list[str]:
    return [e["content"]["status"] for e in events_of(client, task_id) if e["type"] == "status"]


RESUMED = ["queued", "running", "input_required", "queued", "running", "succeeded"]


def test_selector_team_asks_the_person_and_its_selector_goes_on_after_the_answer(workers, customer, client_for):
    org, user = customer
    client = client_for(user)
    members = replay_model(org, ["Which colour do you like?", "A blue logo. TERMINATE"], name="members")
    # the selector picks writer, then customer; after the answer (customer spoke last) it picks editor
    selector = replay_model(org, ["writer", "customer", "editor"], name="selector")
    writer, editor = make_agent(org, members, "writer"), make_agent(org, members, "editor")
    person = make_agent(org, members, "customer", human_input=True, description="The customer who decides")
    team = make_team(client, [writer, person, editor], mode="selector", selector_model=selector.pk,
                     termination={"text_mention": "TERMINATE", "max_messages": 10})

    task, done = ask_and_answer(client, team, writer, "Blue, please")

    assert task["input_request"]["agent"] == "customer"
    assert "Which colour do you like?" in task["input_request"]["prompt"]
    assert done.status == "succeeded", done.error
    assert said(done.pk, client) == [("user", "Make a logo"), ("writer", "Which colour do you like?"),
                                     ("customer", "Blue, please"), ("editor", "A blue logo. TERMINATE")]
    assert statuses(done.pk, client) == RESUMED


def test_swarm_hands_off_to_the_person_whose_answer_goes_back_to_the_agent_that_asked(workers, customer,
                                                                                       client_for):
    org, user = customer
    client = client_for(user)
    replies = [{"tool_calls": [{"name": "transfer_to_customer", "arguments": {}}]}, "A blue logo. TERMINATE"]
    with OpenAIStub(replies) as stub:
        model = stub_model(org, stub)
        writer = make_agent(org, model, "writer")
        person = make_agent(org, model, "customer", human_input=True, description="The customer who decides")
        team = make_team(client, [writer, person], mode="swarm",
                         termination={"text_mention": "TERMINATE", "max_messages": 10})

        task, done = ask_and_answer(client, team, writer, "Blue, please")

    assert task["input_request"]["agent"] == "customer"
    assert done.status == "succeeded", done.error
    messages = [(e["source"], e["content"]["message_type"]) for e in events_of(client, done.pk)
                if e["type"] == "message"]
    # the person's answer is a handoff back to the writer, as AgentChat's UserProxyAgent does in a swarm
    assert messages == [("user", "TextMessage"), ("writer", "HandoffMessage"), ("customer", "HandoffMessage"),
                        ("writer", "TextMessage")]
    assert said(done.pk, client)[2] == ("customer", "Blue, please")
    assert done.result["text"] == "A blue logo. TERMINATE"
    # the writer's second request carried the answer
    assert "Blue, please" in json.dumps(stub.requests[1]["body"]["messages"])
    assert statuses(done.pk, client) == RESUMED


def test_graph_runs_through_the_person_node_to_the_end(workers, customer, client_for):
    org, user = customer
    client = client_for(user)
    members = replay_model(org, ["Which colour do you like?", "A blue logo."], name="members")
    writer, editor = make_agent(org, members, "writer"), make_agent(org, members, "editor")
    person = make_agent(org, members, "customer", human_input=True, description="The customer who decides")
    graph = {"edges": [{"source": writer.pk, "target": person.pk}, {"source": person.pk, "target": editor.pk}]}
    team = make_team(client, [writer, person, editor], mode="graph", graph=graph, termination={"max_messages": 10})

    task, done = ask_and_answer(client, team, writer, "Blue, please")

    assert task["input_request"]["agent"] == "customer"
    assert task["input_request"]["prompt"] == "Which colour do you like?"
    assert done.status == "succeeded", done.error
    assert said(done.pk, client) == [("user", "Make a logo"), ("writer", "Which colour do you like?"),
                                     ("customer", "Blue, please"), ("editor", "A blue logo.")]
    assert "Digraph execution is complete" in done.result["stop_reason"]
    assert statuses(done.pk, client) == RESUMED


def ledger(done: bool, speaker: str, instruction: str) -> str:
    return json.dumps({
        "is_request_satisfied": {"reason": "checked", "answer": done},
        "is_in_loop": {"reason": "no", "answer": False},
        "is_progress_being_made": {"reason": "yes", "answer": True},
        "next_speaker": {"reason": "their turn", "answer": speaker},
        "instruction_or_question": {"reason": "next step", "answer": instruction},
    })


def test_magentic_one_asks_the_person_and_its_orchestrator_continues_without_planning_again(workers, customer,
                                                                                           client_for):
    org, user = customer
    client = client_for(user)
    orchestrator = replay_model(org, [
        "Facts: a logo needs a colour.", "Plan: ask the customer, then draw.",
        ledger(False, "customer", "Which colour do you like?"), ledger(False, "writer", "Draw it."),
        ledger(True, "writer", "-"), "Final answer: a blue logo."], name="orchestrator")
    members = replay_model(org, ["Drawn in blue."], name="members")
    writer = make_agent(org, members, "writer")
    person = make_agent(org, members, "customer", human_input=True, description="The customer who decides")
    team = make_team(client, [writer, person], mode="magentic_one", orchestrator_model=orchestrator.pk,
                     termination={"max_messages": 20})

    task, done = ask_and_answer(client, team, writer, "Blue, please")

    assert task["input_request"]["agent"] == "customer"
    assert task["input_request"]["prompt"] == "Which colour do you like?"
    assert done.status == "succeeded", done.error
    spoken = said(done.pk, client)
    assert [s for s in spoken if s[0] != "MagenticOneOrchestrator"] == [
        ("user", "Make a logo"), ("customer", "Blue, please"), ("writer", "Drawn in blue.")]
    # the orchestrator planned once: planning again after the answer would have taken the ledgers' replies
    assert spoken[-1] == ("MagenticOneOrchestrator", "Final answer: a blue logo.")
    assert done.result["text"] == "Final answer: a blue logo."
    assert statuses(done.pk, client) == RESUMED


# -- approvals in teams ----------------------------------------------------------------------------


def test_a_denied_call_of_a_selector_member_stops_only_that_call(workers, customer, client_for):
    org, user = customer
    client = client_for(user)
    calls = {"tool_calls": [{"name": "calculator", "arguments": {"expression": "6*7"}},
                            {"name": "word_count", "arguments": {"text": "one two three"}}]}
    with OpenAIStub([calls, "3 words; the product was not allowed.", "Fine. TERMINATE"]) as stub:
        model = stub_model(org, stub)
        counter = make_agent(org, model, "counter", tools=["calculator", "word_count"], approval=["calculator"])
        checker = make_agent(org, model, "checker")
        selector = replay_model(org, ["counter"], name="selector")  # after counter, checker is the only candidate
        team = make_team(client, [counter, checker], mode="selector", selector_model=selector.pk,
                         termination={"text_mention": "TERMINATE", "max_messages": 8})
        created = submit(client, team=team["id"], input="Multiply and count")
        task = waiting(client, created["id"])
        # only the gated call is put to the person
        assert task["input_request"]["agent"] == "counter"
        assert [c["name"] for c in task["input_request"]["tool_calls"]] == ["calculator"]
        denied = client.post(f"/api/tasks/{created['id']}/input/", {"approve": False}, format="json")
        assert denied.status_code == 200, denied.content
        done = finished(created["id"], timeout=60)
    assert done.status == "succeeded", done.error
    events = events_of(client, done.pk)
    results = {r["content"]["name"]: r["content"] for r in events if r["type"] == "tool_result"}
    assert results["calculator"]["is_error"] is True and "denied" in results["calculator"]["content"]
    assert results["word_count"] == {**results["word_count"], "is_error": False, "content": "3 words, 13 characters"}
    assert not any("42" in json.dumps(e["content"]) for e in events if e["type"] == "tool_result")
    assert said(done.pk, client) == [("user", "Multiply and count"), ("counter", "3 words; the product was not allowed."),
                                     ("checker", "Fine. TERMINATE")]
    # the model was told which call was denied and got the other's result
    told = {m["tool_call_id"]: m["content"] for m in stub.requests[1]["body"]["messages"] if m.get("role") == "tool"}
    assert sorted(told.values()) == sorted(["3 words, 13 characters", results["calculator"]["content"]])


# -- the work dir over a wait ------------------------------------------------------------------------


def code_call(code: str) -> str:
    return json.dumps({"tool_calls": [{"name": "CodeExecutor", "arguments": {"code": code}}]})


def test_files_the_code_wrote_before_the_question_are_there_after_the_answer(workers, customer, client_for):
    org, user = customer
    client = client_for(user)
    write = "import os\nos.makedirs('out', exist_ok=True)\nopen('out/notes.txt', 'w').write('kept over the wait')\n" \
            "os.symlink('/etc/hostname', 'link-out')\nprint('written')"
    read = "import os\nprint(open('out/notes.txt').read(), os.path.lexists('link-out'))"
    writer = make_agent(org, replay_model(org, [code_call(write), "Wrote the notes."], name="w"), "writer",
                        code_execution=True)
    reader = make_agent(org, replay_model(org, [code_call(read), "Read the notes."], name="r"), "reader",
                        code_execution=True)
    person = make_agent(org, replay_model(org, [], name="p"), "customer", human_input=True)
    graph = {"edges": [{"source": writer.pk, "target": person.pk}, {"source": person.pk, "target": reader.pk}]}
    team = make_team(client, [writer, person, reader], mode="graph", graph=graph)

    task, done = ask_and_answer(client, team, writer, "Go on")

    assert done.status == "succeeded", done.error
    outputs = [e["content"]["content"].strip() for e in events_of(client, done.pk)
               if e["type"] == "tool_result" and e["content"]["name"] == "CodeExecutor"]
    # the reader ran in a new sandbox: the file came back; the link out of the work dir did not
    assert outputs == ["written", "kept over the wait False"]
    assert [s for s, _ in said(done.pk, client)] == ["user", "writer", "customer", "reader"]


def test_max_messages_counts_the_whole_run_across_the_wait(workers, customer, client_for):
    org, user = customer
    client = client_for(user)
    members = replay_model(org, ["Which colour do you like?", "Blue it is.", "Anything else?"], name="members")
    writer = make_agent(org, members, "writer")
    person = make_agent(org, members, "customer", human_input=True)
    team = make_team(client, [writer, person], termination={"max_messages": 4})

    task, done = ask_and_answer(client, team, writer, "Blue, please")

    # user, writer, customer (the answer), writer: the fourth message ends it; it does not ask again
    assert done.status == "succeeded", done.error
    assert [s for s, _ in said(done.pk, client)] == ["user", "writer", "customer", "writer"]
    assert "Maximum number of messages 4 reached" in done.result["stop_reason"]
    assert statuses(done.pk, client) == RESUMED
