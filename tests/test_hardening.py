"""Hardening: production settings refuse development secrets and DEBUG, send secure headers and cookies;
CORS only for the configured origins; provider keys encrypted at rest and never returned or logged."""
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import override_settings

REPO = Path(__file__).resolve().parent.parent
GOOD_SECRETS = {"DJANGO_SECRET_KEY": "s" * 50, "ADMIN_API_KEY": "k" * 32}


def _settings_in_subprocess(module: str, env: dict, code: str = "") -> subprocess.CompletedProcess:
    """Import the settings in a fresh interpreter with exactly these platform variables set."""
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("DJANGO_", "ADMIN_API_KEY", "CORS_", "FIELD_ENCRYPTION_KEY", "BIND_HOST"))}
    # Empty values count as unset, and keep an optional .env file from filling them in.
    clean.update({"DJANGO_SECRET_KEY": "", "ADMIN_API_KEY": "", "DJANGO_DEBUG": "", "FIELD_ENCRYPTION_KEY": "",
                  "DJANGO_SETTINGS_MODULE": module})
    clean.update(env)
    script = "import django\ndjango.setup()\nfrom django.conf import settings\n" + code
    return subprocess.run([sys.executable, "-c", script], env=clean, cwd=REPO, capture_output=True, text=True,
                          timeout=60)


@pytest.mark.parametrize("module", ["autogen_platform.settings.prod", "autogen_platform.settings.dev"])
def test_debug_off_with_development_secrets_refuses_to_start(module):
    result = _settings_in_subprocess(module, {"DJANGO_DEBUG": "0"})
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "DJANGO_SECRET_KEY" in result.stderr


@pytest.mark.parametrize("env,complaint", [
    ({"DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": "s" * 50}, "ADMIN_API_KEY"),
    ({"DJANGO_DEBUG": "0", "ADMIN_API_KEY": "k" * 32}, "DJANGO_SECRET_KEY"),
    ({**GOOD_SECRETS, "DJANGO_DEBUG": "1"}, "DJANGO_DEBUG"),
    (GOOD_SECRETS, "DJANGO_DEBUG"),  # production needs DEBUG explicitly off
    ({"DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": "short", "ADMIN_API_KEY": "k" * 32}, "DJANGO_SECRET_KEY"),
    ({"DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": "s" * 50, "ADMIN_API_KEY": "short"}, "ADMIN_API_KEY"),
    ({**GOOD_SECRETS, "DJANGO_DEBUG": "0", "FIELD_ENCRYPTION_KEY": "dev-insecure-secret-key-change-me"},
     "FIELD_ENCRYPTION_KEY"),
    ({**GOOD_SECRETS, "DJANGO_DEBUG": "0", "FIELD_ENCRYPTION_KEY": "short"}, "FIELD_ENCRYPTION_KEY"),
])
def test_production_refuses_weak_or_missing_configuration(env, complaint):
    result = _settings_in_subprocess("autogen_platform.settings.prod", env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and complaint in result.stderr


def _runplatform(env: dict, *args) -> subprocess.CompletedProcess:
    """`manage.py runplatform ARGS` in a fresh process with exactly these platform variables set."""
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("DJANGO_", "ADMIN_API_KEY", "FIELD_ENCRYPTION_KEY", "BIND_HOST"))}
    clean.update({"DJANGO_SECRET_KEY": "", "ADMIN_API_KEY": "", "DJANGO_DEBUG": "", "FIELD_ENCRYPTION_KEY": "",
                  "DJANGO_SETTINGS_MODULE": "autogen_platform.settings.dev", **env})
    return subprocess.run([sys.executable, "manage.py", "runplatform", *args], env=clean, cwd=REPO,
                          capture_output=True, text=True, timeout=60)


def test_runplatform_warns_loudly_when_serving_development_secrets_beyond_loopback():
    import socket

    # a port that is taken, so runplatform stops right after its start-up checks
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        exposed = _runplatform({}, "--bind", "0.0.0.0", "--port", port)
        local = _runplatform({}, "--bind", "127.0.0.1", "--port", port)
        configured = _runplatform({"DJANGO_SECRET_KEY": "s" * 50, "ADMIN_API_KEY": "k" * 32},
                                  "--bind", "0.0.0.0", "--port", port)

    assert "cannot listen" in exposed.stderr
    assert "WARNING: listening on 0.0.0.0 (not loopback) with the public development secrets" in exposed.stderr
    assert "DJANGO_SECRET_KEY, ADMIN_API_KEY, FIELD_ENCRYPTION_KEY" in exposed.stderr
    assert "forge access tokens" in exposed.stderr
    assert "cannot listen" in local.stderr and "WARNING" not in local.stderr
    assert "cannot listen" in configured.stderr and "WARNING" not in configured.stderr


def test_runplatform_refuses_development_secrets_with_debug_off():
    result = _runplatform({"DJANGO_DEBUG": "0"}, "--bind", "0.0.0.0")
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and "refusing the development defaults" in result.stderr


