"""The studio in a real browser (Playwright driving Debian's Chromium) against a real daphne and a real
`manage.py runworker`; the model is the local OpenAI-compatible stub. (This replaces the old /console/ test:
the console is the studio's run page now.)

- an owner signs in, creates model configurations (and tests one), builds an agent with a tool, a second agent
  and a team of both, runs the team, watches it stream, answers in the thread, finds the runs in the history and
  sees their cost on the usage page;
- a run page loses its server mid-run and resumes with nothing missing and nothing twice; a run is cancelled;
- a viewer reads but cannot edit; keyboard and label basics.

Screenshots of every page go to var/test-artifacts/studio/ (gitignored), one PNG per page and step.
"""
import threading
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connections

from accounts.models import CustomerNotice
from agents.models import Agent, ModelConfig
from tasks.models import Task, TaskEvent, Thread
from teams.models import Team
from tests.execution_support import running, wait_for
from tests.openai_stub import MODEL_INFO, OpenAIStub

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
ARTIFACTS = Path(settings.BASE_DIR) / "var" / "test-artifacts" / "studio"


@pytest.fixture(scope="module")
def worker(django_db_setup, django_db_blocker):
    with running("studio-w1") as procs:
        yield procs


@pytest.fixture
def browser_page(monkeypatch):
    # No skip: a host without Chromium fails here, saying so (scripts/test-deps.sh installs it).
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: `apt-get install chromium` (scripts/test-deps.sh does)"
    from playwright.sync_api import sync_playwright

    # Sync Playwright keeps an event loop on this thread; the test's own ORM calls are still plain sync
    # code (Django's documented setting for Playwright). The servers it starts do not inherit it.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        page.set_default_timeout(20_000)
        yield page
        browser.close()
        # The test's ORM calls ran beside Playwright's loop, on connections of their own: close them here.
        connections.close_all()


def shot(page, name):
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def sign_in(page, server, username, shot_name=None):
    page.goto(f"{server.http_url}/studio/")
    page.wait_for_selector("#id_username")
    if shot_name:
        shot(page, shot_name)
    page.fill("#id_username", username)
    page.fill("#id_password", "password123")
    page.click("#login-button")
    page.wait_for_selector("#user-label")


def stub_agent(customer, stub, name="helper", **fields):
    model = ModelConfig.objects.create(
        customer=customer, name=f"{name}-model", provider="openai", model="stub-model", base_url=stub.base_url,
        model_info=MODEL_INFO,
    )
    return Agent.objects.create(customer=customer, name=name, model=model, system_message="You are helpful.", **fields)


def start_run(page, server, target, text):
    page.goto(f"{server.http_url}/studio/")
    page.select_option("#id_target", target)
    page.fill("#id_input", text)
    page.click("#submit-run")
    page.wait_for_selector("#run-live")
    return int(page.inner_text("#task-id").lstrip("#"))


def shown_seqs(page) -> list[int]:
    return sorted(int(s) for s in page.eval_on_selector_all("#run-live [data-seq]", "els => els.map(e => e.dataset.seq)"))


def stored_seqs(task_id) -> list[int]:
    return list(TaskEvent.objects.filter(task_id=task_id).order_by("seq").values_list("seq", flat=True))


def create_model(page, server, name, stub, prices=("", "")):
    page.goto(f"{server.http_url}/studio/models/new/")
    page.fill("#id_name", name)
    page.select_option("#id_provider", "openai")
    page.fill("#id_model", "stub-model")
    page.fill("#id_base_url", stub.base_url)
    page.fill("#id_api_key", "sk-test-key")
    page.fill("#id_family", "unknown")
    page.check("#id_function_calling")
    page.fill("#id_price_prompt_per_million", prices[0])
    page.fill("#id_price_completion_per_million", prices[1])
    page.click("#save-model")
    page.wait_for_selector("#saved")


