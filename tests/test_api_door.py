"""The API catches mistakes at the door: an unknown body field or list query parameter is a 400
validation_error naming it, on every operation of the OpenAPI schema; lists filter and order with
django-filter, as the schema documents."""
import re

import pytest

from tests.api_support import assert_error, make_task, make_tenant

pytestmark = pytest.mark.django_db

UNKNOWN = "zz_unknown_field"


@pytest.fixture
def world(make_customer, staff_user):
    return make_tenant(make_customer, "door")


def _schema(api):
    response = api.get("/api/schema/?format=json")
    assert response.status_code == 200
    return response.json()


def _concrete(path: str, tenant) -> str:
    """A schema path with real ids of the tenant's objects (admin paths included)."""
    resource = re.match(r"^/api/(?:admin/)?([a-z-]+)/", path).group(1)
    ids = {"models": tenant.model.pk, "agents": tenant.agent.pk, "teams": tenant.team.pk, "tasks": tenant.task.pk,
           "threads": tenant.thread.pk, "api-keys": tenant.api_key.pk, "customers": tenant.customer.pk,
           "webhooks": tenant.ids["webhook"], "schedules": tenant.ids["schedule"], "tools": tenant.ids["tool"]}
    return re.sub(r"\{[^}]+\}", str(ids.get(resource, 1)), path)


def _client(path, api, admin_api):
    return admin_api if path.startswith("/api/admin/") else api


def test_every_json_body_refuses_an_unknown_field_naming_it(world, client_for, admin_api):
    # given every operation of the schema that takes a JSON body
    api = client_for(world.owner)
    operations = [(path, method) for path, item in _schema(api)["paths"].items() for method, op in item.items()
                  if "application/json" in (op.get("requestBody") or {}).get("content", {})]
    assert len(operations) > 15, operations
    failures = []
    for path, method in operations:
        # when a body carries a field the operation does not have
        url = _concrete(path, world)
        response = getattr(_client(path, api, admin_api), method)(url, {UNKNOWN: 1}, format="json")
        # then it is refused, and the error names that field
        body = response.json() if response.content else {}
        details = (body.get("error") or {}).get("details") or {}
        if response.status_code != 400 or body["error"]["code"] != "validation_error" or UNKNOWN not in str(details):
            failures.append(f"{method.upper()} {url}: {response.status_code} {body}")
    assert not failures, "\n".join(failures)


def test_a_typo_in_an_agent_field_creates_nothing(world, client_for):
    api = client_for(world.owner)
    # given an agent body whose system message key is misspelt
    response = api.post("/api/agents/", {"name": "typo", "model": world.model.pk, "system_mesage": "Be brief."},
                        format="json")
    # then it is refused naming the key, and no agent exists
    error = assert_error(response, 400, "validation_error")
    assert "system_mesage" in error["details"] and "system_message" in error["details"]["system_mesage"][0]
    # the message says what can be set, and keeps apart what is read-only (accepted and ignored)
    allowed, _, read_only = error["details"]["system_mesage"][0].partition("; read-only (accepted, ignored): ")
    assert "system_message" in allowed and "version" not in allowed and "created_at" not in allowed
    assert read_only.split(", ") == ["created_at", "id", "status", "updated_at", "version"]
    assert api.get("/api/agents/?name=typo").json()["count"] == 0


def test_a_nested_unknown_key_is_named_under_its_parent(world, client_for):
    response = client_for(world.owner).patch(f"/api/agents/{world.agent.pk}/", {"limits": {"memory_mbb": 64}},
                                             format="json")
    assert "memory_mbb" in assert_error(response, 400, "validation_error")["details"]["limits"]


def test_a_read_only_field_sent_back_is_accepted_and_ignored(world, client_for):
    # given an agent read with GET and sent back whole (id, status, version... included)
    api = client_for(world.owner)
    agent = api.get(f"/api/agents/{world.agent.pk}/").json()
    # when it is PUT back with a new description
    response = api.put(f"/api/agents/{world.agent.pk}/", {**agent, "description": "new", "status": "stopped"},
                       format="json")
    # then it is applied; the read-only status did not change
    assert response.status_code == 200, response.content
    assert response.json()["description"] == "new" and response.json()["status"] == "active"


