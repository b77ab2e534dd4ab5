"""`manage.py create_customer`: a customer with its first user, more users later, and the refusals."""
import io

import pytest
from django.core.management import CommandError, call_command

from accounts.models import Customer, Membership
from core.models import AuditLog

pytestmark = pytest.mark.django_db


def run(*args):
    out = io.StringIO()
    call_command("create_customer", *args, stdout=out)
    return out.getvalue()


def test_creates_customer_and_owner_who_can_log_in(anon_client):
    output = run("--name", "acme", "--username", "alice", "--password", "s3cret-pass")

    assert "Created customer 'acme'" in output
    membership = Membership.objects.get(user__username="alice")
    assert membership.customer.name == "acme" and membership.role == "owner"
    response = anon_client.post("/api/auth/token/", {"username": "alice", "password": "s3cret-pass"}, format="json")
    assert response.status_code == 200
    assert AuditLog.objects.filter(action="customer.create", actor="cli:create_customer").exists()


def test_adds_users_to_an_existing_customer_with_a_role():
    run("--name", "acme", "--username", "alice", "--password", "s3cret-pass")

    output = run("--name", "acme", "--username", "bob", "--password", "other-pass", "--role", "viewer")

    assert "added as viewer" in output
    assert Customer.objects.filter(name="acme").count() == 1
    assert dict(Membership.objects.values_list("user__username", "role")) == {"alice": "owner", "bob": "viewer"}


def test_refuses_a_user_of_another_customer_a_staff_user_and_a_short_password(staff_user):
    run("--name", "acme", "--username", "alice", "--password", "s3cret-pass")

    with pytest.raises(CommandError, match="already belongs to customer 'acme'"):
        run("--name", "globex", "--username", "alice", "--password", "s3cret-pass")
    with pytest.raises(CommandError, match="platform admin"):
        run("--name", "acme", "--username", staff_user.username, "--password", "s3cret-pass")
    with pytest.raises(CommandError, match="Password refused"):
        run("--name", "acme", "--username", "carol", "--password", "short")
    assert not Customer.objects.filter(name="globex").exists()
