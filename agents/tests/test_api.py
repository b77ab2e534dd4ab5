"""Model configurations, tools and agents through the HTTP API: rules, versions, state actions."""
import pytest

from accounts.crypto import decrypt
from agents.models import Agent, AgentVersion, ModelConfig
from core.models import AuditLog
from tasks.models import Task
from tasks.services import task_mark_running
from tests.api_support import assert_error, make_agent, make_model, make_task, make_team

pytestmark = pytest.mark.django_db

MODEL_INFO = {"vision": False, "function_calling": True, "json_output": False, "family": "unknown"}


# Model configurations


def test_openai_model_config_keeps_its_key_encrypted_and_never_returns_it(api):
    response = api.post("/api/models/", {
        "name": "local-llm", "provider": "openai", "model": "llama3.1", "base_url": "http://127.0.0.1:11434/v1",
        "api_key": "sk-secret-123", "model_info": {**MODEL_INFO, "structured_output": False},
    }, format="json")

    assert response.status_code == 201
    body = response.json()
    assert "api_key" not in body and "sk-secret-123" not in response.content.decode()
    assert body["has_api_key"] is True
    assert body["model_info"]["family"] == "unknown"
    stored = ModelConfig.objects.get(pk=body["id"])
    assert "sk-secret-123" not in stored.api_key_encrypted and decrypt(stored.api_key_encrypted) == "sk-secret-123"
    audit = AuditLog.objects.get(action="model_config.create")
    assert "sk-secret-123" not in str(audit.details)

    # Omitting the key keeps it; null removes it.
    assert api.patch(f"/api/models/{body['id']}/", {"model": "llama3.2"}, format="json").json()["has_api_key"]
    cleared = api.patch(f"/api/models/{body['id']}/", {"api_key": None}, format="json").json()
    assert cleared["has_api_key"] is False and cleared["model"] == "llama3.2"


@pytest.mark.parametrize("payload, field", [
    ({"provider": "openai"}, "model"),
    ({"provider": "openai", "model": "m", "base_url": "ftp://x"}, "base_url"),
    ({"provider": "openai", "model": "m", "model_info": {"vision": False}}, "model_info"),
    ({"provider": "openai", "model": "m", "model_info": {**MODEL_INFO, "vision": "maybe"}}, "model_info"),
    ({"provider": "openai", "model": "m", "model_info": {**MODEL_INFO, "colour": "red"}}, "model_info"),
    ({"provider": "replay"}, "responses"),
    ({"provider": "replay", "responses": []}, "responses"),
    ({"provider": "replay", "responses": [1, 2]}, "responses"),
    ({"provider": "anthropic"}, "provider"),
])
def test_invalid_model_configs_are_refused_with_field_details(api, payload, field):
    response = api.post("/api/models/", {"name": "m", **payload}, format="json")

    error = assert_error(response, 400, "validation_error")
    assert field in error["details"], error


def test_duplicate_model_name_is_a_conflict(api):
    payload = {"name": "demo", "provider": "replay", "responses": ["hi"]}
    assert api.post("/api/models/", payload, format="json").status_code == 201

    assert_error(api.post("/api/models/", payload, format="json"), 409, "conflict")


def test_model_config_in_use_cannot_be_deleted(owner, api):
    customer = owner.membership.customer
    model = make_model(customer)
    selector = make_model(customer)
    agent = make_agent(customer, model=model)
    make_team(customer, [agent], mode="selector", selector_model=selector)
    unused = make_model(customer)

    assert_error(api.delete(f"/api/models/{model.pk}/"), 409, "conflict")
    assert_error(api.delete(f"/api/models/{selector.pk}/"), 409, "conflict")
    assert api.delete(f"/api/models/{unused.pk}/").status_code == 204
    assert set(ModelConfig.objects.values_list("pk", flat=True)) == {model.pk, selector.pk}


def test_tools_catalogue(api):
    response = api.get("/api/tools/")

    assert response.status_code == 200
    tools = {t["name"]: t for t in response.json()}
    assert {"calculator", "current_utc_time"} <= set(tools)
    assert tools["calculator"]["parameters"] == {"expression": "string"} and tools["calculator"]["description"]


# Agents


def create_agent(api, model_id, **fields):
    return api.post("/api/agents/", {"name": "writer", "model": model_id, **fields}, format="json")


