"""The studio's pages through Django's test client: what a user sees and what their forms change (through the
services, so the API sees the same), by role; the transcript's folding and safe markdown; usage and cost."""
import json
import re
from decimal import Decimal
from html.parser import HTMLParser

import pytest
from django.test import Client

from agents.models import Agent, ModelConfig
from tasks.models import Task
from tasks.services import task_events_append, task_finish
from teams.models import Team
from tests.api_support import make_agent, make_model, make_task, make_team

pytestmark = pytest.mark.django_db


def signed_in(user) -> Client:
    client = Client()
    response = client.post("/studio/login/", {"username": user.username, "password": "password123"})
    assert response.status_code == 302 and response["Location"] == "/studio/", response.content[:500]
    return client


def text(response) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.content.decode()))


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).replace("&#x27;", "'").replace("&gt;", ">")


def test_sign_in_is_required_and_only_for_customers_users(make_customer, staff_user):
    # given no session, every page sends the user to the sign-in page
    assert Client().get("/studio/runs/")["Location"] == "/studio/login/?next=/studio/runs/"
    # a platform admin has no customer: refused with a reason
    refused = Client().post("/studio/login/", {"username": staff_user.username, "password": "password123"})
    assert refused.status_code == 200 and "does not belong to a customer" in text(refused)
    wrong = Client().post("/studio/login/", {"username": "nobody", "password": "x"})
    assert wrong.status_code == 200 and "Please enter a correct username and password" in text(wrong)
    # and /console/ and the bare address lead to the studio
    assert Client().get("/console/")["Location"] == "/studio/"
    assert Client().get("/")["Location"] == "/studio/"


def test_a_model_configuration_is_created_and_edited_and_its_key_never_shown(make_customer):
    customer, owner = make_customer("models-co")
    client = signed_in(owner)
    form = {"name": "local", "provider": "openai", "model": "llama3.1", "base_url": "http://127.0.0.1:11434/v1",
            "api_key": "sk-very-secret", "family": "llama3.1", "function_calling": "on",
            "price_prompt_per_million": "0.50", "price_completion_per_million": "1.50", "responses": ""}

    created = client.post("/studio/models/new/", form)

    model = ModelConfig.objects.get(customer=customer, name="local")
    assert created.status_code == 302 and created["Location"] == f"/studio/models/{model.pk}/?saved=1"
    assert model.has_api_key and model.model_info == {"family": "llama3.1", "vision": False, "function_calling": True,
                                                      "json_output": False, "structured_output": False}
    assert (model.price_prompt_per_million, model.price_completion_per_million) == (Decimal("0.5"), Decimal("1.5"))
    page = client.get(f"/studio/models/{model.pk}/")
    assert "sk-very-secret" not in page.content.decode() and "A key is stored" in text(page)
    # when it is saved again with the key field empty, the key stays
    client.post(f"/studio/models/{model.pk}/", {**form, "api_key": "", "model": "llama3.2"})
    model.refresh_from_db()
    assert model.model == "llama3.2" and model.has_api_key
    # and the service's rules answer on the form: an openai model without a model name
    bad = client.post("/studio/models/new/", {**form, "name": "broken", "model": ""})
    assert bad.status_code == 400 and "Required for the openai provider" in text(bad)
    assert not ModelConfig.objects.filter(name="broken").exists()


def test_an_agent_is_built_with_tools_and_limits_and_its_versions_diffed_and_rolled_back(make_customer):
    customer, owner = make_customer("agents-co")
    model = make_model(customer, name="replay")
    client = signed_in(owner)
    form = {"name": "writer", "description": "Writes", "system_message": "You write short answers.",
            "model": model.pk, "tools": ["calculator"], "code_execution": "on", "memory_mb": "256",
            "timeout_seconds": "60"}

    client.post("/studio/agents/new/", form)
    agent = Agent.objects.get(customer=customer, name="writer")
    assert (agent.tools, agent.code_execution, agent.limits) == (["calculator"], True, {"memory_mb": 256,
                                                                                          "timeout_seconds": 60})
    client.post(f"/studio/agents/{agent.pk}/", {**form, "system_message": "You write long answers."})
    agent.refresh_from_db()
    assert agent.version == 2

    diff = client.get(f"/studio/agents/{agent.pk}/diff/?a=1&b=2")
    assert "-You write short answers." in text(diff) and "+You write long answers." in text(diff)
    page = text(client.post(f"/studio/agents/{agent.pk}/rollback/", {"version": 1}, follow=True))
    agent.refresh_from_db()
    assert agent.version == 3 and agent.system_message == "You write short answers."
    assert "Rolled back" in page and "v3 (current)" in page
    # limits above the customer's quota are refused by the service, on the form
    over = client.post("/studio/agents/new/", {**form, "name": "greedy", "memory_mb": "999999"})
    assert over.status_code == 400 and "quota" in text(over)


