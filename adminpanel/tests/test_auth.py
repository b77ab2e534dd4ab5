"""Admin log in: staff only, admin-scoped tokens that only the admin API takes, failures audited, throttled."""
import pytest
from django.conf import settings
from rest_framework.settings import api_settings
from rest_framework.test import APIClient

from core.models import AuditLog
from conftest import token_for

pytestmark = pytest.mark.django_db

LOGIN = "/api/admin/auth/token/"
REFRESH = "/api/admin/auth/token/refresh/"


@pytest.fixture
def keyed_client():
    """No credentials yet, but the X-Admin-Key every /api/admin/ call needs, logging in included."""
    client = APIClient()
    client.credentials(HTTP_X_ADMIN_KEY=settings.ADMIN_API_KEY)
    return client


def test_admin_login_without_the_admin_key_is_refused(anon_client, staff_user):
    for headers in ({}, {"HTTP_X_ADMIN_KEY": "wrong-key"}):
        response = anon_client.post(LOGIN, {"username": "ops-admin", "password": "password123"}, format="json",
                                    **headers)
        assert response.status_code == 403, response.content
        assert response.json()["error"]["code"] == "permission_denied"
        assert "access" not in response.json()


def _admin_client(access):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}", HTTP_X_ADMIN_KEY=settings.ADMIN_API_KEY)
    return client


def test_staff_login_gives_tokens_that_open_the_admin_api(keyed_client, staff_user):
    response = keyed_client.post(LOGIN, {"username": "ops-admin", "password": "password123"}, format="json")
    assert response.status_code == 200
    tokens = response.json()
    assert set(tokens) == {"access", "refresh"}
    assert _admin_client(tokens["access"]).get("/api/admin/stats/").status_code == 200
    row = AuditLog.objects.get(action="admin.login")
    assert (row.actor, row.ip) == ("admin:ops-admin", "127.0.0.1")


def test_refresh_gives_a_working_admin_access_token(keyed_client, staff_user):
    tokens = keyed_client.post(LOGIN, {"username": "ops-admin", "password": "password123"}, format="json").json()
    response = keyed_client.post(REFRESH, {"refresh": tokens["refresh"]}, format="json")
    assert response.status_code == 200
    assert _admin_client(response.json()["access"]).get("/api/admin/stats/").status_code == 200


def test_customer_refresh_token_is_refused_by_the_admin_refresh(keyed_client, make_customer):
    from rest_framework_simplejwt.tokens import RefreshToken

    _, user = make_customer("acme")
    refresh = RefreshToken.for_user(user)
    refresh["scope"] = "customer"
    response = keyed_client.post(REFRESH, {"refresh": str(refresh)}, format="json")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "token_invalid"


def test_refresh_of_a_demoted_admin_is_refused(keyed_client, staff_user):
    tokens = keyed_client.post(LOGIN, {"username": "ops-admin", "password": "password123"}, format="json").json()
    staff_user.is_staff = False
    staff_user.save()
    response = keyed_client.post(REFRESH, {"refresh": tokens["refresh"]}, format="json")
    assert response.status_code == 401
    # and the access token it already holds stops working too
    assert _admin_client(tokens["access"]).get("/api/admin/stats/").status_code == 401


def test_inactive_staff_cannot_log_in_and_their_tokens_stop_working(keyed_client, staff_user):
    access = token_for(staff_user, scope="admin")
    staff_user.is_active = False
    staff_user.save()
    response = keyed_client.post(LOGIN, {"username": "ops-admin", "password": "password123"}, format="json")
    assert response.status_code == 401
    assert _admin_client(access).get("/api/admin/stats/").status_code == 401


def test_customer_user_cannot_log_in_as_admin_and_the_failure_is_audited(keyed_client, make_customer):
    _, user = make_customer("acme", username="alice")
    response = keyed_client.post(LOGIN, {"username": "alice", "password": "password123"}, format="json")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "token_invalid"
    # the same answer as a wrong password: nothing says the account exists
    wrong = keyed_client.post(LOGIN, {"username": "alice", "password": "nope-nope"}, format="json")
    assert wrong.json()["error"]["message"] == response.json()["error"]["message"]
    rows = list(AuditLog.objects.filter(action="admin.login_failed").order_by("id"))
    assert [(r.actor, r.target, r.ip, r.details["reason"]) for r in rows] == [
        ("anonymous", "user:alice", "127.0.0.1", "not_staff"),
        ("anonymous", "user:alice", "127.0.0.1", "invalid_credentials"),
    ]
    # no password is ever stored in the audit log
    assert all("nope-nope" not in str(r.details) and "password123" not in str(r.details) for r in rows)


def test_admin_token_never_acts_as_a_customer(staff_user, make_customer):
    # an admin token is refused by the customer API, even for a staff user who also belongs to a customer
    customer, user = make_customer("acme")
    user.is_staff = True
    user.save()
    for who in (staff_user, user):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_for(who, scope='admin')}")
        response = client.get("/api/me/")
        assert response.status_code == 401, response.content
        assert response.json()["error"]["code"] == "token_invalid"
    # while the customer token of that user works there
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_for(user)}")
    assert client.get("/api/me/").status_code == 200


def test_admin_login_is_throttled_per_client_address(keyed_client, staff_user):
    rate = api_settings.DEFAULT_THROTTLE_RATES["login"]
    allowed = int(rate.split("/")[0])
    for i in range(allowed):
        # a client rotating X-Forwarded-For does not get a fresh allowance (no trusted proxy is configured);
        # other usernames each time, so the sign-in lockout (accounts/tests/test_signin.py) stays out of the way
        response = keyed_client.post(LOGIN, {"username": f"guess-{i}", "password": "wrong-password"}, format="json",
                                    HTTP_X_FORWARDED_FOR=f"10.0.0.{i}")
        assert response.status_code == 401
    blocked = keyed_client.post(LOGIN, {"username": "ops-admin", "password": "password123"}, format="json",
                               HTTP_X_FORWARDED_FOR="10.9.9.9")
    assert blocked.status_code == 429
    assert blocked.json()["error"]["code"] == "rate_limited"
    assert int(blocked["Retry-After"]) > 0
    # the refresh endpoint shares the login allowance
    assert keyed_client.post(REFRESH, {"refresh": "x"}, format="json").status_code == 429
    # failed attempts are audited with the real address, not the forged header
    assert set(AuditLog.objects.filter(action="admin.login_failed").values_list("ip", flat=True)) == {"127.0.0.1"}


def test_missing_fields_are_a_validation_error(keyed_client):
    response = keyed_client.post(LOGIN, {"username": "x"}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["details"] == {"password": ["This field is required."]}