def test_agent_create_makes_version_one(owner, api):
    model = make_model(owner.membership.customer)

    response = create_agent(api, model.pk, system_message="Be brief.", tools=["calculator"],
                            limits={"memory_mb": 256, "timeout_seconds": 60}, description="writes")

    assert response.status_code == 201
    body = response.json()
    assert body["version"] == 1 and body["status"] == "active" and body["model"] == model.pk
    assert body["limits"] == {"memory_mb": 256, "timeout_seconds": 60}
    versions = api.get(f"/api/agents/{body['id']}/versions/").json()["results"]
    assert versions == [{
        "version": 1,
        "snapshot": {"system_message": "Be brief.", "model": model.pk, "tools": ["calculator"],
                     "code_execution": False, "limits": {"memory_mb": 256, "timeout_seconds": 60},
                     "human_input": False, "approval": []},
        "created_at": versions[0]["created_at"],
        "created_by": owner.username,
    }]
    assert AuditLog.objects.filter(action="agent.create", target=f"agent:{body['id']}").exists()


def test_behaviour_changes_make_versions_and_rollback_makes_a_new_one(owner, api):
    customer = owner.membership.customer
    model, other_model = make_model(customer), make_model(customer)
    agent_id = create_agent(api, model.pk, system_message="v1").json()["id"]

    renamed = api.patch(f"/api/agents/{agent_id}/", {"name": "author", "description": "new words"}, format="json")
    assert renamed.json()["version"] == 1
    assert api.patch(f"/api/agents/{agent_id}/", {"system_message": "v2"}, format="json").json()["version"] == 2
    assert api.patch(f"/api/agents/{agent_id}/", {"model": other_model.pk, "code_execution": True},
                     format="json").json()["version"] == 3
    same = api.patch(f"/api/agents/{agent_id}/", {"system_message": "v2"}, format="json").json()
    assert same["version"] == 3

    rolled = api.post(f"/api/agents/{agent_id}/rollback/", {"version": 1}, format="json")

    assert rolled.status_code == 200
    body = rolled.json()
    assert body["version"] == 4
    assert (body["system_message"], body["model"], body["code_execution"], body["name"]) == (
        "v1", model.pk, False, "author")
    versions = api.get(f"/api/agents/{agent_id}/versions/").json()["results"]
    assert [v["version"] for v in versions] == [4, 3, 2, 1]
    assert versions[0]["snapshot"] == versions[3]["snapshot"]
    assert_error(api.post(f"/api/agents/{agent_id}/rollback/", {"version": 9}, format="json"), 400,
                 "validation_error")


def test_agent_rules(owner, api, make_customer):
    customer = owner.membership.customer
    model = make_model(customer)
    foreign_model = make_model(make_customer("globex")[0])

    error = assert_error(create_agent(api, foreign_model.pk), 400, "validation_error")
    assert "model" in error["details"] and "globex" not in str(error)
    assert "tools" in assert_error(create_agent(api, model.pk, tools=["rm_rf"]), 400, "validation_error")["details"]
    for limits in ({"disk_mb": 5}, {"memory_mb": 0}, {"memory_mb": "lots"}):
        error = assert_error(create_agent(api, model.pk, limits=limits), 400, "validation_error")
        assert "limits" in error["details"], limits
    error = assert_error(create_agent(api, model.pk, limits={"memory_mb": customer.max_memory_mb + 1}), 429,
                         "quota_exceeded")
    assert "memory_mb" in error["details"]["limits"]
    assert_error(create_agent(api, model.pk, limits={"timeout_seconds": customer.max_timeout_seconds + 1}), 429,
                 "quota_exceeded")
    assert create_agent(api, model.pk).status_code == 201
    assert_error(create_agent(api, model.pk), 409, "conflict")
    assert Agent.objects.count() == 1


def test_agent_count_quota(make_customer, client_for):
    customer, owner = make_customer("small", max_agents=1)
    api = client_for(owner)
    model = make_model(customer)

    assert create_agent(api, model.pk).status_code == 201
    error = assert_error(api.post("/api/agents/", {"name": "second", "model": model.pk}, format="json"), 429,
                         "quota_exceeded")
    assert error["details"]["quota"] == "max_agents"


