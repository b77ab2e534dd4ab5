"""Tenancy: every customer-scoped endpoint and method, walked as another customer and as a viewer.

Customer A never reads, lists, changes or references customer B's objects (404 not_found for B's ids
in URLs, 400 for B's ids in bodies, never in lists), and A's viewer cannot write (403). The route
table of the /api/ router is checked against the cases here, so a new endpoint must be added.
"""
import pytest

from agents.models import Agent, AgentVersion, ModelConfig
from autogen_platform.urls import router
from tasks.models import Task, Thread
from teams.models import Team
from tests.api_support import assert_error, make_tenant

pytestmark = pytest.mark.django_db

# Routes not walked by the paged-list check: the tool list (built-ins and the customer's own) is not paged;
# agents/tests/test_tools.py checks it lists no other customer's tool.
UNSCOPED = {("tool-list", "get")}


@pytest.fixture
def tenants(make_customer):
    return make_tenant(make_customer, "acme"), make_tenant(make_customer, "globex")


def detail_cases(a, b):
    """(route, method, url of B's object, body valid for A): each must be 404 for A."""
    agent_body = {"name": "renamed", "model": a.model.pk, "system_message": "x"}
    team_body = {"name": "renamed", "members": [a.agent.pk]}
    model_body = {"name": "renamed", "provider": "replay", "responses": ["x"]}
    ids = b.ids
    return [
        ("api-key-detail", "get", f"/api/api-keys/{ids['api_key']}/", None),
        ("api-key-detail", "delete", f"/api/api-keys/{ids['api_key']}/", None),
        ("model-config-detail", "get", f"/api/models/{ids['model']}/", None),
        ("model-config-detail", "put", f"/api/models/{ids['model']}/", model_body),
        ("model-config-detail", "patch", f"/api/models/{ids['model']}/", {"name": "renamed"}),
        ("model-config-detail", "delete", f"/api/models/{ids['model']}/", None),
        ("model-config-test-connection", "post", f"/api/models/{ids['model']}/test/", None),
        ("agent-detail", "get", f"/api/agents/{ids['agent']}/", None),
        ("agent-detail", "put", f"/api/agents/{ids['agent']}/", agent_body),
        ("agent-detail", "patch", f"/api/agents/{ids['agent']}/", {"system_message": "pwned"}),
        ("agent-detail", "delete", f"/api/agents/{ids['agent']}/", None),
        ("agent-versions", "get", f"/api/agents/{ids['agent']}/versions/", None),
        ("agent-rollback", "post", f"/api/agents/{ids['agent']}/rollback/", {"version": 1}),
        ("agent-stop", "post", f"/api/agents/{ids['agent']}/stop/", None),
        ("agent-start", "post", f"/api/agents/{ids['agent']}/start/", None),
        ("agent-restart", "post", f"/api/agents/{ids['agent']}/restart/", None),
        ("agent-processes", "get", f"/api/agents/{ids['agent']}/processes/", None),
        ("team-detail", "get", f"/api/teams/{ids['team']}/", None),
        ("team-detail", "put", f"/api/teams/{ids['team']}/", team_body),
        ("team-detail", "patch", f"/api/teams/{ids['team']}/", {"name": "renamed"}),
        ("team-detail", "delete", f"/api/teams/{ids['team']}/", None),
        ("agent-component", "get", f"/api/agents/{ids['agent']}/component/", None),
        ("team-component", "get", f"/api/teams/{ids['team']}/component/", None),
        ("team-versions", "get", f"/api/teams/{ids['team']}/versions/", None),
        ("team-rollback", "post", f"/api/teams/{ids['team']}/rollback/", {"version": 1}),
        ("task-detail", "get", f"/api/tasks/{ids['task']}/", None),
        ("task-events", "get", f"/api/tasks/{ids['task']}/events/", None),
        ("task-cancel", "post", f"/api/tasks/{ids['task']}/cancel/", None),
        ("task-cancel", "post", f"/api/tasks/{ids['running_task']}/cancel/", None),
        ("task-input", "post", f"/api/tasks/{ids['task']}/input/", {"text": "hi"}),
        ("thread-detail", "get", f"/api/threads/{ids['thread']}/", None),
        ("webhook-detail", "get", f"/api/webhooks/{ids['webhook']}/", None),
        ("webhook-detail", "put", f"/api/webhooks/{ids['webhook']}/", {"url": "https://a.example/h"}),
        ("webhook-detail", "patch", f"/api/webhooks/{ids['webhook']}/", {"enabled": False}),
        ("webhook-detail", "delete", f"/api/webhooks/{ids['webhook']}/", None),
        ("webhook-rotate-secret", "post", f"/api/webhooks/{ids['webhook']}/rotate-secret/", None),
        ("webhook-deliveries", "get", f"/api/webhooks/{ids['webhook']}/deliveries/", None),
        ("webhook-delivery", "get", f"/api/webhooks/{ids['webhook']}/deliveries/{ids['delivery']}/", None),
        ("webhook-resend", "post", f"/api/webhooks/{ids['webhook']}/deliveries/{ids['delivery']}/resend/", None),
        ("schedule-detail", "get", f"/api/schedules/{ids['schedule']}/", None),
        ("schedule-detail", "put", f"/api/schedules/{ids['schedule']}/",
         {"name": "x", "cron": "* * * * *", "agent": a.agent.pk, "input": "x"}),
        ("schedule-detail", "patch", f"/api/schedules/{ids['schedule']}/", {"input": "pwned"}),
        ("schedule-detail", "delete", f"/api/schedules/{ids['schedule']}/", None),
        ("schedule-pause", "post", f"/api/schedules/{ids['schedule']}/pause/", None),
        ("schedule-resume", "post", f"/api/schedules/{ids['schedule']}/resume/", None),
        ("tool-detail", "get", f"/api/tools/{ids['tool']}/", None),
        ("tool-detail", "put", f"/api/tools/{ids['tool']}/", {"name": "renamed", "source": "def renamed():\n    pass\n"}),
        ("tool-detail", "patch", f"/api/tools/{ids['tool']}/", {"source": "def x():\n    pass\n"}),
        ("tool-detail", "delete", f"/api/tools/{ids['tool']}/", None),
    ]


