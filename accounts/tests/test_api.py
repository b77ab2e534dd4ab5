"""Auth tokens, `me`, API keys and notifications through the HTTP API."""
import jwt
import pytest
from django.conf import settings
from django.test import override_settings
from rest_framework.test import APIClient

from accounts.models import Notification
from core.models import AuditLog
from conftest import token_for
from tests.api_support import assert_error

pytestmark = pytest.mark.django_db


def login(client, username, password="password123"):
    return client.post("/api/auth/token/", {"username": username, "password": password}, format="json")


def bearer(token):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def test_login_gives_customer_scoped_tokens_that_open_me(make_customer, anon_client):
    customer, user = make_customer("acme", role="member")

    response = login(anon_client, user.username)

    assert response.status_code == 200
    tokens = response.json()
    assert set(tokens) == {"access", "refresh"}
    claims = jwt.decode(tokens["access"], options={"verify_signature": False})
    assert claims["scope"] == "customer"
    me = bearer(tokens["access"]).get("/api/me/")
    assert me.status_code == 200
    assert me.json() == {
        "id": user.pk,
        "username": user.username,
        "role": "member",
        "customer": {"id": customer.pk, "name": "acme", "quotas": customer.quotas},
    }


def test_wrong_password_is_401_and_audited_without_the_password(make_customer, anon_client):
    _, user = make_customer("acme")

    response = login(anon_client, user.username, password="not-the-password")

    assert_error(response, 401, "token_invalid")
    row = AuditLog.objects.get(action="auth.login_failed")
    assert row.details["username"] == user.username
    assert "not-the-password" not in str(row.details) and "password" not in row.details
    assert row.ip == "127.0.0.1"


def test_account_without_customer_gets_no_customer_token(staff_user, anon_client):
    response = login(anon_client, staff_user.username)

    assert_error(response, 401, "token_invalid")
    assert AuditLog.objects.filter(action="auth.login_failed", details__reason="no_customer").exists()


def test_refresh_keeps_the_customer_scope(make_customer, anon_client):
    _, user = make_customer("acme")
    refresh = login(anon_client, user.username).json()["refresh"]

    response = anon_client.post("/api/auth/token/refresh/", {"refresh": refresh}, format="json")

    assert response.status_code == 200
    access = response.json()["access"]
    assert jwt.decode(access, options={"verify_signature": False})["scope"] == "customer"
    assert bearer(access).get("/api/me/").status_code == 200


def test_refresh_refuses_garbage_and_admin_tokens(make_customer, staff_user, anon_client):
    from rest_framework_simplejwt.tokens import RefreshToken

    admin_refresh = RefreshToken.for_user(staff_user)
    admin_refresh["scope"] = "admin"

    assert_error(anon_client.post("/api/auth/token/refresh/", {"refresh": "nonsense"}, format="json"), 401,
                 "token_invalid")
    assert_error(anon_client.post("/api/auth/token/refresh/", {"refresh": str(admin_refresh)}, format="json"), 401,
                 "token_invalid")


def test_admin_scoped_access_token_does_not_open_customer_api(make_customer):
    _, user = make_customer("acme")

    assert_error(bearer(token_for(user, scope="admin")).get("/api/me/"), 401, "token_invalid")


def test_login_is_throttled_with_retry_after(make_customer, anon_client):
    _, user = make_customer("acme")
    rates = {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "login": "3/min"}
    with override_settings(REST_FRAMEWORK={**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": rates}):
        for _ in range(3):
            assert login(anon_client, user.username).status_code == 200
        response = login(anon_client, user.username)

    assert_error(response, 429, "rate_limited")
    assert int(response["Retry-After"]) > 0


def test_api_key_is_shown_once_authenticates_and_can_be_revoked(make_customer, client_for):
    customer, user = make_customer("acme", role="owner")
    api = client_for(user)

    created = api.post("/api/api-keys/", {"name": "ci"}, format="json")

    assert created.status_code == 201
    body = created.json()
    raw = body["key"]
    assert raw.startswith("agp_") and body["prefix"] in raw
    listed = api.get("/api/api-keys/").json()["results"]
    assert [k["id"] for k in listed] == [body["id"]]
    assert "key" not in listed[0] and raw not in str(listed)
    assert set(listed[0]) == {"id", "name", "prefix", "created_at", "last_used_at", "revoked_at"}

    with_key = APIClient()
    with_key.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw}")
    me = with_key.get("/api/me/")
    assert me.status_code == 200 and me.json()["username"] == user.username
    assert api.get(f"/api/api-keys/{body['id']}/").json()["last_used_at"] is not None

    assert api.delete(f"/api/api-keys/{body['id']}/").status_code == 204
    assert api.get(f"/api/api-keys/{body['id']}/").json()["revoked_at"] is not None
    assert_error(with_key.get("/api/me/"), 401, "token_invalid")
    assert AuditLog.objects.filter(action="api_key.revoke", target=f"api_key:{body['id']}").exists()


def test_viewer_reads_keys_but_cannot_create_or_revoke(make_customer, client_for):
    customer, owner = make_customer("acme")
    _, viewer = make_customer("acme", role="viewer")
    key_id = client_for(owner).post("/api/api-keys/", {"name": "ci"}, format="json").json()["id"]
    api = client_for(viewer)

    assert api.get("/api/api-keys/").json()["count"] == 1
    assert_error(api.post("/api/api-keys/", {"name": "mine"}, format="json"), 403, "permission_denied")
    assert_error(api.delete(f"/api/api-keys/{key_id}/"), 403, "permission_denied")


def test_api_key_needs_a_name(make_customer, client_for):
    _, user = make_customer("acme")

    error = assert_error(client_for(user).post("/api/api-keys/", {}, format="json"), 400, "validation_error")

    assert "name" in error["details"]


def test_notifications_are_the_customers_own_and_broadcasts_newest_first(make_customer, client_for):
    acme, user = make_customer("acme", role="viewer")
    other, _ = make_customer("other")
    first = Notification.objects.create(customer=None, message="maintenance tonight", level="warning")
    mine = Notification.objects.create(customer=acme, message="your quota changed")
    Notification.objects.create(customer=other, message="not for acme")

    response = client_for(user).get("/api/notifications/")

    assert response.status_code == 200
    results = response.json()["results"]
    assert [n["id"] for n in results] == [mine.pk, first.pk]
    assert results[1]["broadcast"] is True and results[1]["level"] == "warning"
    assert results[0]["broadcast"] is False