def test_the_agent_form_offers_the_customers_own_tools(make_customer):
    from agents.tools import tool_create

    customer, owner = make_customer("tools-co")
    tool_create(actor="test", customer=customer, name="shout", description="Shout a word.",
                source="def shout():\n    return 'HEY'\n")
    model = make_model(customer, name="replay")
    client = signed_in(owner)

    assert "shout: Shout a word." in text(client.get("/studio/agents/new/"))
    client.post("/studio/agents/new/", {"name": "crier", "model": model.pk, "tools": ["calculator", "shout"]})
    assert Agent.objects.get(customer=customer, name="crier").tools == ["calculator", "shout"]


def test_a_team_is_built_with_ordered_members_mode_and_termination(make_customer):
    customer, owner = make_customer("teams-co")
    first, second = make_agent(customer, name="first"), make_agent(customer, name="second")
    client = signed_in(owner)

    client.post("/studio/teams/new/", {"name": "duo", "mode": "round_robin", "member_1": second.pk,
                                       "member_2": first.pk, "max_messages": "6", "text_mention": "DONE"})

    team = Team.objects.get(customer=customer, name="duo")
    assert team.member_ids() == [second.pk, first.pk]
    assert team.termination == {"max_messages": 6, "text_mention": "DONE"}
    # a selector team needs its selector model: the service says so on the form
    bad = client.post("/studio/teams/new/", {"name": "picky", "mode": "selector", "member_1": first.pk})
    assert bad.status_code == 400 and "Required in selector mode" in text(bad)


def test_a_viewer_reads_everything_and_changes_nothing(make_customer):
    customer, _ = make_customer("viewers-co")
    agent = make_agent(customer, name="reader-agent")
    _, viewer = make_customer("viewers-co", role="viewer")
    client = signed_in(viewer)

    page = client.get(f"/studio/agents/{agent.pk}/")
    assert page.status_code == 200 and "read-only access" in text(page)
    assert "<fieldset disabled>" in page.content.decode() and 'id="save-agent"' not in page.content.decode()
    assert 'id="new-agent"' not in client.get("/studio/agents/").content.decode()
    refused = client.post(f"/studio/agents/{agent.pk}/", {"name": "renamed", "model": agent.model_id})
    assert refused.status_code == 403
    assert client.post("/studio/runs/new/", {"target": f"agent:{agent.pk}", "input": "hi"}).status_code == 403
    agent.refresh_from_db()
    assert agent.name == "reader-agent" and not Task.objects.filter(agent=agent).exists()


def test_runs_history_filters_pages_and_hides_other_customers_runs(make_customer):
    customer, owner = make_customer("history-co")
    agent, other_agent = make_agent(customer, name="a1"), make_agent(customer, name="a2")
    tasks = [make_task(owner, agent=agent, input=f"question {i}") for i in range(27)]
    make_task(owner, agent=other_agent, input="elsewhere")
    task_finish(task_id=tasks[0].pk, status="failed", error={"code": "model_error", "message": "boom"})
    stranger_customer, stranger = make_customer("stranger-co")
    foreign = make_task(stranger, agent=make_agent(stranger_customer))
    client = signed_in(owner)

    first_page = text(client.get(f"/studio/runs/?agent={agent.pk}"))
    assert "page 1 of 2 (27 runs)" in first_page and "elsewhere" not in first_page
    assert "question 0" not in first_page and "question 0" in text(client.get(f"/studio/runs/?agent={agent.pk}&page=2"))
    failed = text(client.get("/studio/runs/?status=failed"))
    assert "question 0" in failed and "model_error" in failed and "1 run" in failed
    assert "No runs match" in text(client.get("/studio/runs/?since=2000-01-01&until=2000-01-02"))
    assert client.get(f"/studio/runs/{foreign.pk}/").status_code == 404
    # the home page lists the latest runs with their agent
    home = text(client.get("/studio/"))
    assert "question 26" in home and "a1" in home and "Start a run" in home


def test_the_run_page_is_a_transcript_with_folded_steps_safe_markdown_time_tokens_and_cost(make_customer):
    customer, owner = make_customer("transcript-co")
    model = make_model(customer, name="priced")
    ModelConfig.objects.filter(pk=model.pk).update(price_prompt_per_million=Decimal("2"),
                                                   price_completion_per_million=Decimal("10"))
    agent = make_agent(customer, model=model, name="helper", tools=["calculator"])
    task = make_task(owner, agent=agent, input="What is 6*7?")
    task_events_append(task_id=task.pk, events=[
        {"type": "tool_call", "source": "helper", "content": {"id": "c1", "name": "calculator",
                                                               "arguments": {"expression": "6*7"}}},
        {"type": "tool_result", "source": "helper", "content": {"call_id": "c1", "name": "calculator",
                                                                 "content": "42", "is_error": False}},
        {"type": "code_execution", "source": "helper", "content": {"code": "print(6*7)", "output": "42\n",
                                                                    "exit_code": 0}},
        {"type": "message", "source": "helper", "content": {
            "text": "It is **42**. <script>alert(1)</script> [x](javascript:alert(2))",
            "models_usage": {"prompt_tokens": 1000, "completion_tokens": 100}}},
    ])
    task_finish(task_id=task.pk, status="succeeded", result={"text": "It is 42.", "stop_reason": "text_mention"},
                usage={"prompt_tokens": 1000, "completion_tokens": 100, "cpu_seconds": 0.2, "peak_memory_mb": 50,
                       "wall_seconds": 1.5})
    client = signed_in(owner)

    page = client.get(f"/studio/runs/{task.pk}/")

    html = page.content.decode()
    # the message, its markdown rendered and its HTML and script links neutralised
    assert "<strong>42</strong>" in html and "<script>alert(1)" not in html and "href=\"javascript:" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    # its tool call, result and code execution folded under it, in a <details>
    message = re.search(r'<li class="turn turn-message" data-seq="5".*?</li>\s*</ol>\s*</details>', html, re.S)
    assert message and "calls calculator" in message.group(0) and "[exit 0]" in message.group(0)
    body = text(page)
    assert "1000 prompt + 100 completion tokens" in body
    assert "Stop reason: text_mention" in body
    # 1000 * 2 / 1e6 + 100 * 10 / 1e6 = 0.003
    assert re.search(r"cost 0\.003000", body)
    # every stored event is on the page exactly once
    seqs = [int(s) for s in re.findall(r'data-seq="(\d+)"', html)]
    assert sorted(seqs) == list(range(1, Task.objects.get(pk=task.pk).last_seq + 1))