def list_cases(b):
    """(route, url, B's ids that must not appear)."""
    ids = b.ids
    return [
        ("api-key-list", "/api/api-keys/", {ids["api_key"]}),
        ("notification-list", "/api/notifications/", {ids["notification"]}),
        ("model-config-list", "/api/models/", {ids["model"], ids["selector_model"]}),
        ("agent-list", "/api/agents/", {ids["agent"], ids["other_agent"]}),
        ("team-list", "/api/teams/", {ids["team"]}),
        ("task-list", "/api/tasks/", {ids["task"], ids["running_task"]}),
        ("task-list", f"/api/tasks/?agent={ids['agent']}", {ids["task"]}),
        ("task-list", f"/api/tasks/?team={ids['team']}", set()),
        ("thread-list", "/api/threads/", {ids["thread"]}),
        ("webhook-list", "/api/webhooks/", {ids["webhook"]}),
        ("schedule-list", "/api/schedules/", {ids["schedule"]}),
    ]


def reference_cases(a, b):
    """(route, method, url, body naming B's objects, field): each must be 400 on that field, and change nothing."""
    ids = b.ids
    return [
        ("agent-list", "post", "/api/agents/", {"name": "spy", "model": ids["model"]}, "model"),
        ("agent-detail", "patch", f"/api/agents/{a.agent.pk}/", {"model": ids["model"]}, "model"),
        ("agent-detail", "patch", f"/api/agents/{a.agent.pk}/", {"tools": [b.tool_name]}, "tools"),
        ("team-list", "post", "/api/teams/", {"name": "spy", "members": [ids["agent"]]}, "members"),
        ("team-list", "post", "/api/teams/", {"name": "spy", "members": [a.agent.pk, ids["agent"]]}, "members"),
        ("team-list", "post", "/api/teams/", {"name": "spy", "members": [a.agent.pk], "mode": "selector",
                                              "selector_model": ids["selector_model"]}, "selector_model"),
        ("team-detail", "put", f"/api/teams/{a.team.pk}/", {"name": "x", "members": [ids["agent"]]}, "members"),
        ("team-detail", "patch", f"/api/teams/{a.team.pk}/", {"mode": "selector",
                                                              "selector_model": ids["selector_model"]},
         "selector_model"),
        ("task-list", "post", "/api/tasks/", {"agent": ids["agent"], "input": "hi"}, "agent"),
        ("task-list", "post", "/api/tasks/", {"team": ids["team"], "input": "hi"}, "team"),
        ("task-list", "post", "/api/tasks/", {"agent": a.agent.pk, "input": "hi", "thread": ids["thread"]},
         "thread"),
        ("task-list", "post", "/api/tasks/", {"agent": a.agent.pk, "input": "hi", "webhook": ids["webhook"]},
         "webhook"),
        ("task-batch", "post", "/api/tasks/batch/", {"tasks": [{"agent": a.agent.pk, "input": "hi"},
                                                               {"agent": ids["agent"], "input": "hi"}]}, "tasks"),
        ("task-batch", "post", "/api/tasks/batch/", {"tasks": [{"agent": a.agent.pk, "input": "hi",
                                                                "thread": ids["thread"]}]}, "tasks"),
        ("schedule-list", "post", "/api/schedules/", {"name": "spy", "cron": "* * * * *", "agent": ids["agent"],
                                                      "input": "x"}, "agent"),
        ("schedule-list", "post", "/api/schedules/", {"name": "spy", "cron": "* * * * *", "agent": a.agent.pk,
                                                      "input": "x", "thread": ids["thread"]}, "thread"),
        ("schedule-detail", "patch", f"/api/schedules/{a.ids['schedule']}/", {"team": ids["team"], "agent": None},
         "team"),
    ]


