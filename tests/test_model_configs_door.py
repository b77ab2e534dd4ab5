"""A model configuration that could never run is refused when it is written, and POST /api/models/{id}/test/
makes one real call through the broker's client code: its latency, or the exact error (endpoint and cause)."""
import threading

import pytest

from tests.api_support import assert_error
from tests.live_server import free_port
from tests.openai_stub import MODEL_INFO, OpenAIStub

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(owner, client_for):
    return client_for(owner)


def create(api, **body):
    return api.post("/api/models/", {"name": f"m-{len(body)}-{body.get('model', '')}"[:90], "provider": "openai", **body},
                    format="json")


# -- validated on write ---------------------------------------------------------------------------


def test_a_model_autogen_does_not_know_needs_model_info(api):
    response = create(api, model="llama3.1", base_url="http://127.0.0.1:11434/v1")
    error = assert_error(response, 400, "validation_error")
    assert list(error["details"]) == ["model_info"]
    assert "llama3.1" in error["details"]["model_info"][0] and "AutoGen does not know" in error["details"]["model_info"][0]
    # with it, the same configuration is accepted (a local endpoint needs no key)
    response = create(api, model="llama3.1", base_url="http://127.0.0.1:11434/v1", model_info=MODEL_INFO)
    assert response.status_code == 201, response.content


def test_openai_itself_needs_a_key_but_not_model_info_for_a_model_autogen_knows(api):
    error = assert_error(create(api, model="gpt-4o-mini"), 400, "validation_error")
    assert list(error["details"]) == ["api_key"] and "https://api.openai.com/v1" in error["details"]["api_key"][0]
    error = assert_error(create(api, model="gpt-4o-mini", base_url="https://api.groq.com/openai/v1",
                                model_info=MODEL_INFO), 400, "validation_error")
    assert list(error["details"]) == ["api_key"]
    response = create(api, model="gpt-4o-mini", api_key="sk-test")
    assert response.status_code == 201, response.content
    # removing the key later is refused the same way, and the key stays
    model_id = response.json()["id"]
    assert "api_key" in assert_error(api.patch(f"/api/models/{model_id}/", {"api_key": ""}, format="json"), 400,
                                     "validation_error")["details"]
    assert api.get(f"/api/models/{model_id}/").json()["has_api_key"] is True


def test_a_spec_is_held_to_the_same_rules(api):
    spec = {"models": [{"name": "local", "provider": "openai", "model": "llama3.1", "base_url": "http://127.0.0.1:1/v1"}]}
    error = assert_error(api.post("/api/apply/", spec, format="json"), 400, "validation_error")
    assert "models[0].model_info" in error["details"]


# -- the connection test --------------------------------------------------------------------------


def model_on(api, base_url, **extra):
    response = create(api, model="stub-model", base_url=base_url, model_info=MODEL_INFO, **extra)
    assert response.status_code == 201, response.content
    return response.json()["id"]


def test_the_test_call_reaches_the_endpoint_with_the_key_and_reports_latency(api):
    with OpenAIStub(["OK"]) as stub:
        model_id = model_on(api, stub.base_url, api_key="sk-door-1")
        response = api.post(f"/api/models/{model_id}/test/")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["ok"] is True and body["error"] is None and body["latency_ms"] > 0
    assert len(stub.requests) == 1
    assert stub.requests[0]["headers"]["authorization"] == "Bearer sk-door-1"
    assert stub.requests[0]["body"]["model"] == "stub-model"


def test_a_replay_configuration_tests_ok_without_network(api):
    response = api.post("/api/models/", {"name": "r", "provider": "replay", "responses": ["hi"]}, format="json")
    body = api.post(f"/api/models/{response.json()['id']}/test/").json()
    assert body["ok"] is True and body["error"] is None


@pytest.mark.parametrize("case", ["refused", "http_401", "dns", "tls"])
def test_a_failed_test_names_the_endpoint_and_the_cause(api, case):
    with OpenAIStub([{"status": 401, "message": "Incorrect API key provided: sk-wr***"}]) as stub:
        base_url = {
            "refused": f"http://127.0.0.1:{free_port()}/v1",
            "http_401": stub.base_url,
            "dns": "http://no-such-model-host.invalid/v1",
            "tls": stub.base_url.replace("http://", "https://"),
        }[case]
        model_id = model_on(api, base_url)
        body = api.post(f"/api/models/{model_id}/test/").json()
    assert body["ok"] is False and body["latency_ms"] >= 0, body
    code, message = body["error"]["code"], body["error"]["message"]
    assert base_url in message, message
    expected = {"refused": ("connection_refused", "connection refused"),
                "http_401": ("http_error", "HTTP 401 from the provider: Incorrect API key provided"),
                "dns": ("dns_error", "does not resolve"), "tls": ("tls_error", "TLS failed")}[case]
    assert (code, expected[1] in message) == (expected[0], True), body


def test_a_hanging_endpoint_times_out_after_model_call_timeout(api, settings):
    settings.MODEL_CALL_TIMEOUT_SECONDS = 1
    release = threading.Event()
    with OpenAIStub([{"hold": release, "text": "late"}]) as stub:
        model_id = model_on(api, stub.base_url)
        body = api.post(f"/api/models/{model_id}/test/").json()
        release.set()
    assert body["ok"] is False and body["error"]["code"] == "timeout", body
    assert "MODEL_CALL_TIMEOUT_SECONDS" in body["error"]["message"] and stub.base_url in body["error"]["message"]
    assert 900 <= body["latency_ms"] < 5000


def test_private_addresses_are_refused_by_the_test_too_when_the_platform_forbids_them(api, settings):
    with OpenAIStub(["OK"]) as stub:
        model_id = model_on(api, stub.base_url)
        settings.MODEL_ENDPOINTS_ALLOW_PRIVATE = False
        body = api.post(f"/api/models/{model_id}/test/").json()
    assert body["ok"] is False and body["error"]["code"] == "configuration_error"
    assert "non-public address" in body["error"]["message"] and stub.requests == []


def test_viewers_cannot_test_and_another_customers_model_is_not_found(api, make_customer, client_for):
    model_id = model_on(api, "http://127.0.0.1:9/v1")
    customer, viewer = make_customer("acme", role="viewer")
    assert_error(client_for(viewer).post(f"/api/models/{model_id}/test/"), 403, "permission_denied")
    _, stranger = make_customer("other")
    assert_error(client_for(stranger).post(f"/api/models/{model_id}/test/"), 404, "not_found")
