"""What issue 9 point 8 found, checked as a client sees it: the envelope on parser errors, JSON-only
bodies, null model_info, lists documented as pages, roles and the customer soft delete."""
import pytest
from django.conf import settings

from accounts.models import Customer
from tests.api_support import assert_error, make_model

pytestmark = pytest.mark.django_db

BROKEN_MULTIPART = b'--xx\r\nContent-Disposition: form-data; name="name"\r\n\r\nbroken'


@pytest.mark.parametrize("content_type", ["multipart/form-data; boundary=xx", "multipart/form-data",
                                          "application/x-www-form-urlencoded", "text/plain"])
def test_a_body_that_is_not_json_is_refused_in_the_envelope(api, content_type):
    response = api.post("/api/models/", BROKEN_MULTIPART, content_type=content_type)
    error = assert_error(response, 415, "unsupported_media_type")
    assert "application/json" in error["message"]


def test_malformed_json_is_a_validation_error_in_the_envelope(api):
    assert_error(api.post("/api/models/", b'{"name": ', content_type="application/json"), 400, "validation_error")
    deep = b"[" * 100000 + b"]" * 100000
    assert_error(api.post("/api/models/", deep, content_type="application/json"), 400, "validation_error")


def test_an_admin_form_post_cannot_create_a_customer_with_its_quotas_dropped(admin_api):
    response = admin_api.post("/api/admin/customers/", "name=formed&quotas.max_agents=1",
                              content_type="application/x-www-form-urlencoded")
    assert_error(response, 415, "unsupported_media_type")
    assert not Customer.objects.filter(name="formed").exists()
    created = admin_api.post("/api/admin/customers/", {"name": "jsoned", "quotas": {"max_agents": 1}}, format="json")
    assert created.status_code == 201 and created.json()["quotas"]["max_agents"] == 1


def test_model_info_is_null_when_none_is_set(api, owner):
    model = make_model(owner.membership.customer, name="plain")
    assert api.get(f"/api/models/{model.pk}/").json()["model_info"] is None
    info = {"vision": False, "function_calling": True, "json_output": False, "family": "unknown"}
    changed = api.patch(f"/api/models/{model.pk}/", {"model_info": info}, format="json").json()
    assert changed["model_info"] == info
    cleared = api.patch(f"/api/models/{model.pk}/", {"model_info": {}}, format="json").json()
    assert cleared["model_info"] is None


def test_admin_lists_are_documented_as_pages(anon_client):
    schema = anon_client.get("/api/schema/?format=json").json()
    for path in ("/api/admin/customers/", "/api/admin/agents/", "/api/admin/audit/"):
        ok = schema["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        component = schema["components"]["schemas"][ok["$ref"].rsplit("/", 1)[1]]
        assert component["properties"]["results"]["type"] == "array", path
        assert {"count", "next", "previous"} <= set(component["properties"]), path


def test_every_error_answer_is_documented_with_the_envelope(anon_client):
    schema = anon_client.get("/api/schema/?format=json").json()
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            assert "401" in operation["responses"] or path.startswith("/api/auth/"), (method, path)
            for code, response in operation["responses"].items():
                if code >= "400":
                    ref = response["content"]["application/json"]["schema"]["$ref"]
                    assert ref.endswith("/ErrorEnvelope"), (method, path, code)
    assert settings.REST_FRAMEWORK["DEFAULT_SCHEMA_CLASS"] == "autogen_platform.schema.AutoSchema"


@pytest.fixture
def roles(make_customer, client_for):
    customer, owner = make_customer("roles", role="owner")
    _, member = make_customer("roles", role="member")
    _, viewer = make_customer("roles", role="viewer")
    return customer, client_for(owner), client_for(member), client_for(viewer)


def test_members_run_and_edit_but_only_owners_delete(roles):
    customer, owner, member, viewer = roles
    body = {"name": "m", "provider": "replay", "responses": ["hi"]}
    assert_error(viewer.post("/api/models/", body, format="json"), 403, "permission_denied")
    created = member.post("/api/models/", body, format="json")
    assert created.status_code == 201
    model_id = created.json()["id"]
    assert member.patch(f"/api/models/{model_id}/", {"responses": ["ho"]}, format="json").status_code == 200
    agent = member.post("/api/agents/", {"name": "a", "model": model_id}, format="json").json()
    assert member.post("/api/tasks/", {"agent": agent["id"], "input": "hi"}, format="json").status_code == 201

    error = assert_error(member.delete(f"/api/agents/{agent['id']}/"), 403, "permission_denied")
    assert "owner" in error["message"]
    assert_error(member.delete(f"/api/models/{model_id}/"), 403, "permission_denied")
    assert owner.delete(f"/api/teams/999999/").status_code == 404


def test_only_owners_manage_api_keys(roles):
    customer, owner, member, viewer = roles
    assert_error(member.post("/api/api-keys/", {"name": "ci"}, format="json"), 403, "permission_denied")
    created = owner.post("/api/api-keys/", {"name": "ci"}, format="json")
    assert created.status_code == 201
    key_id = created.json()["id"]
    assert [k["id"] for k in member.get("/api/api-keys/").json()["results"]] == [key_id]
    assert_error(member.delete(f"/api/api-keys/{key_id}/"), 403, "permission_denied")
    assert owner.delete(f"/api/api-keys/{key_id}/").status_code == 204


def test_only_owners_prune_with_apply(roles):
    customer, owner, member, viewer = roles
    make_model(customer, name="keep-me")
    spec = {"models": [{"name": "other", "provider": "replay", "responses": ["hi"]}]}
    assert_error(member.post("/api/apply/?prune=true", spec, format="json"), 403, "permission_denied")
    assert member.post("/api/apply/?prune=true&dry_run=true", spec, format="json").status_code == 200
    assert member.post("/api/apply/", spec, format="json").status_code == 200
    assert owner.post("/api/apply/?prune=true", spec, format="json").json()["summary"]["delete"] == 1


@pytest.mark.django_db(transaction=True)
def test_a_malformed_multipart_body_gets_the_envelope_from_the_real_server(daphne_server, owner):
    import json
    import urllib.error
    import urllib.request

    from conftest import token_for

    for content_type in ("multipart/form-data", "multipart/form-data; boundary=xx"):
        request = urllib.request.Request(
            daphne_server.http_url + "/api/models/", data=BROKEN_MULTIPART, method="POST",
            headers={"Content-Type": content_type, "Authorization": f"Bearer {token_for(owner)}"})
        with pytest.raises(urllib.error.HTTPError) as answer:
            urllib.request.urlopen(request, timeout=10)
        body = json.loads(answer.value.read())
        assert answer.value.code == 415, body
        assert body["error"]["code"] == "unsupported_media_type"


@pytest.mark.parametrize("name", ["bell\x07", "next\x85line", "para\u2028graph", "tab\there"])
def test_an_export_reads_back_whatever_the_customer_is_called(make_customer, client_for, name):
    import yaml

    customer, owner = make_customer(name)
    make_model(customer, name=f"model {name}")
    text = client_for(owner).get("/api/export/").content.decode()
    spec = yaml.safe_load(text)
    assert spec["customer"] == name
    assert spec["models"][0]["name"] == f"model {name}"