def test_a_failed_run_shows_its_error_code_cause_and_explanation(make_customer):
    customer, owner = make_customer("failure-co")
    task = make_task(owner, agent=make_agent(customer))
    task_finish(task_id=task.pk, status="failed", error={"code": "model_error",
                                                         "message": "local: Connection refused (http://127.0.0.1:9/v1)"})
    body = text(signed_in(owner).get(f"/studio/runs/{task.pk}/"))
    assert "model_error : local: Connection refused (http://127.0.0.1:9/v1)" in body
    assert "The model endpoint failed" in body


def test_continuing_a_run_starts_a_new_run_on_its_thread(make_customer):
    customer, owner = make_customer("thread-co")
    agent = make_agent(customer)
    first = make_task(owner, agent=agent, input="first question")
    task_finish(task_id=first.pk, status="succeeded", result={"text": "ok", "stop_reason": "done"})
    client = signed_in(owner)

    response = client.post(f"/studio/runs/{first.pk}/continue/", {"input": "and then?"})

    second = Task.objects.exclude(pk=first.pk).get(customer=customer)
    assert response["Location"] == f"/studio/runs/{second.pk}/"
    assert second.thread_id == first.thread_id and second.input == "and then?" and second.agent_id == agent.pk
    thread = text(client.get(f"/studio/runs/{second.pk}/"))
    assert "first question" in thread and "and then?" in thread


def test_usage_shows_tokens_and_cost_per_day_agent_and_model(make_customer):
    customer, owner = make_customer("usage-co")
    cheap = make_model(customer, name="cheap")
    ModelConfig.objects.filter(pk=cheap.pk).update(price_prompt_per_million=Decimal("1"),
                                                   price_completion_per_million=Decimal("2"))
    writer = make_agent(customer, model=cheap, name="writer")
    critic = make_agent(customer, model=make_model(customer, name="unpriced"), name="critic")
    team = make_team(customer, [writer, critic], name="duo")
    solo = make_task(owner, agent=writer)
    task_finish(task_id=solo.pk, status="succeeded", usage={"prompt_tokens": 1_000_000, "completion_tokens": 500_000})
    duo = make_task(owner, team=team)
    task_events_append(task_id=duo.pk, events=[
        {"type": "message", "source": "writer", "content": {"text": "a", "models_usage": {"prompt_tokens": 10,
                                                                                          "completion_tokens": 5}}},
        {"type": "tool_call", "source": "critic", "content": {"id": "c", "name": "calculator", "arguments": {},
                                                               "models_usage": {"prompt_tokens": 5, "completion_tokens": 2}}},
        {"type": "message", "source": "critic", "content": {"text": "b", "models_usage": {"prompt_tokens": 20,
                                                                                          "completion_tokens": 7}}},
    ])
    task_finish(task_id=duo.pk, status="succeeded", usage={"prompt_tokens": 35, "completion_tokens": 14})

    body = text(signed_in(owner).get("/studio/usage/"))

    assert "2 runs" in body and "1500049 tokens" in body
    # writer: 1,000,010 prompt + 500,005 completion on the priced model -> 1.000010 + 1.000010 = 2.0000
    assert re.search(r"writer\s+1500015\s+2\.0000", body)
    # the critic's tool call request counts for the critic too
    assert re.search(r"critic\s+34\s+—", body)
    assert re.search(r"cheap\s+1500015\s+2\.0000", body) and re.search(r"unpriced\s+34\s+—", body)


def test_seed_demo_objects_and_runs_show_in_the_studio():
    import io

    from django.core.management import call_command

    out = io.StringIO()
    call_command("seed_demo", stdout=out)
    password = re.search(r"username: demo\s+password: (\S+)", out.getvalue()).group(1)
    client = Client()
    client.post("/studio/login/", {"username": "demo", "password": password})

    runs = text(client.get("/studio/runs/"))
    teams = text(client.get("/studio/teams/"))
    agents = text(client.get("/studio/agents/"))

    assert "4 runs" in runs and "demo-team (team)" in runs
    assert "demo-agent → demo-critic" in teams
    assert "calculator" in agents and "runs code" in agents