def test_an_owner_builds_a_team_runs_it_live_continues_it_and_finds_its_cost(daphne_server, worker, browser_page,
                                                                             make_customer):
    page = browser_page
    customer, user = make_customer("studio-co")
    release = threading.Event()
    replies = [
        {"tool_calls": [{"name": "calculator", "arguments": {"expression": "6*7"}}]},
        "The calculator says 6 x 7 = 42.",  # calc reflects on its tool's result
        {"hold": release, "text": "**Checked**: 6 x 7 = 42. TERMINATE", "timeout": 60},
        "Also, 7 x 6 = 42.",
        "Agreed. TERMINATE",
    ]
    with OpenAIStub(replies) as stub, OpenAIStub(default="pong") as probe:
        # given a user who signs in
        sign_in(page, daphne_server, user.username, shot_name="01-sign-in")
        shot(page, "02-home-empty")
        # when they create a model configuration and test its connection
        create_model(page, daphne_server, "probe", probe)
        page.click("#test-connection")
        wait_for(lambda: page.get_attribute("#test-result", "class") not in (None, "", "test-result pending"),
                 message="the connection test's answer")
        outcome = page.get_attribute("#test-result", "class")
        # (an older server without POST /api/models/{id}/test/ says so: "unavailable")
        assert outcome in ("test-result ok", "test-result unavailable"), page.inner_text("#test-result")
        shot(page, "03-model-tested")
        assert "sk-test-key" not in page.content()
        create_model(page, daphne_server, "stub", stub, prices=("1000", "2000"))
        page.goto(f"{daphne_server.http_url}/studio/models/")
        shot(page, "04-models")

        # and build an agent with a tool, a second agent and a team of both
        model_id = ModelConfig.objects.get(customer=customer, name="stub").pk
        for name, tool in (("calc", True), ("critic", False)):
            page.goto(f"{daphne_server.http_url}/studio/agents/new/")
            page.fill("#id_name", name)
            page.select_option("#id_model", str(model_id))
            page.fill("#id_system_message", f"You are {name}.")
            if tool:
                page.check("#tools input[value='calculator']")
                shot(page, "05-agent-form")
            page.click("#save-agent")
            page.wait_for_selector("#saved")
        calc, critic = Agent.objects.get(customer=customer, name="calc"), Agent.objects.get(customer=customer,
                                                                                             name="critic")
        assert calc.tools == ["calculator"]
        page.goto(f"{daphne_server.http_url}/studio/teams/new/")
        page.fill("#id_name", "duo")
        page.select_option("#id_member_1", str(calc.pk))
        page.select_option("#id_member_2", str(critic.pk))
        page.fill("#id_max_messages", "6")
        page.fill("#id_text_mention", "TERMINATE")
        shot(page, "06-team-form")
        page.click("#save-team")
        page.wait_for_selector("#saved")
        team = Team.objects.get(customer=customer, name="duo")
        assert team.member_ids() == [calc.pk, critic.pk]

        # and run the team
        first = start_run(page, daphne_server, f"team:{team.pk}", "What is 6 times 7?")
        # then its tool call and result appear live, folded under calc's message, while it runs
        page.wait_for_selector("#transcript .step-tool_result", state="attached")
        wait_for(lambda: len(stub.requests) >= 3, message="the critic's held model request")
        assert page.inner_text("#task-status") == "running"
        page.wait_for_selector("#connection.live")
        page.click("#transcript .steps summary")
        assert "calls calculator" in page.inner_text("#transcript .steps")
        assert "42" in page.inner_text("#transcript .step-tool_result")
        # while it runs there is nothing to continue yet, and the page says which team version runs
        assert page.locator("#continue-form").count() == 0
        assert "once this run has finished" in page.inner_text("#continue-later")
        assert "team version 1 · members calc v1, critic v1" in page.inner_text("#run-versions")
        shot(page, "07-run-live")
        release.set()
        page.wait_for_selector("#outcome")
        assert page.inner_text("#task-status") == "succeeded"
        # the tool call and its result are folded under calc's message
        assert "calls calculator" in page.inner_text("#transcript .turn-message:has(.steps) .steps summary")
        # the critic's markdown is rendered; both members spoke; usage and cost are shown
        assert page.inner_text("#transcript .turn-message .md strong") == "Checked"
        sources = page.eval_on_selector_all("#transcript .turn-message .source", "els => els.map(e => e.textContent)")
        assert sources == ["user", "calc", "critic"]
        assert page.locator("#usage tr[data-key='prompt_tokens']").count() == 1
        assert page.inner_text("#run-cost") not in ("", "no price set on the model")
        assert shown_seqs(page) == stored_seqs(first)
        shot(page, "08-run-finished")

        # when they answer in the thread (the box appeared once the run finished)
        assert page.locator("#continue-later").count() == 0
        page.get_by_label("Your next message").fill("And 7 times 6?")
        page.get_by_role("button", name="Send").click()
        page.wait_for_selector("#outcome")
        second = int(page.inner_text("#task-id").lstrip("#"))
        assert Task.objects.get(pk=second).thread_id == Task.objects.get(pk=first).thread_id
        assert page.locator("#thread-runs li").count() == 2
        assert "Agreed" in page.inner_text("#transcript")
        shot(page, "09-thread-continued")

    # then both runs are in the history, filtered by the team
    page.goto(f"{daphne_server.http_url}/studio/runs/")
    page.select_option("#id_team", str(team.pk))
    page.wait_for_url(f"**team={team.pk}**")
    page.wait_for_selector(f"#runs-table tr[data-task='{first}']")
    assert page.locator("#runs-table tbody tr[data-task]").count() == 2
    # with each run's team version and cost
    for task_id in (first, second):
        row = page.locator(f"#runs-table tr[data-task='{task_id}']")
        assert row.locator(".version").inner_text() == "v1"
        assert float(row.locator(".cost").inner_text()) > 0
    shot(page, "10-runs-history")
    # and the usage page shows their tokens and cost
    page.goto(f"{daphne_server.http_url}/studio/usage/")
    assert page.inner_text("#total-runs") == "2"
    assert page.inner_text("#total-cost") != "—"
    assert "stub" in page.inner_text("#per-model") and "unknown model" not in page.inner_text("#per-model")
    shot(page, "11-usage")


