"""Sign-in: lockout after failed passwords (django-axes) and the audit row of every sign-in, on every login path.

Every password form calls django.contrib.auth.authenticate(request, ...): the customer and admin token endpoints,
the browsable API's /api-auth/login/ and the Django admin's /admin/login/. So one lockout and one audit trail cover
them all:

- axes' backend runs first and refuses a locked-out (username, client address) pair or client address; every
  failure (`user_login_failed`) is counted by SignInLockoutHandler and audited here as `<plane>.login_failed`;
- every success sends `user_logged_in` (Django's login() does for sessions, the token serializers do it
  themselves), which resets that pair's failures, sets last_login and is audited as `<plane>.login`;
- a correct password with a missing or wrong second factor on the admin site is audited as a failure too
  (adminpanel.site).

`<plane>` is `admin` for the admin API and the Django admin, `auth` for the customer API and the browsable API.
"""
from django.conf import settings
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.db.models import Sum
from django.dispatch import receiver
from django.http import HttpResponse, JsonResponse

from axes.handlers.database import AxesDatabaseHandler

from autogen_platform.errors import RateLimited, error_body
from core.services import audit_record

LOCKED_MESSAGE = "Too many failed sign-ins from this client for this account: try again later"


class SignInLockoutHandler(AxesDatabaseHandler):
    """axes' database handler with two limits instead of one.

    AXES_LOCKOUT_PARAMETERS lists [username, ip_address] first and ip_address second; axes would hold both to
    AXES_FAILURE_LIMIT. Here the pair is held to AXES_FAILURE_LIMIT and the address alone (many usernames tried
    from one client) to the higher LOGIN_CLIENT_FAILURE_LIMIT.
    """

    def get_failures(self, request, credentials=None) -> int:
        counts = [attempts.aggregate(n=Sum("failures_since_start"))["n"] or 0
                  for attempts in self.get_user_attempts(request, credentials)]
        pair = counts[0] if counts else 0
        client = counts[1] if len(counts) > 1 else 0
        if client >= settings.LOGIN_CLIENT_FAILURE_LIMIT:
            return max(pair, settings.AXES_FAILURE_LIMIT)
        return pair

    def reset_user_attempts(self, request, credentials=None) -> int:
        # A success clears its own (username, client) pair only: clearing the whole address too would let a client
        # with one valid account reset its allowance for guessing other accounts by signing in between guesses.
        attempts = self.filter_user_attempts(request, credentials)
        return attempts[0].delete()[0] if attempts else 0


def retry_after_seconds() -> int:
    # A failure while locked out restarts the cool-off (axes' default), so the wait is the whole of it.
    return int(settings.AXES_COOLOFF_TIME.total_seconds())


def locked_out_error() -> RateLimited:
    return RateLimited(LOCKED_MESSAGE, details={"retry_after": retry_after_seconds()},
                       headers={"Retry-After": str(retry_after_seconds())})


def is_locked_out(request) -> bool:
    """True when the request's failed sign-in just locked its (username, client) pair or client, or found it locked."""
    return bool(getattr(request, "axes_locked_out", False))


class LockoutAnswerMixin:
    """For DRF token views: a sign-in refused because of the lockout is 429 `rate_limited`, not 401.

    (axes flags the DRF request it was given; its middleware only sees the Django request underneath.)"""

    def post(self, request, *args, **kwargs):
        from rest_framework import exceptions

        try:
            return super().post(request, *args, **kwargs)
        except exceptions.AuthenticationFailed:
            if is_locked_out(request):
                raise locked_out_error() from None
            raise


def lockout_response(request, original_response=None, credentials=None):
    """AXES_LOCKOUT_CALLABLE: the answer of a session login form refused by the lockout (429 with Retry-After)."""
    if request.path.startswith("/api/"):
        error = locked_out_error()
        response = JsonResponse(error_body(error.code, error.message, error.details), status=429)
    else:
        response = HttpResponse(f"{LOCKED_MESSAGE}.\n", status=429, content_type="text/plain; charset=utf-8")
    response["Retry-After"] = str(retry_after_seconds())
    return response


def plane(request) -> str:
    path = getattr(request, "path", "") or ""
    return "admin" if path.startswith(("/admin/", "/api/admin/")) else "auth"


def via(request) -> str:
    path = getattr(request, "path", "") or ""
    if path.startswith("/api/admin/"):
        return "admin_token"
    if path.startswith("/admin/"):
        return "admin_site"
    if path.startswith("/api/"):
        return "token"
    return "session"


def audit_failure(request, username, reason: str) -> None:
    username = str(username or "")[:150]
    audit_record(actor="anonymous", action=f"{plane(request)}.login_failed", target=f"user:{username}"[:200],
                 request=request, details={"username": username, "reason": reason, "via": via(request)})


def audit_success(request, user) -> None:
    audit_record(actor=user, action=f"{plane(request)}.login", target=f"user:{user.username}", request=request,
                 details={"via": via(request)})


def signed_in(request, user) -> None:
    """What every successful sign-in does: axes resets the pair's failures, last_login is set, the audit row."""
    user_logged_in.send(sender=user.__class__, request=request, user=user)


@receiver(user_login_failed, dispatch_uid="accounts.signin.audit_login_failed")
def _audit_login_failed(sender, credentials, request=None, **kwargs):
    # Runs after axes' own receiver (axes is installed before accounts), which flagged a lockout on the request.
    if request is None:
        return
    reason = "locked_out" if is_locked_out(request) else "invalid_credentials"
    audit_failure(request, (credentials or {}).get("username"), reason)


@receiver(user_logged_in, dispatch_uid="accounts.signin.audit_login")
def _audit_login(sender, request, user, **kwargs):
    if request is not None:
        audit_success(request, user)