def _waiting_task(owner, agent, request):
    from tasks.services import task_mark_running, task_suspend

    task = make_task(owner, agent=agent, input="Plan my trip")
    task_mark_running(task_id=task.pk, worker="w", pid=1)
    assert task_suspend(task_id=task.pk, request=request, suspension={"state": {}}, usage={})
    return task


def test_a_run_waiting_for_input_shows_the_question_and_takes_the_answer(make_customer):
    customer, owner = make_customer("asking-co")
    agent = make_agent(customer, name="planner", human_input=True)
    task = _waiting_task(owner, agent, {"kind": "input", "agent": "planner", "prompt": "Which city <b>first</b>?"})
    client = signed_in(owner)

    # the run page shows the question (escaped) and a labelled answer box posting to the answer view
    page = client.get(f"/studio/runs/{task.pk}/")
    html = page.content.decode()
    assert 'id="input-request"' in html and "Which city &lt;b&gt;first&lt;/b&gt;?" in html
    assert '<label for="answer-text">Your answer to planner</label>' in html
    assert f'action="/studio/runs/{task.pk}/input/"' in html and 'id="approve-button"' not in html
    assert "planner asks: Which city" in text(page)
    # a viewer sees the question but cannot answer
    _, viewer = make_customer("asking-co", role="viewer")
    as_viewer = signed_in(viewer)
    shown = as_viewer.get(f"/studio/runs/{task.pk}/").content.decode()
    assert "Which city" in shown and 'id="answer-form"' not in shown and "Viewers cannot answer" in shown
    assert as_viewer.post(f"/studio/runs/{task.pk}/input/", {"text": "Rome"}).status_code == 403
    assert Task.objects.get(pk=task.pk).status == "input_required"

    # when the owner answers (htmx), the live part comes back without the box, and the run is queued again
    answered = client.post(f"/studio/runs/{task.pk}/input/", {"text": "Rome"}, HTTP_HX_REQUEST="true")
    assert answered.status_code == 200 and 'id="answer-sent"' in answered.content.decode()
    assert 'id="answer-form"' not in answered.content.decode()
    task.refresh_from_db()
    assert task.status == "queued" and task.suspension["answer"] == {"kind": "input", "text": "Rome"}
    assert f"answered by {owner.username}: Rome" in text(client.get(f"/studio/runs/{task.pk}/"))
    # and a second answer is refused, saying why (a plain form post: the run page with 409)
    again = client.post(f"/studio/runs/{task.pk}/input/", {"text": "Paris"})
    assert again.status_code == 409 and "not waiting for input" in text(again)


def test_an_approval_is_approved_or_denied_with_buttons(make_customer):
    customer, owner = make_customer("approving-co")
    agent = make_agent(customer, name="calc", tools=["calculator"], approval=["calculator"])
    task = _waiting_task(owner, agent, {"kind": "approval", "agent": "calc", "prompt": "calc wants to call:\ncalculator",
                                        "tool_calls": [{"id": "c1", "name": "calculator",
                                                        "arguments": {"expression": "6*7"}}]})
    client = signed_in(owner)

    html = client.get(f"/studio/runs/{task.pk}/").content.decode()
    assert 'id="approve-button"' in html and 'id="deny-button"' in html and 'id="answer-text"' not in html
    assert "calc asks for your approval" in html and "6*7" in html
    # a text answer to an approval is refused on the page
    wrong = client.post(f"/studio/runs/{task.pk}/input/", {"text": "ok"})
    assert wrong.status_code == 400 and "approve" in text(wrong)

    denied = client.post(f"/studio/runs/{task.pk}/input/", {"approve": "false"})

    assert denied.status_code == 302 and denied["Location"] == f"/studio/runs/{task.pk}/"
    task.refresh_from_db()
    assert task.status == "queued" and task.suspension["answer"] == {"kind": "approval", "approve": False}
    assert f"denied by {owner.username}" in text(client.get(f"/studio/runs/{task.pk}/"))


