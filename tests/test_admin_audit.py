"""The audit trail an operator reads at GET /api/admin/audit/: every mutating action of admins and customers,
with actor, action, target, source IP and details, failed logins included, secrets never."""
import pytest
from django.conf import settings
from django.core.management import call_command
from rest_framework.test import APIClient

from core.models import AuditLog
from tests.admin_support import make_agent

pytestmark = pytest.mark.django_db


def _trail(admin_api, **filters):
    query = "&".join(f"{k}={v}" for k, v in filters.items())
    response = admin_api.get(f"/api/admin/audit/?page_size=200&{query}")
    assert response.status_code == 200
    return response.json()["results"]


def test_every_kind_of_admin_action_is_audited(admin_api, make_customer, staff_user):
    anon = APIClient()
    anon.credentials(HTTP_X_ADMIN_KEY=settings.ADMIN_API_KEY)
    anon.post("/api/admin/auth/token/", {"username": "ops-admin", "password": "password123"}, format="json")
    anon.post("/api/admin/auth/token/", {"username": "ops-admin", "password": "guess-guess"}, format="json")
    cid = admin_api.post("/api/admin/customers/", {"name": "acme"}, format="json").json()["id"]
    admin_api.patch(f"/api/admin/customers/{cid}/", {"quotas": {"max_agents": 9}}, format="json")
    from accounts.models import Customer

    agent = make_agent(Customer.objects.get(pk=cid))
    admin_api.post(f"/api/admin/agents/{agent.pk}/stop/")
    admin_api.post("/api/admin/broadcast/", {"message": "hello", "level": "info"}, format="json")
    admin_api.post("/api/admin/killswitch/", {"engaged": True, "customer": cid, "reason": "r1"}, format="json")
    admin_api.post("/api/admin/killswitch/", {"engaged": False, "customer": cid}, format="json")
    call_command("killswitch", "on", "--reason", "cli")
    call_command("killswitch", "off")
    admin_api.delete(f"/api/admin/customers/{cid}/")

    rows = _trail(admin_api)
    seen = [(r["actor"], r["action"], r["target"]) for r in reversed(rows)]
    assert ("admin:ops-admin", "admin.login", "user:ops-admin") in seen
    assert ("anonymous", "admin.login_failed", "user:ops-admin") in seen
    expected = [
        ("admin:ops-admin", "customer.create", f"customer:{cid}"),
        ("admin:ops-admin", "customer.update", f"customer:{cid}"),
        ("admin:ops-admin", "agent.stop", f"agent:{agent.pk}"),
        ("admin:ops-admin", "broadcast.send", None),
        ("admin:ops-admin", "killswitch.engage", f"customer:{cid}"),
        ("admin:ops-admin", "killswitch.release", f"customer:{cid}"),
        (None, "killswitch.engage", "global"),
        (None, "killswitch.release", "global"),
        ("admin:ops-admin", "customer.delete", f"customer:{cid}"),
    ]
    admin_rows = [s for s in seen if s[1] not in ("admin.login", "admin.login_failed", "model_config.create",
                                                  "agent.create")]
    assert len(admin_rows) == len(expected)
    for (actor, action, target), want in zip(admin_rows, expected):
        assert action == want[1]
        assert want[0] is None and actor.startswith("cli:") or actor == want[0]
        assert want[2] is None or target == want[2]
    # API actions carry the caller's address; nothing secret is kept
    assert {r["ip"] for r in rows if not r["actor"].startswith("cli:") and r["actor"] != "test"} == {"127.0.0.1"}
    assert "guess-guess" not in str(rows) and "password123" not in str(rows)
    # the filters an operator uses
    assert {r["action"] for r in _trail(admin_api, action="killswitch.")} == {"killswitch.engage",
                                                                             "killswitch.release"}
    assert all(r["actor"] == "admin:ops-admin" for r in _trail(admin_api, actor="admin:ops-admin"))


def test_customers_mutating_actions_are_audited(make_customer, client_for, admin_api):
    customer, owner = make_customer("acme", username="alice")
    api = client_for(owner)
    model = api.post("/api/models/", {"name": "m", "provider": "replay", "responses": ["Hi. TERMINATE"]},
                     format="json").json()["id"]
    api.patch(f"/api/models/{model}/", {"responses": ["Hello. TERMINATE"]}, format="json")
    agent = api.post("/api/agents/", {"name": "writer", "model": model}, format="json").json()["id"]
    api.patch(f"/api/agents/{agent}/", {"system_message": "Be brief."}, format="json")
    api.post(f"/api/agents/{agent}/rollback/", {"version": 1}, format="json")
    other = api.post("/api/agents/", {"name": "critic", "model": model}, format="json").json()["id"]
    team = api.post("/api/teams/", {"name": "duo", "members": [agent, other], "mode": "round_robin",
                                    "termination": {"max_messages": 4}}, format="json").json()["id"]
    api.patch(f"/api/teams/{team}/", {"termination": {"max_messages": 6}}, format="json")
    task = api.post("/api/tasks/", {"agent": agent, "input": "hi"}, format="json").json()["id"]
    api.post(f"/api/tasks/{task}/cancel/")
    api.post(f"/api/agents/{agent}/stop/")
    api.post(f"/api/agents/{agent}/start/")
    api.post(f"/api/agents/{agent}/restart/")
    key = api.post("/api/api-keys/", {"name": "ci"}, format="json").json()
    api.delete(f"/api/api-keys/{key['id']}/")
    api.delete(f"/api/teams/{team}/")
    api.delete(f"/api/agents/{other}/")
    APIClient().post("/api/auth/token/", {"username": "alice", "password": "wrong-wrong"}, format="json")

    rows = _trail(admin_api, customer=customer.pk)
    actions = {r["action"] for r in rows}
    assert {"model_config.create", "model_config.update", "agent.create", "agent.update", "agent.rollback",
            "team.create", "team.update", "task.create", "task.cancel", "agent.stop", "agent.start",
            "agent.restart", "api_key.create", "api_key.revoke", "team.delete", "agent.delete"} <= actions
    assert {r["actor"] for r in rows} == {"alice"}
    assert {r["ip"] for r in rows} == {"127.0.0.1"}
    assert key["key"] not in str(_trail(admin_api))
    failed = _trail(admin_api, action="auth.login_failed")
    assert [(r["actor"], r["target"]) for r in failed] == [("anonymous", "user:alice")]
    assert AuditLog.objects.filter(action="auth.login_failed", ip="127.0.0.1").exists()