def _agent_component(name: str) -> dict:
    model = {"provider": "autogen_ext.models.replay.ReplayChatCompletionClient", "component_type": "model",
             "config": {"chat_completions": ["x"]}}
    return {"provider": "autogen_agentchat.agents.AssistantAgent", "component_type": "agent",
            "config": {"name": name, "model_client": model, "description": "imported"}}


def _team_component(name: str) -> dict:
    return {"provider": "autogen_agentchat.teams.RoundRobinGroupChat", "component_type": "team",
            "config": {"name": name, "participants": [_agent_component(f"{name}-member")]}}


def own_create_cases(a):
    """Creates without references: they make A's objects, never B's."""
    return [
        ("agent-import-component", "post", "/api/agents/import/", {"component": _agent_component("imported")}),
        ("team-import-component", "post", "/api/teams/import/", {"component": _team_component("imported")}),
        ("api-key-list", "post", "/api/api-keys/", {"name": "new"}),
        ("model-config-list", "post", "/api/models/", {"name": "new", "provider": "replay", "responses": ["x"]}),
        ("agent-list", "post", "/api/agents/", {"name": "new", "model": a.model.pk}),
        ("team-list", "post", "/api/teams/", {"name": "new", "members": [a.agent.pk]}),
        ("task-list", "post", "/api/tasks/", {"agent": a.agent.pk, "input": "hi"}),
        ("task-batch", "post", "/api/tasks/batch/", {"tasks": [{"agent": a.agent.pk, "input": "hi"}]}),
        ("webhook-list", "post", "/api/webhooks/", {"url": "https://new.example/h"}),
        ("schedule-list", "post", "/api/schedules/", {"name": "new", "cron": "* * * * *", "agent": a.agent.pk,
                                                      "input": "x"}),
        ("tool-list", "post", "/api/tools/", {"name": "new", "source": "def new():\n    pass\n"}),
    ]


