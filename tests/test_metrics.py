"""/metrics: counted where things happen (in whichever process), added up over the processes of a host,
and cheap: a scrape reads the live tasks only, however many finished ones the table holds."""
import re
import tempfile
import urllib.request

import pytest
import requests
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.api_support import make_agent, make_task
from tests.execution_support import running, wait_for
from tests.live_server import Daphne, free_port

SUCCEEDED = 'platform_tasks_finished_total{code="none",outcome="succeeded"}'
CANCELLED = 'platform_tasks_finished_total{code="cancelled",outcome="cancelled"}'


def parse(text: str) -> dict[str, float]:
    values = {}
    for line in text.splitlines():
        match = re.match(r"^((?:platform|django)_[a-z_]+(?:\{[^}]*\})?) (\S+)$", line)
        if match:
            values[_sorted_labels(match.group(1))] = float(match.group(2))
    return values


def _sorted_labels(series: str) -> str:
    """name{b="1",a="2"} -> name{a="2",b="1"}: multiprocess mode and a single process order labels differently."""
    name, _, labels = series.partition("{")
    if not labels:
        return name
    return name + "{" + ",".join(sorted(re.findall(r'[a-z_]+="[^"]*"', labels))) + "}"


def scrape(client) -> dict[str, float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    return parse(response.content.decode())


def test_metrics_count_tasks_where_they_start_and_finish(make_customer, client, django_capture_on_commit_callbacks):
    # given three tasks: one that runs and succeeds, one cancelled before it ran, one still queued
    from tasks.services import task_finish, task_mark_running

    customer, user = make_customer("metrics")
    agent = make_agent(customer)
    before = scrape(client)
    with django_capture_on_commit_callbacks(execute=True):
        done, cancelled, queued = (make_task(user, agent=agent) for _ in range(3))
        task_mark_running(task_id=done.pk, worker="test")
    middle = scrape(client)
    with django_capture_on_commit_callbacks(execute=True):
        task_finish(task_id=done.pk, status="succeeded", result={"text": "ok"},
                    usage={"prompt_tokens": 30, "completion_tokens": 12})
        task_finish(task_id=cancelled.pk, status="cancelled", error={"code": "cancelled", "message": "x"})

    # when Prometheus scrapes
    after = scrape(client)

    # then the figures match what happened
    def delta(name, a=before, b=after):
        return b.get(name, 0) - a.get(name, 0)

    assert delta("platform_tasks_started_total") == 1
    assert delta("platform_task_queue_wait_seconds_count") == 1
    assert middle['platform_tasks{status="running"}'] == 1 and middle['platform_tasks{status="queued"}'] == 2
    assert after['platform_tasks{status="running"}'] == 0 and after['platform_tasks{status="queued"}'] == 1
    assert delta(SUCCEEDED) == 1
    assert delta(CANCELLED) == 1
    assert delta("platform_task_duration_seconds_count") == 1  # the cancelled one never ran
    assert delta('platform_task_duration_seconds_bucket{le="+Inf"}') == 1
    assert delta("platform_events_written_total") >= 6  # queued x3, running, usage, status x2 ...
    assert delta("platform_queue_depth") == 3  # no worker runs this test's queue


@pytest.mark.django_db
def test_recording_functions_keep_labels_bounded(client):
    from autogen_platform import metrics

    before = scrape(client)
    metrics.task_finished("failed", "something-unheard-of-42", 1.5)
    metrics.model_request("openai", "ok", 0.3, prompt_tokens=10, completion_tokens=4)
    metrics.model_request("a-provider-name-typed-by-a-user", "weird", 0.1)
    metrics.sandbox_spawned("warm", 0.02)
    metrics.kill("timeout")
    after = scrape(client)

    def delta(name):
        return after.get(name, 0) - before.get(name, 0)

    assert delta('platform_tasks_finished_total{code="other",outcome="failed"}') == 1
    assert delta('platform_model_request_duration_seconds_count{outcome="ok",provider="openai"}') == 1
    assert delta('platform_model_request_duration_seconds_count{outcome="other",provider="other"}') == 1
    assert delta('platform_model_tokens_total{kind="prompt"}') == 10
    assert delta('platform_model_tokens_total{kind="completion"}') == 4
    assert delta('platform_sandbox_spawn_seconds_count{start="warm"}') == 1
    assert delta('platform_sandbox_kills_total{reason="timeout"}') == 1
    assert not any("unheard" in name or "typed-by" in name for name in after)


def test_label_values_are_the_runtimes_vocabulary():
    from autogen_platform import metrics
    from runtime.outcomes import ErrorCode, Final, StopReason

    assert set(metrics.ERROR_CODES) == set(ErrorCode.values)
    assert set(metrics.OUTCOMES) == set(Final)
    assert set(metrics.KILL_REASONS) == set(ErrorCode.values) | set(StopReason.values)


def _finished_tasks(customer, user, agent, n):
    from django.utils import timezone

    from tasks.models import Task, Thread

    thread = Thread.objects.create(customer=customer, agent=agent)
    now = timezone.now()
    Task.objects.bulk_create([
        Task(customer=customer, agent=agent, thread=thread, input="x", status="succeeded", started_at=now,
             finished_at=now, tokens_used=5)
        for _ in range(n)
    ])


@pytest.mark.django_db
def test_a_scrape_reads_only_live_tasks_however_many_finished(make_customer, client):
    from tasks.models import Task

    customer, user = make_customer("scrape")
    agent = make_agent(customer)
    counts = {}
    for total in (10, 100):
        # given `total` finished tasks
        _finished_tasks(customer, user, agent, total - Task.objects.count())
        assert Task.objects.filter(status="succeeded").count() == total

        # when Prometheus scrapes
        with CaptureQueriesContext(connection) as queries:
            assert client.get("/metrics").status_code == 200

        # then every query on the tasks table reads the queued and running rows only
        counts[total] = len(queries)
        on_tasks = [q["sql"] for q in queries if '"tasks_task"' in q["sql"]]
        assert on_tasks and all("IN ('queued', 'running')" in sql or "IN (%s, %s)" in sql for sql in on_tasks), on_tasks
    assert counts[10] == counts[100]


@pytest.mark.django_db(transaction=True)
def test_counts_from_a_worker_process_show_in_the_web_process_metrics(make_customer, django_capture_on_commit_callbacks):
    # given a web server and a worker sharing one multiprocess directory, as runplatform starts them
    from tasks.models import Task

    shared = tempfile.mkdtemp(prefix="prom-", dir="/tmp")
    worker_port = free_port()
    server = Daphne(env={"PROMETHEUS_MULTIPROC_DIR": shared}).start()
    try:
        with running("metrics-w1", PROMETHEUS_MULTIPROC_DIR=shared, METRICS_PORT=worker_port):
            customer, user = make_customer("multiproc")
            agent = make_agent(customer)

            # when a task runs in the worker process
            with django_capture_on_commit_callbacks(execute=True):
                task = make_task(user, agent=agent)
            wait_for(lambda: Task.objects.get(pk=task.pk).is_finished, 120, message="the task finished")
            assert Task.objects.get(pk=task.pk).status == "succeeded", Task.objects.get(pk=task.pk).error

            # then the web process' /metrics shows what the worker counted
            # (the worker counts right after its commit, which the test may see first; it reports its slots once
            # a second, so the finished task's slot shows free up to a second after its end)
            busy = 'platform_worker_slots{state="busy"}'
            web = wait_for(lambda: (m := parse(requests.get(server.http_url + "/metrics", timeout=10).text)).get(SUCCEEDED)
                           and m.get(busy) == 0 and m, 10, message="the finished task counted and its slot free")
            assert web[SUCCEEDED] == 1
            assert web["platform_tasks_started_total"] == 1
            assert web["platform_task_queue_wait_seconds_count"] == 1
            assert web["platform_task_duration_seconds_count"] == 1
            assert web["platform_events_written_total"] >= 3
            assert web['platform_tasks{status="running"}'] == 0
            assert web["platform_workers_live"] == 1
            assert web['platform_worker_slots{state="busy"}'] == 0 and web['platform_worker_slots{state="free"}'] > 0
            # and django-prometheus' own figures are still there, aggregated too
            assert any(name.startswith("django_http_requests_total_by_method_total") for name in web)

            # and the worker's own endpoint (METRICS_PORT) shows the same counts
            with urllib.request.urlopen(f"http://127.0.0.1:{worker_port}/metrics", timeout=10) as response:
                own = parse(response.read().decode())
            assert own[SUCCEEDED] == 1
    finally:
        server.stop()
        import shutil

        shutil.rmtree(shared, ignore_errors=True)


@pytest.mark.django_db
def test_metrics_include_http_metrics(client):
    client.get("/healthz")
    body = client.get("/metrics").content.decode()
    assert "django_http_requests_total_by_method_total" in body


@pytest.mark.django_db
def test_per_customer_figures_keep_within_the_bound_an_operator_sets(client, settings, monkeypatch):
    from autogen_platform import metrics

    # given METRICS_CUSTOMERS=all with room for two customers
    settings.METRICS_CUSTOMERS, settings.METRICS_CUSTOMERS_MAX = "all", 2
    monkeypatch.setattr(metrics, "customer_label", metrics._CustomerLabels())
    before = scrape(client)
    # when three customers' tasks finish and use tokens
    for customer_id in (901, 902, 903, 901):
        metrics.task_finished("succeeded", None, 1.0, customer_id)
        metrics.model_request("openai", "ok", 0.2, prompt_tokens=10, completion_tokens=2, customer_id=customer_id)
    after = scrape(client)

    def delta(name):
        return after.get(name, 0) - before.get(name, 0)

    # then the first two have their own series, the third counts as "other", and the totals stay true
    assert delta('platform_customer_tasks_finished_total{customer="901",outcome="succeeded"}') == 2
    assert delta('platform_customer_tasks_finished_total{customer="902",outcome="succeeded"}') == 1
    assert delta('platform_customer_tasks_finished_total{customer="other",outcome="succeeded"}') == 1
    assert delta('platform_customer_model_tokens_total{customer="901",kind="prompt"}') == 20
    assert delta('platform_customer_model_tokens_total{customer="other",kind="completion"}') == 2
    assert not any('customer="903"' in name for name in after)
    assert delta(SUCCEEDED) == 4 and delta('platform_model_tokens_total{kind="prompt"}') == 40

    # a list names the customers to watch; `none` gives every customer "other"
    settings.METRICS_CUSTOMERS = "7, 9"
    listed = metrics._CustomerLabels()
    assert [listed(c) for c in (7, 8, 9, None)] == ["7", "other", "9", "other"]
    settings.METRICS_CUSTOMERS = "none"
    assert metrics._CustomerLabels()(7) == "other"


@pytest.mark.django_db
def test_webhook_deliveries_waiting_are_read_from_the_unfinished_rows_only(make_customer, client):
    from datetime import timedelta

    from django.utils import timezone

    from integrations.models import Webhook, WebhookDelivery

    customer, _ = make_customer("hook-metrics")
    hook = Webhook.objects.create(customer=customer, url="https://example.com/hook", secret_encrypted="x")
    now = timezone.now()

    def delivery(status, due_in):
        WebhookDelivery.objects.create(webhook=hook, customer=customer, event="task.succeeded", message_id="m",
                                       payload={}, status=status, next_attempt_at=now + timedelta(seconds=due_in))

    # given a queued delivery due for 2 minutes, a retry due for 10 s, one backing off, one being sent, two done
    delivery("queued", -120)
    delivery("pending", -10)
    delivery("pending", 600)
    delivery("sending", -1)
    delivery("succeeded", -900)
    delivery("failed", -900)
    # when Prometheus scrapes
    with CaptureQueriesContext(connection) as queries:
        values = scrape(client)
    # then it sees them by state, how late the oldest due one is, and it read only the unfinished rows
    assert values['platform_webhook_deliveries_waiting{state="due"}'] == 2
    assert values['platform_webhook_deliveries_waiting{state="retry_wait"}'] == 1
    assert values['platform_webhook_deliveries_waiting{state="sending"}'] == 1
    assert 120 <= values["platform_webhook_oldest_due_seconds"] < 180
    on_deliveries = [q["sql"] for q in queries if '"integrations_webhookdelivery"' in q["sql"]]
    assert len(on_deliveries) == 1 and "IN ('pending', 'queued', 'sending')" in on_deliveries[0], on_deliveries


@pytest.mark.django_db
def test_token_budget_used_is_read_from_the_usage_counters_within_the_label_bound(make_customer, client, settings,
                                                                                 monkeypatch):
    from datetime import timedelta

    from django.utils import timezone

    from accounts.models import CustomerUsage
    from autogen_platform import metrics
    from tasks.services import task_mark_running, task_record_tokens

    ratio = "platform_customer_token_budget_used_ratio{{customer=\"{}\"}}".format
    today = timezone.now().date()
    # given customers with budgets: one nearly spent (its tasks of last month do not count), one at a tenth,
    # a small one at half, one without tokens this month, a deleted one that had spent all, one with a budget of 0
    # and no tokens (not nearly spent: blocked on purpose)
    near, near_user = make_customer("budget-near")
    tenth, _ = make_customer("budget-tenth")
    half, _ = make_customer("budget-half")
    idle, _ = make_customer("budget-idle")
    gone, _ = make_customer("budget-gone")
    blocked, _ = make_customer("budget-blocked")
    for customer, budget, tokens in ((near, 1000, 900), (tenth, 1000, 100), (half, 100, 50), (idle, 1000, 0),
                                     (gone, 10, 10), (blocked, 0, 0)):
        customer.monthly_token_budget = budget
        customer.save()
        if tokens:
            CustomerUsage.objects.create(customer=customer, day=today, tokens=tokens)
    CustomerUsage.objects.create(customer=near, day=today.replace(day=1) - timedelta(days=1), tokens=10_000)
    CustomerUsage.objects.create(customer=idle, day=today.replace(day=1) - timedelta(days=1), tokens=10_000)
    gone.deleted_at = timezone.now()
    gone.save()
    # and one of `near`'s tasks running, which records 60 more tokens after a model call
    task = make_task(near_user, agent=make_agent(near))
    task_mark_running(task_id=task.pk, worker="test")
    task_record_tokens(task_id=task.pk, tokens=60)

    def scraped(mode, limit=100):
        settings.METRICS_CUSTOMERS, settings.METRICS_CUSTOMERS_MAX = mode, limit
        monkeypatch.setattr(metrics, "customer_label", metrics._CustomerLabels())
        with CaptureQueriesContext(connection) as queries:
            values = scrape(client)
        assert not [q for q in queries if '"tasks_task"' in q["sql"] and "IN ('queued', 'running')" not in q["sql"]]
        return {name: v for name, v in values.items() if name.startswith("platform_customer_token_budget")}

    # when Prometheus scrapes with METRICS_CUSTOMERS=all and room for two customers
    # then the two nearest their budget have their own series, and `other` is the highest of the rest
    assert scraped("all", 2) == {ratio(near.pk): 0.96, ratio(half.pk): 0.5, ratio("other"): 0.1}
    # every customer who used tokens this month, when there is room (`other`: none left, 0)
    assert scraped("all") == {ratio(near.pk): 0.96, ratio(half.pk): 0.5, ratio(tenth.pk): 0.1, ratio("other"): 0}
    # a list: the listed ones, even without tokens, and `other` is the one nearest its budget among the rest
    assert scraped(f"{tenth.pk},{idle.pk}") == {ratio(tenth.pk): 0.1, ratio(idle.pk): 0, ratio("other"): 0.96}
    # none: the highest of all
    assert scraped("none") == {ratio("other"): 0.96}


def test_every_fixed_label_value_is_exported_from_zero_so_the_first_event_counts(tmp_path):
    """Prometheus counts no increase for a series' first value: a series that appears at 1 with a task's first
    failure would leave increase() and the alerts at 0. A fresh process (multiprocess mode, as runplatform runs
    it) must export every fixed label value at 0 before anything happened."""
    import os
    import subprocess
    import sys

    from autogen_platform.metrics import ERROR_CODES, KILL_REASONS, MODEL_OUTCOMES, OUTCOMES, PROVIDERS

    # given a process that recorded nothing
    script = ("import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'autogen_platform.settings.test'); "
              "django.setup(); from autogen_platform import metrics; from prometheus_client import generate_latest; "
              "print(generate_latest(metrics._Exposed(with_scrape_collectors=False)).decode())")
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    text = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True,
                          timeout=120).stdout
    # when it is scraped, then every outcome x code, model outcome, kill reason is there, at 0
    values = parse(text)
    expected = [f'platform_tasks_finished_total{{code="{c}",outcome="{o}"}}' for o in OUTCOMES for c in ("none", *ERROR_CODES)]
    expected += [f'platform_model_request_duration_seconds_count{{outcome="{o}",provider="{p}"}}'
                 for p in PROVIDERS for o in MODEL_OUTCOMES]
    expected += [f'platform_sandbox_kills_total{{reason="{r}"}}' for r in KILL_REASONS]
    expected += ['platform_webhook_deliveries_finished_total{outcome="gave_up"}', 'platform_stream_connections{kind="sse"}']
    assert {name: values.get(name) for name in expected} == dict.fromkeys(expected, 0.0)
