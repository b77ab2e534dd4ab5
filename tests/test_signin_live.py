"""Sign-in against a real daphne, as a client on the network sees it: tokens rotate, a replayed or logged-out
refresh token is refused, a password change ends the access token on HTTP and on the WebSocket, and password
guessing is locked out and audited."""
import json
import urllib.error
import urllib.request

import pytest
from django.conf import settings
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from core.models import AuditLog

pytestmark = pytest.mark.django_db(transaction=True)


def _call(server, method, path, body=None, token=None, headers=None):
    request = urllib.request.Request(server.http_url + path, method=method,
                                     data=json.dumps(body).encode() if body is not None else None)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None, dict(response.headers)
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        return exc.code, json.loads(raw) if raw else None, dict(exc.headers)


def _ws_close_code(server, token):
    try:
        with connect(f"{server.ws_url}/ws/events/?token={token}", open_timeout=10) as ws:
            ws.recv(timeout=2)  # a refused token is closed at once; an accepted stream stays quiet
            return None
    except ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd else None
    except TimeoutError:
        return None  # open and quiet: accepted


def test_token_lifecycle_over_http_and_websocket(daphne_server, make_customer):
    _, user = make_customer("live-auth", username="carol")
    status, first, _ = _call(daphne_server, "POST", "/api/auth/token/", {"username": "carol", "password": "password123"})
    assert status == 200

    status, rotated, _ = _call(daphne_server, "POST", "/api/auth/token/refresh/", {"refresh": first["refresh"]})
    assert status == 200 and rotated["refresh"] != first["refresh"]
    status, body, _ = _call(daphne_server, "POST", "/api/auth/token/refresh/", {"refresh": first["refresh"]})
    assert (status, body["error"]["code"]) == (401, "token_invalid")

    status, _, _ = _call(daphne_server, "POST", "/api/auth/logout/", {"refresh": rotated["refresh"]})
    assert status == 205
    status, body, _ = _call(daphne_server, "POST", "/api/auth/token/refresh/", {"refresh": rotated["refresh"]})
    assert (status, body["error"]["code"]) == (401, "token_invalid")

    # the access token still in hand works until the password changes, then neither HTTP nor the stream takes it
    access = rotated["access"]
    assert _call(daphne_server, "GET", "/api/me/", token=access)[0] == 200
    assert _ws_close_code(daphne_server, access) is None
    user.set_password("a-new-password-9")
    user.save()
    assert _call(daphne_server, "GET", "/api/me/", token=access)[0] == 401
    assert _ws_close_code(daphne_server, access) == 4401


def test_password_guessing_over_http_is_locked_out_and_audited(daphne_server, make_customer):
    make_customer("live-guess", username="dave")
    statuses = [_call(daphne_server, "POST", "/api/auth/token/", {"username": "dave", "password": f"guess-{n}"})[0]
                for n in range(settings.AXES_FAILURE_LIMIT)]
    status, body, headers = _call(daphne_server, "POST", "/api/auth/token/", {"username": "dave",
                                                                              "password": "password123"})

    assert statuses == [401] * (settings.AXES_FAILURE_LIMIT - 1) + [429]
    assert (status, body["error"]["code"]) == (429, "rate_limited") and int(headers["Retry-After"]) > 0
    failed = AuditLog.objects.filter(action="auth.login_failed", details__username="dave")
    assert failed.count() == settings.AXES_FAILURE_LIMIT + 1
    assert set(failed.values_list("ip", flat=True)) == {"127.0.0.1"}