def test_a_run_page_resumes_after_a_server_restart_and_a_run_is_cancelled(daphne_server, worker, browser_page,
                                                                          make_customer):
    page = browser_page
    customer, user = make_customer("studio-live")
    release, slow = threading.Event(), threading.Event()
    replies = [
        {"tool_calls": [{"name": "calculator", "arguments": {"expression": "6*7"}}]},
        "The calculator says 42. Checking:\n```python\nprint(6 * 7)\n```",
        {"hold": release, "text": "Confirmed: 42. TERMINATE", "timeout": 60},
        {"hold": slow, "text": "too late", "timeout": 30},
    ]
    with OpenAIStub(replies) as stub:
        agent = stub_agent(customer, stub, tools=["calculator"], code_execution=True)
        sign_in(page, daphne_server, user.username)
        task_id = start_run(page, daphne_server, f"agent:{agent.pk}", "What is 6 times 7?")
        page.wait_for_selector("#notices-connection.live")
        # the code execution appears live with its output
        page.wait_for_selector("#transcript .step-code_execution", state="attached")
        wait_for(lambda: len(stub.requests) >= 3, message="the held model request")
        assert page.inner_text("#task-status") == "running"

        # when the server goes away mid-run and the task goes on writing events meanwhile
        daphne_server.stop()
        page.wait_for_selector("#connection.reconnecting")
        release.set()
        wait_for(lambda: Task.objects.get(pk=task_id).is_finished, message="the task to finish")
        daphne_server.start()

        # then the page reconnects by itself and shows every event exactly once
        page.wait_for_selector("#outcome")
        assert shown_seqs(page) == stored_seqs(task_id)
        assert page.inner_text("#task-status") == "succeeded"
        assert page.inner_text("#result") == "Confirmed: 42. TERMINATE"
        page.click("#transcript .steps:has(.step-code_execution) summary")
        assert "[exit 0]" in page.inner_text("#transcript .step-code_execution")
        # and the notices panel resumed after the last notice it had: the status change stored while the
        # server was down is there, and every notice since the page opened is shown once, newest first
        notices = list(CustomerNotice.objects.filter(customer=customer).order_by("-seq").values_list("seq", "payload"))
        assert [p["status"] for _, p in notices] == ["succeeded", "running", "queued"]
        page.wait_for_selector(f"#notices li[data-seq='{notices[0][0]}']")
        shown = page.eval_on_selector_all("#notices li", "items => items.map(i => Number(i.dataset.seq))")
        assert shown == [seq for seq, _ in notices][:len(shown)]
        assert page.inner_text(f"#notices li[data-seq='{notices[0][0]}']").endswith(f"Run #{task_id} is succeeded")
        shot(page, "12-run-resumed")

        # and a second run is cancelled from its page
        cancelled = start_run(page, daphne_server, f"agent:{agent.pk}", "Take your time")
        wait_for(lambda: len(stub.requests) >= 4, message="the slow model request")
        page.click("#cancel-task")
        page.wait_for_selector("#outcome")
        slow.set()
    assert Task.objects.get(pk=cancelled).status == "cancelled"
    assert page.inner_text("#task-failure").startswith("cancelled")
    assert shown_seqs(page) == stored_seqs(cancelled)
    shot(page, "13-run-cancelled")


