"""Customers' HTTP tools, end to end: API -> RQ -> `manage.py runworker` -> sandboxed AgentChat child, whose
HTTP tool calls the worker makes (never the sandbox) to a real local HTTP server this test starts. Real
AutoGen; the model is the replay client, whose JSON `{"tool_calls": [...]}` answers are scripted tool calls.
Loopback is allowed here (HTTP_TOOLS_ALLOW_PRIVATE=1); tests/test_http_tools_private.py has it off."""
import json

import pytest

from accounts.models import Customer
from agents.models import Agent, AgentVersion, Tool
from agents.tools import tool_create
from tasks.models import Task, TaskEvent
from tests.execution_support import running, wait_for
from tests.http_tool_server import ToolServer
from tests.test_custom_tools import calls, tool_agent

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

SECRET = "Bearer s3cret-token-of-acme"
ORDER = {"type": "object", "properties": {"order_id": {"type": "string"}, "note": {"type": "string"}},
         "required": ["order_id"]}


@pytest.fixture(scope="module")
def workers(django_db_setup, django_db_blocker):
    with running("ht1", HTTP_TOOLS_ALLOW_PRIVATE="1") as procs:
        yield procs


@pytest.fixture
def server():
    with ToolServer() as running_server:
        yield running_server


@pytest.fixture
def customer(make_customer):
    org, user = make_customer()
    Customer.objects.filter(pk=org.pk).update(http_tool_hosts=["127.0.0.1"])
    org.refresh_from_db()
    return org, user


def run(client, agent: Agent) -> Task:
    response = client.post("/api/tasks/", {"agent": agent.pk, "input": "Go."}, format="json")
    assert response.status_code == 201, response.content
    return wait_for(lambda: (t := Task.objects.get(pk=response.json()["id"])).is_finished and t, timeout=90,
                    message="the task")


def results(task: Task) -> list[dict]:
    return [e.content for e in TaskEvent.objects.filter(task=task, type="tool_result").order_by("seq")]


def test_an_http_tool_call_is_made_by_the_worker_and_its_answer_reaches_the_agent(workers, server, customer,
                                                                                    client_for):
    org, user = customer
    client = client_for(user)
    # given an http tool created through the API, with a secret header
    created = client.post("/api/tools/", {
        "name": "order_note", "kind": "http", "description": "Add a note to an order.", "parameters": ORDER,
        "method": "POST", "url": server.base + "/headers/orders/{order_id}", "headers": {"X-Tenant": "acme"},
        "secret_headers": {"Authorization": SECRET},
    }, format="json")
    assert created.status_code == 201, created.content
    tool = created.json()
    assert tool["kind"] == "http" and tool["secret_header_names"] == ["Authorization"]
    assert tool["arguments_in"] == "body" and "source" not in tool and "secret_headers" not in tool
    # and a python tool of the same agent that looks for the secret from inside the sandbox
    tool_create(actor="test", customer=org, name="look", source=(
        "import os\n\ndef look(parts):\n    needle = ''.join(parts)  # not in this call's own file\n"
        "    found = [k for k, v in os.environ.items() if needle in v]\n"
        "    for base, _, files in os.walk('.'):\n        for f in files:\n"
        "            if needle in open(os.path.join(base, f), errors='replace').read():\n"
        "                found.append(f)\n    return {'found': found}\n"),
        parameters={"type": "object", "properties": {"parts": {"type": "array"}}, "required": ["parts"]})
    agent = tool_agent(org, [calls(("order_note", {"order_id": "A/17", "note": "rush"}),
                                   ("look", {"parts": ["s3cret", "-token"]})),
                             "Noted. TERMINATE"], ["order_note", "look"])

    # when a task's agent calls it
    task = run(client, agent)

    # then the worker made the request, with the headers, the URL filled in and the other arguments as the body
    assert task.status == "succeeded", task.error
    assert len(server.requests) == 1
    seen = server.requests[0]
    assert (seen["method"], seen["path"]) == ("POST", "/headers/orders/A%2F17")
    assert json.loads(seen["body"]) == {"note": "rush"}
    assert seen["headers"]["authorization"] == SECRET and seen["headers"]["x-tenant"] == "acme"
    assert seen["headers"]["user-agent"] == "autogen-platform-tools/1"
    # and its answer is the call's result for the agent (the echoed secret masked)
    by_name = {r["name"]: r for r in results(task)}
    note = by_name["order_note"]
    assert note["is_error"] is False, note
    answer = json.loads(note["content"])
    assert answer["path"] == "/headers/orders/A%2F17" and answer["headers"]["x-tenant"] == "acme"
    assert answer["headers"]["authorization"] == "[secret header value]"
    assert task.result["text"] == "Noted. TERMINATE"
    # and the secret is nowhere a customer or the sandbox can read: not in the sandbox, the API's answers,
    # the agent's versions, the task's frozen spec, or its events
    assert by_name["look"]["is_error"] is False and json.loads(by_name["look"]["content"]) == {"found": []}
    shown = [client.get(f"/api/tools/{tool['id']}/").content, client.get("/api/tools/").content,
             client.get(f"/api/agents/{agent.pk}/versions/").content, client.get(f"/api/tasks/{task.pk}/").content,
             client.get(f"/api/tasks/{task.pk}/events/").content]
    stored = [json.dumps(task.spec), json.dumps([v.snapshot for v in AgentVersion.objects.filter(agent=agent)]),
              json.dumps([e.content for e in TaskEvent.objects.filter(task=task)])]
    for text in shown + [s.encode() for s in stored]:
        assert b"s3cret-token" not in text
    assert "Authorization" in json.dumps(task.spec)  # by name only
    assert Tool.objects.get(pk=tool["id"]).secret_headers_encrypted["Authorization"] != SECRET


