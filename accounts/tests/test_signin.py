"""Sign-in as an attacker and a user see it, on every password form (API tokens, /api-auth/login/, /admin/login/):
lockout per (username, client) and per client, no cheap lockout of a victim, every attempt audited, and the Django
admin (the RQ dashboard included) closed to a password without its second factor."""
import pytest
from django.conf import settings
from django.test import Client
from django_otp.plugins.otp_totp.models import TOTPDevice
from rest_framework.test import APIClient

from core.models import AuditLog
from tests.admin_support import totp_now

pytestmark = pytest.mark.django_db

LOGIN = "/api/auth/token/"
ADMIN_LOGIN = "/api/admin/auth/token/"
ATTACKER, VICTIM = "203.0.113.7", "198.51.100.20"


def _token_login(username, password, ip, url=LOGIN):
    return APIClient().post(url, {"username": username, "password": password}, format="json", REMOTE_ADDR=ip,
                            HTTP_X_ADMIN_KEY=settings.ADMIN_API_KEY)


def test_token_login_locks_the_account_for_the_guessing_client_only(make_customer):
    make_customer("acme", username="alice")
    limit = settings.AXES_FAILURE_LIMIT
    for _ in range(limit - 1):
        assert _token_login("alice", "wrong-guess", ATTACKER).status_code == 401
    # the failure that reaches the limit is answered 429 already
    assert _token_login("alice", "wrong-guess", ATTACKER).status_code == 429

    # from the guessing client even the right password is refused now
    locked = _token_login("alice", "password123", ATTACKER)
    assert locked.status_code == 429, locked.content
    assert locked.json()["error"]["code"] == "rate_limited"
    assert int(locked["Retry-After"]) == settings.AXES_COOLOFF_TIME.total_seconds()
    # the victim, from their own address, is not locked out by it
    assert _token_login("alice", "password123", VICTIM).status_code == 200

    rows = list(AuditLog.objects.filter(action__startswith="auth.login").order_by("id"))
    failed = [r for r in rows if r.action == "auth.login_failed"]
    assert len(failed) == limit + 1
    assert {(r.actor, r.ip, r.details["username"], r.details["via"]) for r in failed} == {
        ("anonymous", ATTACKER, "alice", "token")}
    assert [r.details["reason"] for r in failed] == ["invalid_credentials"] * (limit - 1) + ["locked_out"] * 2
    assert "password123" not in str([r.details for r in rows]) and "wrong-guess" not in str([r.details for r in rows])
    success = rows[-1]
    assert (success.action, success.actor, success.ip, success.details) == ("auth.login", "alice", VICTIM,
                                                                          {"via": "token"})


def test_one_client_trying_many_usernames_is_locked_out(make_customer, settings):
    settings.LOGIN_CLIENT_FAILURE_LIMIT = 8
    make_customer("acme", username="alice")
    for n in range(7):
        assert _token_login(f"user{n}", "guess", ATTACKER).status_code == 401
    assert _token_login("user7", "guess", ATTACKER).status_code == 429
    assert _token_login("alice", "password123", ATTACKER).status_code == 429
    assert _token_login("alice", "password123", VICTIM).status_code == 200


def test_a_success_clears_only_its_own_pair(make_customer):
    # a client with one valid account cannot reset its allowance for guessing another one by signing in between
    make_customer("acme", username="alice")
    make_customer("globex", username="mallory")
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert _token_login("alice", "guess", ATTACKER).status_code == 401
    assert _token_login("mallory", "password123", ATTACKER).status_code == 200
    # alice's count from this client was not reset: the next guess reaches the limit
    assert _token_login("alice", "guess", ATTACKER).status_code == 429
    assert _token_login("alice", "password123", ATTACKER).status_code == 429


def test_admin_token_login_shares_the_lockout_and_the_audit(staff_user):
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert _token_login("ops-admin", "guess", ATTACKER, ADMIN_LOGIN).status_code == 401
    assert _token_login("ops-admin", "guess", ATTACKER, ADMIN_LOGIN).status_code == 429
    assert _token_login("ops-admin", "password123", ATTACKER, ADMIN_LOGIN).status_code == 429
    assert _token_login("ops-admin", "password123", VICTIM, ADMIN_LOGIN).status_code == 200
    assert AuditLog.objects.filter(action="admin.login_failed", ip=ATTACKER).count() == settings.AXES_FAILURE_LIMIT + 1
    assert AuditLog.objects.filter(action="admin.login", ip=VICTIM, details__via="admin_token").count() == 1