def test_a_viewer_reads_but_cannot_edit_and_pages_have_labels_and_keyboard_access(daphne_server, browser_page,
                                                                                  make_customer):
    page = browser_page
    customer, _ = make_customer("studio-view")
    model = ModelConfig.objects.create(customer=customer, name="replay", provider="replay", responses=["hi"])
    agent = Agent.objects.create(customer=customer, name="shown", model=model)
    _, viewer = make_customer("studio-view", role="viewer")
    sign_in(page, daphne_server, viewer.username)
    # an old console link opens the run in the studio
    thread = Thread.objects.create(customer=customer, agent=agent)
    old = Task.objects.create(customer=customer, agent=agent, thread=thread, input="from the console",
                              status="succeeded")
    page.goto(f"{daphne_server.http_url}/console/#task={old.pk}")
    page.wait_for_url(f"**/studio/runs/{old.pk}/")
    assert "from the console" in page.inner_text("#transcript")
    page.goto(f"{daphne_server.http_url}/studio/")

    # the first Tab reaches the skip link, which moves focus to the content
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    assert page.locator("#run-form").count() == 0 and page.locator("#read-only-notice").count() == 1

    unlabeled = """() => [...document.querySelectorAll('input, select, textarea')]
        .filter(e => e.type !== 'hidden' && !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))
        .map(e => e.name || e.id)"""
    from teams.services import team_create, team_update

    second = Agent.objects.create(customer=customer, name="second", model=model)
    team = team_create(actor="test", customer=customer, name="pair", members=[agent])
    team_update(actor="test", team=team, data={"members": [agent, second]})
    for path, name in ((f"/studio/agents/{agent.pk}/", "14-viewer-agent"), ("/studio/agents/new/", None),
                       (f"/studio/teams/{team.pk}/", "17-viewer-team-versions"),
                       (f"/studio/teams/{team.pk}/diff/", "18-viewer-team-diff"),
                       ("/studio/teams/new/", None), ("/studio/models/new/", None), ("/studio/runs/", None)):
        page.goto(f"{daphne_server.http_url}{path}")
        assert page.evaluate(unlabeled) == [], path
        if name:
            shot(page, name)
    # a viewer sees the agent's form disabled and no way to save, create or roll back
    page.goto(f"{daphne_server.http_url}/studio/agents/{agent.pk}/")
    assert page.is_disabled("#id_name") and page.locator("#save-agent").count() == 0
    page.goto(f"{daphne_server.http_url}/studio/agents/")
    assert page.locator("#new-agent").count() == 0
    # the team's history is there to read (v2 adds a member), without a way to roll back
    page.goto(f"{daphne_server.http_url}/studio/teams/{team.pk}/diff/")
    assert "+members: shown, second" in page.inner_text("#diff")
    page.goto(f"{daphne_server.http_url}/studio/teams/{team.pk}/")
    assert page.locator("#versions tr[data-version]").count() == 2
    assert page.locator("#versions button").count() == 0
    # and a write sent anyway is refused
    status = page.evaluate("""async (url) => (await fetch(url, {method: 'POST', body: new URLSearchParams({
        csrfmiddlewaretoken: document.querySelector('[name=csrfmiddlewaretoken]').value, name: 'x'})})).status""",
                           f"/studio/agents/{agent.pk}/")
    assert status == 403
    assert Agent.objects.get(pk=agent.pk).name == "shown"


