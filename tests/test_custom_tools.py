"""Customers' own tools, end to end: API -> RQ -> `manage.py runworker` -> sandboxed AgentChat child, whose
customer tool calls run in the sandbox's code runner. Real AutoGen; the model is the replay client, whose
JSON `{"tool_calls": [...]}` answers are scripted tool calls."""
import json

import pytest
from django.conf import settings
from django.db import transaction

from agents.models import Agent, ModelConfig
from agents.tools import tool_create, tool_update
from conftest import host_lacks
from runtime.sandbox import probe_capabilities
from tasks.models import Task, TaskEvent
from tasks.services import task_create
from tests.execution_support import running, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def workers(django_db_setup, django_db_blocker):
    with running("ct1") as procs:
        yield procs


@pytest.fixture
def customer(make_customer):
    return make_customer()


def calls(*calls) -> str:
    return json.dumps({"tool_calls": [{"name": name, "arguments": arguments} for name, arguments in calls]})


def tool_agent(org, responses: list[str], tools: list[str], name="toolsmith") -> Agent:
    model = ModelConfig.objects.create(customer=org, name=f"{name}-model", provider="replay", responses=responses)
    return Agent.objects.create(customer=org, name=name, model=model, system_message="Use your tools.", tools=tools)


def run(client, agent: Agent) -> Task:
    response = client.post("/api/tasks/", {"agent": agent.pk, "input": "Go."}, format="json")
    assert response.status_code == 201, response.content
    return finished(response.json()["id"])


def finished(task_id: int) -> Task:
    return wait_for(lambda: (t := Task.objects.get(pk=task_id)).is_finished and t, timeout=90,
                    message=f"task {task_id}")  # the first test waits for the worker to start too


def results(task: Task) -> dict:
    """Tool name -> the tool_result event content of its (first) call."""
    out = {}
    for event in TaskEvent.objects.filter(task=task, type="tool_result").order_by("seq"):
        out.setdefault(event.content["name"], event.content)
    return out


def test_a_customer_tool_runs_in_the_sandbox_and_returns_its_value(workers, customer, client_for):
    org, user = customer
    tool_create(actor="test", customer=org, name="add", description="Add two numbers.",
                parameters={"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
                            "required": ["a", "b"]},
                source="import os\n\ndef add(a, b):\n    print('adding')\n    return {'sum': a + b, 'cwd': os.getcwd()}\n")
    agent = tool_agent(org, [calls(("add", {"a": 2, "b": 40})), "The sum is 42. TERMINATE"], ["add"])

    task = run(client_for(user), agent)

    assert task.status == "succeeded", task.error
    call = TaskEvent.objects.get(task=task, type="tool_call")
    assert call.content["name"] == "add" and call.content["arguments"] == {"a": 2, "b": 40}
    result = results(task)["add"]
    assert result["is_error"] is False, result
    value = json.loads(result["content"])
    assert value["sum"] == 42 and f"task-{task.pk}" in value["cwd"]  # its own work dir, in the sandbox
    assert task.result["text"] == "The sum is 42. TERMINATE"


PROBE = r'''
import json, os

def probe(paths, var_dirs):
    report = {"env": sorted(os.environ), "uid": os.getuid()}
    with open("/proc/1/status") as f:
        report["agent_uid"] = int(next(l for l in f if l.startswith("Uid:")).split()[1])
    try:
        report["agent_environ"] = open("/proc/1/environ").read()[:50]
    except OSError as exc:
        report["agent_environ"] = exc.strerror
    report["visible"] = [p for p in paths if os.path.lexists(p)]
    report["var_tree"] = [os.path.join(base, n) for top in var_dirs for base, dirs, files in os.walk(top)
                          for n in dirs + files if not (os.getcwd() + "/").startswith(os.path.join(base, n) + "/")
                          and not os.path.join(base, n).startswith(os.getcwd() + "/")]
    return report
'''


def test_a_customer_tool_cannot_read_what_the_sandbox_hides(workers, customer, client_for):
    report_layers = probe_capabilities()["layers"]
    for layer in ("filesystem", "pid_namespace", "code_identity"):
        if not report_layers[layer]["active"]:
            host_lacks(f"the {layer} layer: {report_layers[layer]['detail']}")
    org, user = customer
    tool_create(actor="test", customer=org, name="probe", source=PROBE,
                parameters={"type": "object", "properties": {"paths": {"type": "array"}, "var_dirs": {"type": "array"}},
                            "required": ["paths", "var_dirs"]})
    database = settings.DATABASES["default"]
    paths = [str(p) for p in (settings.BASE_DIR / "manage.py", settings.BASE_DIR / "agents" / "tools.py",
                              settings.BASE_DIR / ".env", settings.EMBEDDED_REDIS_SOCKET, database["NAME"])]
    var_dirs = [str(settings.VAR_DIR), str(settings.BASE_DIR / "var")]
    # Another task's directory exists while this one runs: a second customer's sleeping code.
    agent = tool_agent(org, [calls(("probe", {"paths": paths, "var_dirs": var_dirs})), "Done. TERMINATE"], ["probe"])

    task = run(client_for(user), agent)

    assert task.status == "succeeded", task.error
    result = results(task)["probe"]
    assert result["is_error"] is False, result
    report = json.loads(result["content"])
    assert set(report["env"]) <= {"PATH", "HOME", "TMPDIR", "LANG", "LC_CTYPE", "PYTHONPATH",
                                  "PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED", "PWD", "SHLVL", "_"}, report["env"]
    for secret in (settings.SECRET_KEY, settings.ADMIN_API_KEY, settings.REDIS_URL):
        assert secret not in result["content"]
    assert report["uid"] != report["agent_uid"], report  # the code uid, not the agent's
    assert report["agent_environ"] == "Permission denied", report  # the agent process is out of its reach
    assert report["visible"] == [] and report["var_tree"] == [], report