def test_a_team_has_versions_a_diff_and_a_rollback(make_customer):
    customer, owner = make_customer("team-versions-co")
    first, second, third = (make_agent(customer, name=n) for n in ("first", "second", "third"))
    client = signed_in(owner)
    form = {"name": "duo", "mode": "round_robin", "member_1": first.pk, "member_2": second.pk, "max_messages": "6",
            "text_mention": "DONE"}
    client.post("/studio/teams/new/", form)
    team = Team.objects.get(customer=customer, name="duo")
    # when a member is added, a new version is recorded
    saved = client.post(f"/studio/teams/{team.pk}/", {**form, "member_3": third.pk}, follow=True)
    team.refresh_from_db()
    assert team.version == 2 and "Saved (version 2)" in text(saved)
    # then the team page lists both versions, and the diff names the members
    page = text(client.get(f"/studio/teams/{team.pk}/"))
    assert "v2 (current)" in page and "diff with v1" in page
    diff = text(client.get(f"/studio/teams/{team.pk}/diff/?a=1&b=2"))
    assert "-members: first, second" in diff and "+members: first, second, third" in diff
    # and a rollback to version 1 is version 3 with two members
    rolled = text(client.post(f"/studio/teams/{team.pk}/rollback/", {"version": 1}, follow=True))
    team.refresh_from_db()
    assert team.version == 3 and team.member_ids() == [first.pk, second.pk]
    assert "Rolled back" in rolled and "v3 (current)" in rolled
    # an unknown version is refused; a viewer sees the history but cannot roll back
    unknown = client.post(f"/studio/teams/{team.pk}/rollback/", {"version": 9})
    assert unknown.status_code == 400 and "The team has no version 9" in text(unknown)
    _, viewer = make_customer("team-versions-co", role="viewer")
    as_viewer = signed_in(viewer)
    shown = as_viewer.get(f"/studio/teams/{team.pk}/").content.decode()
    assert 'id="versions"' in shown and "Roll back to v1" not in shown
    assert as_viewer.post(f"/studio/teams/{team.pk}/rollback/", {"version": 1}).status_code == 403
    team.refresh_from_db()
    assert team.version == 3


@pytest.mark.parametrize("status, answer_box, continue_form, later_note", [
    ("queued", False, False, True),
    ("running", False, False, True),
    ("input_required", True, False, False),
    ("succeeded", False, True, False),
    ("failed", False, True, False),
    ("cancelled", False, True, False),
    ("timed_out", False, True, False),
])
def test_the_run_page_offers_the_answer_box_while_waiting_and_continue_only_once_finished(
        make_customer, status, answer_box, continue_form, later_note):
    from tasks.services import task_mark_running

    customer, owner = make_customer(f"status-{status}")
    agent = make_agent(customer, name="planner", human_input=True)
    if status == "input_required":
        task = _waiting_task(owner, agent, {"kind": "input", "agent": "planner", "prompt": "Which city?"})
    else:
        task = make_task(owner, agent=agent, input="Plan my trip")
        if status != "queued":
            task_mark_running(task_id=task.pk, worker="w", pid=1)
        if status in Task.FINISHED:
            task_finish(task_id=task.pk, status=status, result={"text": "ok", "stop_reason": "done"}
                        if status == "succeeded" else None,
                        error=None if status == "succeeded" else {"code": "cancelled", "message": "stopped"})
    assert Task.objects.get(pk=task.pk).status == status
    client = signed_in(owner)

    # the full page and its live part (fetched again as events arrive) agree
    for url in (f"/studio/runs/{task.pk}/", f"/studio/runs/{task.pk}/live/"):
        html = client.get(url).content.decode()
        assert ('id="answer-form"' in html) is answer_box, url
        assert ('id="continue-form"' in html) is continue_form, url
        assert ('id="continue-later"' in html) is later_note, url
        if continue_form:
            assert '<label for="id_input">Your next message</label>' in html


def test_runs_show_the_team_and_agent_version_they_ran(make_customer):
    from teams.services import team_update

    customer, owner = make_customer("versions-run-co")
    first, second = make_agent(customer, name="first"), make_agent(customer, name="second")
    team = make_team(customer, [first], name="pair")
    old = make_task(owner, team=team, input="old run")
    team = team_update(actor="test", team=team, data={"members": [first, second]})
    new = make_task(owner, team=team, input="new run")
    solo = make_task(owner, agent=second, input="solo run")
    client = signed_in(owner)

    # the run page says which team version and member versions it ran, linking to the team's history
    old_page = client.get(f"/studio/runs/{old.pk}/")
    assert "team version 1 · members first v1" in text(old_page)
    assert f'href="/studio/teams/{team.pk}/#versions-heading"' in old_page.content.decode()
    assert "team version 2 · members first v1, second v1" in text(client.get(f"/studio/runs/{new.pk}/"))
    assert "agent version 1" in text(client.get(f"/studio/runs/{solo.pk}/"))
    # and the history shows each run's version
    rows = client.get("/studio/runs/").content.decode()
    for task, version in ((old, 1), (new, 2), (solo, 1)):
        row = re.search(rf'<tr data-task="{task.pk}">.*?</tr>', rows, re.S).group(0)
        assert f'<span class="muted version">v{version}</span>' in row


