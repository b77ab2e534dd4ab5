"""Customers' own tools through the HTTP API: definitions checked on write, scoping, roles, and the
versions of the agents that use them (a submitted task keeps the definition it was submitted with)."""
import pytest

from core.models import AuditLog
from agents.models import Agent, Tool
from tests.api_support import assert_error, make_model

pytestmark = pytest.mark.django_db

WEATHER = {
    "name": "weather",
    "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                   "required": ["city"]},
    "source": "def weather(city, days=1):\n    return f'sunny in {city} for {days} days'\n",
}


def test_a_customer_tool_is_created_listed_beside_the_builtins_and_usable_by_agents(api, owner):
    # given / when
    response = api.post("/api/tools/", WEATHER, format="json")

    # then
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["kind"] == "python" and body["version"] == 1 and body["timeout_seconds"] == 30
    assert body["source"] == WEATHER["source"] and body["parameters"] == WEATHER["parameters"]
    listed = api.get("/api/tools/").json()
    assert [t["name"] for t in listed] == ["calculator", "current_utc_time", "word_count", "weather"]
    assert listed[0] == {"name": "calculator", "kind": "builtin", "description": listed[0]["description"],
                         "parameters": {"expression": "string"}}
    assert listed[3]["id"] == body["id"] and listed[3]["kind"] == "python"
    assert api.get(f"/api/tools/{body['id']}/").json() == body

    model = make_model(owner.membership.customer)
    agent = api.post("/api/agents/", {"name": "forecaster", "model": model.pk, "tools": ["calculator", "weather"],
                                      "approval": ["weather"]}, format="json")
    assert agent.status_code == 201, agent.content
    snapshot = api.get(f"/api/agents/{agent.json()['id']}/versions/").json()["results"][0]["snapshot"]
    assert snapshot["tools"] == ["calculator", "weather"]
    assert snapshot["tool_definitions"] == [{**{k: WEATHER[k] for k in ("name", "description", "parameters", "source")},
                                             "kind": "python", "timeout_seconds": 30, "version": 1}]
    assert AuditLog.objects.filter(action="tool.create", target=f"tool:{body['id']}").exists()


@pytest.mark.parametrize("change, field, words", [
    ({"name": "2fast"}, "name", "identifier"),
    ({"name": "class"}, "name", "keyword"),
    ({"name": "calculator", "source": "def calculator(city, days=1):\n    return 1\n"}, "name", "built-in"),
    ({"parameters": {"type": "array"}}, "parameters", "\"object\""),
    ({"parameters": ["city"]}, "parameters", "JSON Schema object"),
    ({"parameters": {"type": "object", "properties": {"city": {"type": "strang"}}}}, "parameters", "not a valid JSON Schema"),
    ({"parameters": {"type": "object", "properties": {"the city": {"type": "string"}}}}, "parameters", "identifier"),
    ({"parameters": {"type": "object", "properties": {}, "required": ["city"]}}, "parameters", "not one of the properties"),
    ({"parameters": {"type": "object", "properties": {"c": {"$ref": "http://example.com/s.json"}}}}, "parameters", "local references"),
    ({"source": "def weather(city:\n    return 1\n"}, "source", "line 1"),
    ({"source": "def forecast(city, days=1):\n    return 1\n"}, "source", "function named 'weather'"),
    ({"source": "def weather(city):\n    return 1\n"}, "source", "'days'"),
    ({"source": "def weather(city, days, extra):\n    return 1\n"}, "source", "'extra' has no default"),
    ({"source": "def weather(city, /, days=1):\n    return 1\n"}, "source", "positional-only"),
    ({"source": ""}, "source", "Required: the Python source"),
    ({"timeout_seconds": 0}, "timeout_seconds", "from 1 to"),
    ({"timeout_seconds": 100000}, "timeout_seconds", "from 1 to"),
    ({"colour": "red"}, "colour", "Unknown field"),
])
def test_bad_definitions_are_refused_naming_the_field(api, change, field, words):
    response = api.post("/api/tools/", {**WEATHER, **change}, format="json")

    error = assert_error(response, 400, "validation_error")
    assert field in error["details"], error
    assert words in " ".join(error["details"][field]), error
    assert not Tool.objects.exists()


def test_source_is_never_run_on_write(api, tmp_path):
    # A module-level statement with a side effect: parsing it must not run it.
    marker = tmp_path / "ran"
    source = f"open({str(marker)!r}, 'w').write('x')\n\ndef weather(city, days=1):\n    return city\n"

    assert api.post("/api/tools/", {**WEATHER, "source": source}, format="json").status_code == 201
    assert not marker.exists()


def test_tools_are_scoped_to_the_customer_and_viewers_only_read(api, owner, make_customer, client_for):
    tool = api.post("/api/tools/", WEATHER, format="json").json()
    _, stranger = make_customer("globex")
    viewer = make_customer("acme", role="viewer")[1]

    other = client_for(stranger)
    assert_error(other.get(f"/api/tools/{tool['id']}/"), 404, "not_found")
    assert [t["kind"] for t in other.get("/api/tools/").json()] == ["builtin"] * 3
    model = make_model(stranger.membership.customer)
    refused = other.post("/api/agents/", {"name": "a", "model": model.pk, "tools": ["weather"]}, format="json")
    assert "Unknown tools: weather" in assert_error(refused, 400, "validation_error")["details"]["tools"][0]
    assert other.post("/api/tools/", WEATHER, format="json").status_code == 201  # the same name is theirs to use

    reader = client_for(viewer)
    assert reader.get(f"/api/tools/{tool['id']}/").json()["name"] == "weather"
    assert_error(reader.patch(f"/api/tools/{tool['id']}/", {"description": "x"}, format="json"), 403,
                 "permission_denied")
    assert_error(reader.post("/api/tools/", {**WEATHER, "name": "w2"}, format="json"), 403, "permission_denied")