def test_an_owner_builds_a_graph_team_and_keeps_a_combination_when_saving(daphne_server, browser_page, make_customer):
    from teams.services import team_create

    page = browser_page
    customer, owner = make_customer("studio-graph")
    model = ModelConfig.objects.create(customer=customer, name="replay", provider="replay", responses=["hi"])
    writer, critic, editor = (Agent.objects.create(customer=customer, name=n, model=model)
                              for n in ("writer", "critic", "editor"))
    sign_in(page, daphne_server, owner.username)
    # a new team shows the graph's edges only once graph mode is chosen
    page.goto(f"{daphne_server.http_url}/studio/teams/new/")
    assert not page.is_visible("#graph") and not page.is_visible("#id_orchestrator_model")
    page.fill("#id_name", "review")
    page.select_option("#id_mode", "graph")
    assert page.is_visible("#graph")
    page.select_option("#id_member_1", str(writer.pk))
    page.select_option("#id_member_2", str(critic.pk))
    page.select_option("#id_edge_1_source", str(writer.pk))
    page.select_option("#id_edge_1_target", str(critic.pk))
    page.select_option("#id_edge_2_source", str(critic.pk))
    page.select_option("#id_edge_2_target", str(writer.pk))
    shot(page, "20-team-form-graph")
    page.click("#save-team")
    # an unconditional loop is refused, named in the graph's section; a condition on the way back fixes it
    assert "The cycle writer -> critic -> writer has no conditional edge" in page.inner_text("#graph")
    shot(page, "21-team-form-graph-refused")
    page.fill("#id_edge_2_condition", "REVISE")
    page.select_option("#id_member_3", str(editor.pk))
    page.select_option("#id_edge_3_source", str(critic.pk))
    page.select_option("#id_edge_3_target", str(editor.pk))
    page.fill("#id_edge_3_condition", "APPROVE")
    page.click("#save-team")
    page.wait_for_selector("#saved")
    team = Team.objects.get(customer=customer, name="review")
    assert team.graph == {"edges": [{"source": writer.pk, "target": critic.pk},
                                    {"source": critic.pk, "target": writer.pk, "condition": "REVISE"},
                                    {"source": critic.pk, "target": editor.pk, "condition": "APPROVE"}]}
    # a team with a combination made through the API: saved in the browser unchanged, it stays as it was
    combo = {"any": [{"handoff": "user"}, {"all": [{"source_match": ["critic"]}, {"max_messages": 4}]}]}
    swarm = team_create(actor="test", customer=customer, name="swarm", members=[writer, critic], mode="swarm",
                        termination=combo)
    page.goto(f"{daphne_server.http_url}/studio/teams/{swarm.pk}/")
    shot(page, "22-team-form-combination")
    page.click("#save-team")
    page.wait_for_selector("#saved")
    swarm.refresh_from_db()
    assert (swarm.termination, swarm.version) == (combo, 1)


def test_a_run_asks_a_question_and_the_user_answers_in_the_page(daphne_server, worker, browser_page, make_customer):
    from teams.models import TeamMember

    page = browser_page
    customer, user = make_customer("studio-ask")
    model = ModelConfig.objects.create(customer=customer, name="replay", provider="replay",
                                       responses=["Which colour do you like?", "Blue it is. TERMINATE"])
    writer = Agent.objects.create(customer=customer, name="writer", model=model)
    person = Agent.objects.create(customer=customer, name="customer", model=model, human_input=True)
    team = Team.objects.create(customer=customer, name="ask-me", termination={"max_messages": 10,
                                                                              "text_mention": "TERMINATE"})
    TeamMember.objects.create(team=team, agent=writer, position=0)
    TeamMember.objects.create(team=team, agent=person, position=1)
    sign_in(page, daphne_server, user.username)

    # given a run whose team asks the person in the middle
    task_id = start_run(page, daphne_server, f"team:{team.pk}", "Pick a colour for the logo")
    # then the question appears live, with a labelled answer box, and is announced
    page.wait_for_selector("#input-request")
    assert page.inner_text("#task-status") == "input_required"
    assert "Which colour do you like?" in page.inner_text("#input-question")
    assert page.inner_text("label[for='answer-text']") == "Your answer to customer"
    # only the answer box: no box to start another run while this one waits
    assert page.locator("#continue-form").count() == 0 and page.locator("#continue-later").count() == 0
    page.wait_for_function("document.getElementById('run-announce').textContent.includes('Which colour')")
    shot(page, "15-run-asks")

    # when they type the answer from the keyboard and send it
    page.focus("#answer-text")
    page.keyboard.type("Blue, please")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "answer-button"
    page.keyboard.press("Enter")
    # the answer is taken: announced, and the focus rests on the run (not lost with the removed box)
    page.wait_for_function("document.getElementById('run-announce').textContent.startsWith('Answer sent')")
    assert page.evaluate("document.activeElement.id") == "run-live"

    # then the run resumes on a worker and finishes, live on the same page
    page.wait_for_selector("#outcome")
    assert page.inner_text("#task-status") == "succeeded"
    assert page.locator("#input-request").count() == 0
    transcript = page.inner_text("#transcript")
    assert "Blue, please" in transcript and "Blue it is." in transcript
    assert f"answered by {user.username}: Blue, please" in transcript
    assert Task.objects.get(pk=task_id).result["text"] == "Blue it is. TERMINATE"
    assert shown_seqs(page) == stored_seqs(task_id)
    shot(page, "16-run-answered")


