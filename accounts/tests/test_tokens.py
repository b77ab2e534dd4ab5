"""Token lifetimes as a client sees them: refresh tokens rotate and are single-use, logout ends one, and a password
change or a deactivation ends every token (and API key) of the user, on the customer and the admin plane."""
import pytest
from django.conf import settings
from rest_framework.test import APIClient

from accounts.services import api_key_create
from core.models import AuditLog

pytestmark = pytest.mark.django_db

LOGIN, REFRESH, LOGOUT = "/api/auth/token/", "/api/auth/token/refresh/", "/api/auth/logout/"
ADMIN_LOGIN, ADMIN_REFRESH, ADMIN_LOGOUT = "/api/admin/auth/token/", "/api/admin/auth/token/refresh/", "/api/admin/auth/logout/"


def _login(username="alice"):
    response = APIClient().post(LOGIN, {"username": username, "password": "password123"}, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def _me(access):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    return client.get("/api/me/")


def _post(url, body, **headers):
    return APIClient().post(url, body, format="json", **headers)


def _refused(response, code="token_invalid"):
    assert response.status_code == 401, response.content
    assert response.json()["error"]["code"] == code
    return True


def test_refresh_rotates_and_a_used_refresh_token_is_refused(make_customer):
    make_customer("acme", username="alice")
    first = _login()

    rotated = _post(REFRESH, {"refresh": first["refresh"]})
    assert rotated.status_code == 200, rotated.content
    pair = rotated.json()
    assert set(pair) == {"access", "refresh"} and pair["refresh"] != first["refresh"]
    assert _me(pair["access"]).status_code == 200

    # replaying the used refresh token (a stolen copy) is refused; the new one works once
    assert _refused(_post(REFRESH, {"refresh": first["refresh"]}))
    assert _post(REFRESH, {"refresh": pair["refresh"]}).status_code == 200
    assert _refused(_post(REFRESH, {"refresh": pair["refresh"]}))


def test_logout_ends_the_refresh_token(make_customer):
    make_customer("acme", username="alice")
    tokens = _login()

    response = _post(LOGOUT, {"refresh": tokens["refresh"]})

    assert response.status_code == 205, response.content
    assert _refused(_post(REFRESH, {"refresh": tokens["refresh"]}))
    assert _refused(_post(LOGOUT, {"refresh": tokens["refresh"]}))
    row = AuditLog.objects.get(action="auth.logout")
    assert (row.actor, row.target) == ("alice", "user:alice")
    # another session of the same user goes on
    other = _login()
    assert _post(REFRESH, {"refresh": other["refresh"]}).status_code == 200


def test_logout_needs_a_refresh_token_of_the_customer_plane(make_customer, staff_user):
    make_customer("acme", username="alice")
    bad = _post(LOGOUT, {})
    assert bad.status_code == 400 and bad.json()["error"]["details"] == {"refresh": ["This field is required."]}
    assert _refused(_post(LOGOUT, {"refresh": "not-a-token"}))
    admin = _post(ADMIN_LOGIN, {"username": "ops-admin", "password": "password123"},
                  HTTP_X_ADMIN_KEY=settings.ADMIN_API_KEY).json()
    assert _refused(_post(LOGOUT, {"refresh": admin["refresh"]}))
    assert _post(ADMIN_REFRESH, {"refresh": admin["refresh"]}, HTTP_X_ADMIN_KEY=settings.ADMIN_API_KEY).status_code == 200


def test_a_password_change_ends_every_token_of_the_user(make_customer):
    _, user = make_customer("acme", username="alice")
    before = [_login(), _login()]
    assert _me(before[0]["access"]).status_code == 200

    user.set_password("a-new-password-9")
    user.save()

    for tokens in before:
        assert _me(tokens["access"]).status_code == 401
        assert _refused(_post(REFRESH, {"refresh": tokens["refresh"]}))
    # the new password gives tokens that work
    fresh = APIClient().post(LOGIN, {"username": "alice", "password": "a-new-password-9"}, format="json").json()
    assert _me(fresh["access"]).status_code == 200


def test_a_password_changed_with_manage_py_ends_the_tokens_too(make_customer, monkeypatch):
    from django.core.management import call_command

    make_customer("acme", username="alice")
    tokens = _login()
    answers = iter(["a-new-password-9", "a-new-password-9"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))

    call_command("changepassword", "alice")

    assert _me(tokens["access"]).status_code == 401
    assert _refused(_post(REFRESH, {"refresh": tokens["refresh"]}))


def test_deactivation_ends_tokens_and_api_keys_for_good(make_customer):
    _, user = make_customer("acme", username="alice")
    tokens = _login()
    _, raw_key = api_key_create(actor=user, name="ci")
    keyed = APIClient()
    keyed.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw_key}")
    assert keyed.get("/api/me/").status_code == 200

    user.is_active = False
    user.save()

    assert _me(tokens["access"]).status_code == 401
    assert _post(REFRESH, {"refresh": tokens["refresh"]}).status_code == 401
    assert keyed.get("/api/me/").status_code == 401
    # reactivated: the API key works again (it was not revoked), the old refresh token does not
    user.is_active = True
    user.save()
    assert keyed.get("/api/me/").status_code == 200
    assert _refused(_post(REFRESH, {"refresh": tokens["refresh"]}))


def test_admin_tokens_rotate_log_out_and_end_with_a_password_change(staff_user):
    key = {"HTTP_X_ADMIN_KEY": settings.ADMIN_API_KEY}
    first = _post(ADMIN_LOGIN, {"username": "ops-admin", "password": "password123"}, **key).json()

    rotated = _post(ADMIN_REFRESH, {"refresh": first["refresh"]}, **key)
    assert rotated.status_code == 200 and set(rotated.json()) == {"access", "refresh"}
    assert _refused(_post(ADMIN_REFRESH, {"refresh": first["refresh"]}, **key))

    # logging out needs the admin key like every /api/admin/ call, and ends the admin refresh token
    current = rotated.json()
    assert _post(ADMIN_LOGOUT, {"refresh": current["refresh"]}).status_code == 403
    assert _post(ADMIN_LOGOUT, {"refresh": current["refresh"]}, **key).status_code == 205
    assert _refused(_post(ADMIN_REFRESH, {"refresh": current["refresh"]}, **key))
    assert AuditLog.objects.filter(action="admin.logout", actor="admin:ops-admin").count() == 1

    # a password change ends the admin access token in hand
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {current['access']}", **key)
    assert client.get("/api/admin/stats/").status_code == 200
    staff_user.set_password("another-password-1")
    staff_user.save()
    assert client.get("/api/admin/stats/").status_code == 401