def test_a_host_not_on_the_allow_list_is_refused_on_write(customer, client_for):
    _, user = customer
    response = client_for(user).post("/api/tools/", {
        "name": "exfiltrate", "kind": "http", "url": "https://evil.example.com/collect", "parameters": ORDER,
    }, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert list(error["details"]) == ["url"]
    assert "evil.example.com is not on this customer's allow-list" in error["details"]["url"][0]
    assert not Tool.objects.filter(name="exfiltrate").exists()


def test_the_admins_set_the_allow_list_and_a_host_taken_off_it_is_refused_at_call_time(workers, server, customer,
                                                                                       client_for, admin_api):
    org, user = customer
    tool = tool_create(actor="test", customer=org, name="lookup", kind="http", method="GET", parameters=ORDER,
                       url=server.base + "/orders/{order_id}")
    assert tool.arguments_in == "query"
    # a bad entry is refused, naming it
    bad = admin_api.patch(f"/api/admin/customers/{org.pk}/", {"http_tool_hosts": ["api.example.com", "http://x/"]},
                          format="json")
    assert bad.status_code == 400 and list(bad.json()["error"]["details"]) == ["http_tool_hosts[1]"]
    # the admins take 127.0.0.1 off the customer's list
    changed = admin_api.patch(f"/api/admin/customers/{org.pk}/", {"http_tool_hosts": ["*.example.com"]},
                              format="json")
    assert changed.status_code == 200 and changed.json()["http_tool_hosts"] == ["*.example.com"]
    agent = tool_agent(org, [calls(("lookup", {"order_id": "17"})), "Could not. TERMINATE"], ["lookup"])

    task = run(client_for(user), agent)

    assert task.status == "succeeded", task.error
    [result] = results(task)
    assert result["is_error"] is True
    assert result["content"] == ("Tool lookup: refused: the host 127.0.0.1 is not on this customer's allow-list "
                                 "for HTTP tools (an admin sets it).")
    failed = TaskEvent.objects.get(task=task, type="log", content__kind="http_tool_failed")
    assert failed.content["failure"] == "refused" and failed.content["tool"] == "lookup"
    assert server.requests == []


def test_a_timeout_an_http_error_a_redirect_and_a_large_answer_are_reported_per_call(workers, server, customer, client_for):
    org, user = customer
    none = {"type": "object", "properties": {}}
    tool_create(actor="test", customer=org, name="slow", kind="http", url=server.base + "/slow", parameters=none,
                timeout_seconds=1)
    tool_create(actor="test", customer=org, name="missing", kind="http", url=server.base + "/status/404",
                parameters=none)
    tool_create(actor="test", customer=org, name="big", kind="http", method="GET", url=server.base + "/big",
                parameters=none)
    tool_create(actor="test", customer=org, name="moved", kind="http", method="GET", url=server.base + "/status/302",
                parameters=none)
    tool_create(actor="test", customer=org, name="fine", kind="http", method="GET", parameters=ORDER,
                url=server.base + "/orders/{order_id}")
    agent = tool_agent(org, [calls(("slow", {}), ("missing", {}), ("big", {}), ("moved", {}),
                                   ("fine", {"order_id": "9", "note": "x"})),
                             "Some failed. TERMINATE"], ["slow", "missing", "big", "moved", "fine"])

    task = run(client_for(user), agent)

    assert task.status == "succeeded", task.error
    by_name = {r["name"]: r for r in results(task)}
    assert by_name["slow"]["is_error"] is True
    assert by_name["slow"]["content"] == ("Tool slow timed out after 1 s: no complete answer from 127.0.0.1; the "
                                          "call was stopped.")
    assert by_name["missing"]["is_error"] is True
    assert by_name["missing"]["content"] == 'Tool missing: HTTP 404 Not Found from 127.0.0.1: {"error": "no such order"}'
    assert by_name["big"]["is_error"] is False
    assert by_name["big"]["content"] == "x" * 32768 + "\n[response cut at 32768 bytes]"
    assert by_name["moved"]["is_error"] is True  # redirects are never followed (here: to cloud metadata)
    assert by_name["moved"]["content"] == ("Tool moved: HTTP 302 from 127.0.0.1: a redirect to "
                                           "'http://169.254.169.254/latest/meta-data/', not followed.")
    assert [r["path"] for r in server.requests if r["path"] == "/latest/meta-data/"] == []
    assert by_name["fine"]["is_error"] is False
    assert json.loads(by_name["fine"]["content"])["query"] == "note=x"
    failures = {e.content["tool"]: e.content for e in TaskEvent.objects.filter(task=task, type="log",
                                                                               content__kind="http_tool_failed")}
    assert failures["slow"]["failure"] == "timeout"
    assert failures["missing"]["failure"] == "http_status" and failures["missing"]["status"] == 404
    assert set(failures) == {"slow", "missing", "moved"}


def test_an_http_tool_that_needs_approval_is_called_only_after_a_person_approves(workers, server, customer,
                                                                                 client_for):
    org, user = customer
    client = client_for(user)
    tool_create(actor="test", customer=org, name="refund", kind="http", parameters=ORDER,
                url=server.base + "/orders/{order_id}/refund", secret_headers={"Authorization": SECRET})
    agent = tool_agent(org, [calls(("refund", {"order_id": "5"})), "Refunded. TERMINATE"], ["refund"])
    Agent.objects.filter(pk=agent.pk).update(approval=["refund"])
    created = client.post("/api/tasks/", {"agent": agent.pk, "input": "Refund order 5."}, format="json").json()

    waiting = wait_for(lambda: (t := client.get(f"/api/tasks/{created['id']}/").json())["status"] == "input_required"
                       and t, timeout=60, message="the approval request")
    assert waiting["input_request"]["tool_calls"][0]["name"] == "refund"
    assert server.requests == []  # nothing sent while it waits
    assert client.post(f"/api/tasks/{created['id']}/input/", {"approve": True}, format="json").status_code == 200

    done = wait_for(lambda: (t := Task.objects.get(pk=created["id"])).is_finished and t, timeout=60,
                    message="the task")
    assert done.status == "succeeded", done.error
    assert [(r["method"], r["path"], r["headers"]["authorization"]) for r in server.requests] == [
        ("POST", "/orders/5/refund", SECRET)]
    [result] = results(done)
    assert result["is_error"] is False and json.loads(result["content"])["path"] == "/orders/5/refund"