def viewer_write_cases(a):
    """Every write of the customer API, on A's own objects: a viewer of A gets 403 for each."""
    ids = a.ids
    return [
        ("api-key-list", "post", "/api/api-keys/", {"name": "v"}),
        ("api-key-detail", "delete", f"/api/api-keys/{ids['api_key']}/", None),
        ("model-config-list", "post", "/api/models/", {"name": "v", "provider": "replay", "responses": ["x"]}),
        ("model-config-detail", "put", f"/api/models/{ids['model']}/",
         {"name": "v", "provider": "replay", "responses": ["x"]}),
        ("model-config-detail", "patch", f"/api/models/{ids['model']}/", {"name": "v"}),
        ("model-config-detail", "delete", f"/api/models/{ids['model']}/", None),
        ("model-config-test-connection", "post", f"/api/models/{ids['model']}/test/", None),
        ("agent-list", "post", "/api/agents/", {"name": "v", "model": ids["model"]}),
        ("agent-detail", "put", f"/api/agents/{ids['agent']}/", {"name": "v", "model": ids["model"]}),
        ("agent-detail", "patch", f"/api/agents/{ids['agent']}/", {"system_message": "v"}),
        ("agent-detail", "delete", f"/api/agents/{ids['agent']}/", None),
        ("agent-rollback", "post", f"/api/agents/{ids['agent']}/rollback/", {"version": 1}),
        ("agent-stop", "post", f"/api/agents/{ids['agent']}/stop/", None),
        ("agent-start", "post", f"/api/agents/{ids['agent']}/start/", None),
        ("agent-restart", "post", f"/api/agents/{ids['agent']}/restart/", None),
        ("team-list", "post", "/api/teams/", {"name": "v", "members": [ids["agent"]]}),
        ("team-detail", "put", f"/api/teams/{ids['team']}/", {"name": "v", "members": [ids["agent"]]}),
        ("team-detail", "patch", f"/api/teams/{ids['team']}/", {"name": "v"}),
        ("team-detail", "delete", f"/api/teams/{ids['team']}/", None),
        ("team-rollback", "post", f"/api/teams/{ids['team']}/rollback/", {"version": 1}),
        ("agent-import-component", "post", "/api/agents/import/", {"component": _agent_component("v")}),
        ("team-import-component", "post", "/api/teams/import/", {"component": _team_component("v")}),
        ("task-list", "post", "/api/tasks/", {"agent": ids["agent"], "input": "hi"}),
        ("task-batch", "post", "/api/tasks/batch/", {"tasks": [{"agent": ids["agent"], "input": "hi"}]}),
        ("task-cancel", "post", f"/api/tasks/{ids['task']}/cancel/", None),
        ("webhook-list", "post", "/api/webhooks/", {"url": "https://v.example/h"}),
        ("webhook-detail", "patch", f"/api/webhooks/{ids['webhook']}/", {"enabled": False}),
        ("webhook-detail", "put", f"/api/webhooks/{ids['webhook']}/", {"url": "https://v.example/h"}),
        ("webhook-detail", "delete", f"/api/webhooks/{ids['webhook']}/", None),
        ("webhook-rotate-secret", "post", f"/api/webhooks/{ids['webhook']}/rotate-secret/", None),
        ("webhook-resend", "post", f"/api/webhooks/{ids['webhook']}/deliveries/{ids['delivery']}/resend/", None),
        ("schedule-list", "post", "/api/schedules/", {"name": "v", "cron": "* * * * *", "agent": ids["agent"],
                                                      "input": "x"}),
        ("schedule-detail", "put", f"/api/schedules/{ids['schedule']}/",
         {"name": "v", "cron": "* * * * *", "agent": ids["agent"], "input": "x"}),
        ("schedule-detail", "patch", f"/api/schedules/{ids['schedule']}/", {"input": "v"}),
        ("schedule-detail", "delete", f"/api/schedules/{ids['schedule']}/", None),
        ("schedule-pause", "post", f"/api/schedules/{ids['schedule']}/pause/", None),
        ("schedule-resume", "post", f"/api/schedules/{ids['schedule']}/resume/", None),
        ("task-input", "post", f"/api/tasks/{ids['task']}/input/", {"text": "v"}),
        ("tool-list", "post", "/api/tools/", {"name": "v", "source": "def v():\n    pass\n"}),
        ("tool-detail", "put", f"/api/tools/{ids['tool']}/", {"name": "v", "source": "def v():\n    pass\n"}),
        ("tool-detail", "patch", f"/api/tools/{ids['tool']}/", {"description": "v"}),
        ("tool-detail", "delete", f"/api/tools/{ids['tool']}/", None),
    ]