def test_a_new_user_is_led_from_model_to_agent_to_run_and_told_what_to_fix(make_customer):
    customer, owner = make_customer("guided-co")
    client = signed_in(owner)
    # a model AutoGen does not know, without capabilities: the form says which of its own fields to fill
    form = {"name": "local", "provider": "openai", "model": "my-llama", "base_url": "http://127.0.0.1:9/v1"}
    refused = client.post("/studio/models/new/", form)
    assert refused.status_code == 400
    family = re.search(r'<div class="field invalid">\s*<label for="id_family">.*?</div>', refused.content.decode(), re.S)
    assert family and "AutoGen does not know &#x27;my-llama&#x27;: give its family" in family.group(0)
    assert "OpenAI-compatible endpoint" in text(refused)
    # once saved, the page leads to an agent on that model, preselected even when it is not the newest
    saved = client.post("/studio/models/new/", {**form, "family": "unknown", "function_calling": "on"}, follow=True)
    model = ModelConfig.objects.get(customer=customer, name="local")
    make_model(customer, name="newer")
    assert f'href="/studio/agents/new/?model={model.pk}"' in saved.content.decode()
    agent_form = client.get(f"/studio/agents/new/?model={model.pk}").content.decode()
    assert f'<option value="{model.pk}" selected>local</option>' in agent_form
    # and an agent saved leads to a run with it preselected
    created = client.post("/studio/agents/new/", {"name": "helper", "model": model.pk}, follow=True)
    agent = Agent.objects.get(customer=customer, name="helper")
    assert f'href="/studio/?target=agent:{agent.pk}"' in created.content.decode()
    assert f'<option value="agent:{agent.pk}" selected>helper</option>' in client.get(
        f"/studio/?target=agent:{agent.pk}").content.decode()
    # no runs yet: the history says so and where to start
    assert "No runs yet: start one" in text(client.get("/studio/runs/"))
    # a run whose model failed links to that model configuration to fix and test it
    task = make_task(owner, agent=agent)
    task_finish(task_id=task.pk, status="failed",
                error={"code": "model_error", "message": "Model 'local' at http://127.0.0.1:9/v1: connection refused"})
    failed = client.get(f"/studio/runs/{task.pk}/")
    assert f'<a href="/studio/models/{model.pk}/">local</a>' in failed.content.decode()
    assert 'use "Test connection"' in text(failed)


def test_the_runs_history_shows_each_finished_runs_cost_in_two_queries(make_customer, django_assert_max_num_queries):
    customer, owner = make_customer("costs-co")
    priced = make_model(customer, name="priced")
    ModelConfig.objects.filter(pk=priced.pk).update(price_prompt_per_million=Decimal("2"),
                                                    price_completion_per_million=Decimal("10"))
    agent = make_agent(customer, model=priced, name="payer")
    free = make_agent(customer, name="free")
    team = make_team(customer, [agent, free], name="mixed")
    runs = []
    for target in [{"agent": agent}] * 5 + [{"team": team}] * 5:
        task = make_task(owner, **target)
        task_events_append(task_id=task.pk, events=[{"type": "message", "source": "payer", "content": {
            "text": "hi", "models_usage": {"prompt_tokens": 1000, "completion_tokens": 100}}}])
        task_finish(task_id=task.pk, status="succeeded", result={"text": "hi", "stop_reason": "done"},
                    usage={"prompt_tokens": 1000 if "agent" in target else 1500, "completion_tokens": 100})
        runs.append(task)
    running = make_task(owner, agent=free, input="still going")
    client = signed_in(owner)
    client.get("/studio/runs/")  # the session and the customer are cached after the first page

    with django_assert_max_num_queries(12):
        html = client.get("/studio/runs/").content.decode()

    def cost_of(task):
        return re.search(rf'<tr data-task="{task.pk}">.*?<td class="num cost">(.*?)</td>', html, re.S).group(1)
    # 1000 * 2 / 1e6 + 100 * 10 / 1e6 = 0.003; a team run's tokens on the free member's model cost nothing
    assert {cost_of(t) for t in runs} == {"0.003000"}
    assert "known once the run finished" in cost_of(running)


def test_a_customer_with_nothing_built_yet_is_told_where_to_start(make_customer):
    customer, owner = make_customer("empty-co")
    client = signed_in(owner)

    home = client.get("/studio/")

    html = home.content.decode()
    assert 'id="run-form"' not in html and "Nothing to run yet" in text(home)
    assert 'href="/studio/models/new/"' in html and 'href="/studio/agents/new/"' in html
    assert "No agents yet. Create one" in text(client.get("/studio/agents/"))
    assert "No teams yet. Create one" in text(client.get("/studio/teams/"))
    assert "No runs yet: start one" in text(client.get("/studio/runs/"))
    # once an agent exists, the run form is there
    make_agent(customer)
    assert 'id="run-form"' in client.get("/studio/").content.decode()


def test_an_agent_that_asks_a_person_or_needs_approval_is_built_in_the_studio(make_customer):
    customer, owner = make_customer("hitl-co")
    model = make_model(customer)
    client = signed_in(owner)
    form = {"name": "calc", "model": model.pk, "tools": ["calculator"], "approval": ["calculator"]}

    created = client.post("/studio/agents/new/", form)

    agent = Agent.objects.get(customer=customer, name="calc")
    assert created.status_code == 302 and agent.approval == ["calculator"] and not agent.human_input
    page = client.get(f"/studio/agents/{agent.pk}/").content.decode()
    assert re.search(r'<input type="checkbox" name="approval" value="calculator"[^>]*checked', page)
    # approving a tool the agent does not have is refused on the approval boxes, saying why
    refused = client.post(f"/studio/agents/{agent.pk}/", {**form, "approval": ["word_count"]})
    assert refused.status_code == 400 and "word_count" in text(refused)
    # a person's seat in a team
    client.post("/studio/agents/new/", {"name": "me", "model": model.pk, "human_input": "on"})
    assert Agent.objects.get(customer=customer, name="me").human_input is True


