"""An AutoGen Studio user's walk-through (issue 13, "Done when"): a team built in AutoGen Studio (its component
JSON, as AgentChat dumps it) is imported, run, answered mid-run, given a tool of the customer's own, exported,
and loaded back in AutoGen's own `load_component` (a separate interpreter) where it runs, the user proxy
asking on the console.

Real workers and sandboxed AgentChat children; the model is tests/openai_stub.py on the platform and AutoGen's
replay client in AutoGen."""
import asyncio
import json
import subprocess
import sys
import threading
import time
from typing import Literal

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from agents.models import Agent, ModelConfig, Tool
from autogen_platform import realtime
from tasks.models import Task, TaskEvent
from tasks.services import task_create
from tests.execution_support import running, wait_for
from tests.openai_stub import MODEL_INFO, OpenAIStub
from tests.test_components import replay
from tests.test_human_input import events_of, finished, make_agent, replay_model, submit, waiting
from tests.test_team_modes import make_team

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

WEATHER = '''def get_weather(city: str, unit: Literal["C", "F"] = "C") -> str:
    """Get the weather for a city."""
    return f"{city}: {sunny(unit)}"


def sunny(unit):
    return "21 degrees " + unit + ", sunny"
'''


def get_weather(city: str, unit: Literal["C", "F"] = "C") -> str:
    """Get the weather for a city."""
    return f"{city}: {sunny(unit)}"


def sunny(unit):
    return "21 degrees " + unit + ", sunny"


# Runs in a fresh interpreter as an AutoGen user would; the user proxy reads its answer from stdin.
LOADER = r"""
import asyncio, json, sys, warnings
warnings.simplefilter("ignore")
from autogen_core import ComponentLoader

async def main():
    team = ComponentLoader.load_component(json.load(open(sys.argv[1])))
    result = await team.run(task=sys.argv[2])
    out = {"classes": [type(p).__name__ for p in team._participants],
           "messages": [[m.source, m.type, m.to_text()] for m in result.messages], "stop_reason": result.stop_reason}
    print("\nRESULT " + json.dumps(out))

asyncio.run(main())
"""


@pytest.fixture(scope="module")
def workers(django_db_setup, django_db_blocker):
    with running("studio13") as procs:
        yield procs


def studio_team(base_url: str) -> dict:
    """What AutoGen Studio exports for a team made in its builder: AgentChat's dump, the name in `label`."""
    from autogen_agentchat.agents import AssistantAgent, UserProxyAgent
    from autogen_agentchat.conditions import MaxMessageTermination, TextMentionTermination
    from autogen_agentchat.teams import RoundRobinGroupChat
    from autogen_core.tools import FunctionTool
    from autogen_ext.models.openai import OpenAIChatCompletionClient

    client = OpenAIChatCompletionClient(model="stub-model", base_url=base_url, api_key="sk-studio", model_info=MODEL_INFO)
    planner = AssistantAgent("planner", model_client=client, system_message="Plan trips. Ask the traveller.",
                             description="Plans the trip")
    tool = FunctionTool(get_weather, description="Get the weather for a city",
                        global_imports=[{"module": "typing", "imports": ["Literal"]}])
    writer = AssistantAgent("writer", model_client=client, tools=[tool], system_message="Write the plan.")
    person = UserProxyAgent("traveller", description="The person travelling")
    team = RoundRobinGroupChat([planner, person, writer],
                               termination_condition=TextMentionTermination("TERMINATE") | MaxMessageTermination(10))
    dumped = json.loads(team.dump_component().model_dump_json())
    # the tool as written in Studio's editor: the function, then a helper it calls
    dumped["config"]["participants"][2]["config"]["workbench"][0]["config"]["tools"][0]["config"]["source_code"] = \
        WEATHER
    return {**dumped, "label": "Trip planners"}


def calls(*pairs) -> dict:
    return {"tool_calls": [{"name": name, "arguments": arguments} for name, arguments in pairs]}


