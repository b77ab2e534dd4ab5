"""LOG_FORMAT=json: `runplatform` (web, worker, reaper and its own lines) writes one JSON object a line,
with the request id and the context known; secrets sent to the platform never reach the log."""
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest
import requests
from django.conf import settings

from tests.execution_support import database_url, wait_for
from tests.live_server import free_port
from tests.openai_stub import MODEL_INFO, OpenAIStub

MANAGE = str(Path(settings.BASE_DIR) / "manage.py")
PASSWORD = "Pw-4f7d1c2e9b-horse"
WRONG_PASSWORD = "Pw-wrong-8c1e2d3f4a"
MODEL_API_KEY = "sk-model-6b2d9e1f0a7c"
BAD_API_KEY = "badkey-3e9f1a7b5c2d"


def _platform_env(var_dir: Path, port: int, **extra) -> dict:
    from django.db import connection

    env = {k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"}
    env.update(
        DJANGO_SETTINGS_MODULE="autogen_platform.settings.test",
        DATABASE_URL=database_url(connection.settings_dict),
        REDIS_URL=settings.REDIS_URL,
        REDIS_NAMESPACE=f"logs-{uuid.uuid4().hex[:8]}",
        PLATFORM_VAR_DIR=str(var_dir),
        PORT=str(port),
        WORKERS="1",
        PYTHONUNBUFFERED="1",
        **extra,
    )
    return env


@pytest.fixture
def json_platform(transactional_db):
    """`manage.py runplatform` with LOG_FORMAT=json at DEBUG level, on the test database and Redis."""
    var_dir = Path(tempfile.mkdtemp(prefix="logs-", dir="/tmp"))
    (var_dir / "prometheus").mkdir()
    (var_dir / "prometheus" / "left-from-before").write_text("a previous run's file")
    port = free_port()
    log_path = var_dir / "runplatform.log"
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        [sys.executable, MANAGE, "runplatform", "--grace", "5"],
        env=_platform_env(var_dir, port, LOG_FORMAT="json", LOG_LEVEL="DEBUG"),
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
    )
    log.close()
    proc.base, proc.var_dir = f"http://127.0.0.1:{port}", var_dir
    proc.output = lambda: log_path.read_text(errors="replace")
    try:
        wait_for(lambda: _answers(proc.base + "/healthz"), 60, message="runplatform serving")
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        import shutil

        shutil.rmtree(var_dir, ignore_errors=True)


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def test_json_logs_from_every_process_carry_context_and_no_secret(json_platform, make_customer):
    from accounts.services import api_key_create
    from tasks.models import Task

    # given a customer user with a known password and an API key
    customer, user = make_customer("logs")
    user.set_password(PASSWORD)
    user.save()
    _, raw_api_key = api_key_create(actor=user, name="ci")
    base = json_platform.base

    # when requests carry a password (right and wrong), a bearer token, an API key (valid and not),
    # a token in a query string and a model api_key
    http = requests.Session()
    assert http.post(f"{base}/api/auth/token/", json={"username": user.username, "password": WRONG_PASSWORD}).status_code == 401
    login = http.post(f"{base}/api/auth/token/", json={"username": user.username, "password": PASSWORD})
    assert login.status_code == 200, login.text
    access, refresh = login.json()["access"], login.json()["refresh"]
    bearer = {"Authorization": f"Bearer {access}", "X-Request-Id": "logtest42"}
    assert http.get(f"{base}/api/me/", headers=bearer).status_code == 200
    assert http.post(f"{base}/api/auth/token/refresh/", json={"refresh": refresh}).status_code in (200, 404)
    assert http.get(f"{base}/api/me/", headers={"Authorization": f"Api-Key {raw_api_key}"}).status_code == 200
    assert http.get(f"{base}/api/me/", headers={"Authorization": f"Api-Key {BAD_API_KEY}"}).status_code == 401
    assert http.get(f"{base}/api/tasks/999999/stream/?token={access}").status_code in (401, 404)
    with OpenAIStub(["Hello from the stub. TERMINATE"]) as stub:
        model = http.post(f"{base}/api/models/", headers=bearer, json={
            "name": "stub", "provider": "openai", "model": "stub-model", "base_url": stub.base_url,
            "api_key": MODEL_API_KEY, "model_info": MODEL_INFO,
        })
        assert model.status_code == 201, model.text
        invalid = http.post(f"{base}/api/models/", headers=bearer, json={"name": "", "provider": "openai", "api_key": MODEL_API_KEY})
        assert invalid.status_code == 400
        agent = http.post(f"{base}/api/agents/", headers=bearer, json={"name": "greeter", "model": model.json()["id"]})
        assert agent.status_code == 201, agent.text
        task = http.post(f"{base}/api/tasks/", headers=bearer, json={"agent": agent.json()["id"], "input": "hi"})
        assert task.status_code == 201, task.text
        task_id = task.json()["id"]
        wait_for(lambda: Task.objects.get(pk=task_id).is_finished, 120, message="the task finished")
        assert Task.objects.get(pk=task_id).status == "succeeded", Task.objects.get(pk=task_id).error
        # the worker really sent the model api_key to the provider
        assert stub.requests[0]["headers"]["authorization"] == f"Bearer {MODEL_API_KEY}"

    # (and the web process' /metrics adds up what the worker counted: runplatform shares a multiprocess directory)
    from tests.test_metrics import SUCCEEDED, parse

    wait_for(lambda: parse(http.get(f"{base}/metrics").text).get(SUCCEEDED) == 1, 10, message="the task counted")
    assert not (json_platform.var_dir / "prometheus" / "left-from-before").exists()

    json_platform.send_signal(signal.SIGTERM)
    assert json_platform.wait(60) == 0
    output = json_platform.output()

    # then every line is one JSON object with time, level, logger and message
    records = []
    for line in output.splitlines():
        if not line.strip():
            continue
        record = json.loads(line)  # fails on any line that is not JSON
        assert {"time", "level", "logger", "message"} <= set(record), line
        records.append(record)
    processes = {r.get("process") for r in records}
    assert {"supervisor", "web", "worker-1", "reaper"} <= processes, processes

    # and the request's lines carry its request id, user and customer
    access_lines = [r for r in records if r["logger"] == "autogen_platform.access" and r.get("request_id") == "logtest42"]
    assert any(r["path"] == "/api/me/" and r["status"] == 200 and r.get("customer") == customer.pk for r in access_lines), access_lines
    # and the line of a task's creation names the task
    assert any(r["path"] == "/api/tasks/" and r["status"] == 201 and r.get("task") == task_id for r in access_lines), access_lines
    warnings = [r for r in records if r["logger"] == "django.request" and r["level"] == "WARNING"]  # the 401s, the 400
    assert len(warnings) >= 3 and all(r.get("request_id") for r in warnings), warnings

    # and the HTTP client's per-request lines (every URL it calls: model endpoints, HTTP tools with their
    # arguments in the path) stay out of the log, even at DEBUG
    assert not [r for r in records if r["logger"].split(".")[0] in ("httpx", "httpx2", "httpcore")], \
        [r["message"] for r in records if r["logger"].split(".")[0] in ("httpx", "httpx2", "httpcore")][:3]

    # and no secret appears anywhere
    for secret in (PASSWORD, WRONG_PASSWORD, access, refresh, raw_api_key, BAD_API_KEY, MODEL_API_KEY):
        assert secret not in output, f"a secret reached the log: {secret[:6]}..."