def test_every_list_refuses_an_unknown_query_parameter_naming_it(world, client_for, admin_api):
    api = client_for(world.owner)
    lists = [path for path, item in _schema(api)["paths"].items()
             if "get" in item and any(p["name"] == "page" for p in item["get"].get("parameters", []))]
    assert len(lists) >= 10, lists
    failures = []
    for path in lists:
        url = _concrete(path, world)
        response = _client(path, api, admin_api).get(url, {UNKNOWN: "1"})
        body = response.json()
        if response.status_code != 400 or UNKNOWN not in (body.get("error") or {}).get("details", {}):
            failures.append(f"GET {url}?{UNKNOWN}=1: {response.status_code} {body}")
        # the pagination parameters still work
        response = _client(path, api, admin_api).get(url, {"page": 1, "page_size": 5})
        if response.status_code != 200:
            failures.append(f"GET {url}?page=1&page_size=5: {response.status_code} {response.content[:300]}")
    assert not failures, "\n".join(failures)


def test_a_misspelt_task_filter_is_refused_instead_of_listing_everything(world, client_for):
    response = client_for(world.owner).get("/api/tasks/", {"stauts": "failed"})
    error = assert_error(response, 400, "validation_error")
    assert "stauts" in error["details"] and "stauts" in error["message"]
    assert "status" in error["details"]["stauts"][0]  # the allowed names are listed


def test_task_filters_and_ordering(world, client_for):
    api = client_for(world.owner)
    # given three tasks of the tenant: two queued (one on each agent), one running
    third = make_task(world.owner, agent=world.agent)
    ids = lambda response: [t["id"] for t in response.json()["results"]]  # noqa: E731
    # then status, agent and thread filter; an empty value is no filter
    assert ids(api.get("/api/tasks/", {"status": "running"})) == [world.running_task.pk]
    assert set(ids(api.get("/api/tasks/", {"agent": world.agent.pk}))) == {world.task.pk, third.pk}
    assert ids(api.get("/api/tasks/", {"thread": third.thread_id})) == [third.pk]
    assert len(ids(api.get("/api/tasks/", {"status": ""}))) == 3
    # newest first by default; ?ordering=created_at oldest first
    assert ids(api.get("/api/tasks/")) == [third.pk, world.running_task.pk, world.task.pk]
    assert ids(api.get("/api/tasks/", {"ordering": "created_at"})) == [world.task.pk, world.running_task.pk, third.pk]
    # a bad value is a validation error naming the filter
    assert "ordering" in assert_error(api.get("/api/tasks/", {"ordering": "colour"}), 400, "validation_error")["details"]
    assert "status" in assert_error(api.get("/api/tasks/", {"status": "nope"}), 400, "validation_error")["details"]
    assert "agent" in assert_error(api.get("/api/tasks/", {"agent": "x"}), 400, "validation_error")["details"]
    assert "agent" in assert_error(api.get("/api/tasks/", {"agent": 10**30}), 400, "validation_error")["details"]
    # a date-time with any offset the parser takes is compared in UTC (the database takes no offset past 15:59)
    assert api.get("/api/tasks/", {"created_before": "2020-06-19T02:16:17-16:26"}).json()["count"] == 0
    assert "created_after" in assert_error(api.get("/api/tasks/", {"created_after": "0001-01-01T00:00:00+05:00"}),
                                           400, "validation_error")["details"]


def test_filters_and_ordering_are_in_the_schema(world, client_for):
    paths = _schema(client_for(world.owner))["paths"]
    names = {p["name"]: p for p in paths["/api/tasks/"]["get"]["parameters"]}
    assert {"status", "agent", "team", "thread", "created_after", "created_before", "ordering", "page",
            "page_size"} <= set(names)
    assert "queued" in names["status"]["schema"]["enum"]
    assert "-created_at" in names["ordering"]["schema"]["items"]["enum"]
    assert {"provider", "ordering"} <= {p["name"] for p in paths["/api/models/"]["get"]["parameters"]}
    assert {"customer", "status"} <= {p["name"] for p in paths["/api/admin/agents/"]["get"]["parameters"]}


def test_admin_lists_filter_and_refuse_unknown_parameters(world, admin_api):
    response = admin_api.get("/api/admin/agents/", {"customer": world.customer.pk})
    assert response.status_code == 200 and {a["customer"] for a in response.json()["results"]} == {world.customer.pk}
    assert "actr" in assert_error(admin_api.get("/api/admin/audit/", {"actr": "x"}), 400, "validation_error")["details"]
    assert admin_api.get("/api/admin/audit/", {"action": "model_config."}).json()["count"] >= 2


