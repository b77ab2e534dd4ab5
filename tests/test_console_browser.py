"""The /console/ page in a real browser (Playwright driving Debian's Chromium) against a real daphne and
a real `manage.py runworker`; the model is the local OpenAI-compatible stub.

A user logs in, picks an agent, runs a task whose tool call, code execution and messages appear live,
loses the server mid-run (daphne restarted while the task keeps writing events) and sees the stream
resume with nothing missing and nothing twice; another task is cancelled from the page.
"""
import threading
from pathlib import Path

import pytest
from django.db import connections

from accounts.models import CustomerNotice
from agents.models import Agent, ModelConfig
from tasks.models import Task, TaskEvent
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


@pytest.fixture(scope="module")
def worker(django_db_setup, django_db_blocker):
    with running("console-w1") as procs:
        yield procs


@pytest.fixture
def browser_page(monkeypatch):
    # No skip: a host without Chromium fails here, saying so (scripts/test-deps.sh installs it).
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: `apt-get install chromium` (scripts/test-deps.sh does)"
    from playwright.sync_api import sync_playwright

    # Sync Playwright keeps an event loop on this thread; the test's own ORM calls are still plain sync
    # code (Django's documented setting for Playwright). The servers it starts do not inherit it.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_context().new_page()
        page.set_default_timeout(20_000)
        yield page
        browser.close()
        # The test's ORM calls ran beside Playwright's loop, on connections of their own: close them here.
        connections.close_all()


def stub_agent(customer, stub, name="helper", **fields):
    model = ModelConfig.objects.create(
        customer=customer, name=f"{name}-model", provider="openai", model="stub-model", base_url=stub.base_url,
        model_info=MODEL_INFO,
    )
    return Agent.objects.create(customer=customer, name=name, model=model, system_message="You are helpful.", **fields)


def log_in(page, server, username):
    page.goto(f"{server.http_url}/console/")
    page.fill("#username", username)
    page.fill("#password", "password123")
    page.click("#login-button")
    page.wait_for_selector("#app-section:not([hidden])")


def submit(page, agent, text):
    page.wait_for_selector(f"#target option[value='agent:{agent.pk}']", state="attached")
    page.select_option("#target", f"agent:{agent.pk}")
    page.fill("#task-input", text)
    page.click("#submit-task")
    page.wait_for_selector("#task-panel:not([hidden])")
    return int(page.inner_text("#task-id").lstrip("#"))


def shown_events(page) -> list[tuple[int, str]]:
    return [
        (int(seq), kind)
        for seq, kind in page.eval_on_selector_all("#events li", "items => items.map(i => [i.dataset.seq, i.dataset.type])")
    ]


def test_console_runs_a_task_live_and_resumes_after_a_server_restart(daphne_server, worker, browser_page, make_customer):
    page = browser_page
    customer, user = make_customer("console-co")
    release = threading.Event()
    replies = [
        {"tool_calls": [{"name": "calculator", "arguments": {"expression": "6*7"}}]},
        "The calculator says 42. Checking:\n```python\nprint(6 * 7)\n```",
        {"hold": release, "text": "Confirmed: 42. TERMINATE", "timeout": 60},
    ]
    with OpenAIStub(replies) as stub:
        agent = stub_agent(customer, stub, tools=["calculator"], code_execution=True)
        # given a logged-in user who submits a task from the console
        log_in(page, daphne_server, user.username)
        page.wait_for_selector("#notices-connection.live")
        task_id = submit(page, agent, "What is 6 times 7?")
        # then its tool call, tool result and code execution appear live while it runs
        page.wait_for_selector("#events li.event-code_execution")
        assert "[exit 0]" in page.inner_text("#events li.event-code_execution") and "42" in page.inner_text(
            "#events li.event-code_execution"
        )
        page.wait_for_selector("#events li.event-tool_call")
        assert "calculator" in page.inner_text("#events li.event-tool_call")
        wait_for(lambda: len(stub.requests) >= 3, message="the held model request")
        assert page.inner_text("#task-status") == "running"

        # when the server goes away mid-run and the task goes on writing events meanwhile
        daphne_server.stop()
        page.wait_for_selector("#connection.reconnecting")
        release.set()
        wait_for(lambda: Task.objects.get(pk=task_id).is_finished, message="the task to finish")
        daphne_server.start()

        # then the page reconnects by itself and shows every event exactly once, in order
        page.wait_for_selector("#outcome:not([hidden])")
    stored = list(TaskEvent.objects.filter(task_id=task_id).order_by("seq").values_list("seq", "type"))
    assert shown_events(page) == stored
    kinds = {kind for _, kind in stored}
    assert {"message", "tool_call", "tool_result", "code_execution", "usage", "status"} <= kinds
    assert page.inner_text("#task-status") == "succeeded"
    assert page.inner_text("#result") == "Confirmed: 42. TERMINATE"
    assert page.locator("#usage tr[data-key='prompt_tokens']").count() == 1

    # and the notices panel resumed after the last notice it had: the status change stored while the
    # server was down is there, and every notice of the customer is shown once, newest first
    notices = list(CustomerNotice.objects.filter(customer=customer).order_by("-seq").values_list("seq", "payload"))
    assert [p["status"] for _, p in notices] == ["succeeded", "running", "queued"]
    page.wait_for_selector(f"#notices li[data-seq='{notices[0][0]}']")
    assert page.eval_on_selector_all("#notices li", "items => items.map(i => Number(i.dataset.seq))") == [
        seq for seq, _ in notices]
    assert page.inner_text(f"#notices li[data-seq='{notices[0][0]}']").endswith(f"Task #{task_id} is succeeded")


def test_console_cancels_a_running_task(daphne_server, worker, browser_page, make_customer):
    page = browser_page
    customer, user = make_customer("console-cancel")
    release = threading.Event()
    with OpenAIStub([{"hold": release, "text": "too late", "timeout": 30}]) as stub:
        agent = stub_agent(customer, stub)
        log_in(page, daphne_server, user.username)
        task_id = submit(page, agent, "Take your time")
        page.wait_for_selector("#task-status.running")
        wait_for(lambda: stub.requests, message="the model request")
        page.click("#cancel-task")
        page.wait_for_selector("#task-status.cancelled")
        page.wait_for_selector("#outcome:not([hidden])")
        release.set()
    assert Task.objects.get(pk=task_id).status == "cancelled"
    assert page.inner_text("#task-failure").startswith("cancelled")
    assert shown_events(page) == list(TaskEvent.objects.filter(task_id=task_id).order_by("seq").values_list("seq", "type"))


def test_console_answers_a_task_that_asks_for_approval(daphne_server, worker, browser_page, make_customer):
    page = browser_page
    customer, user = make_customer("console-approval")
    with OpenAIStub([{"tool_calls": [{"name": "calculator", "arguments": {"expression": "6*7"}}]},
                     "It is 42. TERMINATE"]) as stub:
        agent = stub_agent(customer, stub, tools=["calculator"], approval=["calculator"])
        log_in(page, daphne_server, user.username)
        task_id = submit(page, agent, "What is 6*7?")
        # the question appears live with its buttons, the task waiting
        page.wait_for_selector("#answer-form:not([hidden])")
        page.wait_for_selector("#task-status.input_required")
        assert "calculator" in page.inner_text("#answer-prompt")
        page.click("#answer-approve")
        page.wait_for_selector("#outcome:not([hidden])")
    assert page.inner_text("#result") == "It is 42. TERMINATE"
    assert page.locator("#answer-form").is_hidden()
    assert Task.objects.get(pk=task_id).status == "succeeded"
