"""The Django admin for operators: a task reads as its transcript, outcome and usage (not JSON blobs); objects
have useful names; the killswitch says what it will stop and engages only once confirmed."""
import re
from html import unescape

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from agents.components import assistant_component, user_proxy_component
from agents.models import ModelConfig
from core.models import Killswitch
from tasks.models import Task
from tasks.services import task_events_append, task_finish
from teams.components import teams_import
from tests.admin_support import admin_site_login
from tests.api_support import make_agent, make_task

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator():
    user = get_user_model().objects.create_superuser(username="operator", password="password123")
    return admin_site_login(Client(), user)


def text(response) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.content.decode()))


def test_a_task_reads_as_transcript_outcome_and_usage(operator, make_customer):
    customer, owner = make_customer("admin-co")
    agent = make_agent(customer, name="helper")
    task = make_task(owner, agent=agent, input="What is 6*7?")
    task_events_append(task_id=task.pk, events=[
        {"type": "tool_call", "source": "helper", "content": {"id": "c", "name": "calculator",
                                                               "arguments": {"expression": "6*7"}}},
        {"type": "message", "source": "helper", "content": {"text": "It is **42**.",
                                                             "models_usage": {"prompt_tokens": 12, "completion_tokens": 3}}},
    ])
    task_finish(task_id=task.pk, status="failed", error={"code": "token_budget", "message": "over budget"},
                usage={"prompt_tokens": 12, "completion_tokens": 3, "wall_seconds": 1.5})

    page = operator.get(f"/admin/tasks/task/{task.pk}/change/")

    body = text(page)
    assert page.status_code == 200
    assert "It is 42 ." in body and "<strong>42</strong>" in page.content.decode()
    assert "calls calculator" in body and "12 prompt + 3 completion tokens" in body
    assert "error token_budget : over budget" in body and "token budget" in body.lower()
    assert "prompt tokens 12" in body and "wall seconds 1.5" in body
    # the list has the columns and filters an operator needs
    listing = text(operator.get("/admin/tasks/task/?error_code=token_budget"))
    assert f"task {task.pk} (helper, failed)" in listing or "helper" in listing
    assert "By error code" in listing and "token_budget" in listing
    thread = operator.get(f"/admin/tasks/thread/{task.thread_id}/change/")
    assert f"thread {task.thread_id} (helper)" in text(thread)


def test_the_killswitch_says_what_it_stops_and_needs_a_confirmation(operator, make_customer):
    customer, owner = make_customer("switch-co")
    agent = make_agent(customer)
    make_task(owner, agent=agent)
    make_task(owner, agent=agent)

    # when an operator engages the global switch without confirming
    first = operator.post("/admin/core/killswitch/add/", {"customer": "", "engaged": "on", "reason": "drill"})

    # then nothing is engaged and the page says the scope and how many tasks it would stop
    assert first.status_code == 200
    assert "global: every customer" in text(first) and "cancels 2 queued task(s)" in text(first)
    assert not Killswitch.objects.filter(engaged=True).exists()
    # and with the confirmation it engages, and the queued tasks end
    second = operator.post("/admin/core/killswitch/add/", {"customer": "", "engaged": "on", "reason": "drill",
                                                                 "confirm": "on"})
    assert second.status_code == 302
    assert Killswitch.objects.get(scope="global").engaged
    assert set(Task.objects.values_list("status", flat=True)) == {"cancelled"}

    # the list action asks first too, naming the scope and the counts
    switch = Killswitch.objects.get(scope="global")
    switch.engaged = False
    switch.save()
    asked = operator.post("/admin/core/killswitch/", {"action": "engage_selected", "_selected_action": switch.pk})
    assert asked.status_code == 200 and "Yes, engage" in asked.content.decode() and "every customer" in text(asked)
    assert not Killswitch.objects.get(pk=switch.pk).engaged
    # the list and the index name them in English
    assert "Select killswitch to change" in text(operator.get("/admin/core/killswitch/"))
    index = text(operator.get("/admin/"))
    assert "Killswitches" in index and "Killswitchs" not in index


