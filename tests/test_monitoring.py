"""deploy/monitoring/ against the real servers: promtool checks the configuration and rules and runs each
alert's own unit test; a real Prometheus (Debian's package) with the shipped configuration scrapes a
running platform after tasks of two customers (succeeded, slow, failed, cancelled while running), webhook
deliveries (delivered, given up) and a customer near its token budget, loads the alert rules, evaluates every expression of the dashboard and the
rules without error, naming only exported metrics, and finds data for every panel of the dashboard."""
import json
import re
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest
import requests
import yaml
from django.conf import settings

from conftest import host_lacks
from tests.api_support import make_agent, make_model, make_task
from tests.execution_support import running, wait_for
from tests.live_server import Daphne, free_port
from tests.openai_stub import MODEL_INFO, OpenAIStub

MONITORING = Path(settings.BASE_DIR) / "deploy" / "monitoring"


def _need(command: str) -> str:
    path = shutil.which(command)
    if path is None:
        host_lacks(f"`{command}` (Debian package prometheus; scripts/test-deps.sh installs it)")
    return path


def _promtool(*args) -> subprocess.CompletedProcess:
    return subprocess.run([_need("promtool"), *args], cwd=MONITORING, capture_output=True, text=True, timeout=120)


def test_promtool_accepts_the_configuration_and_every_alert_passes_its_unit_test():
    for args in (("check", "config", "prometheus.yml"), ("check", "rules", "alerts.yml"), ("test", "rules", "alerts_test.yml")):
        result = _promtool(*args)
        assert result.returncode == 0, (args, result.stdout, result.stderr)
    # every alert has its own test
    alerts = {rule["alert"] for group in yaml.safe_load((MONITORING / "alerts.yml").read_text())["groups"] for rule in group["rules"]}
    tested = {case["alertname"] for test in yaml.safe_load((MONITORING / "alerts_test.yml").read_text())["tests"]
              for case in test["alert_rule_test"]}
    assert alerts == tested


def _expressions(panels_only: bool = False) -> list[str]:
    rules = [rule["expr"] for group in yaml.safe_load((MONITORING / "alerts.yml").read_text())["groups"] for rule in group["rules"]]
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    panels = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    assert len(panels) >= 10
    return panels if panels_only else rules + panels


def _exported_names(client) -> set[str]:
    """Every metric /metrics declares (this process: each metric's HELP/TYPE appears even before a sample)."""
    names = set()
    for line in client.get("/metrics").content.decode().splitlines():
        match = re.match(r"# TYPE (\S+) (\S+)", line)
        if match:
            name, kind = match.groups()
            names.add(name)
            if kind in ("histogram", "summary"):
                names |= {f"{name}_bucket", f"{name}_count", f"{name}_sum"}
    return names


@pytest.mark.django_db
def test_every_expression_names_only_exported_metrics(client):
    exported = _exported_names(client)
    for expr in _expressions():
        for name in re.findall(r"\b((?:platform|django)_[a-z0-9_]+)", expr):
            assert name in exported, f"{name} (in {expr!r}) is not a metric the platform exports"


