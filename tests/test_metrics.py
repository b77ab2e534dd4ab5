"""/metrics: HTTP metrics plus platform figures read from the shared records."""
import re

from tests.api_support import make_agent, make_task


def scrape(client) -> dict[str, float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    values = {}
    for line in response.content.decode().splitlines():
        match = re.match(r"^(platform_[a-z_]+(?:\{[^}]*\})?) (\S+)$", line)
        if match:
            values[match.group(1)] = float(match.group(2))
    return values


def test_metrics_report_tasks_tokens_and_kills(make_customer, client, django_capture_on_commit_callbacks):
    # given three tasks: one succeeded with usage, one cancelled, one still queued
    from tasks.services import task_finish, task_mark_running

    customer, user = make_customer("metrics")
    agent = make_agent(customer)
    depth_before = scrape(client)["platform_queue_depth"]
    with django_capture_on_commit_callbacks(execute=True):
        done, cancelled, queued = (make_task(user, agent=agent) for _ in range(3))
    task_mark_running(task_id=done.pk, worker="test")
    task_finish(task_id=done.pk, status="succeeded", result={"text": "ok"},
                usage={"prompt_tokens": 30, "completion_tokens": 12})
    task_finish(task_id=cancelled.pk, status="cancelled", error={"code": "cancelled", "message": "x"})

    # when Prometheus scrapes
    values = scrape(client)

    # then the figures match what happened
    assert values['platform_tasks{status="succeeded"}'] == 1
    assert values['platform_tasks{status="cancelled"}'] == 1
    assert values['platform_tasks{status="queued"}'] == 1
    assert values["platform_tokens_used_total"] == 42
    assert values['platform_sandbox_kills_total{reason="cancelled"}'] == 1
    assert values['platform_sandbox_kills_total{reason="timeout"}'] == 0
    assert values["platform_task_duration_seconds_count"] == 1
    assert values['platform_task_duration_seconds_bucket{le="+Inf"}'] == 1
    assert values["platform_queue_depth"] == depth_before + 3  # no worker runs this test's queue


def test_metrics_include_http_metrics(client):
    client.get("/healthz")
    body = client.get("/metrics").content.decode()
    assert "django_http_requests_total_by_method_total" in body