def test_an_owner_starts_one_run_per_line_and_finds_them_together(daphne_server, worker, browser_page, make_customer):
    """"One run per line": each line that is not empty starts a run of its own, all created together (the batch
    service); the page then lists them for that agent and they finish. Too many lines: said on the field, and
    nothing starts."""
    from tests.admin_support import make_agent

    page = browser_page
    customer, user = make_customer("studio-lines", max_tasks_per_day=10)
    agent = make_agent(customer, responses=["Noted. TERMINATE"])
    sign_in(page, daphne_server, user.username)
    page.goto(f"{daphne_server.http_url}/studio/")
    page.select_option("#id_target", f"agent:{agent.pk}")
    page.fill("#id_input", "alpha\n\n  beta  \ngamma\n")
    page.check("#id_each_line")
    shot(page, "run-per-line-form")
    page.click("#submit-run")
    page.wait_for_url(f"**/studio/runs/?agent={agent.pk}")
    page.wait_for_selector("#runs-table tbody tr[data-task]")
    shot(page, "run-per-line-list")
    created = list(Task.objects.filter(customer=customer).order_by("pk").values_list("pk", "input"))
    assert [text for _, text in created] == ["alpha", "beta", "gamma"]
    assert sorted(int(r) for r in page.locator("#runs-table tbody tr[data-task]").evaluate_all(
        "rows => rows.map(r => r.dataset.task)")) == [pk for pk, _ in created]
    wait_for(lambda: all(s == "succeeded" for s in Task.objects.filter(customer=customer).values_list("status", flat=True)),
             timeout=60, message="the three runs to succeed")
    page.reload()
    for pk, _ in created:
        assert page.locator(f"#runs-table tr[data-task='{pk}'] .badge").inner_text().strip() == "succeeded"

    # past the daily quota (10, 3 used): the page names the line as the box shows it (the 8th task is on line 9,
    # after a blank one), and none of the lines starts
    page.goto(f"{daphne_server.http_url}/studio/")
    page.select_option("#id_target", f"agent:{agent.pk}")
    page.fill("#id_input", "line 1\n\n" + "\n".join(f"line {n}" for n in range(2, 9)))
    page.check("#id_each_line")
    page.click("#submit-run")
    page.wait_for_selector("#run-form [role=alert]")
    shot(page, "run-per-line-quota")
    assert "Line 9: Daily task limit of 10 reached" in page.inner_text("#run-form")
    assert Task.objects.filter(customer=customer).count() == 3

    # more lines than one batch takes: said on the field, nothing starts
    page.fill("#id_input", "\n".join(f"q{n}" for n in range(settings.MAX_TASK_BATCH + 1)))
    page.click("#submit-run")
    page.wait_for_selector("#run-form .field.invalid")
    assert f"At most {settings.MAX_TASK_BATCH} lines (one run each)" in page.inner_text("#run-form")
    assert Task.objects.filter(customer=customer).count() == 3