def test_customer_tools_are_listed_with_the_agents_using_them(operator, make_customer):
    from agents.tools import tool_create

    customer, _ = make_customer("tools-admin-co")
    tool_create(actor="test", customer=customer, name="shout", description="Shout a word.",
                source="def shout():\n    return 'HEY'\n")
    make_agent(customer, name="crier", tools=["shout"])

    listing = text(operator.get("/admin/agents/tool/"))
    tool = customer.tools.get()
    page = operator.get(f"/admin/agents/tool/{tool.pk}/change/")

    assert "shout" in listing and "crier" in listing and "tools-admin-co" in listing
    assert page.status_code == 200 and "return &#x27;HEY&#x27;" in page.content.decode()


def test_a_waiting_tasks_suspension_shows_sizes_not_its_packed_work_dir(operator, make_customer):
    import base64
    import os

    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from tasks.services import task_mark_running, task_suspend

    # given a task waiting for input that kept a ~2.8 MB packed work dir (base64) with its state
    customer, owner = make_customer("suspended-co")
    task = make_task(owner, agent=make_agent(customer, name="planner", human_input=True), input="Plan a trip")
    task_mark_running(task_id=task.pk, worker="w", pid=1)
    workdir = base64.b64encode(os.urandom(2 * 1024 * 1024)).decode()
    assert task_suspend(task_id=task.pk, request={"kind": "input", "agent": "planner", "prompt": "Which city?"},
                        suspension={"state": {"messages": ["x" * 5000]}, "pending": {}, "workdir": workdir}, usage={})

    # when an operator opens it in the admin
    with CaptureQueriesContext(connection) as queries:
        page = operator.get(f"/admin/tasks/task/{task.pk}/change/")

    # then the page is light: the question and the sizes of what is kept, never the archive itself
    html, body = page.content.decode(), text(page)
    assert page.status_code == 200
    assert workdir[:200] not in html and len(page.content) < 200_000, len(page.content)
    assert '"prompt": "Which city?"' in unescape(html) and "answer none yet" in body
    assert "work dir (packed, base64) 2.7 MB" in body and "AgentChat state 4.9 KB" in body
    # and no query read the whole column (only its small keys and the lengths of the rest)
    whole = [q["sql"] for q in queries.captured_queries
             if re.search(r'"tasks_task"\."suspension"(?!\s*(->|#>|IS NOT NULL))', q["sql"])]
    assert whole == []
    # the list does not load it either
    with CaptureQueriesContext(connection) as queries:
        assert operator.get("/admin/tasks/task/").status_code == 200
    assert not any('"tasks_task"."suspension"' in q["sql"] for q in queries.captured_queries)


def test_an_imported_team_shows_who_a_person_answers_for_and_its_customer_tool(operator, make_customer):
    # given: a team imported from AutoGen Studio with a user proxy and a FunctionTool (a customer tool)
    customer, owner = make_customer("studio-co")
    writer = assistant_component(ident="writer", description="", system_message="Write.", tools=[],
                                 model_config=ModelConfig(provider="replay", responses=["Done."]))
    writer["config"]["workbench"][0]["config"]["tools"] = [{
        "provider": "autogen_core.tools.FunctionTool", "component_type": "tool",
        "config": {"name": "shout", "description": "Shout.", "source_code": "def shout(word: str) -> str:\n"
                   "    return word.upper()\n", "global_imports": []}}]
    team = {"provider": "autogen_agentchat.teams.RoundRobinGroupChat", "component_type": "team", "label": "Duo",
            "config": {"participants": [writer, user_proxy_component("traveller", "The person")]}}
    created = teams_import(actor=owner, customer=customer, data={"component": team})

    agents = text(operator.get("/admin/agents/agent/?human_input__exact=1"))
    team_page = text(operator.get(f"/admin/teams/team/{created['teams'][0]['id']}/change/"))
    tools = text(operator.get("/admin/agents/tool/"))

    # then: the operator sees the person in the agents list (and can filter by it), in the team's members,
    # and the imported tool with the agent that uses it
    assert "By human input" in agents and "traveller" in agents and "1 agent " in agents
    assert "traveller" in team_page and "a person answers" in team_page
    assert "shout" in tools and "writer" in tools