class _FormValues(HTMLParser):
    """What a browser submits for one form of a page: inputs, checked boxes, selected options, textareas."""

    def __init__(self, form_id):
        super().__init__(convert_charrefs=True)
        self.form_id, self.inside, self.values = form_id, False, []
        self._select = self._textarea = None
        self._first_option = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self.inside = a.get("id") == self.form_id
        if not self.inside or "disabled" in a:
            return
        if tag == "input" and a.get("name") and a.get("type") not in ("submit", "button"):
            if a.get("type") in ("checkbox", "radio"):
                if "checked" in a:
                    self.values.append((a["name"], a.get("value", "on")))
            else:  # a browser drops line breaks from an input's value
                self.values.append((a["name"], re.sub(r"[\r\n]", "", a.get("value", ""))))
        elif tag == "select":
            self._select, self._first_option, self._chosen = a["name"], None, False
        elif tag == "option" and self._select:
            if self._first_option is None:
                self._first_option = a.get("value", "")
            if "selected" in a:
                self.values.append((self._select, a.get("value", "")))
                self._chosen = True
        elif tag == "textarea":
            self._textarea = [a["name"], ""]

    def handle_data(self, data):
        if self._textarea is not None:
            self._textarea[1] += data

    def handle_endtag(self, tag):
        if tag == "form":
            self.inside = False
        elif tag == "select" and self._select:
            if not self._chosen:
                self.values.append((self._select, self._first_option or ""))
            self._select = None
        elif tag == "textarea" and self._textarea is not None:
            self.values.append((self._textarea[0], self._textarea[1].removeprefix("\n")))
            self._textarea = None


def form_values(response, form_id: str) -> dict:
    parser = _FormValues(form_id)
    parser.feed(response.content.decode())
    values = {}
    for name, value in parser.values:
        values.setdefault(name, []).append(value)
    return values


def test_saving_a_team_unchanged_in_the_studio_keeps_everything_the_api_stored(make_customer):
    # given teams made through the API with what the old form could not show: handoff, source match, stop message
    # and function call conditions, a nested combination, a graph (explicit nulls too), a Magentic-One orchestrator
    customer, owner = make_customer("keep-co")
    writer, critic = make_agent(customer, name="writer"), make_agent(customer, name="critic")
    many = [make_agent(customer, name=f"extra-{i}") for i in range(8)] + [make_agent(customer, name="smith, j")]
    orchestrator = make_model(customer, name="planner")
    teams = [
        make_team(customer, [writer, critic], name="flat", mode="selector", selector_model=orchestrator, termination={
            "handoff": "user", "source_match": ["critic", "writer"], "stop_message": True,
            "function_call": "calculator", "max_messages": 5, "text_mention": " DONE"}),
        make_team(customer, [writer, critic], name="combo", mode="swarm", termination={
            "any": [{"handoff": "user"}, {"all": [{"source_match": ["critic"]}, {"max_messages": 4}]}]}),
        make_team(customer, [writer, critic, many[0]], name="graph", mode="graph", graph={"edges": [
            {"source": writer.pk, "target": critic.pk, "condition": None},
            {"source": critic.pk, "target": writer.pk, "condition": "REVISE\nplease"},
            {"source": critic.pk, "target": many[0].pk, "condition": "APPROVE", "activation": "any",
             "activation_group": "end"}]}, termination={"text_mention": "END\nNOW"}),
        make_team(customer, [writer, critic], name="magentic", mode="magentic_one", orchestrator_model=orchestrator,
                  termination={"timeout_seconds": 60, "max_tokens": 5000}),
        make_team(customer, [writer, critic, *many], name="crowd", termination={"source_match": ["smith, j"]}),
    ]
    client = signed_in(owner)
    for team in teams:
        before = client.get(f"/api/teams/{team.pk}/").json()
        # when the user opens its page and saves it as it is
        page = client.get(f"/studio/teams/{team.pk}/")
        saved = client.post(f"/studio/teams/{team.pk}/", form_values(page, "team-form"))
        # then the API shows the same team, not even a new version
        assert saved.status_code == 302, (team.name, text(saved)[:3000])
        after = client.get(f"/api/teams/{team.pk}/").json()
        assert {**after, "updated_at": None} == {**before, "updated_at": None}, team.name
    # a combination is shown as JSON, the flat conditions in their own fields
    combo = client.get(f"/studio/teams/{teams[1].pk}/").content.decode()
    assert "&quot;source_match&quot;: [" in combo
    flat = form_values(client.get(f"/studio/teams/{teams[0].pk}/"), "team-form")
    assert (flat["handoff"], flat["source_match"], flat["stop_message"]) == (["user"], ["critic, writer"], ["on"])


