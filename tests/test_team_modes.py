"""Every team mode runs for real: API -> RQ -> `manage.py runworker` -> sandboxed AgentChat child, each to
its termination with the expected speakers. The model is AutoGen's replay client or tests/openai_stub.py
(whose tool calls are how a model hands off)."""
import json

import pytest

from agents.models import ModelConfig
from tests.execution_support import running
from tests.openai_stub import MODEL_INFO, OpenAIStub
from tests.test_execution import events_of, finished, make_agent, replay_model, submit

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def workers(django_db_setup, django_db_blocker):
    with running("modes1", reaper=True) as procs:
        yield procs


@pytest.fixture
def customer(make_customer):
    return make_customer()


def make_team(client, agents, **body) -> dict:
    response = client.post("/api/teams/", {"name": "team", "members": [a.pk for a in agents], **body}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def messages(task_id: int) -> list[dict]:
    return [e for e in events_of(task_id) if e["type"] == "message"]


def stub_model(customer, stub) -> ModelConfig:
    return ModelConfig.objects.create(customer=customer, name="stub", provider="openai", model="stub-model",
                                      base_url=stub.base_url, model_info=MODEL_INFO)


def test_swarm_hands_off_between_members_and_ends_on_a_handoff_to_the_user(workers, customer, client_for):
    org, user = customer
    client = client_for(user)
    replies = [{"tool_calls": [{"name": "transfer_to_critic", "arguments": {}}]},
               {"tool_calls": [{"name": "transfer_to_user", "arguments": {}}]}]
    with OpenAIStub(replies) as stub:
        model = stub_model(org, stub)
        writer, critic = make_agent(org, model, "writer"), make_agent(org, model, "critic")
        team = make_team(client, [writer, critic], mode="swarm", termination={"handoff": "user"})
        task = finished(submit(client, team=team["id"], input="Write, then review")["id"])
    assert task.status == "succeeded", task.error
    said = messages(task.pk)
    assert [(m["source"], m["content"]["message_type"]) for m in said] == [
        ("user", "TextMessage"), ("writer", "HandoffMessage"), ("critic", "HandoffMessage")]
    assert "Handoff to user from critic" in task.result["stop_reason"]
    # Each member was offered a handoff to the other member and to the user, as AgentChat tools.
    offered = [sorted(t["function"]["name"] for t in r["body"]["tools"]) for r in stub.requests]
    assert offered == [["transfer_to_critic", "transfer_to_user"], ["transfer_to_user", "transfer_to_writer"]]


def test_graph_follows_its_edges_and_conditions_to_the_end(workers, customer, client_for):
    org, user = customer
    client = client_for(user)
    model = replay_model(org, ["Draft one.", "REVISE: too long.", "Draft two.", "APPROVE.", "Published."])
    writer, critic, editor = (make_agent(org, model, n) for n in ("writer", "critic", "editor"))
    graph = {"edges": [{"source": writer.pk, "target": critic.pk},
                       {"source": critic.pk, "target": writer.pk, "condition": "REVISE"},
                       {"source": critic.pk, "target": editor.pk, "condition": "APPROVE"}]}
    team = make_team(client, [writer, critic, editor], mode="graph", graph=graph, termination={"max_messages": 20})

    task = finished(submit(client, team=team["id"], input="Write a haiku")["id"])

    assert task.status == "succeeded", task.error
    assert [m["source"] for m in messages(task.pk)] == ["user", "writer", "critic", "writer", "critic", "editor"]
    assert task.result["text"] == "Published."
    assert "Digraph execution is complete" in task.result["stop_reason"]


def test_magentic_one_orchestrator_plans_picks_speakers_and_answers(workers, customer, client_for):
    org, user = customer
    client = client_for(user)

    def ledger(done: bool, speaker: str, instruction: str) -> str:
        return json.dumps({
            "is_request_satisfied": {"reason": "checked", "answer": done},
            "is_in_loop": {"reason": "no", "answer": False},
            "is_progress_being_made": {"reason": "yes", "answer": True},
            "next_speaker": {"reason": "their turn", "answer": speaker},
            "instruction_or_question": {"reason": "next step", "answer": instruction},
        })

    orchestrator = replay_model(org, [
        "Facts: a haiku has three lines.", "Plan: writer drafts, critic checks.",
        ledger(False, "writer", "Draft the haiku."), ledger(False, "critic", "Check the draft."),
        ledger(True, "critic", "-"), "Final answer: the haiku is ready."], name="orchestrator")
    members = replay_model(org, ["An old silent pond.", "It scans: five, seven, five."], name="members")
    writer, critic = make_agent(org, members, "writer"), make_agent(org, members, "critic")
    team = make_team(client, [writer, critic], mode="magentic_one", orchestrator_model=orchestrator.pk,
                     termination={"max_messages": 20})

    task = finished(submit(client, team=team["id"], input="Write a haiku")["id"])

    assert task.status == "succeeded", task.error
    speakers = [m["source"] for m in messages(task.pk)]
    assert [s for s in speakers if s != "MagenticOneOrchestrator"] == ["user", "writer", "critic"]
    assert speakers[-1] == "MagenticOneOrchestrator"
    assert task.result["text"] == "Final answer: the haiku is ready."
    assert "checked" in task.result["stop_reason"]


def test_all_of_two_conditions_waits_for_both(workers, customer, client_for):
    org, user = customer
    client = client_for(user)
    model = replay_model(org, ["Draft. OK", "Looks fine.", "Draft again.", "Still fine."])
    writer, critic = make_agent(org, model, "writer"), make_agent(org, model, "critic")
    # OK is said by the writer first; the run ends once the critic has spoken too (and never reaches 4 messages).
    team = make_team(client, [writer, critic], termination={
        "any": [{"all": [{"text_mention": "OK"}, {"source_match": ["critic"]}]}, {"max_messages": 4}]})

    task = finished(submit(client, team=team["id"], input="Go")["id"])

    assert task.status == "succeeded", task.error
    assert [m["source"] for m in messages(task.pk)] == ["user", "writer", "critic"]
    assert "'critic' answered" in task.result["stop_reason"] and "OK" in task.result["stop_reason"]


def test_function_call_termination_ends_the_run_once_the_tool_ran(workers, customer, client_for):
    org, user = customer
    client = client_for(user)
    with OpenAIStub([{"tool_calls": [{"name": "calculator", "arguments": {"expression": "6*7"}}]},
                     "It is 42.", "More talk."]) as stub:
        model = stub_model(org, stub)
        solver = make_agent(org, model, "solver", tools=["calculator"])
        checker = make_agent(org, model, "checker")
        team = make_team(client, [solver, checker], termination={"function_call": "calculator", "max_messages": 6})
        task = finished(submit(client, team=team["id"], input="6*7?")["id"])
    assert task.status == "succeeded", task.error
    events = events_of(task.pk)
    assert [e["content"]["content"] for e in events if e["type"] == "tool_result"] == ["42"]
    assert "Function 'calculator' was executed" in task.result["stop_reason"]
    assert "checker" not in [m["source"] for m in messages(task.pk)]


def test_a_team_built_in_autogen_imports_runs_and_exports_back(workers, customer, client_for):
    from autogen_agentchat.agents import AssistantAgent
    from autogen_agentchat.conditions import HandoffTermination, MaxMessageTermination
    from autogen_agentchat.teams import Swarm
    from autogen_ext.models.openai import OpenAIChatCompletionClient

    org, user = customer
    client = client_for(user)
    replies = [{"tool_calls": [{"name": "transfer_to_reviewer", "arguments": {}}]}, "Reviewed: fine. Over to you.",
               {"tool_calls": [{"name": "transfer_to_user", "arguments": {}}]}]
    with OpenAIStub(replies) as stub:
        # given: a swarm an AutoGen user built and saved as component JSON (as AutoGen Studio does)
        model = OpenAIChatCompletionClient(model="stub-model", base_url=stub.base_url, api_key="sk-studio",
                                           model_info=MODEL_INFO)
        drafter = AssistantAgent("drafter", model_client=model, handoffs=["reviewer"], system_message="Draft.")
        reviewer = AssistantAgent("reviewer", model_client=model, handoffs=["drafter", "user"])
        swarm = Swarm([drafter, reviewer], termination_condition=HandoffTermination("user") | MaxMessageTermination(8))
        document = json.loads(swarm.dump_component().model_dump_json())
        # when: it is imported and run
        imported = client.post("/api/teams/import/", {"component": document}, format="json")
        assert imported.status_code == 201, imported.content
        team_id = imported.json()["teams"][0]["id"]
        task = finished(submit(client, team=team_id, input="Draft a note")["id"])
    # then: it ran as in AutoGen, through the broker (the masked key was not taken for a key)
    assert task.status == "succeeded", task.error
    assert [m["source"] for m in messages(task.pk)] == ["user", "drafter", "reviewer", "reviewer"]
    assert "Handoff to user" in task.result["stop_reason"]
    assert all(r["headers"]["authorization"] != "Bearer **********" for r in stub.requests)
    exported = client.get(f"/api/teams/{team_id}/component/").json()
    assert exported["provider"] == "autogen_agentchat.teams.Swarm"
    assert [p["config"]["name"] for p in exported["config"]["participants"]] == ["drafter", "reviewer"]


def test_a_swarm_that_handed_off_to_the_user_resumes_with_the_agent_that_asked(workers, customer, client_for):
    org, user = customer
    client = client_for(user)
    replies = [{"tool_calls": [{"name": "transfer_to_critic", "arguments": {}}]},
               {"tool_calls": [{"name": "transfer_to_user", "arguments": {}}]},
               "Thanks, noted. DONE"]
    with OpenAIStub(replies) as stub:
        model = stub_model(org, stub)
        writer, critic = make_agent(org, model, "writer"), make_agent(org, model, "critic")
        team = make_team(client, [writer, critic], mode="swarm",
                         termination={"any": [{"handoff": "user"}, {"text_mention": "DONE"}]})
        first = finished(submit(client, team=team["id"], input="Write, then ask me")["id"])
        second = finished(submit(client, team=team["id"], input="Yes, go ahead", thread=first.thread_id)["id"])
    assert first.status == "succeeded", first.error
    assert second.status == "succeeded", second.error
    # The answer went back to the critic, who had asked; its request carried the whole conversation.
    assert [(m["source"], m["content"]["message_type"]) for m in messages(second.pk)] == [
        ("user", "HandoffMessage"), ("critic", "TextMessage")]
    assert second.result["text"] == "Thanks, noted. DONE"
    assert stub.requests[2]["body"]["messages"][-1]["content"] == "Yes, go ahead"


# A member's code in a swarm or a graph: AgentChat's code tool, run by the sandbox's code runner.
UIDS = ("import os\nagent = int(open('/proc/1/status').read().split('Uid:')[1].split()[0])\n"
        "print('product', 6 * 7, 'code uid - agent uid', os.getuid() - agent)")


def code_call(code: str = UIDS) -> dict:
    return {"tool_calls": [{"name": "CodeExecutor", "arguments": {"code": code}}]}


def code_results(task_id: int) -> list[dict]:
    return [e["content"] for e in events_of(task_id) if e["type"] == "tool_result" and e["content"]["name"] == "CodeExecutor"]


def need_code_identity():
    from conftest import host_lacks
    from runtime.sandbox import probe_capabilities

    info = probe_capabilities()["layers"]["code_identity"]
    if not info["active"]:
        host_lacks(f"the code_identity layer: {info['detail']}")


def test_a_swarm_member_runs_its_code_in_the_code_runner_then_hands_off(workers, customer, client_for):
    need_code_identity()
    org, user = customer
    client = client_for(user)
    replies = [code_call(), {"tool_calls": [{"name": "transfer_to_reviewer", "arguments": {}}]}, "Checked. TERMINATE"]
    with OpenAIStub(replies) as stub:
        model = stub_model(org, stub)
        coder = make_agent(org, model, "coder", code_execution=True)
        reviewer = make_agent(org, model, "reviewer")
        team = make_team(client, [coder, reviewer], mode="swarm", termination={"text_mention": "TERMINATE"})
        task = finished(submit(client, team=team["id"], input="Compute 6*7 with code")["id"], timeout=60)
    assert task.status == "succeeded", task.error
    # the code ran under the sandbox's second uid (the agent's + 100000), not in the agent's process
    assert [r["content"].strip() for r in code_results(task.pk)] == ["product 42 code uid - agent uid 100000"]
    assert [(m["source"], m["content"]["message_type"]) for m in messages(task.pk)] == [
        ("user", "TextMessage"), ("coder", "HandoffMessage"), ("reviewer", "TextMessage")]
    # the coder was offered the code tool beside its handoff; the reviewer, who runs no code, was not
    offered = [sorted(t["function"]["name"] for t in r["body"].get("tools", [])) for r in stub.requests]
    assert offered[0] == ["CodeExecutor", "transfer_to_reviewer"] and "CodeExecutor" not in offered[2]


def test_a_graph_members_code_run_waits_for_approval_given_over_the_websocket(workers, customer, client_for):
    import asyncio

    from channels.testing import WebsocketCommunicator

    from autogen_platform.asgi import application
    from conftest import token_for
    from tests.test_human_input import waiting

    org, user = customer
    client = client_for(user)
    coder_model = replay_model(org, [json.dumps(code_call("print('ran', 6 * 7)")), "It printed 42."], name="coder")
    coder = make_agent(org, coder_model, "coder", code_execution=True, approval=["code_execution"])
    editor = make_agent(org, replay_model(org, ["Published: 42."], name="editor"), "editor")
    team = make_team(client, [coder, editor], mode="graph",
                     graph={"edges": [{"source": coder.pk, "target": editor.pk}]})
    created = submit(client, team=team["id"], input="Compute 6*7 with code")
    task = waiting(client, created["id"])
    assert task["input_request"]["kind"] == "approval" and task["input_request"]["agent"] == "coder"
    assert task["input_request"]["tool_calls"][0]["arguments"] == {"code": "print('ran', 6 * 7)"}
    assert code_results(created["id"]) == []  # nothing ran before the approval

    async def approve_over_the_socket():
        socket = WebsocketCommunicator(application, f"/ws/tasks/{created['id']}/?token={token_for(user)}")
        assert (await socket.connect(timeout=5))[0]
        await socket.send_json_to({"input": {"approve": True}})
        reply = await socket.receive_json_from(timeout=5)
        while reply.get("type") != "input_accepted":
            assert "error" not in reply, reply
            reply = await socket.receive_json_from(timeout=5)
        await socket.disconnect()
        return reply

    assert asyncio.run(approve_over_the_socket())["status"] == "queued"
    done = finished(created["id"], timeout=60)
    assert done.status == "succeeded", done.error
    assert [r["content"].strip() for r in code_results(done.pk)] == ["ran 42"]
    assert [m["source"] for m in messages(done.pk)] == ["user", "coder", "editor"]
    assert done.result["text"] == "Published: 42."
    assert "Digraph execution is complete" in done.result["stop_reason"]