def test_editing_a_tool_makes_a_new_version_of_its_agents_and_keeps_submitted_tasks(api, owner):
    customer = owner.membership.customer
    tool = api.post("/api/tools/", WEATHER, format="json").json()
    model = make_model(customer)
    agent = api.post("/api/agents/", {"name": "forecaster", "model": model.pk, "tools": ["weather"]},
                     format="json").json()
    bystander = api.post("/api/agents/", {"name": "other", "model": model.pk}, format="json").json()
    task = api.post("/api/tasks/", {"agent": agent["id"], "input": "Rome?"}, format="json").json()

    # when: the source changes
    new_source = "def weather(city, days=1):\n    return 'rain'\n"
    edited = api.patch(f"/api/tools/{tool['id']}/", {"source": new_source}, format="json")

    # then
    assert edited.status_code == 200 and edited.json()["version"] == 2
    versions = api.get(f"/api/agents/{agent['id']}/versions/").json()["results"]
    assert [v["version"] for v in versions] == [2, 1]
    assert versions[0]["snapshot"]["tool_definitions"][0]["source"] == new_source
    assert versions[1]["snapshot"]["tool_definitions"][0]["source"] == WEATHER["source"]
    assert Agent.objects.get(pk=bystander["id"]).version == 1
    from tasks.models import Task

    submitted = Task.objects.get(pk=task["id"])
    assert submitted.agent_version == 1
    assert submitted.spec["agents"][0]["tool_definitions"][0]["source"] == WEATHER["source"]
    # A new task runs the new definition.
    later = Task.objects.get(pk=api.post("/api/tasks/", {"agent": agent["id"], "input": "Oslo?"},
                                         format="json").json()["id"])
    assert later.agent_version == 2 and later.spec["agents"][0]["tool_definitions"][0]["source"] == new_source

    # A rename alone changes no definition, but agents name the tool: refused while they use it.
    renamed = api.patch(f"/api/tools/{tool['id']}/", {"name": "forecast"}, format="json")
    assert assert_error(renamed, 409, "conflict")["details"] == {"agents": ["forecaster"]}
    # An unchanged definition makes no version.
    api.patch(f"/api/tools/{tool['id']}/", {"source": new_source}, format="json")
    assert Agent.objects.get(pk=agent["id"]).version == 2


def test_a_tool_in_use_cannot_be_deleted(api, owner):
    tool = api.post("/api/tools/", WEATHER, format="json").json()
    model = make_model(owner.membership.customer)
    agent = api.post("/api/agents/", {"name": "forecaster", "model": model.pk, "tools": ["weather"]},
                     format="json").json()

    error = assert_error(api.delete(f"/api/tools/{tool['id']}/"), 409, "conflict")
    assert error["details"] == {"agents": ["forecaster"]}

    api.patch(f"/api/agents/{agent['id']}/", {"tools": []}, format="json")
    assert api.delete(f"/api/tools/{tool['id']}/").status_code == 204
    assert api.get("/api/tools/").json()[-1]["name"] == "word_count"


def test_tool_count_is_capped_per_customer(api, settings):
    settings.MAX_TOOLS_PER_CUSTOMER = 1
    assert api.post("/api/tools/", WEATHER, format="json").status_code == 201

    second = {**WEATHER, "name": "weather2", "source": WEATHER["source"].replace("weather(", "weather2(")}
    assert_error(api.post("/api/tools/", second, format="json"), 429, "quota_exceeded")


@pytest.mark.parametrize("source", ["-" * 60000 + "x", "x" + "[0]" * 20000, "def weather(city):\n    return '\0'\n\0"])
def test_sources_the_parser_cannot_take_are_refused_not_crashed(api, source):
    error = assert_error(api.post("/api/tools/", {**WEATHER, "source": source}, format="json"), 400, "validation_error")
    assert list(error["details"]) == ["source"]


def test_a_rollback_restores_the_agents_fields_with_its_tools_current_definitions(api, owner):
    tool = api.post("/api/tools/", WEATHER, format="json").json()
    model = make_model(owner.membership.customer)
    agent = api.post("/api/agents/", {"name": "forecaster", "model": model.pk, "system_message": "v1",
                                      "tools": ["weather"]}, format="json").json()
    api.patch(f"/api/agents/{agent['id']}/", {"system_message": "v2"}, format="json")
    new_source = WEATHER["source"].replace("sunny", "rainy")
    api.patch(f"/api/tools/{tool['id']}/", {"source": new_source}, format="json")

    rolled = api.post(f"/api/agents/{agent['id']}/rollback/", {"version": 1}, format="json")

    assert rolled.status_code == 200 and rolled.json()["version"] == 4
    snapshot = api.get(f"/api/agents/{agent['id']}/versions/").json()["results"][0]["snapshot"]
    assert snapshot["system_message"] == "v1" and snapshot["tool_definitions"][0]["source"] == new_source
