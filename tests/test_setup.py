"""The operator's first contact: `seed_demo` (idempotent, credentials that log in), `/readyz` naming the
failing part, and `platform_status` exiting non-zero when the platform is not ready."""
import io
import json
import re
import time
import uuid

import pytest
import redis
from django.conf import settings
from django.core.management import CommandError, call_command

@pytest.fixture
def readiness_redis(settings):
    """A Redis namespace of the test's own (so that workers other tests run do not count) and a way to
    make a worker's slot report in it, as every worker writes one each second."""
    settings.REDIS_NAMESPACE = f"readiness-{uuid.uuid4().hex[:8]}"
    conn = redis.Redis.from_url(settings.REDIS_URL)

    def report_worker(name="w1", total=4, busy=1, at=None) -> str:
        from runtime.keys import worker_slots_key

        conn.hset(worker_slots_key(), name, json.dumps({"total": total, "busy": busy, "at": at or time.time()}))
        return name

    yield report_worker
    conn.delete(f"{settings.REDIS_NAMESPACE}:worker_slots")


def _seed() -> str:
    out = io.StringIO()
    call_command("seed_demo", stdout=out)
    return out.getvalue()


def _credentials(output: str) -> dict:
    return dict(re.findall(r"username: (\S+)\s+password: (\S+)", output))


@pytest.mark.django_db
def test_seed_demo_is_idempotent_and_its_credentials_log_in(anon_client):
    from agents.models import Agent, AgentVersion, ModelConfig
    from teams.models import Team

    # when seed_demo runs twice
    first = _seed()
    second = _seed()

    # then the first run printed both passwords, the second none
    credentials = _credentials(first)
    assert set(credentials) == {"admin", "demo"}
    assert "password:" not in second
    assert not any(password in second for password in credentials.values())
    assert "exist" in second
    assert Agent.objects.filter(customer__name="demo").count() == 4
    assert ModelConfig.objects.filter(customer__name="demo", name="demo-replay", provider="replay").count() == 1
    team = Team.objects.get(customer__name="demo", name="demo-team")
    assert [a.name for a in (Agent.objects.get(pk=pk) for pk in team.member_ids())] == ["demo-agent", "demo-critic"]
    assert team.mode == "round_robin" and team.termination["max_messages"] == 4
    assert AgentVersion.objects.filter(agent__name="demo-agent", version=1).exists()

    # and the printed customer credentials log in and see the demo customer
    token = anon_client.post(
        "/api/auth/token/", {"username": "demo", "password": credentials["demo"]}, format="json"
    )
    assert token.status_code == 200, token.content
    anon_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token.json()['access']}")
    me = anon_client.get("/api/me/").json()
    assert me["username"] == "demo" and me["role"] == "owner" and me["customer"]["name"] == "demo"
    agents = anon_client.get("/api/agents/").json()
    assert {a["name"] for a in agents["results"]} == {"demo-agent", "demo-critic", "demo-calculator", "demo-coder"}

    # and the printed admin credentials log in as a platform admin
    anon_client.credentials()
    admin = anon_client.post(
        "/api/admin/auth/token/", {"username": "admin", "password": credentials["admin"]}, format="json",
        HTTP_X_ADMIN_KEY=settings.ADMIN_API_KEY,
    )
    assert admin.status_code == 200, admin.content
    assert "access" in admin.json()

    # and the printed second factor, with the admin password, opens the Django admin (printed once only)
    from base64 import b32decode

    from django.test import Client
    from django_otp.oath import totp

    secret = re.search(r"otpauth://totp/[^?]+\?secret=([A-Z2-7]+)", first).group(1)
    assert "otpauth://" not in second
    code = str(totp(b32decode(secret))).zfill(6)
    browser = Client()
    login = browser.post("/admin/login/", {"username": "admin", "password": credentials["admin"],
                                           "otp_token": code, "next": "/admin/"})
    assert login.status_code == 302 and login["Location"] == "/admin/", login.content[:2000]
    assert browser.get("/admin/").status_code == 200


@pytest.mark.django_db
def test_readyz_names_redis_when_it_does_not_answer(client, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1

    response = client.get("/readyz")

    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "not_ready"
    assert "Redis does not answer" in error["message"]
    assert "redis" in error["details"]["failing"]
    assert error["details"]["checks"]["database"] == "ok"


@pytest.mark.django_db
def test_readyz_needs_a_live_worker(client, readiness_redis):
    # given no worker
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["error"]["details"]["failing"] == ["workers"]
    assert "no live worker" in response.json()["error"]["message"]

    # when a worker reports its slots
    readiness_redis("w1")
    response = client.get("/readyz")

    # then the platform is ready
    assert response.status_code == 200, response.content
    assert response.json() == {"status": "ready", "checks": {"database": "ok", "redis": "ok", "workers": 1}}

    # and a worker whose last report is older than the bound (SIGKILLed, hung, cut off) no longer counts
    from runtime.keys import WORKER_SLOTS_STALE_SECONDS

    readiness_redis("w1", at=time.time() - WORKER_SLOTS_STALE_SECONDS - 1)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["error"]["details"]["failing"] == ["workers"]


@pytest.mark.django_db
def test_platform_status_reports_and_exits_non_zero_when_not_ready(readiness_redis, make_customer):
    from adminpanel.services import killswitch_set

    # given no worker: not ready, named, non-zero exit
    out = io.StringIO()
    with pytest.raises(CommandError) as not_ready:
        call_command("platform_status", stdout=out, no_color=True)
    assert not_ready.value.returncode != 0
    assert "NOT READY (workers)" in out.getvalue()

    # given a worker and an engaged killswitch: ready, exit 0, everything shown
    readiness_redis("w1", total=4, busy=1)
    customer, _ = make_customer("acme")
    killswitch_set(actor="ops-test", engaged=True, customer=customer, reason="incident 42")
    out = io.StringIO()
    call_command("platform_status", stdout=out, no_color=True)
    text = out.getvalue()
    assert text.startswith("READY")
    assert re.search(r"database\s+ok", text) and re.search(r"redis\s+ok", text)
    assert re.search(r"workers\s+1 live", text)
    assert re.search(r"slots\s+1 busy, 3 free of 4", text)
    assert re.search(r"queue depth\s+\d+", text)
    assert re.search(r"sandboxes\s+\d+ live", text)
    assert "tasks" in text
    assert f"ENGAGED customer:{customer.pk}" in text and "incident 42" in text

    # and --json gives the same as one object
    out = io.StringIO()
    call_command("platform_status", "--json", stdout=out, no_color=True)
    status = json.loads(out.getvalue())
    assert status["ready"] is True and status["failing"] == []
    assert status["workers"]["live"] == 1 and status["workers"]["slots"] == {"total": 4, "busy": 1}
    assert isinstance(status["queue_depth"], int) and isinstance(status["live_sandboxes"], int)
    assert isinstance(status["hosts"], list)