def test_a_graph_team_is_built_in_the_studio_and_its_mistakes_shown_on_the_edge(make_customer):
    customer, owner = make_customer("graph-co")
    writer, critic, editor = (make_agent(customer, name=n) for n in ("writer", "critic", "editor"))
    client = signed_in(owner)
    form = {"name": "review", "mode": "graph", "member_1": writer.pk, "member_2": critic.pk, "member_3": editor.pk,
            "edge_1_source": writer.pk, "edge_1_target": critic.pk,
            "edge_2_source": critic.pk, "edge_2_target": writer.pk, "edge_2_condition": "REVISE",
            "edge_3_source": critic.pk, "edge_3_target": editor.pk, "edge_3_condition": "APPROVE",
            "edge_3_activation": "any", "max_messages": "12"}

    # given a new graph team with a conditional loop
    created = client.post("/studio/teams/new/", form)

    team = Team.objects.get(customer=customer, name="review")
    assert created.status_code == 302
    api = client.get(f"/api/teams/{team.pk}/").json()
    assert api["mode"] == "graph" and api["graph"] == {"edges": [
        {"source": writer.pk, "target": critic.pk},
        {"source": critic.pk, "target": writer.pk, "condition": "REVISE"},
        {"source": critic.pk, "target": editor.pk, "condition": "APPROVE", "activation": "any"}]}
    # the edit page shows the stored edges and three spare rows
    page = client.get(f"/studio/teams/{team.pk}/")
    assert len(re.findall(r'<tr data-edge="\d+"', page.content.decode())) == 6
    # when an edge is left without its condition, the service's refusal is on that edge's row, by name
    bad = client.post(f"/studio/teams/{team.pk}/", {**form, "edge_3_condition": ""})
    assert bad.status_code == 400
    row = re.search(r'<tr data-edge="2">.*?</tr>', bad.content.decode(), re.S).group(0)
    assert "agent critic has both conditional and unconditional edges" in text_of(row)
    # and an unconditional cycle is named in the graph's own section
    loop = client.post(f"/studio/teams/{team.pk}/", {**form, "edge_2_condition": "", "edge_3_condition": "",
                                                      "edge_3_source": "", "edge_3_target": "",
                                                      "edge_3_activation": ""})
    graph_section = re.search(r'<fieldset class="group" id="graph">.*?</fieldset>', loop.content.decode(), re.S)
    assert "The cycle writer -> critic -> writer has no conditional edge" in text_of(graph_section.group(0))
    team.refresh_from_db()
    assert team.version == 1
    # switching the team to round robin drops the graph, as the API does
    client.post(f"/studio/teams/{team.pk}/", {**form, "mode": "round_robin"})
    assert client.get(f"/api/teams/{team.pk}/").json()["graph"] is None


def test_a_magentic_one_team_and_every_termination_condition_from_the_studio(make_customer):
    customer, owner = make_customer("magentic-co")
    writer, critic = make_agent(customer, name="writer"), make_agent(customer, name="critic")
    planner = make_model(customer, name="planner")
    client = signed_in(owner)
    base = {"name": "mag", "mode": "magentic_one", "member_1": writer.pk, "member_2": critic.pk}

    # an orchestrator model is needed: said on its field
    missing = client.post("/studio/teams/new/", base)
    assert missing.status_code == 400 and "Required in magentic_one mode" in text(missing)
    # given every flat condition in its field
    client.post("/studio/teams/new/", {**base, "orchestrator_model": planner.pk, "handoff": "user",
                                       "source_match": "critic, writer", "stop_message": "on",
                                       "function_call": "calculator", "timeout_seconds": "30"})
    team = client.get(f"/api/teams/{Team.objects.get(name='mag').pk}/").json()
    assert team["orchestrator_model"] == planner.pk and team["termination"] == {
        "timeout_seconds": 30, "handoff": "user", "source_match": ["critic", "writer"], "stop_message": True,
        "function_call": "calculator"}
    # a combination as JSON; its mistakes come back with their path, on the JSON field
    combo = {"all": [{"source_match": ["critic"]}, {"max_messages": 0}]}
    bad = client.post("/studio/teams/new/", {**base, "name": "combo", "orchestrator_model": planner.pk,
                                             "termination_json": json.dumps(combo)})
    assert bad.status_code == 400
    field = re.search(r'<div class="field invalid">\s*<label for="id_termination_json">.*?</div>',
                      bad.content.decode(), re.S)
    assert "all[1].max_messages: must be a positive integer" in text_of(field.group(0))
    combo["all"][1]["max_messages"] = 3
    client.post("/studio/teams/new/", {**base, "name": "combo", "orchestrator_model": planner.pk,
                                       "termination_json": json.dumps(combo)})
    assert Team.objects.get(name="combo").termination == combo
    # a member who is not in the team, on the source-match field; both a field and JSON: refused
    stranger = client.post("/studio/teams/new/", {**base, "name": "x", "orchestrator_model": planner.pk,
                                                  "source_match": "nobody"})
    assert "not members of the team: nobody" in text(stranger)
    both = client.post("/studio/teams/new/", {**base, "name": "x", "orchestrator_model": planner.pk,
                                              "max_messages": "3", "termination_json": json.dumps(combo)})
    assert both.status_code == 400 and "either in the fields above or here, not both" in text(both)
    broken = client.post("/studio/teams/new/", {**base, "name": "x", "orchestrator_model": planner.pk,
                                                "termination_json": "{any: ["})
    assert broken.status_code == 400 and "Not valid JSON" in text(broken)
    assert not Team.objects.filter(name="x").exists()