def test_plain_lines_carry_the_bound_context_and_redact(caplog):
    from autogen_platform import logctx

    formatter = logctx.PlainFormatter()
    json_formatter = logctx.JsonFormatter()
    record = logging.LogRecord("tasks", logging.INFO, __file__, 1, "login %s", ("password=hunter2-secret",), None)
    with logctx.bind(task=7, customer=3, agent=5):
        logctx.ContextFilter().filter(record)
    logctx.RedactFilter().filter(record)

    assert formatter.format(record).endswith("login password=[redacted] [customer=3 task=7 agent=5]")
    assert json.loads(json_formatter.format(record)) | {"time": None} == {
        "time": None, "level": "INFO", "logger": "tasks", "message": "login password=[redacted]",
        "customer": 3, "task": 7, "agent": 5,
    }
    with pytest.raises(TypeError):
        with logctx.bind(task_name="x"):
            pass


def test_runplatform_own_warnings_are_json_lines_in_json_mode(settings):
    import io

    from adminpanel.management.commands.runplatform import Command

    settings.LOG_FORMAT = "json"
    err = io.StringIO()
    Command(stderr=err)._warn("WARNING: listening on 0.0.0.0\n  with the development secrets")

    (line,) = err.getvalue().splitlines()
    record = json.loads(line)
    assert record["level"] == "WARNING" and record["logger"] == "runplatform"
    assert record["message"] == "WARNING: listening on 0.0.0.0\n  with the development secrets"
