"""deploy/monitoring/ against the real servers: promtool checks the configuration and rules and runs each
alert's own unit test; a real Prometheus (Debian's package) with the shipped configuration scrapes a
running platform after a succeeded, a failed and a cancelled (killed) task, loads the alert rules, and
evaluates every expression of the dashboard and the rules without error, naming only exported metrics."""
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


def _expressions() -> list[str]:
    rules = [rule["expr"] for group in yaml.safe_load((MONITORING / "alerts.yml").read_text())["groups"] for rule in group["rules"]]
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    panels = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    assert len(panels) >= 10
    return rules + panels


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


@pytest.mark.django_db(transaction=True)
def test_prometheus_scrapes_the_platform_and_evaluates_every_rule_and_panel(make_customer):
    _need("prometheus")
    from tasks.models import Task
    from tasks.services import task_cancel

    # given the platform (a web process and a worker sharing one metrics directory, as runplatform runs them)
    shared = tempfile.mkdtemp(prefix="prom-mp-", dir="/tmp")
    server = Daphne(env={"PROMETHEUS_MULTIPROC_DIR": shared}).start()
    release = threading.Event()
    prometheus = None
    try:
        with running("monitoring-w1", PROMETHEUS_MULTIPROC_DIR=shared), \
                OpenAIStub([{"hold": release, "text": "Late. TERMINATE", "timeout": 120}]) as slow:
            customer, user = make_customer("monitoring")
            ok_agent = make_agent(customer)
            broken = make_model(customer, provider="openai", model="m", base_url=f"http://127.0.0.1:{free_port()}/v1",
                                model_info=MODEL_INFO)
            failing_agent = make_agent(customer, model=broken)
            held = make_model(customer, provider="openai", model="m", base_url=slow.base_url, model_info=MODEL_INFO)
            slow_agent = make_agent(customer, model=held)

            # when a task succeeds, one fails (its model does not answer) and one is cancelled while running
            ok, failing, killed = (make_task(user, agent=a) for a in (ok_agent, failing_agent, slow_agent))
            wait_for(lambda: slow.requests, 120, message="the slow task's model call")
            task_cancel(actor=user, task=Task.objects.get(pk=killed.pk))
            wait_for(lambda: all(Task.objects.get(pk=t.pk).is_finished for t in (ok, failing, killed)), 120,
                     message="three finished tasks")
            statuses = {t.pk: Task.objects.get(pk=t.pk).status for t in (ok, failing, killed)}
            assert statuses == {ok.pk: "succeeded", failing.pk: "failed", killed.pk: "cancelled"}, statuses

            # and Prometheus runs with the shipped configuration, pointed at the platform
            prometheus = Prometheus(server.port)
            wait_for(prometheus.ready, 60, interval=0.2, message="Prometheus ready")

            # then its target is up and it has the three outcomes
            def target_up():
                targets = prometheus.api("/api/v1/targets")["data"]["activeTargets"]
                return [t for t in targets if t["labels"]["job"] == "platform-web" and t["health"] == "up"]

            wait_for(target_up, 60, interval=0.5, message="the platform target up")

            def outcomes():
                result = prometheus.api("/api/v1/query", query="sum by (outcome) (platform_tasks_finished_total)")
                return {r["metric"]["outcome"]: float(r["value"][1]) for r in result["data"]["result"]}

            seen = wait_for(lambda: len(outcomes()) == 3 and outcomes(), 60, interval=0.5, message="three outcomes scraped")
            assert seen == {"succeeded": 1.0, "failed": 1.0, "cancelled": 1.0}

            # and every expression of the rules and the dashboard evaluates without error
            for expr in _expressions():
                answer = prometheus.api("/api/v1/query", query=expr)
                assert answer["status"] == "success", (expr, answer)

            # and the rules are loaded and evaluated without error
            def rules_evaluated():
                groups = prometheus.api("/api/v1/rules")["data"]["groups"]
                rules = [r for g in groups for r in g["rules"]]
                return len(rules) == 8 and all(r.get("lastEvaluation", "").startswith("20") for r in rules) and rules

            rules = wait_for(rules_evaluated, 30, interval=0.5, message="every rule evaluated")
            assert all(r["health"] == "ok" for r in rules), [(r["name"], r.get("lastError")) for r in rules]
            # a worker runs: the no-live-worker alert is quiet
            assert next(r for r in rules if r["name"] == "PlatformNoLiveWorker")["state"] == "inactive"
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
