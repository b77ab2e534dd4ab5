"""Customers' HTTP tools through the HTTP API: definitions checked on write (allow-list, URL template,
headers), secret headers write-only, versions of the agents that use them, and the component export as
AutoGen's HttpTool without the secrets. The calls themselves: tests/test_http_tools.py."""
import ast
import json
from pathlib import Path

import autogen_ext
import pytest

from accounts.models import Customer
from agents.models import Agent, Tool
from tests.api_support import assert_error, make_model

pytestmark = pytest.mark.django_db

SECRET = "Bearer tok-9f8e7d"
ORDER = {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]}
LOOKUP = {"name": "lookup", "kind": "http", "description": "An order.", "parameters": ORDER, "method": "get",
          "url": "https://api.example.com:8443/v1/orders/{order_id}", "headers": {"Accept": "application/json"},
          "secret_headers": {"Authorization": SECRET}}


@pytest.fixture(autouse=True)
def allowed(owner, settings):
    settings.HTTP_TOOLS_ALLOW_PRIVATE = True  # no DNS lookup of example.com offline
    Customer.objects.filter(memberships__user=owner).update(http_tool_hosts=["api.example.com", "*.example.org"])


def test_an_http_tool_is_created_with_write_only_secret_headers(api, owner):
    created = api.post("/api/tools/", LOOKUP, format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    assert {k: body[k] for k in ("kind", "method", "url", "arguments_in", "headers", "secret_header_names")} == {
        "kind": "http", "method": "GET", "url": LOOKUP["url"], "arguments_in": "query",
        "headers": {"Accept": "application/json"}, "secret_header_names": ["Authorization"]}
    assert "source" not in body and "secret_headers" not in body
    listed = api.get("/api/tools/")
    assert [t["kind"] for t in listed.json() if t["name"] == "lookup"] == ["http"]
    for response in (created, listed, api.get(f"/api/tools/{body['id']}/")):
        assert b"tok-9f8e7d" not in response.content
    # a new value of the same header: no new version; another header name: a new version
    changed = api.patch(f"/api/tools/{body['id']}/", {"secret_headers": {"Authorization": "Bearer other"}},
                        format="json")
    assert changed.status_code == 200 and changed.json()["version"] == 1
    added = api.patch(f"/api/tools/{body['id']}/", {"secret_headers": {"X-Api-Key": "k-1", "Authorization": None}},
                      format="json")
    assert added.json()["version"] == 2 and added.json()["secret_header_names"] == ["X-Api-Key"]


@pytest.mark.parametrize("change, field, words", [
    ({"url": "https://evil.example.com/x"}, "url", "evil.example.com is not on this customer's allow-list"),
    ({"url": "https://example.org/x"}, "url", "example.org is not on this customer's allow-list"),
    ({"url": "ftp://api.example.com/x"}, "url", "is not an http:// or https:// URL"),
    ({"url": "https://{order_id}.example.org/x"}, "url", "The host cannot hold {placeholders}"),
    ({"url": "https://api.example.com/{city}"}, "url", "{city} is not one of the parameters' properties"),
    ({"url": "https://u:p@api.example.com/"}, "url", "Credentials do not stand in the URL"),
    ({"url": ""}, "url", "Required for an http tool"),
    ({"parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}}}, "url",
     "a placeholder's property must be required"),
    ({"method": "TRACE"}, "method", "Must be one of GET, POST"),
    ({"arguments_in": "form"}, "arguments_in", "Must be body"),
    ({"headers": {"Host": "x"}}, "headers", "Host: set by the platform"),
    ({"headers": {"Authorization": "x"}}, "headers", "also a secret header"),
    ({"secret_headers": {"X-Key": "a\r\nb"}}, "secret_headers", "cannot hold line breaks"),
    ({"source": "def lookup(order_id):\n    return 1\n"}, "source", "python tools only"),
])
def test_bad_http_definitions_are_refused_naming_the_field(api, change, field, words):
    response = api.post("/api/tools/", {**LOOKUP, **change}, format="json")
    error = assert_error(response, 400, "validation_error")
    assert any(words in m for m in error["details"][field]), error["details"]
    assert not Tool.objects.exists()


def test_a_python_tool_cannot_take_http_fields_nor_change_kind(api):
    python = api.post("/api/tools/", {"name": "add", "source": "def add():\n    return 1\n",
                                      "url": "https://api.example.com/"}, format="json")
    assert "http tools only" in assert_error(python, 400, "validation_error")["details"]["url"][0]
    tool = api.post("/api/tools/", LOOKUP, format="json").json()
    kind = api.patch(f"/api/tools/{tool['id']}/", {"kind": "python"}, format="json")
    assert "cannot change" in assert_error(kind, 400, "validation_error")["details"]["kind"][0]


def test_an_agent_version_holds_the_definition_without_secrets_and_the_component_is_an_httptool(api, owner):
    tool = api.post("/api/tools/", LOOKUP, format="json").json()
    model = make_model(owner.membership.customer)
    agent = Agent.objects.create(customer=model.customer, name="clerk", model=model, tools=["lookup"])
    snapshot = agent.behaviour()["tool_definitions"][0]
    assert snapshot["secret_headers"] == ["Authorization"] and SECRET not in json.dumps(snapshot)
    # a change of the URL is a new version of the tool and of the agent
    api.patch(f"/api/tools/{tool['id']}/", {"url": "https://api.example.com:8443/v2/orders/{order_id}"}, format="json")
    assert Agent.objects.get(pk=agent.pk).version == 2

    component = api.get(f"/api/agents/{agent.pk}/component/")

    assert component.status_code == 200, component.content
    assert b"tok-9f8e7d" not in component.content
    [exported] = component.json()["config"]["workbench"][0]["config"]["tools"]
    assert exported["provider"] == "autogen_ext.tools.http.HttpTool"
    config = exported["config"]
    assert {k: config[k] for k in ("scheme", "host", "port", "path", "method", "headers")} == {
        "scheme": "https", "host": "api.example.com", "port": 8443, "path": "/v2/orders/{order_id}",
        "method": "GET", "headers": {"Accept": "application/json"}}
    # the fields are those of AutoGen's HttpToolConfig (its module needs the http-tool extra to import)
    source = Path(autogen_ext.__file__).parent / "tools" / "http" / "_http_tool.py"
    fields = {node.target.id for cls in ast.walk(ast.parse(source.read_text()))
              if isinstance(cls, ast.ClassDef) and cls.name == "HttpToolConfig"
              for node in cls.body if isinstance(node, ast.AnnAssign)}
    assert set(config) == fields