def viewer_read_cases(a):
    ids = a.ids
    return [
        ("/api/me/", None), ("/api/api-keys/", ids["api_key"]), ("/api/notifications/", ids["notification"]),
        ("/api/models/", ids["model"]), ("/api/agents/", ids["agent"]), ("/api/teams/", ids["team"]),
        ("/api/tasks/", ids["task"]), ("/api/threads/", ids["thread"]), ("/api/tools/", None),
        (f"/api/agents/{ids['agent']}/versions/", None), (f"/api/agents/{ids['agent']}/processes/", None),
        (f"/api/tasks/{ids['task']}/events/", None), (f"/api/models/{ids['model']}/", None),
        (f"/api/threads/{ids['thread']}/", None), (f"/api/agents/{ids['agent']}/component/", None),
        (f"/api/teams/{ids['team']}/component/", None), (f"/api/teams/{ids['team']}/versions/", None),
        (f"/api/threads/{ids['thread']}/", None), ("/api/webhooks/", ids["webhook"]),
        ("/api/schedules/", ids["schedule"]), (f"/api/webhooks/{ids['webhook']}/deliveries/", ids["delivery"]),
        (f"/api/tools/{ids['tool']}/", None),
    ]


def snapshot(tenant) -> dict:
    """Everything about a tenant's objects that a write could change."""
    c = tenant.customer
    return {
        "models": sorted(ModelConfig.objects.filter(customer=c).values_list("pk", "name", "updated_at")),
        "agents": sorted(Agent.objects.filter(customer=c).values_list("pk", "name", "status", "version",
                                                                      "system_message", "model_id")),
        "versions": AgentVersion.objects.filter(agent__customer=c).count(),
        "teams": sorted(Team.objects.filter(customer=c).values_list("pk", "name", "mode", "version", "updated_at")),
        "tasks": sorted(Task.objects.filter(customer=c).values_list("pk", "status", "stop_requested", "thread_id")),
        "threads": Thread.objects.filter(customer=c).count(),
        "keys": sorted(tenant.customer.api_keys.values_list("pk", "revoked_at")),
        "webhooks": sorted(c.webhooks.values_list("pk", "url", "enabled", "secret_encrypted", "updated_at")),
        "deliveries": c.webhook_deliveries.count(),
        "tools": sorted(c.tools.values_list("pk", "name", "version", "source", "updated_at")),
        "schedules": sorted(c.schedules.values_list("pk", "name", "input", "enabled", "agent_id", "team_id",
                                                    "thread_id", "updated_at")),
    }


def call(client, method, url, body=None):
    return getattr(client, method)(url, body, format="json") if body is not None else getattr(client, method)(url)


def test_every_scoped_route_is_walked_here(tenants):
    a, b = tenants
    walked = {(name, method) for name, method, *_ in detail_cases(a, b) + reference_cases(a, b)
              + own_create_cases(a) + viewer_write_cases(a)}
    walked |= {(name, "get") for name, *_ in list_cases(b)} | UNSCOPED
    routes = set()
    for pattern in router.urls:
        actions = getattr(pattern.callback, "actions", None) or {}
        # HEAD answers like GET (DRF adds it to the actions once a view has served a request).
        routes |= {(pattern.name, method) for method in actions if method != "head"}
    assert routes - walked == set(), "new customer API routes must be added to this test"


def test_another_customers_objects_are_not_found(tenants, client_for):
    a, b = tenants
    before = snapshot(b)
    api = client_for(a.owner)

    for name, method, url, body in detail_cases(a, b):
        assert_error(call(api, method, url, body), 404, "not_found")

    assert snapshot(b) == before


def test_another_customers_objects_are_never_listed(tenants, client_for):
    a, b = tenants
    api = client_for(a.owner)

    for name, url, foreign in list_cases(b):
        response = api.get(url)
        assert response.status_code == 200, url
        listed = {item["id"] for item in response.json()["results"]}
        assert not listed & foreign, (url, listed & foreign)
    assert {m["id"] for m in api.get("/api/models/").json()["results"]} == {a.model.pk, a.selector_model.pk}