class Prometheus:
    def __init__(self, target_port: int):
        self.dir = Path(tempfile.mkdtemp(prefix="prom-server-", dir="/tmp"))
        self.port = free_port()
        config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
        config["global"].update(scrape_interval="1s", evaluation_interval="1s")
        config["rule_files"] = [str(MONITORING / "alerts.yml")]
        web = next(job for job in config["scrape_configs"] if job["job_name"] == "platform-web")
        web["static_configs"] = [{"targets": [f"127.0.0.1:{target_port}"]}]
        (self.dir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log = open(self.dir / "prometheus.log", "wb")
        self.proc = subprocess.Popen(
            [_need("prometheus"), f"--config.file={self.dir / 'prometheus.yml'}", f"--storage.tsdb.path={self.dir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        self.url = f"http://127.0.0.1:{self.port}"

    def api(self, path: str, **params):
        response = requests.get(self.url + path, params=params, timeout=10)
        return response.json()

    def ready(self) -> bool:
        try:
            return requests.get(self.url + "/-/ready", timeout=2).status_code == 200
        except requests.RequestException:
            assert self.proc.poll() is None, (self.dir / "prometheus.log").read_text()[-3000:]
            return False

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def _query(prometheus, expr) -> list:
    answer = prometheus.api("/api/v1/query", query=expr)
    assert answer["status"] == "success", (expr, answer)
    return answer["data"]["result"]


def _by(prometheus, expr, label) -> dict:
    """{label value: value}, without the zeros (the fixed label sets are exported from 0 before anything happens)."""
    return {r["metric"].get(label, ""): float(r["value"][1]) for r in _query(prometheus, expr) if float(r["value"][1])}


@pytest.mark.django_db(transaction=True)
def test_prometheus_scrapes_the_platform_and_every_panel_and_rule_has_data(make_customer, settings):
    """The operator's walk-through: the platform (web, task worker, webhook worker sharing one metrics
    directory, as runplatform runs them), a few tasks of two customers (one succeeds, one on a slow model,
    one fails, one is cancelled while running), webhook deliveries (one delivered, one given up), a
    refused request and a live stream; then Prometheus with the shipped configuration and rules."""
    _need("prometheus")
    from integrations.services import webhook_create
    from tasks.models import Task
    from tasks.services import task_cancel
    from tests.webhook_receiver import Receiver

    settings.WEBHOOKS_ALLOW_PRIVATE = True
    shared = tempfile.mkdtemp(prefix="prom-mp-", dir="/tmp")
    customer, user = make_customer("monitoring")
    other, other_user = make_customer("monitoring-other")
    server = Daphne(env={"PROMETHEUS_MULTIPROC_DIR": shared, "METRICS_CUSTOMERS": str(customer.pk)}).start()
    release = threading.Event()
    prometheus = None
    try:
        # only `customer` is given its own label: the other one counts as "other" (the bound an operator sets)
        with running("monitoring-w1", webhooks=1, PROMETHEUS_MULTIPROC_DIR=shared, METRICS_CUSTOMERS=str(customer.pk),
                     WEBHOOKS_ALLOW_PRIVATE="1", WEBHOOK_MAX_ATTEMPTS="1"), \
                OpenAIStub([{"hold": release, "text": "Late. TERMINATE", "timeout": 120}]) as held, \
                OpenAIStub(["Slowly. TERMINATE"], latency=1.5) as slow, \
                Receiver([200]) as listening, Receiver([500]) as failing_endpoint:
            webhook_create(actor=user, customer=customer, url=listening.url, events=["task.succeeded"])
            webhook_create(actor=other_user, customer=other, url=failing_endpoint.url, events=["task.succeeded"])
            ok_agent, other_agent = make_agent(customer), make_agent(other)
            broken = make_model(customer, provider="openai", model="m", base_url=f"http://127.0.0.1:{free_port()}/v1",
                                model_info=MODEL_INFO)
            failing_agent = make_agent(customer, model=broken)
            held_agent = make_agent(customer, model=make_model(customer, provider="openai", model="m", base_url=held.base_url,
                                                               model_info=MODEL_INFO))
            slow_agent = make_agent(customer, model=make_model(customer, provider="openai", model="m", base_url=slow.base_url,
                                                               model_info=MODEL_INFO))

            # when a task succeeds, one answers slowly, one fails (its model does not answer), one is cancelled
            # while running, and another customer's task succeeds
            ok, slowly, failing, killed = (make_task(user, agent=a) for a in (ok_agent, slow_agent, failing_agent, held_agent))
            elsewhere = make_task(other_user, agent=other_agent)
            wait_for(lambda: held.requests, 120, message="the held task's model call")
            task_cancel(actor=user, task=Task.objects.get(pk=killed.pk))
            tasks = (ok, slowly, failing, killed, elsewhere)
            wait_for(lambda: all(Task.objects.get(pk=t.pk).is_finished for t in tasks), 120, message="five finished tasks")
            statuses = [Task.objects.get(pk=t.pk).status for t in tasks]
            assert statuses == ["succeeded", "succeeded", "failed", "cancelled", "succeeded"], statuses
            # and an operator lowers the customer's monthly token budget to just above what it used (95%)
            from tasks.quotas import customer_tokens_this_month

            used = customer_tokens_this_month(customer)
            assert used > 0
            type(customer).objects.filter(pk=customer.pk).update(monthly_token_budget=int(used / 0.95))
            # and the deliveries are made (two to the listening endpoint, one refused with a 500 and given up)
            wait_for(lambda: len(listening.requests) == 2 and failing_endpoint.requests, 60, message="the deliveries")
            # and an operator's requests: one refused (401), one live stream of a task
            assert requests.get(server.http_url + "/api/tasks/", timeout=10).status_code == 401
            from conftest import token_for

            stream = requests.get(f"{server.http_url}/api/tasks/{ok.pk}/stream/", timeout=10,
                                  headers={"Authorization": f"Bearer {token_for(user)}"})
            assert stream.status_code == 200 and "event:" in stream.text

            # and Prometheus runs with the shipped configuration, pointed at the platform
            prometheus = Prometheus(server.port)
            wait_for(prometheus.ready, 60, interval=0.2, message="Prometheus ready")

            def target_up():
                targets = prometheus.api("/api/v1/targets")["data"]["activeTargets"]
                return [t for t in targets if t["labels"]["job"] == "platform-web" and t["health"] == "up"]

            wait_for(target_up, 60, interval=0.5, message="the platform target up")

            # then it has the tasks' outcomes, per customer within the bound, and the webhook deliveries
            seen = wait_for(lambda: len(o := _by(prometheus, "sum by (outcome) (platform_tasks_finished_total)", "outcome")) == 3 and o,
                            60, interval=0.5, message="three outcomes scraped")
            assert seen == {"succeeded": 3.0, "failed": 1.0, "cancelled": 1.0}
            assert _by(prometheus, "sum by (customer) (platform_customer_tasks_finished_total)", "customer") == {
                str(customer.pk): 4.0, "other": 1.0}
            assert _by(prometheus, "sum by (customer) (platform_customer_tasks_started_total)", "customer") == {
                str(customer.pk): 4.0, "other": 1.0}
            tokens = _by(prometheus, "sum by (customer) (platform_customer_model_tokens_total)", "customer")
            assert set(tokens) == {str(customer.pk), "other"} and all(n > 0 for n in tokens.values()), tokens
            assert _by(prometheus, "sum by (outcome) (platform_webhook_deliveries_finished_total)", "outcome") == {
                "succeeded": 2.0, "gave_up": 1.0}
            assert _by(prometheus, "sum by (result) (platform_webhook_attempt_duration_seconds_count)", "result") == {
                "2xx": 2.0, "5xx": 1.0}
            assert _by(prometheus, "max(platform_webhook_workers)", "") == {"": 1.0}
            # the share of the monthly token budget used: the listed customer's ~95%, the other one's as "other"
            budgets = _by(prometheus, "max by (customer) (platform_customer_token_budget_used_ratio)", "customer")
            assert set(budgets) == {str(customer.pk), "other"}, budgets
            assert 0.9 < budgets[str(customer.pk)] <= 1 and 0 < budgets["other"] < 0.01, budgets
            # the slow model shows in the model latency: one call of 1.5 s or more
            buckets = {float(le): n for le, n in _by(
                prometheus, "sum by (le) (platform_model_request_duration_seconds_bucket)", "le").items()}
            assert buckets[2.0] - buckets[1.0] >= 1, buckets

            # and every expression of the rules and the dashboard evaluates, and every panel's query has data
            for expr in _expressions():
                _query(prometheus, expr)
            panels = _expressions(panels_only=True)
            deadline = time.monotonic() + 30  # a rate() needs two scrapes of a series
            while (missing := [x for x in panels if not _query(prometheus, x)]) and time.monotonic() < deadline:
                time.sleep(1)
            assert not missing, f"panels without data: {missing}"

            # and the rules are loaded and evaluated without error
            def rules_evaluated():
                groups = prometheus.api("/api/v1/rules")["data"]["groups"]
                rules = [r for g in groups for r in g["rules"]]
                return len(rules) == 10 and all(r.get("lastEvaluation", "").startswith("20") for r in rules) and rules

            rules = wait_for(rules_evaluated, 30, interval=0.5, message="every rule evaluated")
            assert all(r["health"] == "ok" for r in rules), [(r["name"], r.get("lastError")) for r in rules]
            # a task worker and a delivery worker run, nothing is late: those alerts are quiet
            for name in ("PlatformNoLiveWorker", "PlatformWebhooksLate"):
                assert next(r for r in rules if r["name"] == name)["state"] == "inactive", name
            # and the customer past 90% of its budget makes the budget alert pending (it fires after 5 minutes)
            nearly = next(r for r in rules if r["name"] == "PlatformTokenBudgetNearlySpent")
            assert nearly["state"] == "pending" and [a["labels"]["customer"] for a in nearly["alerts"]] == [str(customer.pk)], nearly
            release.set()
    finally:
        release.set()
        if prometheus is not None:
            prometheus.stop()
        server.stop()
        shutil.rmtree(shared, ignore_errors=True)


def test_promtail_reads_the_fields_the_json_logs_have():
    import logging

    from autogen_platform.logctx import JsonFormatter

    config = yaml.safe_load((MONITORING / "promtail.yml").read_text())
    stages = config["scrape_configs"][0]["pipeline_stages"]
    fields = next(s["json"]["expressions"] for s in stages if "json" in s)
    record = json.loads(JsonFormatter().format(logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)))
    assert set(fields.values()) - {"process"} <= set(record)  # `process` is added by runplatform
    labels = next(s["labels"] for s in stages if "labels" in s)
    assert not set(labels) & {"task", "customer", "request_id", "agent", "user", "trace_id"}  # no unbounded labels
    timestamp = next(s["timestamp"] for s in stages if "timestamp" in s)
    assert timestamp["source"] == "time" and timestamp["format"] == "RFC3339Nano"
    time.strptime(record["time"][:19], "%Y-%m-%dT%H:%M:%S")