def test_production_starts_with_real_secrets_and_sends_secure_headers():
    code = """
import json
from django.test import Client
response = Client().get("/healthz", HTTP_HOST="platform.example.com")
print(json.dumps({
    "other_host": Client().get("/healthz", HTTP_HOST="evil.example").status_code,
    "status": response.status_code,
    "headers": {k.lower(): v for k, v in response.headers.items()},
    "debug": settings.DEBUG,
    "cookies": [settings.SESSION_COOKIE_SECURE, settings.CSRF_COOKIE_SECURE, settings.SESSION_COOKIE_HTTPONLY,
                settings.CSRF_COOKIE_HTTPONLY],
    "proxy_header": settings.SECURE_PROXY_SSL_HEADER,
    "cors": settings.CORS_ALLOWED_ORIGINS,
    "hosts": settings.ALLOWED_HOSTS,
}))
"""
    env = {**GOOD_SECRETS, "DJANGO_DEBUG": "0", "ALLOWED_HOSTS": "platform.example.com",
           "CORS_ALLOWED_ORIGINS": "https://app.example.com,https://ops.example.com"}
    result = _settings_in_subprocess("autogen_platform.settings.prod", env, code)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["status"] == 200 and out["debug"] is False
    assert out["headers"]["x-content-type-options"] == "nosniff"
    assert out["headers"]["x-frame-options"] == "DENY"
    assert out["headers"]["referrer-policy"] == "same-origin"
    assert out["headers"]["cross-origin-opener-policy"] == "same-origin"
    assert out["cookies"] == [True, True, True, True]
    assert out["proxy_header"] is None  # X-Forwarded-Proto is not trusted unless TRUST_X_FORWARDED_PROTO=1
    assert out["cors"] == ["https://app.example.com", "https://ops.example.com"]
    assert out["hosts"] == ["platform.example.com"]
    assert out["other_host"] == 400  # a host not in ALLOWED_HOSTS is refused


@pytest.mark.django_db
@override_settings(CORS_ALLOWED_ORIGINS=["https://app.example.com"])
def test_cors_answers_only_the_configured_origins(client):
    preflight = client.options("/api/admin/stats/", HTTP_ORIGIN="https://app.example.com",
                               HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET",
                               HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization, x-admin-key, idempotency-key")
    assert preflight.status_code == 200
    assert preflight["Access-Control-Allow-Origin"] == "https://app.example.com"
    allowed = {h.strip() for h in preflight["Access-Control-Allow-Headers"].split(",")}
    assert {"authorization", "x-admin-key", "idempotency-key"} <= allowed
    # a real request from the allowed origin may read Retry-After and X-Request-Id
    response = client.get("/healthz", HTTP_ORIGIN="https://app.example.com")
    assert response["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert {"retry-after", "x-request-id"} <= {h.strip().lower() for h in response["Access-Control-Expose-Headers"].split(",")}
    # any other origin gets no CORS grant
    for origin in ("https://evil.example", "null"):
        denied = client.options("/api/admin/stats/", HTTP_ORIGIN=origin, HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET")
        assert "Access-Control-Allow-Origin" not in denied
        assert "Access-Control-Allow-Origin" not in client.get("/healthz", HTTP_ORIGIN=origin)


@pytest.mark.django_db
def test_no_cors_grant_by_default(client):
    response = client.get("/healthz", HTTP_ORIGIN="https://app.example.com")
    assert "Access-Control-Allow-Origin" not in response


SECRET = "sk-live-abcdefghijklmnopqrstuvwxyz0123456789"


@pytest.mark.django_db
def test_provider_keys_are_encrypted_at_rest_and_never_returned_or_logged(make_customer, client_for, admin_api,
                                                                         caplog, django_user_model):
    from accounts import crypto
    from core.models import AuditLog
    from agents.models import ModelConfig

    caplog.set_level(logging.DEBUG)
    _, user = make_customer("acme")
    client = client_for(user)
    body = {"name": "gpt", "provider": "openai", "model": "gpt-4o-mini", "base_url": "https://api.openai.com/v1",
            "api_key": SECRET}
    created = client.post("/api/models/", body, format="json")
    assert created.status_code == 201, created.content
    model_id = created.json()["id"]
    client.patch(f"/api/models/{model_id}/", {"api_key": SECRET + "-rotated"}, format="json")
    agent = client.post("/api/agents/", {"name": "writer", "model": model_id}, format="json").json()
    seen = [
        created.content,
        client.get("/api/models/").content,
        client.get(f"/api/models/{model_id}/").content,
        client.get(f"/api/agents/{agent['id']}/").content,
        admin_api.get("/api/admin/agents/").content,
        admin_api.get("/api/admin/audit/").content,
    ]
    superuser = django_user_model.objects.create_superuser("root-admin", "root@example.com", "password123")
    from django.test import Client

    from tests.admin_support import admin_site_login

    site = admin_site_login(Client(), superuser)
    seen.append(site.get(f"/admin/agents/modelconfig/{model_id}/change/").content)
    for content in seen:
        assert SECRET.encode() not in content
    # at rest: only ciphertext, which the FIELD_ENCRYPTION_KEY from the environment opens
    stored = ModelConfig.objects.get(pk=model_id).api_key_encrypted
    assert SECRET not in stored and stored
    assert crypto.decrypt(stored) == SECRET + "-rotated"
    with override_settings(FIELD_ENCRYPTION_KEY="another key"), pytest.raises(ValueError):
        crypto.decrypt(stored)
    assert not any(SECRET in str(row.details) for row in AuditLog.objects.all())
    assert SECRET not in caplog.text