def test_request_bodies_declare_that_unknown_keys_are_refused(world, client_for):
    schemas = _schema(client_for(world.owner))["components"]["schemas"]
    for name in ("AgentRequest", "PatchedAgentRequest", "TaskCreateRequest", "LimitsRequest", "ModelConfigRequest"):
        assert schemas[name]["additionalProperties"] is False, name


def test_every_operation_with_query_parameters_refuses_an_unknown_one(world, client_for, admin_api):
    # given every operation of the schema that documents query parameters, lists or not (events, apply,
    # export...): `?afer=3` used to return every event, `POST /api/apply/?dryrun=true` to apply for real
    api = client_for(world.owner)
    operations = [(path, method) for path, item in _schema(api)["paths"].items() for method, op in item.items()
                  if method in ("get", "post") and any(p.get("in") == "query" for p in op.get("parameters", []))]
    assert ("/api/tasks/{id}/events/", "get") in operations and ("/api/apply/", "post") in operations
    failures = []
    for path, method in operations:
        if path.endswith("/stream/"):
            continue  # the SSE stream: a long-lived answer (its ?after= and Last-Event-ID are in tests/test_sse.py)
        url = f"{_concrete(path, world)}?{UNKNOWN}=1"
        client = _client(path, api, admin_api)
        response = client.get(url) if method == "get" else client.post(url, {}, format="json")
        body = response.json() if response.content else {}
        if response.status_code != 400 or UNKNOWN not in str((body.get("error") or {}).get("details")):
            failures.append(f"{method.upper()} {url}: {response.status_code} {str(body)[:300]}")
    assert not failures, "\n".join(failures)


def test_tools_on_a_model_that_cannot_call_functions_are_refused_before_any_task_runs(world, client_for):
    # given a model configuration whose capabilities say it cannot call functions
    api = client_for(world.owner)
    info = {"family": "unknown", "vision": False, "function_calling": False, "json_output": False,
            "structured_output": False}
    model = api.post("/api/models/", {"name": "no-tools", "provider": "openai", "model": "my-llama",
                                      "base_url": "http://127.0.0.1:9/v1", "model_info": info}, format="json").json()
    # when an agent with a tool is put on it, then it is refused naming the model (it used to fail each task
    # with agent_error "The model does not support function calling")
    refused = api.post("/api/agents/", {"name": "calc", "model": model["id"], "tools": ["calculator"]}, format="json")
    assert "'no-tools' cannot call functions" in assert_error(refused, 400, "validation_error")["details"]["tools"][0]
    # an agent without tools is fine; giving it a tool later is refused the same way
    plain = api.post("/api/agents/", {"name": "plain", "model": model["id"]}, format="json").json()
    refused = api.patch(f"/api/agents/{plain['id']}/", {"tools": ["calculator"]}, format="json")
    assert "tools" in assert_error(refused, 400, "validation_error")["details"]
    # and a model whose agents have tools cannot lose function calling under them
    capable = api.patch(f"/api/models/{model['id']}/", {"model_info": {**info, "function_calling": True}},
                        format="json")
    assert capable.status_code == 200
    assert api.patch(f"/api/agents/{plain['id']}/", {"tools": ["calculator"]}, format="json").status_code == 200
    refused = api.patch(f"/api/models/{model['id']}/", {"model_info": info}, format="json")
    assert "plain" in assert_error(refused, 400, "validation_error")["details"]["model_info"][0]


def test_a_swarm_of_agents_whose_model_cannot_call_functions_is_refused_when_written(world, client_for):
    api = client_for(world.owner)
    info = {"family": "unknown", "vision": False, "function_calling": False, "json_output": False,
            "structured_output": False}
    model = api.post("/api/models/", {"name": "plain-model", "provider": "openai", "model": "my-llama",
                                      "base_url": "http://127.0.0.1:9/v1", "model_info": info}, format="json").json()
    first, second = (api.post("/api/agents/", {"name": n, "model": model["id"]}, format="json").json()["id"]
                     for n in ("first", "second"))
    # a round robin of them is fine; a swarm (handoffs are function calls) is refused naming the members
    assert api.post("/api/teams/", {"name": "rr", "members": [first, second]}, format="json").status_code == 201
    refused = api.post("/api/teams/", {"name": "sw", "mode": "swarm", "members": [first, second]}, format="json")
    problems = assert_error(refused, 400, "validation_error")["details"]["members"]
    assert len(problems) == 2 and "first: its model configuration 'plain-model' cannot call functions" in problems[0]