@pytest.mark.django_db(transaction=True)
def test_concurrent_creations_cannot_both_take_the_last_slot(make_customer):
    import threading

    from django.db import connection

    from autogen_platform.errors import QuotaExceeded

    customer, owner = make_customer("racy", max_agents=1)
    model = make_model(customer)
    barrier, outcomes = threading.Barrier(2), []

    def create(name):
        try:
            barrier.wait()
            make_agent(customer, model=model, name=name)
            outcomes.append("created")
        except QuotaExceeded:
            outcomes.append("quota")
        finally:
            connection.close()

    threads = [threading.Thread(target=create, args=(f"a{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)

    assert sorted(outcomes) == ["created", "quota"]
    assert Agent.objects.filter(customer=customer).count() == 1


def test_stop_cancels_queued_tasks_stops_running_ones_and_start_reopens(owner, api):
    customer = owner.membership.customer
    agent = make_agent(customer)
    queued, running = make_task(owner, agent=agent), make_task(owner, agent=agent)
    task_mark_running(task_id=running.pk, worker="test")

    response = api.post(f"/api/agents/{agent.pk}/stop/")

    assert response.status_code == 200 and response.json()["status"] == "stopped"
    queued.refresh_from_db()
    running.refresh_from_db()
    assert queued.status == "cancelled" and queued.error == {"code": "cancelled", "message": "agent stopped"}
    assert running.status == "running" and running.stop_requested == "cancelled"
    assert_error(api.post("/api/tasks/", {"agent": agent.pk, "input": "hi"}, format="json"), 409, "conflict")

    assert api.post(f"/api/agents/{agent.pk}/start/").json()["status"] == "active"
    assert api.post("/api/tasks/", {"agent": agent.pk, "input": "hi"}, format="json").status_code == 201


def test_restart_stops_running_tasks_and_moves_queued_ones_to_the_current_version(owner, api):
    agent = make_agent(owner.membership.customer, system_message="v1")
    queued, running = make_task(owner, agent=agent), make_task(owner, agent=agent)
    task_mark_running(task_id=running.pk, worker="test")
    api.patch(f"/api/agents/{agent.pk}/", {"system_message": "v2"}, format="json")

    response = api.post(f"/api/agents/{agent.pk}/restart/")

    assert response.status_code == 200 and response.json()["status"] == "active"
    running.refresh_from_db()
    queued.refresh_from_db()
    assert running.status == "running" and running.stop_requested == "restart"
    assert queued.status == "queued" and queued.agent_version == 2
    assert queued.spec["agents"][0]["system_message"] == "v2"


def test_processes_lists_the_agents_sandboxes(owner, api):
    agent = make_agent(owner.membership.customer)

    response = api.get(f"/api/agents/{agent.pk}/processes/")

    assert response.status_code == 200
    assert isinstance(response.json(), list)


def test_agent_delete_refused_while_in_a_team_or_busy(owner, api):
    customer = owner.membership.customer
    member, busy, free = make_agent(customer), make_agent(customer), make_agent(customer)
    team = make_team(customer, [member])
    task = make_task(owner, agent=busy)

    assert_error(api.delete(f"/api/agents/{member.pk}/"), 409, "conflict")
    assert_error(api.delete(f"/api/agents/{busy.pk}/"), 409, "conflict")
    assert api.delete(f"/api/agents/{free.pk}/").status_code == 204

    api.post(f"/api/tasks/{task.pk}/cancel/")
    assert api.delete(f"/api/agents/{busy.pk}/").status_code == 204
    assert Task.objects.get(pk=task.pk).agent_id is None  # finished tasks stay, without the agent
    assert api.delete(f"/api/teams/{team.pk}/").status_code == 204
    assert api.delete(f"/api/agents/{member.pk}/").status_code == 204
    assert not AgentVersion.objects.filter(agent_id__in=[member.pk, busy.pk, free.pk]).exists()


def test_unknown_keys_in_limits_and_bad_ids_in_urls(owner, api):
    assert_error(api.get("/api/agents/999999/"), 404, "not_found")
    assert_error(api.get("/api/agents/abc/"), 404, "not_found")


def test_approval_names_the_agents_own_tools_or_code_execution(owner, api):
    model = make_model(owner.membership.customer)
    refused = api.post("/api/agents/", {"name": "gated", "model": model.pk, "tools": ["word_count"],
                                        "approval": ["calculator", "code_execution"]}, format="json")
    error = assert_error(refused, 400, "validation_error")
    assert any("calculator" in p for p in error["details"]["approval"])
    assert any("code_execution" in p for p in error["details"]["approval"])

    created = api.post("/api/agents/", {"name": "gated", "model": model.pk, "tools": ["calculator"],
                                        "code_execution": True, "approval": ["calculator", "code_execution"]},
                       format="json")
    assert created.status_code == 201, created.content
    assert created.json()["approval"] == ["calculator", "code_execution"] and created.json()["human_input"] is False

    person = api.patch(f"/api/agents/{created.json()['id']}/", {"human_input": True, "approval": []}, format="json")
    assert person.status_code == 200 and person.json()["human_input"] is True and person.json()["version"] == 2