def test_the_browsable_api_login_form_is_locked_and_audited(make_customer):
    make_customer("acme", username="alice")
    browser = Client(REMOTE_ADDR=ATTACKER)
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        page = browser.post("/api-auth/login/", {"username": "alice", "password": "guess"})
        assert page.status_code == 200 and b"Please enter a correct username and password" in page.content
    # the failure that reaches the limit is answered 429, and so is every attempt after it
    assert browser.post("/api-auth/login/", {"username": "alice", "password": "guess"}).status_code == 429
    locked = browser.post("/api-auth/login/", {"username": "alice", "password": "password123"})
    assert locked.status_code == 429 and locked["Retry-After"]
    assert "_auth_user_id" not in browser.session
    ok = Client(REMOTE_ADDR=VICTIM).post("/api-auth/login/", {"username": "alice", "password": "password123"})
    assert ok.status_code == 302
    assert AuditLog.objects.filter(action="auth.login_failed", details__via="session").count() == \
        settings.AXES_FAILURE_LIMIT + 1
    assert AuditLog.objects.filter(action="auth.login", actor="alice", details__via="session").count() == 1


@pytest.fixture
def admin_with_device(django_user_model):
    user = django_user_model.objects.create_superuser("root-admin", "root@example.com", "password123")
    return user, TOTPDevice.objects.create(user=user, name="phone", confirmed=True)


def test_the_staff_password_alone_opens_nothing_under_admin(admin_with_device):
    browser = Client(REMOTE_ADDR=ATTACKER)
    # a session from the browsable API's login form (password only)
    assert browser.post("/api-auth/login/", {"username": "root-admin", "password": "password123"}).status_code == 302
    for path in ("/admin/", "/admin/accounts/apikey/", "/admin/core/killswitch/add/", "/admin/rq/",
                 "/admin/rq/stats.json/", "/admin/django_rq/dashboard/", "/admin/auth/user/"):
        response = browser.get(path)
        assert response.status_code == 302 and response["Location"].startswith("/admin/login/"), path
    # the admin's own login form without the code
    page = browser.post("/admin/login/", {"username": "root-admin", "password": "password123"})
    assert page.status_code == 200 and b"Please enter your OTP token" in page.content
    assert browser.get("/admin/").status_code == 302
    row = AuditLog.objects.filter(action="admin.login_failed").latest("id")
    assert (row.details["reason"], row.details["via"], row.ip) == ("second_factor_missing", "admin_site", ATTACKER)


def test_the_admin_site_opens_with_the_password_and_a_code(admin_with_device):
    user, device = admin_with_device
    browser = Client(REMOTE_ADDR=VICTIM)
    wrong = browser.post("/admin/login/", {"username": "root-admin", "password": "password123",
                                           "otp_token": "000000" if totp_now(device) != "000000" else "111111"})
    assert wrong.status_code == 200 and b"Invalid token" in wrong.content
    assert AuditLog.objects.filter(action="admin.login_failed", details__reason="second_factor_invalid").exists()
    device.refresh_from_db()
    device.throttling_failure_count = 0  # django-otp slows a device down after a wrong code; start afresh
    device.throttling_failure_timestamp = None
    device.save()

    response = browser.post("/admin/login/?next=/admin/", {"username": "root-admin", "password": "password123",
                                                          "otp_token": totp_now(device), "next": "/admin/"})

    assert response.status_code == 302 and response["Location"] == "/admin/", response.content[:3000]
    assert browser.get("/admin/").status_code == 200
    assert browser.get("/admin/rq/").status_code == 200
    row = AuditLog.objects.filter(action="admin.login").latest("id")
    assert (row.actor, row.ip, row.details) == ("admin:root-admin", VICTIM, {"via": "admin_site"})


def test_the_admin_login_form_is_locked_per_username_and_client(admin_with_device):
    browser = Client(REMOTE_ADDR=ATTACKER)
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert browser.post("/admin/login/", {"username": "root-admin", "password": "guess"}).status_code == 200
    assert browser.post("/admin/login/", {"username": "root-admin", "password": "guess"}).status_code == 429
    assert browser.post("/admin/login/", {"username": "root-admin", "password": "password123"}).status_code == 429
    assert AuditLog.objects.filter(action="admin.login_failed", details__via="admin_site").count() == \
        settings.AXES_FAILURE_LIMIT + 1


def test_admin_otp_command_enrols_a_device_and_prints_it_once(staff_user, capsys):
    from django.core.management import call_command

    call_command("admin_otp", "enrol", "ops-admin")
    out = capsys.readouterr().out
    assert "otpauth://totp/AutoGen%20platform%3Aops-admin?secret=" in out
    assert TOTPDevice.objects.filter(user=staff_user, confirmed=True).count() == 1
    call_command("admin_otp", "enrol", "ops-admin", "--replace")
    assert TOTPDevice.objects.filter(user=staff_user).count() == 1
    assert AuditLog.objects.filter(action="admin.otp_enrol", target="user:ops-admin").count() == 2
