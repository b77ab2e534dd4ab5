"""The Django admin: every model registered, its lists and pages open, secrets never shown."""
import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.urls import reverse

from tests.admin_support import admin_site_login
from tests.api_support import make_tenant

pytestmark = pytest.mark.django_db

EXPECTED = {
    "accounts.customer", "accounts.membership", "accounts.apikey",
    "agents.modelconfig", "agents.agent", "agents.agentversion",
    "teams.team", "tasks.task", "tasks.taskevent", "tasks.thread",
    "core.auditlog", "accounts.notification", "core.killswitch",
    "runtime.workerhost",
}


@pytest.fixture
def superuser_client(client):
    user = get_user_model().objects.create_superuser(username="root", password="password123")
    return admin_site_login(client, user)


def test_every_model_is_registered():
    registered = {model._meta.label_lower for model in admin.site._registry}
    assert EXPECTED <= registered


def test_changelists_and_change_pages_open_without_secrets(make_customer, superuser_client):
    from agents.services import model_config_update

    tenant = make_tenant(make_customer, "acme")
    model_config = model_config_update(actor="test", model_config=tenant.model, data={"api_key": "sk-very-secret"})
    assert model_config.api_key_encrypted
    objects = {
        "accounts.customer": tenant.customer, "accounts.apikey": tenant.api_key, "agents.modelconfig": model_config,
        "agents.agent": tenant.agent, "teams.team": tenant.team, "tasks.task": tenant.task,
        "tasks.thread": tenant.thread,
    }
    for label in sorted(EXPECTED):
        app, model = label.split(".")
        response = superuser_client.get(reverse(f"admin:{app}_{model}_changelist"), {"q": "a"})
        assert response.status_code == 200, label
    for label, obj in objects.items():
        app, model = label.split(".")
        response = superuser_client.get(reverse(f"admin:{app}_{model}_change", args=[obj.pk]))
        assert response.status_code == 200, label
        page = response.content.decode()
        assert "api_key_encrypted" not in page and "key_hash" not in page
        assert model_config.api_key_encrypted not in page and tenant.api_key.key_hash not in page
        assert "sk-very-secret" not in page


def test_stop_action_goes_through_the_service(make_customer, superuser_client):
    tenant = make_tenant(make_customer, "acme")

    response = superuser_client.post(reverse("admin:agents_agent_changelist"), {
        "action": "stop_selected", "_selected_action": [tenant.agent.pk],
    })

    assert response.status_code == 302
    tenant.agent.refresh_from_db()
    tenant.task.refresh_from_db()
    assert tenant.agent.status == "stopped"
    assert tenant.task.status == "cancelled" and tenant.task.error["code"] == "cancelled"
