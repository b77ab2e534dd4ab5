"""AutoGen component interop: GET /api/{agents,teams}/{id}/component/ loads in AutoGen's own load_component
(in a separate Python process, the model clients swapped for replay clients) and runs as the platform runs it;
POST /api/{agents,teams}/import/ reads such JSON (and gallery files) as data, refusing unsupported parts by path."""
import json
import subprocess
import sys

import pytest

from agents.models import Agent, ModelConfig, Tool
from specs.apply import spec_apply
from specs.export import spec_dump_yaml, spec_export
from specs.reader import spec_load
from teams.models import Team
from tests.api_support import assert_error, make_agent, make_model, make_team

pytestmark = pytest.mark.django_db

MODEL_INFO = {"vision": False, "function_calling": True, "json_output": True, "family": "unknown",
              "structured_output": False}
# Runs in a fresh interpreter, as an AutoGen user would: load_component, then run the team or agent.
LOADER = r"""
import asyncio, json, sys, warnings
warnings.simplefilter("ignore")
from autogen_agentchat.base import TaskResult
from autogen_core import ComponentLoader

async def run(job):
    runnable = ComponentLoader.load_component(job["component"])
    result = await runnable.run(task=job["task"])
    return {
        "class": type(runnable).__name__,
        "messages": [[m.source, m.type, m.to_text()] for m in result.messages],
        "stop_reason": result.stop_reason,
    }

jobs = json.load(sys.stdin)
print(json.dumps([asyncio.run(run(job)) for job in jobs]))
"""


def replay(*answers) -> dict:
    """A ReplayChatCompletionClient component; an answer that is a list of (tool, arguments) is a tool call."""
    completions = []
    for answer in answers:
        if isinstance(answer, str):
            completions.append(answer)
        else:
            completions.append({"finish_reason": "function_calls", "cached": False,
                                "usage": {"prompt_tokens": 1, "completion_tokens": 1},
                                "content": [{"id": f"call_{i}", "name": name, "arguments": json.dumps(args)}
                                            for i, (name, args) in enumerate(answer)]})
    return {"provider": "autogen_ext.models.replay.ReplayChatCompletionClient",
            "component_type": "replay_chat_completion_client", "version": 1, "component_version": 1,
            "description": "", "label": "ReplayChatCompletionClient",
            "config": {"chat_completions": completions, "model_info": MODEL_INFO}}


def with_replay(component: dict, per_agent: dict, team_model=None) -> dict:
    """The component with each agent's model client (and the team's) replaced by a replay client."""
    component = json.loads(json.dumps(component))
    agents = component["config"]["participants"] if component["component_type"] == "team" else [component]
    for agent in agents:
        if agent["config"].get("model_client") is not None:
            agent["config"]["model_client"] = replay(*per_agent[agent["config"]["name"]])
    if team_model is not None:
        component["config"]["model_client"] = replay(*team_model)
    return component


