"""The error envelope of the contract on every kind of failure a client can meet."""
import json

import pytest
from django.conf import settings
from django.test import Client
from django.urls import path
from rest_framework.test import APIClient
from rest_framework.views import APIView

from accounts.services import api_key_create, api_key_revoke
from tests.api_support import assert_error, make_agent, make_tenant

pytestmark = pytest.mark.django_db

SECRET_DETAIL = "db password is hunter2"


class BoomView(APIView):
    """A DRF view with a bug."""

    permission_classes = []
    authentication_classes = []

    def get(self, request):
        raise RuntimeError(SECRET_DETAIL)


def plain_boom(request):
    """A plain Django view with a bug."""
    raise ZeroDivisionError(SECRET_DETAIL)


# The test-only URLconf of the 500 tests (used through @pytest.mark.urls(__name__)).
handler500 = "autogen_platform.middleware.handler500"
handler404 = "autogen_platform.middleware.handler404"
urlpatterns = [path("api/boom/", BoomView.as_view()), path("api/plain-boom/", plain_boom)]


def test_validation_error_names_the_fields(api):
    error = assert_error(api.post("/api/agents/", {"limits": {"memory_mb": -1}}, format="json"), 400,
                         "validation_error")

    assert set(error["details"]) >= {"name", "model", "limits"}
    assert all(isinstance(m, str) for m in error["details"]["name"])


def test_malformed_json_is_a_validation_error(api):
    response = api.generic("POST", "/api/agents/", '{"name": "x",', content_type="application/json")

    error = assert_error(response, 400, "validation_error")
    assert "JSON" in error["message"]


def test_unknown_url_under_api_is_404_in_the_envelope(api, anon_client):
    assert_error(api.get("/api/no-such-thing/"), 404, "not_found")
    assert_error(anon_client.get("/api/no-such-thing/"), 404, "not_found")
    assert_error(api.get("/api/agents/1/no-such-action/"), 404, "not_found")


def test_wrong_method_is_405_method_not_allowed(api, owner):
    agent = make_agent(owner.membership.customer)

    assert_error(api.put("/api/tasks/", {}, format="json"), 405, "method_not_allowed")
    assert_error(api.delete("/api/tools/"), 405, "method_not_allowed")
    assert_error(api.get(f"/api/agents/{agent.pk}/stop/"), 405, "method_not_allowed")
    assert_error(APIClient().get("/api/auth/token/"), 405, "method_not_allowed")


def test_no_credentials_bad_token_and_viewer_write_are_told_apart(make_customer, client_for, anon_client):
    _, viewer = make_customer("acme", role="viewer")
    bad = APIClient()
    bad.credentials(HTTP_AUTHORIZATION="Bearer not.a.token")

    assert_error(anon_client.get("/api/agents/"), 401, "not_authenticated")
    assert_error(bad.get("/api/agents/"), 401, "token_invalid")
    assert_error(client_for(viewer).post("/api/agents/", {"name": "x"}, format="json"), 403, "permission_denied")


def test_another_customers_object_is_404_like_a_missing_one(make_customer, client_for):
    theirs = make_tenant(make_customer, "globex")
    _, user = make_customer("acme")
    api = client_for(user)

    foreign = assert_error(api.get(f"/api/agents/{theirs.agent.pk}/"), 404, "not_found")
    missing = assert_error(api.get("/api/agents/987654/"), 404, "not_found")

    assert foreign == missing


@pytest.mark.urls(__name__)
def test_a_bug_in_an_api_view_is_500_with_a_request_id_and_no_trace():
    response = APIClient().get("/api/boom/")

    error = assert_error(response, 500, "internal_error")
    assert error["details"]["request_id"] == response["X-Request-Id"]
    body = response.content.decode()
    assert SECRET_DETAIL not in body and "Traceback" not in body and "RuntimeError" not in body


@pytest.mark.urls(__name__)
def test_a_bug_outside_drf_is_500_in_the_envelope_too():
    response = Client(raise_request_exception=False).get("/api/plain-boom/")

    error = assert_error(response, 500, "internal_error")
    assert error["details"]["request_id"] == response["X-Request-Id"]
    assert SECRET_DETAIL not in response.content.decode()


def test_a_body_over_the_limit_is_413_payload_too_large(api):
    too_big = json.dumps({"name": "x" * settings.MAX_REQUEST_BODY_BYTES})

    response = api.generic("POST", "/api/agents/", too_big, content_type="application/json")

    error = assert_error(response, 413, "payload_too_large")
    assert error["details"]["limit_bytes"] == settings.MAX_REQUEST_BODY_BYTES


def test_api_key_works_and_a_revoked_one_is_refused(owner):
    key, raw = api_key_create(actor=owner, name="ci")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw}")
    assert api.get("/api/agents/").status_code == 200

    api_key_revoke(actor=owner, key=key)

    assert_error(api.get("/api/agents/"), 401, "token_invalid")
    wrong = APIClient()
    wrong.credentials(HTTP_AUTHORIZATION="Api-Key agp_nope_nope")
    assert_error(wrong.get("/api/agents/"), 401, "token_invalid")


def test_idempotent_task_creation_returns_the_same_task(owner, api):
    agent = make_agent(owner.membership.customer)
    payload = {"agent": agent.pk, "input": "hi"}

    first = api.post("/api/tasks/", payload, format="json", HTTP_IDEMPOTENCY_KEY="abc")
    second = api.post("/api/tasks/", payload, format="json", HTTP_IDEMPOTENCY_KEY="abc")

    assert (first.status_code, second.status_code) == (201, 201)
    assert first.json() == second.json()
    assert second["Idempotent-Replayed"] == "true"


def test_unknown_url_is_in_the_envelope_with_debug_on_too(api, settings):
    # make run has DEBUG on: Django's debug 404 page must still not reach API clients
    settings.DEBUG = True
    response = api.get("/api/no-such-thing/")
    assert_error(response, 404, "not_found")


@pytest.mark.parametrize("debug", [True, False])
def test_a_disallowed_host_is_400_in_the_envelope_with_debug_on_or_off(settings, debug):
    # the Host check fails in Django's CommonMiddleware, before any view: no HTML page reaches an API client
    settings.DEBUG = debug
    response = Client().get("/api/me/", HTTP_HOST="evil.example")
    assert_error(response, 400, "validation_error")


def test_an_error_envelope_made_from_a_django_page_keeps_the_cors_and_security_headers(settings):
    settings.CORS_ALLOWED_ORIGINS = ["https://console.example"]
    response = Client().get("/api/no-such-thing/", HTTP_ORIGIN="https://console.example")
    assert_error(response, 404, "not_found")
    assert response["Access-Control-Allow-Origin"] == "https://console.example"
    assert response["X-Content-Type-Options"] == "nosniff" and response["X-Request-Id"]