def test_a_studio_team_imports_runs_asks_mid_run_takes_an_own_tool_and_loads_back_in_autogen(
        workers, make_customer, client_for, tmp_path):
    org, user = make_customer()
    client = client_for(user)
    script = ["Where to, and when?", calls(("get_weather", {"city": "Lisbon"})),
              "Lisbon on Saturday: sunny. TERMINATE"]
    with OpenAIStub(script) as stub:
        # import: the user proxy becomes a member a person answers for, the FunctionTool the customer's tool
        imported = client.post("/api/teams/import/", {"component": studio_team(stub.base_url)}, format="json")
        assert imported.status_code == 201, imported.content
        body = imported.json()
        assert body["teams"][0]["name"] == "Trip planners"
        assert [a["name"] for a in body["agents"]] == ["planner", "traveller", "writer"]
        assert [t["name"] for t in body["tools"]] == ["get_weather"]
        tool = Tool.objects.get(customer=org, name="get_weather")
        assert tool.parameters == {"type": "object", "required": ["city"], "properties": {
            "city": {"type": "string"}, "unit": {"enum": ["C", "F"], "default": "C"}}}
        assert tool.source.startswith("from typing import Literal\n")
        assert Agent.objects.get(customer=org, name="traveller").human_input

        # run: the planner asks, the task waits for the person; the answer resumes it; the tool runs in the sandbox
        task = submit(client, team=body["teams"][0]["id"], input="Plan a weekend.")
        asked = waiting(client, task["id"], timeout=90)
        assert asked["input_request"]["agent"] == "traveller"
        assert asked["input_request"]["prompt"] == "Where to, and when?"
        answered = client.post(f"/api/tasks/{task['id']}/input/", {"text": "Lisbon, Saturday"}, format="json")
        assert answered.status_code == 200, answered.content
        done = finished(task["id"], timeout=60)
        assert done.status == "succeeded", done.error
        results = [e["content"] for e in events_of(client, task["id"]) if e["type"] == "tool_result"]
        assert results == [{"name": "get_weather", "call_id": "call_0", "content": "Lisbon: 21 degrees C, sunny",
                            "is_error": False}]
        assert [(e["source"], e["content"]["text"]) for e in events_of(client, task["id"]) if e["type"] == "message"] \
            == [("user", "Plan a weekend."), ("planner", "Where to, and when?"), ("traveller", "Lisbon, Saturday"),
                ("writer", "Lisbon on Saturday: sunny. TERMINATE")]

    # a tool of their own, given to the planner
    created = client.post("/api/tools/", {
        "name": "eur_to_usd", "description": "Euros in dollars.", "source": "RATE = 1.5\n\n\ndef eur_to_usd(amount: float) -> str:\n"
                                                                        "    return f'{amount * RATE:.2f} USD'\n",
        "parameters": {"type": "object", "properties": {"amount": {"type": "number"}}, "required": ["amount"]}},
        format="json")
    assert created.status_code == 201, created.content
    planner = Agent.objects.get(customer=org, name="planner")
    assert client.patch(f"/api/agents/{planner.pk}/", {"tools": ["eur_to_usd"]}, format="json").status_code == 200

    # export: the user proxy is AgentChat's UserProxyAgent, both tools FunctionTools; no key anywhere
    exported = client.get(f"/api/teams/{body['teams'][0]['id']}/component/")
    assert exported.status_code == 200 and b"sk-studio" not in exported.content
    doc = json.loads(exported.content)
    assert doc["label"] == doc["config"]["name"] == "Trip planners"  # the name AutoGen Studio shows
    assert [p["provider"].rsplit(".", 1)[1] for p in doc["config"]["participants"]] == [
        "AssistantAgent", "UserProxyAgent", "AssistantAgent"]
    assert doc["config"]["participants"][1]["config"] == {"name": "traveller", "description": "The person travelling"}

    # load it back in AutoGen, with replay model clients; the person answers on the console
    for participant, answers in zip(doc["config"]["participants"], (
            [[("eur_to_usd", {"amount": 100})], "100 EUR is 150.00 USD. Where to?"], None,
            [[("get_weather", {"city": "Porto", "unit": "F"})], "Porto. TERMINATE"])):
        if answers:
            participant["config"]["model_client"] = replay(*answers)
    (tmp_path / "team.json").write_text(json.dumps(doc))
    ran = subprocess.run([sys.executable, "-c", LOADER, str(tmp_path / "team.json"), "Plan a weekend."], cwd=tmp_path,
                         input="Porto\n", capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr[-3000:]
    run = json.loads(ran.stdout.split("RESULT ", 1)[1])
    assert run["classes"] == ["AssistantAgent", "UserProxyAgent", "AssistantAgent"]
    executed = [m for m in run["messages"] if m[1] == "ToolCallExecutionEvent"]
    assert "150.00 USD" in executed[0][2] and "Porto: 21 degrees F, sunny" in executed[1][2]
    assert [m[0] for m in run["messages"] if m[1] == "TextMessage"] == ["user", "planner", "traveller", "writer"]
    assert ["traveller", "TextMessage", "Porto"] in run["messages"]

    # and imported again, the same functions are the customer's tools already: reused, not duplicated
    again = client.post("/api/teams/import/", {"component": json.loads(exported.content)}, format="json")
    assert again.status_code == 201, again.content
    assert again.json()["tools"] == []
    assert Tool.objects.filter(customer=org).count() == 2
    assert TaskEvent.objects.filter(task_id=task["id"], type="input_request").count() == 1


def test_a_failure_without_text_in_agentchat_names_where_it_failed(workers, make_customer, client_for):
    # given: a selector model that answers with a tool call where AgentChat asserts a speaker's name (text)

    org, user = make_customer()
    client = client_for(user)
    members = replay_model(org, ["Hello."], name="members")
    selector = replay_model(org, [json.dumps(calls(("pick", {})))], name="selector")
    team = make_team(client, [make_agent(org, members, "one"), make_agent(org, members, "two")], mode="selector",
                     selector_model=selector.pk, termination={"max_messages": 4})

    done = finished(submit(client, team=team["id"], input="Go.")["id"], timeout=60)

    # then: not a bare "AssertionError: " but the place and the check that failed
    assert done.status == "failed" and done.error["code"] == "agent_error"
    assert done.error["message"].startswith("AssertionError in autogen_agentchat/teams/_group_chat/"
                                            "_selector_group_chat.py, line "), done.error
    assert done.error["message"].endswith("assert isinstance(response.content, str)"), done.error


def test_live_tokens_name_the_agent_as_its_events_do(workers, make_customer):
    # given: an agent whose name is not an identifier (AgentChat knows it as trip_planner), streaming its answer

    org, _ = make_customer()
    release = threading.Event()
    with OpenAIStub([{"hold": release, "text": "Lisbon it is. TERMINATE"}]) as stub:
        model = ModelConfig.objects.create(customer=org, name="local", provider="openai", model="stub-model",
                                           base_url=stub.base_url, model_info=MODEL_INFO)
        task, _ = task_create(actor="test", customer=org, input="Where?", agent=make_agent(org, model, "trip planner"))

        async def listen():
            layer = get_channel_layer()
            channel = await layer.new_channel()
            await layer.group_add(realtime.task_group(task.pk), channel)
            await asyncio.get_running_loop().run_in_executor(
                None, lambda: wait_for(lambda: stub.requests, message="the model call"))
            release.set()
            sources, deadline = set(), time.monotonic() + 30
            while time.monotonic() < deadline:
                message = await asyncio.wait_for(layer.receive(channel), 30)
                if message["type"] == "task.token":
                    sources.add(message["source"])
                if message["type"] == "task.status" and message["status"] in Task.FINISHED:
                    return sources
            return sources

        sources = async_to_sync(listen)()

    # then: the tokens and the stored message carry the same name, the one the customer gave
    assert sources == {"trip planner"}
    assert TaskEvent.objects.get(task=task, type="message", source="trip planner").content["text"] == \
        "Lisbon it is. TERMINATE"