def load_and_run(*jobs) -> list[dict]:
    done = subprocess.run([sys.executable, "-c", LOADER], input=json.dumps(list(jobs)), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def openai_model(customer, name="gpt"):
    return make_model(customer, name=name, provider="openai", model="gpt-4o-mini", base_url="https://api.example.com/v1",
                      api_key="sk-secret-123", model_info={**MODEL_INFO, "json_output": False})


@pytest.fixture
def customer(owner):
    return owner.membership.customer


def test_exported_teams_load_in_autogen_and_run_as_on_the_platform(api, customer):
    model = openai_model(customer)
    writer, critic, editor = (make_agent(customer, model=model, name=n) for n in ("writer", "critic", "editor"))
    coder = make_agent(customer, model=model, name="the coder", tools=["calculator"])
    graph = make_team(customer, [writer, critic, editor], name="pipeline", mode="graph", termination={"max_messages": 20},
                      graph={"edges": [{"source": writer.pk, "target": critic.pk},
                                       {"source": critic.pk, "target": writer.pk, "condition": "REVISE"},
                                       {"source": critic.pk, "target": editor.pk, "condition": "APPROVE"}]})
    swarm = make_team(customer, [writer, critic], name="relay", mode="swarm",
                      termination={"any": [{"handoff": "user"}, {"max_messages": 9}]})
    orchestrator = make_model(customer, name="orchestrator")
    magentic = make_team(customer, [writer, critic], name="m1", mode="magentic_one", orchestrator_model=orchestrator,
                         termination={"all": [{"source_match": ["critic"]}, {"max_messages": 2}]})

    exported = {name: api.get(f"/api/teams/{team.pk}/component/") for name, team in
                (("graph", graph), ("swarm", swarm), ("magentic", magentic))}
    exported["agent"] = api.get(f"/api/agents/{coder.pk}/component/")

    for response in exported.values():
        assert response.status_code == 200, response.content
        assert b"sk-secret-123" not in response.content and b"api_key" not in response.content
    components = {name: response.json() for name, response in exported.items()}
    assert components["graph"]["provider"] == "autogen_agentchat.teams.GraphFlow"
    assert components["swarm"]["provider"] == "autogen_agentchat.teams.Swarm"
    assert components["magentic"]["provider"] == "autogen_agentchat.teams.MagenticOneGroupChat"
    assert components["agent"]["provider"] == "autogen_agentchat.agents.AssistantAgent"
    assert components["agent"]["config"]["model_client"]["config"] == {
        "model": "gpt-4o-mini", "base_url": "https://api.example.com/v1", "model_info": {**MODEL_INFO, "json_output": False}}

    results = load_and_run(
        {"task": "Write a haiku", "component": with_replay(components["graph"], {
            "writer": ["Draft one.", "Draft two."], "critic": ["REVISE it.", "APPROVE."], "editor": ["Published."]})},
        {"task": "Write, then review", "component": with_replay(components["swarm"], {
            "writer": [[("transfer_to_critic", {})]], "critic": [[("transfer_to_user", {})]]})},
        {"task": "Write a haiku", "component": with_replay(components["magentic"], {
            "writer": ["An old silent pond."], "critic": ["Five, seven, five."]},
            team_model=["Facts.", "Plan.", _ledger("writer"), _ledger("critic"), "unused"])},
        {"task": "What is 6*7?", "component": with_replay(components["agent"], {
            "the_coder": [[("calculator", {"expression": "6*7"})], "It is 42."]})},
    )

    graph_run, swarm_run, magentic_run, agent_run = results
    assert graph_run["class"] == "GraphFlow"
    assert [m[0] for m in graph_run["messages"] if m[1] == "TextMessage"] == [
        "user", "writer", "critic", "writer", "critic", "editor"]
    assert [(m[0], m[1]) for m in swarm_run["messages"] if m[1] in ("TextMessage", "HandoffMessage")] == [
        ("user", "TextMessage"), ("writer", "HandoffMessage"), ("critic", "HandoffMessage")]
    assert "Handoff to user from critic" in swarm_run["stop_reason"]
    spoken = [m[0] for m in magentic_run["messages"] if m[1] == "TextMessage" and m[0] != "MagenticOneOrchestrator"]
    assert spoken == ["user", "writer", "critic"]
    assert "'critic' answered" in magentic_run["stop_reason"]
    # The built-in tool's exported source runs as it is in AutoGen: the calculator answers 42.
    assert ["the_coder", "ToolCallExecutionEvent"] == agent_run["messages"][2][:2] and "42" in agent_run["messages"][2][2]
    assert agent_run["messages"][-1][2] == "It is 42."


def _ledger(speaker: str) -> str:
    return json.dumps({
        "is_request_satisfied": {"reason": "not yet", "answer": False},
        "is_in_loop": {"reason": "no", "answer": False},
        "is_progress_being_made": {"reason": "yes", "answer": True},
        "next_speaker": {"reason": "their turn", "answer": speaker},
        "instruction_or_question": {"reason": "next", "answer": f"{speaker}, your turn."},
    })


def test_an_exported_team_imports_back_as_the_same_team(api, customer):
    model = openai_model(customer)
    writer, critic = make_agent(customer, model=model, name="writer", system_message="Write."), \
        make_agent(customer, model=model, name="critic", tools=["word_count"])
    team = make_team(customer, [writer, critic], name="duo", mode="graph",
                     termination={"any": [{"text_mention": "DONE"}, {"source_match": ["critic"]}]},
                     graph={"edges": [{"source": writer.pk, "target": critic.pk, "condition": "READY"}]})
    exported = api.get(f"/api/teams/{team.pk}/component/").json()

    response = api.post("/api/teams/import/", {"component": exported}, format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["models"] == []  # the identical model configuration is reused
    assert [a["name"] for a in body["agents"]] == ["writer-2", "critic-2"]
    assert body["teams"] == [{"id": body["teams"][0]["id"], "name": "duo-2"}]
    assert {r["name"] for r in body["renamed"]} == {"writer-2", "critic-2", "duo-2"}
    # the built-in tool's own exported source comes back: nothing to note
    assert not any(i["path"].endswith("tools[0].config.source_code") for i in body["ignored"])
    copy = api.get(f"/api/teams/{body['teams'][0]['id']}/").json()
    new_writer, new_critic = (Agent.objects.get(name=n) for n in ("writer-2", "critic-2"))
    assert copy["mode"] == "graph" and copy["members"] == [new_writer.pk, new_critic.pk]
    assert copy["termination"] == {"any": [{"text_mention": "DONE"}, {"source_match": ["critic-2"]}]}
    assert copy["graph"] == {"edges": [{"source": new_writer.pk, "target": new_critic.pk, "condition": "READY"}]}
    assert new_writer.system_message == "Write." and new_critic.tools == ["word_count"]
    assert new_writer.model_id == model.pk


@pytest.mark.parametrize("where, provider, path", [
    ("participant", "tests.component_canary.Boom", "component.config.participants[1].provider"),
    ("model", "autogen_ext.models.anthropic.AnthropicChatCompletionClient",
     "component.config.participants[0].config.model_client.provider"),
    ("termination", "tests.component_canary.Boom", "component.config.termination_condition.config.conditions[1].provider"),
    ("team", "tests.component_canary.Boom", "component.provider"),
])
def test_unsupported_parts_are_refused_by_path_and_nothing_named_is_imported(api, customer, where, provider, path):
    writer = make_agent(customer, model=openai_model(customer), name="writer")
    team = make_team(customer, [writer, make_agent(customer, model=writer.model, name="critic")], name="duo",
                     termination={"any": [{"max_messages": 3}, {"text_mention": "DONE"}]})
    document = api.get(f"/api/teams/{team.pk}/component/").json()
    target = {"participant": lambda d: d["config"]["participants"][1],
              "model": lambda d: d["config"]["participants"][0]["config"]["model_client"],
              "termination": lambda d: d["config"]["termination_condition"]["config"]["conditions"][1],
              "team": lambda d: d}[where](document)
    target["provider"] = provider
    counts = (Agent.objects.count(), Team.objects.count(), ModelConfig.objects.count())
    sys.modules.pop("tests.component_canary", None)

    error = assert_error(api.post("/api/teams/import/", {"component": document}, format="json"), 400,
                         "validation_error")

    assert path in error["details"], error
    assert provider in error["details"][path][0]
    assert (Agent.objects.count(), Team.objects.count(), ModelConfig.objects.count()) == counts
    assert "tests.component_canary" not in sys.modules


def function_tool(name: str, source: str, description: str = "", global_imports=()) -> dict:
    return {"provider": "autogen_core.tools.FunctionTool", "component_type": "tool", "version": 1,
            "component_version": 1, "description": "", "label": "FunctionTool",
            "config": {"source_code": source, "name": name, "description": description,
                       "global_imports": list(global_imports), "has_cancellation_support": False}}


def agent_with_tools(name: str, *tools) -> dict:
    from agents.components import assistant_component

    document = assistant_component(ident=name, description="", system_message="", tools=[],
                                   model_config=ModelConfig(provider="replay", responses=["Hi."]))
    document["config"]["workbench"][0]["config"]["tools"] = list(tools)
    return document


def test_a_function_tool_becomes_the_customers_tool_and_its_code_never_runs_in_the_platform(api, customer):
    # given: a FunctionTool whose source, if the platform ran it, would import the canary module
    source = "import tests.component_canary\n\n\ndef exfiltrate(what: str = 'env') -> str:\n    import os\n" \
             "    return str(os.environ)\n"
    sys.modules.pop("tests.component_canary", None)

    response = api.post("/api/agents/import/", {"component": agent_with_tools(
        "spy", function_tool("exfiltrate", source, "Read the environment."))}, format="json")

    assert response.status_code == 201, response.content
    assert [t["name"] for t in response.json()["tools"]] == ["exfiltrate"]
    tool = Tool.objects.get(customer=customer, name="exfiltrate")
    assert tool.source == source and tool.description == "Read the environment."
    assert tool.parameters == {"type": "object", "properties": {"what": {"type": "string", "default": "env"}}}
    assert Agent.objects.get(customer=customer, name="spy").tools == ["exfiltrate"]
    assert "tests.component_canary" not in sys.modules  # parsed, never run: it runs only in a task's sandbox


def test_function_tool_names_that_are_taken_follow_the_rule_or_are_refused_by_path(api, customer):
    from agents.tools import tool_create

    tool_create(actor="test", customer=customer, name="shout", description="Shout a word.",
                parameters={"type": "object", "properties": {"word": {"type": "string"}}, "required": ["word"]},
                source="import string\n\n\ndef shout(word: str) -> str:\n    return string.capwords(word).upper()\n")
    path = "component.config.workbench[0].config.tools[0].config.name"
    same = function_tool("shout", "def shout(word: str) -> str:  # the same function, laid out otherwise\n"
                                  "    return string.capwords(word).upper()\n", "Shout a word.", ["string"])
    other = function_tool("shout", "def shout(word: str) -> str:\n    return word + '!'\n", "Shout a word.")
    counts = (Agent.objects.count(), Tool.objects.count())

    # another function under the customer's tool's name: refused, naming the part, nothing created
    error = assert_error(api.post("/api/agents/import/", {"component": agent_with_tools("a", other)}, format="json"),
                         400, "validation_error")
    assert list(error["details"]) == [path]
    assert "'shout' is the name of your tool" in error["message"] and "rename the function" in error["message"]
    assert (Agent.objects.count(), Tool.objects.count()) == counts
    # the same function (the customer's tool as exported) uses the existing tool
    reused = api.post("/api/agents/import/", {"component": agent_with_tools("b", same)}, format="json")
    assert reused.status_code == 201, reused.content
    assert reused.json()["tools"] == [] and Tool.objects.count() == counts[1]
    assert Agent.objects.get(name="b").tools == ["shout"]
    # two different functions of one name in one document: the second is refused
    twins = {"component": agent_with_tools("c", function_tool("echo", "def echo(x: str) -> str:\n    return x\n"),
                                                function_tool("echo", "def echo(x: str) -> str:\n    return x * 2\n"))}
    error = assert_error(api.post("/api/agents/import/", twins, format="json"), 400, "validation_error")
    assert "also the name of a different FunctionTool at component.config.workbench[0].config.tools[0]" in \
        error["details"]["component.config.workbench[0].config.tools[1].config.name"][0]
    # a built-in's name with other code: the built-in runs, and the import says so
    studio_calculator = function_tool("calculator", "def calculator(a: float, b: float, operator: str) -> str:\n"
                                                    "    return str(a + b)\n")
    builtin = api.post("/api/agents/import/", {"component": agent_with_tools("d", studio_calculator)}, format="json")
    assert builtin.status_code == 201, builtin.content
    assert Agent.objects.get(name="d").tools == ["calculator"] and not Tool.objects.filter(name="calculator").exists()
    assert {"path": "component.config.workbench[0].config.tools[0].config.source_code",
            "reason": "'calculator' is a built-in tool: the platform's own calculator runs in its place, with its own "
                      "parameters (GET /api/tools/)"} in builtin.json()["ignored"]
    # a parameter whose type has no JSON Schema here is refused with its name
    odd = function_tool("odd", "def odd(x: MyModel) -> str:\n    return ''\n")
    error = assert_error(api.post("/api/agents/import/", {"component": agent_with_tools("e", odd)}, format="json"),
                         400, "validation_error")
    assert "parameter 'x': the annotation MyModel has no JSON Schema here" in \
        error["details"]["component.config.workbench[0].config.tools[0].config.source_code"][0]
    # FunctionTool(get_weather, name="weather"): a tool here is named like its function
    renamed = function_tool("weather", "def get_weather(city: str) -> str:\n    return city\n")
    error = assert_error(api.post("/api/agents/import/", {"component": agent_with_tools("f", renamed)}, format="json"),
                         400, "validation_error")
    assert error["details"] == {"component.config.workbench[0].config.tools[0].config.source_code": [
        "the FunctionTool is named 'weather' but its function is 'get_weather': a tool here is named like its "
        "function (rename one of them)"]}


def test_an_autogen_studio_gallery_file_imports_its_teams_and_agents(api, customer):
    from autogen_agentchat.agents import AssistantAgent
    from autogen_agentchat.conditions import MaxMessageTermination, TextMentionTermination
    from autogen_agentchat.teams import RoundRobinGroupChat
    from autogen_ext.models.openai import OpenAIChatCompletionClient

    # What AutoGen Studio's gallery holds: components dumped by AgentChat itself.
    client = OpenAIChatCompletionClient(model="gpt-4o-mini", api_key="sk-from-studio")
    assistant = AssistantAgent("assistant_agent", model_client=client, system_message="Be brief.")
    team = RoundRobinGroupChat([assistant], termination_condition=TextMentionTermination("TERMINATE")
                               | MaxMessageTermination(10))
    dump = (lambda c: json.loads(c.dump_component().model_dump_json()))
    gallery = {"id": "gallery_default", "name": "Default Component Gallery", "url": None,
               "metadata": {"author": "AutoGen Team", "version": "1.0.0"},
               "components": {"agents": [dump(assistant)], "models": [dump(client)], "tools": [],
                              "terminations": [], "teams": [dump(team)]}}

    teams = api.post("/api/teams/import/", gallery, format="json")
    agents = api.post("/api/agents/import/", gallery, format="json")

    assert teams.status_code == 201 and agents.status_code == 201, (teams.content, agents.content)
    created = Team.objects.get(pk=teams.json()["teams"][0]["id"])
    assert created.name == "RoundRobinGroupChat" and created.mode == "round_robin"
    assert created.termination == {"any": [{"text_mention": "TERMINATE"}, {"max_messages": 10}]}
    assert [a["name"] for a in agents.json()["agents"]] == ["assistant_agent-2"]
    model = ModelConfig.objects.get(pk=teams.json()["models"][0]["id"])
    assert model.provider == "openai" and model.model == "gpt-4o-mini" and not model.has_api_key
    assert any(i["path"].endswith("model_client.config.api_key") for i in teams.json()["ignored"])
    # the sections an import does not take are listed, never dropped silently
    assert {i["path"]: i["reason"] for i in teams.json()["ignored"] if i["path"].count(".") == 1} == {
        "components.agents": "not imported here: import the gallery's agents with POST /api/agents/import/",
        "components.models": "not imported on their own: the teams bring what they use (models as model "
                             "configurations, FunctionTools as your tools)"}
    assert {"path": "components.teams", "reason": "not imported here: import the gallery's teams with "
                                                  "POST /api/teams/import/"} in agents.json()["ignored"]


def test_another_customers_team_has_no_component(api, make_customer):
    other, _ = make_customer("globex")
    team = make_team(other, [make_agent(other)])

    assert_error(api.get(f"/api/teams/{team.pk}/component/"), 404, "not_found")
    assert_error(api.get(f"/api/agents/{team.members.first().agent_id}/component/"), 404, "not_found")


def test_selector_and_code_running_teams_export_and_run_in_autogen(api, customer, tmp_path):
    model = openai_model(customer)
    coder = make_agent(customer, model=model, name="coder", code_execution=True)
    reviewer = make_agent(customer, model=model, name="reviewer")
    pair = make_team(customer, [coder, reviewer], name="pair", termination={"max_messages": 4})
    panel = make_team(customer, [coder, reviewer], name="panel", mode="selector",
                      selector_model=make_model(customer, name="picker"), termination={"text_mention": "DONE"})
    pair_doc = api.get(f"/api/teams/{pair.pk}/component/").json()
    panel_doc = api.get(f"/api/teams/{panel.pk}/component/").json()
    assert [p["provider"].rsplit(".", 1)[1] for p in pair_doc["config"]["participants"]] == [
        "AssistantAgent", "CodeExecutorAgent", "AssistantAgent"]

    done = subprocess.run([sys.executable, "-c", LOADER], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          input=json.dumps([
                              {"task": "Compute", "component": with_replay(pair_doc, {
                                  "coder": ["```python\nprint(6 * 7)\n```"], "reviewer": ["Right."]})},
                              {"task": "Compute", "component": with_replay(panel_doc, {
                                  "coder": ["Here: 42."], "reviewer": ["Checked. DONE"]},
                                  team_model=["coder", "reviewer"])}]))
    assert done.returncode == 0, done.stderr[-3000:]
    pair_run, panel_run = json.loads(done.stdout)
    assert [m[0] for m in pair_run["messages"] if m[1] == "TextMessage"] == ["user", "coder", "coder_executor",
                                                                             "reviewer"]
    assert any(m[0] == "coder_executor" and m[2].strip() == "42" for m in pair_run["messages"])
    assert [m[0] for m in panel_run["messages"] if m[1] == "TextMessage"] == ["user", "coder", "reviewer"]
    assert "DONE" in panel_run["stop_reason"]
    # and a team read back refuses two participants of one name, by path
    panel_doc["config"]["participants"][1]["config"]["name"] = "coder"
    error = assert_error(api.post("/api/teams/import/", {"component": panel_doc}, format="json"), 400,
                         "validation_error")
    assert "component.config.participants[1].config.name" in error["details"], error


def test_code_execution_travels_through_export_and_import(api, customer):
    coder = make_agent(customer, name="coder", code_execution=True)
    pair = make_team(customer, [coder, make_agent(customer, name="reviewer")], name="pair")
    team_doc = api.get(f"/api/teams/{pair.pk}/component/").json()
    agent_doc = api.get(f"/api/agents/{coder.pk}/component/").json()

    team_import = api.post("/api/teams/import/", {"component": team_doc}, format="json")
    as_agent = api.post("/api/agents/import/", {"component": agent_doc}, format="json")

    assert team_import.status_code == 201, team_import.content
    coder_copy, reviewer_copy = (Agent.objects.get(name=n) for n in ("coder-2", "reviewer-2"))
    assert coder_copy.code_execution and not reviewer_copy.code_execution
    assert Team.objects.get(name="pair-2").member_ids() == [coder_copy.pk, reviewer_copy.pk]
    # The agent alone exports as AgentChat's pair (a team): the agents import says where it belongs.
    error = assert_error(as_agent, 400, "validation_error")
    assert error["details"] == {"component.component_type": ["a team: import it with POST /api/teams/import/"]}


def test_a_swarm_member_that_runs_code_exports_with_the_code_tool_runs_in_autogen_and_imports_back(api, customer,
                                                                                                  tmp_path):
    model = openai_model(customer)
    coder = make_agent(customer, model=model, name="coder", code_execution=True, limits={"timeout_seconds": 30})
    reviewer = make_agent(customer, model=model, name="reviewer")
    swarm = make_team(customer, [coder, reviewer], name="relay", mode="swarm", termination={"text_mention": "DONE"})

    doc = api.get(f"/api/teams/{swarm.pk}/component/").json()

    # the coder carries AgentChat's code tool; no CodeExecutorAgent joins the swarm
    assert [p["provider"].rsplit(".", 1)[1] for p in doc["config"]["participants"]] == ["AssistantAgent"] * 2
    tools = doc["config"]["participants"][0]["config"]["workbench"][0]["config"]["tools"]
    assert [t["provider"] for t in tools] == ["autogen_ext.tools.code_execution.PythonCodeExecutionTool"]
    assert tools[0]["config"]["executor"]["config"]["timeout"] == 30
    # AutoGen loads it and the coder's code runs there (in AutoGen's local executor, as its user asked)
    done = subprocess.run([sys.executable, "-c", LOADER], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          input=json.dumps([{"task": "Compute", "component": with_replay(doc, {
                              "coder": [[("CodeExecutor", {"code": "print(6 * 7)"})], [("transfer_to_reviewer", {})]],
                              "reviewer": ["42 it is. DONE"]})}]))
    assert done.returncode == 0, done.stderr[-3000:]
    run = json.loads(done.stdout)[0]
    assert any(m[0] == "coder" and m[1] == "ToolCallExecutionEvent" and "42" in m[2] for m in run["messages"])
    assert [m[0] for m in run["messages"] if m[1] in ("TextMessage", "HandoffMessage")] == ["user", "coder", "reviewer"]
    # and it imports back as the same team: the member with the code tool has code_execution
    imported = api.post("/api/teams/import/", {"component": doc}, format="json")
    assert imported.status_code == 201, imported.content
    coder_copy = Agent.objects.get(name="coder-2")
    assert coder_copy.code_execution and coder_copy.tools == []
    assert Team.objects.get(name="relay-2").mode == "swarm"

    # outside swarm and graph teams the code tool is refused, by path
    doc["config"]["participants"] = doc["config"]["participants"][:1]
    doc["provider"], doc["config"] = "autogen_agentchat.teams.RoundRobinGroupChat", {
        "participants": doc["config"]["participants"], "termination_condition": doc["config"]["termination_condition"]}
    error = assert_error(api.post("/api/teams/import/", {"component": doc}, format="json"), 400, "validation_error")
    path = "component.config.participants[0].config.workbench[0].config.tools[0].provider"
    assert "swarm and graph" in error["details"][path][0], error


def test_an_agent_with_a_customer_tool_exports_it_as_a_function_tool_that_runs_in_autogen(api, customer):
    # given: a tool whose source starts with an import and a helper (AutoGen's FunctionTool runs the first def)
    from agents.tools import tool_create

    tool_create(actor="test", customer=customer, name="shout", description="Shout a word.",
                parameters={"type": "object", "properties": {"word": {"type": "string"}}, "required": ["word"]},
                source="import string\n\ndef _bang(text):\n    return text + '!'\n\ndef shout(word: str) -> str:\n"
                       "    return _bang(string.capwords(word).upper())\n")
    agent = make_agent(customer, model=openai_model(customer), name="crier", tools=["shout", "word_count"])

    # when
    component = api.get(f"/api/agents/{agent.pk}/component/").json()
    [run] = load_and_run({"task": "Shout hello", "component": with_replay(component, {
        "crier": [[("shout", {"word": "hello"})], "HELLO!"]})})

    # then
    tools = component["config"]["workbench"][0]["config"]["tools"]
    assert [t["config"]["name"] for t in tools] == ["shout", "word_count"]
    assert tools[0]["config"]["source_code"].startswith("def shout(word: str) -> str:")
    assert ["crier", "ToolCallExecutionEvent"] == run["messages"][2][:2] and "HELLO!" in run["messages"][2][2]


def test_a_user_proxy_imports_as_a_member_a_person_answers_for_and_exports_as_one(api, customer):
    from autogen_agentchat.agents import AssistantAgent, UserProxyAgent
    from autogen_agentchat.conditions import MaxMessageTermination
    from autogen_agentchat.teams import SelectorGroupChat
    from autogen_ext.models.openai import OpenAIChatCompletionClient

    client = OpenAIChatCompletionClient(model="gpt-4o-mini", api_key="sk-x", model_info={**MODEL_INFO, "json_output": False})
    person = UserProxyAgent("user_proxy", description="Decides when unsure")
    team = SelectorGroupChat([AssistantAgent("helper", model_client=client), person], model_client=client,
                             termination_condition=MaxMessageTermination(6))
    dump = (lambda c: json.loads(c.dump_component().model_dump_json()))

    imported = api.post("/api/teams/import/", {"component": dump(team)}, format="json")
    alone = api.post("/api/agents/import/", {"component": dump(person)}, format="json")

    assert imported.status_code == 201, imported.content
    proxy, helper = Agent.objects.get(name="user_proxy"), Agent.objects.get(name="helper")
    assert proxy.human_input and proxy.description == "Decides when unsure" and proxy.tools == []
    assert proxy.model_id == helper.model_id  # never called: a person answers for it
    exported = api.get(f"/api/teams/{imported.json()['teams'][0]['id']}/component/").json()
    assert exported["config"]["participants"][1] == {
        "provider": "autogen_agentchat.agents.UserProxyAgent", "component_type": "agent", "version": 1,
        "component_version": 1, "label": "UserProxyAgent",
        "description": "An agent that can represent a human user through an input function.",
        "config": {"name": "user_proxy", "description": "Decides when unsure"}}
    error = assert_error(alone, 400, "validation_error")
    assert "a UserProxyAgent stands for a person in a team" in error["details"]["component.provider"][0]
    # an agent with human_input alone exports as it runs: a round robin of the agent and the person
    solo = api.get(f"/api/agents/{make_agent(customer, name='asker', human_input=True).pk}/component/").json()
    assert [p["provider"].rsplit(".", 1)[1] for p in solo["config"]["participants"]] == ["AssistantAgent",
                                                                                       "UserProxyAgent"]


def test_an_imported_studio_team_with_a_person_and_a_function_tool_round_trips_through_specs(api, customer,
                                                                                            make_customer):
    # given: a team imported from AutoGen Studio, with a user proxy and a FunctionTool (now the customer's tool)

    writer = agent_with_tools("writer", function_tool("shout", "def shout(word: str) -> str:\n    return word.upper()\n",
                                                      "Shout a word."))
    person = {"provider": "autogen_agentchat.agents.UserProxyAgent", "component_type": "agent",
              "config": {"name": "traveller", "description": "The person"}}
    team = {"provider": "autogen_agentchat.teams.RoundRobinGroupChat", "component_type": "team", "label": "Duo",
            "config": {"name": "RoundRobinGroupChat", "participants": [writer, person]}}
    assert api.post("/api/teams/import/", {"component": team}, format="json").status_code == 201

    # when: its spec is exported and applied to another customer, then exported again
    spec = spec_dump_yaml(spec_export(customer))
    other, _ = make_customer("elsewhere")
    spec_apply(actor="test", customer=other, spec=spec_load(spec.replace(f"customer: {customer.name}",
                                                                         "customer: elsewhere")))

    # then: the same team, person and tool there, and a second apply changes nothing
    copy = Agent.objects.get(customer=other, name="traveller")
    assert copy.human_input and Agent.objects.get(customer=other, name="writer").tools == ["shout"]
    assert Tool.objects.get(customer=other, name="shout").source == "def shout(word: str) -> str:\n    return word.upper()\n"
    assert Team.objects.get(customer=other, name="Duo").member_ids() == [
        Agent.objects.get(customer=other, name="writer").pk, copy.pk]
    exported_there = spec_dump_yaml(spec_export(other))
    assert exported_there.replace("elsewhere", customer.name) == spec
    again = spec_apply(actor="test", customer=other, spec=spec_load(exported_there))
    assert again.summary_line() == "no changes", again.lines()