def test_a_tool_that_raises_or_hangs_fails_only_its_call(workers, customer, client_for):
    org, user = customer
    city = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    tool_create(actor="test", customer=org, name="boom", parameters=city,
                source="def boom(city):\n    cities = {'Rome': 20}\n    return cities[city] if city in cities else \\\n"
                       "        (_ for _ in ()).throw(ValueError(f'no such city: {city}'))\n")
    tool_create(actor="test", customer=org, name="hang", parameters=city, timeout_seconds=1,
                source="def hang(city):\n    while True:\n        pass\n")
    tool_create(actor="test", customer=org, name="fine", parameters=city, source="def fine(city):\n    return city.upper()\n")
    agent = tool_agent(org, [
        calls(("boom", {"city": "Atlantis"}), ("hang", {"city": "Rome"}), ("fine", {"city": "Rome"}),
              ("fine", {"town": "Rome"})),
        "Only one tool worked. TERMINATE",
    ], ["boom", "hang", "fine"])

    task = run(client_for(user), agent)

    assert task.status == "succeeded", task.error
    events = [e for e in TaskEvent.objects.filter(task=task, type="tool_result").order_by("seq")]
    by_call = {}
    for event in events:
        by_call.setdefault(event.content["name"], []).append(event.content)
    assert by_call["boom"][0]["is_error"] is True
    assert by_call["boom"][0]["content"] == "Tool boom raised ValueError: no such city: Atlantis (line 4 of the tool's source)"
    assert by_call["hang"][0] == {**by_call["hang"][0], "is_error": True,
                                  "content": "Tool hang timed out after 1 s; the call was stopped."}
    assert [c["content"] for c in by_call["fine"]][0] == "ROME"
    assert by_call["fine"][1]["is_error"] is True
    assert "the arguments do not match its parameters" in by_call["fine"][1]["content"]
    assert "'city' is a required property" in by_call["fine"][1]["content"]
    assert task.result["text"] == "Only one tool worked. TERMINATE"


def test_editing_a_tool_after_submit_does_not_change_the_submitted_task(workers, customer):
    org, user = customer
    tool = tool_create(actor="test", customer=org, name="answer", source="def answer():\n    return 'old answer'\n")
    agent = tool_agent(org, [calls(("answer", {})), "TERMINATE"], ["answer"])

    # The job is enqueued on commit: the edit is stored before any worker can start the task.
    with transaction.atomic():
        submitted, _ = task_create(actor=user, customer=org, input="Go.", agent=Agent.objects.get(pk=agent.pk))
        tool_update(actor=user, tool=tool, data={"source": "def answer():\n    return 'new answer'\n"})
    later, _ = task_create(actor=user, customer=org, input="Go.", agent=Agent.objects.get(pk=agent.pk))

    first, second = finished(submitted.pk), finished(later.pk)
    assert first.status == second.status == "succeeded", (first.error, second.error)
    assert (first.agent_version, second.agent_version) == (1, 2)
    assert results(first)["answer"]["content"] == "old answer"
    assert results(second)["answer"]["content"] == "new answer"


def test_an_approved_call_of_a_customer_tool_runs_in_the_sandbox_after_the_resume(workers, customer, client_for):
    org, user = customer
    client = client_for(user)
    tool_create(actor="test", customer=org, name="launch", source="def launch():\n    return 'launched'\n")
    agent = tool_agent(org, [calls(("launch", {})), "Launched. TERMINATE"], ["launch"])
    Agent.objects.filter(pk=agent.pk).update(approval=["launch"])
    created = client.post("/api/tasks/", {"agent": agent.pk, "input": "Launch."}, format="json").json()

    task = wait_for(lambda: (t := client.get(f"/api/tasks/{created['id']}/").json())["status"] == "input_required"
                    and t, timeout=60, message="the approval request")
    assert task["input_request"]["kind"] == "approval"
    assert task["input_request"]["tool_calls"][0]["name"] == "launch"
    assert not TaskEvent.objects.filter(task_id=created["id"], type="tool_result").exists()
    assert client.post(f"/api/tasks/{created['id']}/input/", {"approve": True}, format="json").status_code == 200

    done = finished(created["id"])
    assert done.status == "succeeded", done.error
    assert results(done)["launch"] == {**results(done)["launch"], "content": "launched", "is_error": False}
    assert done.result["text"] == "Launched. TERMINATE"