def test_another_customers_ids_in_bodies_are_refused(tenants, client_for):
    a, b = tenants
    before_a, before_b = snapshot(a), snapshot(b)
    api = client_for(a.owner)

    for name, method, url, body, field in reference_cases(a, b):
        error = assert_error(call(api, method, url, body), 400, "validation_error")
        assert field in error["details"], (url, body, error)
        assert "globex" not in str(error)

    assert snapshot(a) == before_a and snapshot(b) == before_b


def test_creations_belong_to_the_callers_customer(tenants, client_for):
    a, b = tenants
    before_b = snapshot(b)
    api = client_for(a.owner)

    for name, method, url, body in own_create_cases(a):
        response = call(api, method, url, body)
        assert response.status_code == 201, (url, response.json())

    assert snapshot(b) == before_b
    assert ModelConfig.objects.get(name="new").customer == a.customer
    assert Agent.objects.get(name="new").customer == a.customer
    assert Team.objects.get(name="new").customer == a.customer
    assert Agent.objects.get(name="imported").customer == Team.objects.get(name="imported").customer == a.customer
    assert a.customer.api_keys.filter(name="new").exists()
    assert Task.objects.filter(customer=a.customer).count() == 4  # three before the batch of one


def test_a_viewer_reads_but_cannot_write(tenants, client_for):
    a, _ = tenants
    before = snapshot(a)
    api = client_for(a.viewer)

    for url, expected_id in viewer_read_cases(a):
        response = api.get(url)
        assert response.status_code == 200, url
        if expected_id is not None:
            assert expected_id in {item["id"] for item in response.json()["results"]}, url
    for name, method, url, body in viewer_write_cases(a):
        assert_error(call(api, method, url, body), 403, "permission_denied")

    assert snapshot(a) == before


def test_a_viewers_api_key_cannot_write_either(tenants):
    from rest_framework.test import APIClient

    from accounts.services import api_key_create

    a, _ = tenants
    _, raw = api_key_create(actor=a.viewer, name="viewer-key")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw}")

    assert api.get("/api/agents/").status_code == 200
    assert_error(api.post(f"/api/agents/{a.agent.pk}/stop/"), 403, "permission_denied")


# Customer endpoints outside the router: the SSE stream, and declarative specs (apply/export).


@pytest.mark.django_db(transaction=True)  # the async view reads through its own connection
def test_another_customers_task_stream_is_not_found(tenants, client_for):
    a, b = tenants

    assert_error(client_for(a.owner).get(f"/api/tasks/{b.task.pk}/stream/"), 404, "not_found")
    assert_error(client_for(a.viewer).get(f"/api/tasks/{b.running_task.pk}/stream/"), 404, "not_found")


def test_export_holds_only_the_callers_objects(tenants, client_for):
    a, b = tenants

    response = client_for(a.viewer).get("/api/export/?format=json")

    assert response.status_code == 200
    text = response.content.decode()
    assert a.agent.name in text and a.team.name in text
    assert "globex" not in text


def test_apply_writes_only_the_callers_objects_and_not_as_a_viewer(tenants, client_for):
    a, b = tenants
    before_b = snapshot(b)
    # The same names as B's objects: names resolve inside the caller's customer only.
    spec = {
        "models": [{"name": b.model.name, "provider": "replay", "responses": ["hi"]}],
        "agents": [{"name": b.agent.name, "model": b.model.name, "system_message": "mine"}],
        "teams": [{"name": b.team.name, "members": [b.agent.name]}],
    }

    assert_error(client_for(a.viewer).post("/api/apply/", spec, format="json"), 403, "permission_denied")
    response = client_for(a.owner).post("/api/apply/", spec, format="json")

    assert response.status_code == 200, response.content
    assert snapshot(b) == before_b
    assert Agent.objects.get(customer=a.customer, name=b.agent.name).system_message == "mine"
    assert Team.objects.filter(customer=a.customer, name=b.team.name).exists()
