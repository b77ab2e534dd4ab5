"""Declarative specs: plan, apply, prune and export (specs/), and POST /api/apply/, GET /api/export/."""
import json

import pytest
import yaml

from accounts.crypto import decrypt
from accounts.models import Customer
from agents.models import Agent, AgentVersion, ModelConfig
from autogen_platform.errors import Conflict, ValidationFailed
from core.models import AuditLog
from specs.apply import spec_apply
from specs.export import spec_dump_yaml, spec_export
from specs.reader import spec_load
from tasks.services import task_mark_running
from teams.models import Team
from teams.services import team_create
from tests.api_support import assert_error, make_agent, make_model, make_task

pytestmark = pytest.mark.django_db

SPEC = """
customer: acme
models:
  - name: local-llm
    provider: openai
    model: llama3.1
    base_url: http://127.0.0.1:11434/v1
    api_key_env: LOCAL_LLM_KEY
    model_info: {vision: false, function_calling: true, json_output: false, family: unknown, structured_output: false}
  - name: demo
    provider: replay
    responses: ["Hello. TERMINATE"]
agents:
  - name: writer
    model: local-llm
    system_message: You write short, clear answers.
    tools: [calculator]
    limits: {memory_mb: 256, timeout_seconds: 120}
  - name: critic
    model: demo
    system_message: You criticise.
teams:
  - name: duo
    mode: round_robin
    members: [writer, critic]
    termination: {max_messages: 6, text_mention: TERMINATE}
"""

ENV = {"LOCAL_LLM_KEY": "sk-local-123"}


@pytest.fixture
def acme(make_customer):
    return make_customer("acme")


def apply(customer, text, *, environ=ENV, actor="test", **options):
    return spec_apply(actor=actor, customer=customer, spec=spec_load(text), environ=environ, **options)


def counts(customer):
    return (ModelConfig.objects.filter(customer=customer).count(), Agent.objects.filter(customer=customer).count(),
            Team.objects.filter(customer=customer).count(), AgentVersion.objects.filter(agent__customer=customer).count())


def test_first_apply_creates_everything_and_the_second_changes_nothing(acme):
    customer, _ = acme

    first = apply(customer, SPEC)

    assert first.lines() == [
        "create model local-llm", "create model demo", "create agent writer", "create agent critic",
        "create team duo", "5 to create, 0 to update, 0 unchanged, 0 to delete",
    ]
    assert first.applied
    writer = Agent.objects.get(customer=customer, name="writer")
    assert writer.model.name == "local-llm" and writer.tools == ["calculator"] and writer.version == 1
    assert writer.limits == {"memory_mb": 256, "timeout_seconds": 120}
    duo = Team.objects.get(customer=customer, name="duo")
    assert [m.agent.name for m in duo.members.all()] == ["writer", "critic"]
    assert duo.termination == {"max_messages": 6, "text_mention": "TERMINATE"}
    before = counts(customer)

    second = apply(customer, SPEC)

    assert second.lines() == [
        "unchanged model local-llm", "unchanged model demo", "unchanged agent writer", "unchanged agent critic",
        "unchanged team duo", "no changes",
    ]
    assert counts(customer) == before
    assert Agent.objects.get(pk=writer.pk).version == 1


def test_an_update_names_the_changed_fields_and_versions_the_agent(acme):
    customer, _ = acme
    apply(customer, SPEC)
    changed = (SPEC.replace("You write short, clear answers.", "You write haikus.")
               .replace("tools: [calculator]", "tools: [calculator, word_count]")
               .replace("members: [writer, critic]", "members: [critic, writer]")
               .replace("You criticise.", "You criticise.\n    description: the critic"))

    result = apply(customer, changed)

    assert result.lines() == [
        "unchanged model local-llm", "unchanged model demo", "update agent writer (system_message, tools)",
        "update agent critic (description)", "update team duo (members)",
        "0 to create, 3 to update, 2 unchanged, 0 to delete",
    ]
    writer = Agent.objects.get(customer=customer, name="writer")
    assert writer.version == 2 and writer.system_message == "You write haikus."
    assert list(writer.versions.values_list("version", flat=True)) == [2, 1]
    critic = Agent.objects.get(customer=customer, name="critic")
    assert critic.description == "the critic" and critic.version == 1  # description is not behaviour
    assert Team.objects.get(customer=customer, name="duo").member_ids() == [critic.pk, writer.pk]
    assert AuditLog.objects.filter(action="agent.update", target=f"agent:{writer.pk}").exists()
    assert apply(customer, changed).summary_line() == "no changes"


def test_a_dry_run_shows_the_plan_and_writes_nothing(acme):
    customer, _ = acme
    apply(customer, SPEC)
    before, audits = counts(customer), AuditLog.objects.count()
    changed = SPEC.replace("You criticise.", "You nitpick.") + "  - name: solo\n    members: [critic]\n"

    result = apply(customer, changed, dry_run=True)

    assert result.lines() == [
        "unchanged model local-llm", "unchanged model demo", "unchanged agent writer",
        "update agent critic (system_message)", "unchanged team duo", "create team solo",
        "1 to create, 1 to update, 4 unchanged, 0 to delete",
    ]
    assert result.applied is False
    assert counts(customer) == before and AuditLog.objects.count() == audits
    assert Agent.objects.get(customer=customer, name="critic").system_message == "You criticise."


def test_a_dry_run_fails_where_the_real_run_would(acme):
    customer, _ = acme

    with pytest.raises(ValidationFailed) as error:
        apply(customer, SPEC.replace("tools: [calculator]", "tools: [telepathy]"), dry_run=True)

    assert error.value.message.startswith("agents[0].tools: Unknown tools: telepathy")
    assert counts(customer) == (0, 0, 0, 0)


def test_an_unknown_reference_names_its_path_and_changes_nothing(acme):
    customer, _ = acme
    apply(customer, SPEC)
    before = counts(customer)
    broken = (SPEC.replace("You criticise.", "You nitpick.")
              .replace("model: demo", "model: x")
              .replace("members: [writer, critic]", "members: [writer, ghost]"))

    with pytest.raises(ValidationFailed) as error:
        apply(customer, broken)

    assert error.value.message == "agents[1].model: unknown model 'x' (and 1 more problem)"
    assert error.value.details == {"agents[1].model": ["unknown model 'x'"],
                                   "teams[0].members[1]": ["unknown agent 'ghost'"]}
    assert counts(customer) == before
    assert Agent.objects.get(customer=customer, name="critic").system_message == "You criticise."


def test_a_service_error_late_in_the_spec_rolls_back_what_came_before(acme):
    customer, _ = acme
    # The models and the first agent are fine; the second agent asks for more memory than the quota allows.
    greedy = SPEC.replace("You criticise.", "You criticise.\n    limits: {memory_mb: 999999}")

    with pytest.raises(Exception) as error:
        apply(customer, greedy)

    assert error.value.code == "quota_exceeded"
    assert error.value.message.startswith("agents[1]: Limits above the customer's quota: memory_mb 999999")
    assert counts(customer) == (0, 0, 0, 0)
    assert not AuditLog.objects.filter(action__in=["model_config.create", "agent.create"]).exists()


@pytest.mark.parametrize("text, path, message", [
    ("customer: acme\nmodels:\n  - {name: m, provider: openai, model: x, api_key: sk-1}\n",
     "models[0].api_key", "keys never stand in a spec"),
    ("customer: acme\nmodels:\n  - {name: m, provider: openai, model: x, api_key_env: NOT_SET_ANYWHERE}\n",
     "models[0].api_key_env", "environment variable NOT_SET_ANYWHERE is not set"),
    ("customer: acme\nmodels:\n  - {name: m, provider: replay}\n", "models[0].responses", "non-empty list"),
    ("customer: acme\nmodels:\n  - {name: m, provider: replay, responses: [a], colour: red}\n",
     "models[0].colour", "unknown field"),
    ("customer: acme\nmodels:\n  - {name: m, provider: replay, responses: [a]}\n  - {name: m, provider: replay, "
     "responses: [b]}\n", "models[1].name", "'m' is already defined at models[0]"),
    ("customer: acme\nagents:\n  - {name: a, model: 3.1}\n", "agents[0].model", "must be a string"),
    ("customer: acme\nagents:\n  - {name: a}\n", "agents[0].model", "required"),
    ("customer: acme\nteams:\n  - {name: t, members: []}\n", "teams[0].members", "at least one agent"),
    ("customer: acme\nwidgets: []\n", "widgets", "unknown section"),
    ("customer: other\nmodels: []\n", "customer", "the spec is for customer 'other', not 'acme'"),
    ("customer: acme\nmodels: {name: m}\n", "models", "must be a list"),
    ("customer: [acme]\n", "customer", "must be a customer name, not a list"),
    ("customer: acme\nmodels:\n  - name: m\n    name: n\n", "spec", "found the key 'name' twice"),
    ("customer: acme\nmodels: [\n", "spec", "not valid YAML"),
    ("", "spec", "the spec is empty"),
])
def test_shape_errors_name_the_path(acme, text, path, message):
    customer, _ = acme

    with pytest.raises(ValidationFailed) as error:
        apply(customer, text)

    assert path in error.value.details, error.value.details
    assert message in " ".join(error.value.details[path]) + error.value.message
    assert counts(customer) == (0, 0, 0, 0)


def test_prune_deletes_what_the_spec_does_not_name_teams_first(acme):
    customer, _ = acme
    apply(customer, SPEC)
    old_model = make_model(customer, name="old-model")
    old_agent = make_agent(customer, name="old", model=old_model)
    team_create(actor="test", customer=customer, name="old-team", members=[old_agent])

    without_prune = apply(customer, SPEC)
    assert without_prune.summary_line() == "no changes"
    assert Agent.objects.filter(pk=old_agent.pk).exists()

    result = apply(customer, SPEC, prune=True)

    assert result.lines()[-4:] == ["delete team old-team", "delete agent old", "delete model old-model",
                                   "0 to create, 0 to update, 5 unchanged, 3 to delete"]
    assert not Agent.objects.filter(pk=old_agent.pk).exists()
    assert sorted(ModelConfig.objects.filter(customer=customer).values_list("name", flat=True)) == ["demo", "local-llm"]
    assert apply(customer, SPEC, prune=True).summary_line() == "no changes"


def test_prune_refuses_to_delete_an_agent_with_a_running_task_and_changes_nothing(acme):
    customer, owner = acme
    apply(customer, SPEC)
    busy = make_agent(customer, name="busy")
    task = make_task(owner, agent=busy)
    task_mark_running(task_id=task.pk, worker="test")
    before = counts(customer)

    with pytest.raises(Conflict) as error:
        apply(customer, SPEC.replace("You criticise.", "You nitpick."), prune=True)

    assert error.value.message.startswith("delete agent busy: Agent 'busy' has queued or running tasks")
    assert counts(customer) == before
    assert Agent.objects.get(customer=customer, name="critic").system_message == "You criticise."


def test_prune_does_not_resolve_references_to_objects_it_would_delete(acme):
    customer, _ = acme
    make_model(customer, name="outside")
    text = "customer: acme\nagents:\n  - {name: a, model: outside}\n"

    assert apply(customer, text).summary_line() == "1 to create, 0 to update, 0 unchanged, 0 to delete"
    with pytest.raises(ValidationFailed) as error:
        apply(customer, text, prune=True)

    assert error.value.details == {
        "agents[0].model": ["unknown model 'outside' (prune deletes what the spec does not name)"]}


def test_api_key_env_is_read_from_the_environment_and_stored_encrypted(acme):
    customer, _ = acme
    apply(customer, SPEC)
    model = ModelConfig.objects.get(customer=customer, name="local-llm")
    assert "sk-local-123" not in model.api_key_encrypted and decrypt(model.api_key_encrypted) == "sk-local-123"

    # The same key is no change; a new one is an update of the key; no api_key_env removes it.
    assert apply(customer, SPEC).summary_line() == "no changes"
    assert "update model local-llm (api_key)" in apply(customer, SPEC, environ={"LOCAL_LLM_KEY": "sk-new"}).lines()
    assert decrypt(ModelConfig.objects.get(pk=model.pk).api_key_encrypted) == "sk-new"
    assert "update model local-llm (api_key)" in apply(customer, SPEC.replace("api_key_env: LOCAL_LLM_KEY", "")).lines()
    assert ModelConfig.objects.get(pk=model.pk).has_api_key is False
    assert "sk-local-123" not in str(list(AuditLog.objects.values_list("details", flat=True)))


def test_export_applies_back_as_no_changes_and_never_holds_a_key(acme):
    customer, _ = acme
    rich = SPEC + """  - name: panel
    mode: selector
    selector_model: local-llm
    members: [critic, writer]
"""
    rich = rich.replace("You criticise.", "|\n      You criticise.\n      Line two: with a colon.\n    code_execution: true")
    apply(customer, rich)
    other = Customer.objects.create(name="globex")
    make_model(other, name="globex-only")

    exported = spec_dump_yaml(spec_export(customer))

    assert "sk-local-123" not in exported and "api_key_encrypted" not in exported and "globex" not in exported
    assert "api_key_env: LOCAL_LLM_API_KEY  # the key is not exported" in exported
    data = yaml.safe_load(exported)
    assert [m["name"] for m in data["models"]] == ["demo", "local-llm"]
    assert data["agents"][0]["system_message"] == "You criticise.\nLine two: with a colon.\n"
    assert data["teams"][1] == {"name": "panel", "mode": "selector", "members": ["critic", "writer"],
                                "selector_model": "local-llm", "termination": {"max_messages": 10}}
    result = apply(customer, exported, environ={"LOCAL_LLM_API_KEY": "sk-local-123"}, prune=True)
    assert result.summary_line() == "no changes", result.lines()


# The HTTP API


@pytest.fixture
def api(acme, client_for):
    return client_for(acme[1])


def test_post_apply_takes_yaml_and_answers_with_the_plan(acme, api, monkeypatch):
    customer, _ = acme
    monkeypatch.setenv("LOCAL_LLM_KEY", "server-secret")  # the server's environment is never read through the API

    response = api.post("/api/apply/", SPEC, content_type="application/yaml")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["applied"] is True
    assert body["summary"] == {"create": 5, "update": 0, "unchanged": 0, "delete": 0}
    assert body["plan"][2] == {"action": "create", "kind": "agent", "name": "writer", "fields": []}
    assert "models[0].api_key_env" in body["warnings"][0]
    assert ModelConfig.objects.get(customer=customer, name="local-llm").has_api_key is False
    assert AuditLog.objects.filter(action="spec.apply", actor=acme[1].username).exists()

    again = api.post("/api/apply/", SPEC, content_type="text/yaml").json()
    assert again["summary"] == {"create": 0, "update": 0, "unchanged": 5, "delete": 0}
    assert "model 'local-llm' has no key" in again["warnings"][0]


def test_post_apply_takes_json_with_dry_run_and_prune(acme, api):
    customer, _ = acme
    make_model(customer, name="old")
    spec = {"models": [{"name": "demo", "provider": "replay", "responses": ["hi"]}],
            "agents": [{"name": "a", "model": "demo", "tools": ["calculator"]}]}

    dry = api.post("/api/apply/?dry_run=true&prune=true", spec, format="json")

    assert dry.status_code == 200, dry.content
    assert dry.json()["applied"] is False
    assert [(p["action"], p["name"]) for p in dry.json()["plan"]] == [("create", "demo"), ("create", "a"),
                                                                     ("delete", "old")]
    assert list(ModelConfig.objects.filter(customer=customer).values_list("name", flat=True)) == ["old"]

    real = api.post("/api/apply/?prune=1", spec, format="json")
    assert real.json()["applied"] is True
    assert sorted(ModelConfig.objects.filter(customer=customer).values_list("name", flat=True)) == ["demo"]

    # An API-created key is kept when the spec names api_key_env (the server's environment is not read).
    api.patch(f"/api/models/{ModelConfig.objects.get(customer=customer).pk}/", {"api_key": "sk-9"}, format="json")
    spec["models"][0]["api_key_env"] = "DEMO_KEY"
    assert api.post("/api/apply/", spec, format="json").json()["summary"]["unchanged"] == 2
    assert decrypt(ModelConfig.objects.get(customer=customer).api_key_encrypted) == "sk-9"


def test_post_apply_bad_spec_is_a_validation_error_with_the_path(acme, api):
    customer, _ = acme
    spec = {"models": [{"name": "demo", "provider": "replay", "responses": ["hi"]}],
            "agents": [{"name": "a", "model": "demo"}, {"name": "b", "model": "x"}]}

    error = assert_error(api.post("/api/apply/", spec, format="json"), 400, "validation_error")

    assert error["details"] == {"agents[1].model": ["unknown model 'x'"]}
    assert error["message"] == "agents[1].model: unknown model 'x'"
    assert counts(customer) == (0, 0, 0, 0)
    assert_error(api.post("/api/apply/", "models: [", content_type="application/yaml"), 400, "validation_error")
    assert_error(api.post("/api/apply/", "", content_type="application/json"), 400, "validation_error")
    assert_error(api.post("/api/apply/", {"customer": "globex", "models": []}, format="json"), 400,
                 "validation_error")
    assert_error(api.post("/api/apply/?dry_run=maybe", spec, format="json"), 400, "validation_error")


def test_viewers_may_export_but_not_apply(make_customer, client_for):
    customer, _ = make_customer("acme")
    _, viewer = make_customer("acme", role="viewer")
    client = client_for(viewer)

    assert_error(client.post("/api/apply/", {"models": []}, format="json"), 403, "permission_denied")
    assert client.get("/api/export/").status_code == 200


def test_apply_and_export_touch_only_the_callers_customer(make_customer, client_for):
    acme, owner = make_customer("acme")
    globex, _ = make_customer("globex")
    theirs = make_agent(globex, name="writer", model=make_model(globex, name="demo"))
    before = counts(globex)

    response = client_for(owner).post("/api/apply/?prune=true", {
        "models": [{"name": "demo", "provider": "replay", "responses": ["mine"]}],
        "agents": [{"name": "writer", "model": "demo", "system_message": "mine"}],
    }, format="json")

    assert response.status_code == 200, response.content
    assert [p["action"] for p in response.json()["plan"]] == ["create", "create"]
    assert counts(globex) == before
    theirs.refresh_from_db()
    assert theirs.system_message == "" and theirs.model.responses == ["Hello. TERMINATE"]
    exported = client_for(owner).get("/api/export/?format=json").json()
    assert [a["name"] for a in exported["agents"]] == ["writer"] and exported["customer"] == "acme"
    assert exported["agents"][0]["system_message"] == "mine"


def test_get_export_is_yaml_by_default_and_json_on_request(acme, api):
    customer, _ = acme
    apply(customer, SPEC)

    as_yaml = api.get("/api/export/")
    as_json = api.get("/api/export/?format=json")

    assert as_yaml.status_code == 200 and as_yaml["Content-Type"].startswith("application/yaml")
    assert "api_key_env: LOCAL_LLM_API_KEY  # the key is not exported" in as_yaml.content.decode()
    assert "sk-local-123" not in as_yaml.content.decode() + as_json.content.decode()
    assert as_json["Content-Type"].startswith("application/json")
    assert yaml.safe_load(as_yaml.content) == json.loads(as_json.content)
    # Posting the export back changes nothing (the stored key is kept through the API).
    again = api.post("/api/apply/", as_yaml.content, content_type="application/yaml").json()
    assert again["summary"] == {"create": 0, "update": 0, "unchanged": 5, "delete": 0}
    assert decrypt(ModelConfig.objects.get(customer=customer, name="local-llm").api_key_encrypted) == "sk-local-123"


def test_export_errors_keep_the_json_envelope(anon_client):
    assert_error(anon_client.get("/api/export/"), 401, "not_authenticated")


TEAM_MODES_SPEC = SPEC + """  - name: pipeline
    mode: graph
    members: [writer, critic]
    graph:
      edges:
        - {source: writer, target: critic, condition: READY}
    termination: {any: [{source_match: [critic]}, {all: [{text_mention: DONE}, {max_messages: 4}]}]}
  - name: office
    mode: magentic_one
    orchestrator_model: demo
    members: [critic, writer]
  - name: relay
    mode: swarm
    members: [writer, critic]
    termination: {handoff: user}
"""


def test_team_modes_apply_export_and_apply_back_as_no_changes(acme):
    customer, _ = acme

    apply(customer, TEAM_MODES_SPEC)

    writer, critic = (Agent.objects.get(customer=customer, name=n) for n in ("writer", "critic"))
    pipeline = Team.objects.get(customer=customer, name="pipeline")
    assert pipeline.graph == {"edges": [{"source": writer.pk, "target": critic.pk, "condition": "READY"}]}
    assert pipeline.termination == {"any": [{"source_match": ["critic"]},
                                            {"all": [{"text_mention": "DONE"}, {"max_messages": 4}]}]}
    assert Team.objects.get(customer=customer, name="office").orchestrator_model.name == "demo"
    exported = spec_dump_yaml(spec_export(customer))
    data = {t["name"]: t for t in yaml.safe_load(exported)["teams"]}
    assert data["pipeline"]["graph"] == {"edges": [{"source": "writer", "target": "critic", "condition": "READY"}]}
    assert data["office"]["orchestrator_model"] == "demo"
    result = apply(customer, exported, environ={"LOCAL_LLM_API_KEY": "sk-local-123"}, prune=True)
    assert result.summary_line() == "no changes", result.lines()
    changed = apply(customer, exported.replace("condition: READY", "condition: GO"),
                    environ={"LOCAL_LLM_API_KEY": "sk-local-123"})
    assert "update team pipeline (graph)" in changed.lines()


@pytest.mark.parametrize("team, path, message", [
    ("  - {name: g, mode: graph, members: [writer, critic], graph: {edges: [{source: writer, target: ghost}]}}",
     "teams[1].graph.edges[0].target", "must name a member of the team"),
    ("  - {name: m, mode: magentic_one, members: [writer], orchestrator_model: nowhere}",
     "teams[1].orchestrator_model", "unknown model 'nowhere'"),
    ("  - {name: t, members: [writer], termination: {any: [{max_messages: 0}]}}",
     "teams[1].termination", "any[0].max_messages: must be a positive integer"),
])
def test_team_mode_mistakes_name_their_spec_path(acme, team, path, message):
    customer, _ = acme

    with pytest.raises(ValidationFailed) as caught:
        apply(customer, SPEC + team + "\n")

    assert message in caught.value.details[path][0], caught.value.details
    assert counts(customer) == (0, 0, 0, 0)


def test_human_input_and_approval_apply_export_and_name_their_path(acme):
    customer, _ = acme
    spec = SPEC.replace("    tools: [calculator]\n", "    tools: [calculator]\n    approval: [calculator]\n").replace(
        "    system_message: You criticise.\n", "    system_message: You criticise.\n    human_input: true\n")
    apply(customer, spec)
    writer, critic = Agent.objects.get(customer=customer, name="writer"), Agent.objects.get(customer=customer, name="critic")
    assert writer.approval == ["calculator"] and critic.human_input is True
    exported = yaml.safe_load(spec_dump_yaml(spec_export(customer)))
    by_name = {a["name"]: a for a in exported["agents"]}
    assert by_name["writer"]["approval"] == ["calculator"] and by_name["critic"]["human_input"] is True
    again = apply(customer, spec_dump_yaml(spec_export(customer)), environ={"LOCAL_LLM_API_KEY": "sk-local-123"})
    assert again.summary_line() == "no changes", again.lines()
    with pytest.raises(ValidationFailed) as refused:
        apply(customer, spec.replace("approval: [calculator]", "approval: [word_count]"))
    assert "agents[0]" in json.dumps(refused.value.details) and "word_count" in json.dumps(refused.value.details)
    with pytest.raises(ValidationFailed) as refused:
        apply(customer, spec.replace("human_input: true", "human_input: maybe"))
    assert "agents[1].human_input" in json.dumps(refused.value.details)


PRICED = """
customer: acme
models:
  - name: priced
    provider: replay
    responses: ["Hi. TERMINATE"]
    price_prompt_per_million: 0.15
    price_completion_per_million: 2
"""


def test_prices_apply_export_and_apply_back_as_no_changes(acme):
    from decimal import Decimal

    customer, _ = acme
    # given a spec with prices
    assert apply(customer, PRICED).summary_line().startswith("1 to create")
    model = ModelConfig.objects.get(customer=customer, name="priced")
    assert (model.price_prompt_per_million, model.price_completion_per_million) == (Decimal("0.15"), Decimal(2))
    # then the export holds them as numbers, and applies back as no changes
    exported = spec_dump_yaml(spec_export(customer))
    item = yaml.safe_load(exported)["models"][0]
    assert item["price_prompt_per_million"] == 0.15 and item["price_completion_per_million"] == 2
    assert apply(customer, exported).summary_line() == "no changes"
    # when a price changes, the plan names it; a price left out is removed (a spec says the whole object)
    changed = apply(customer, PRICED.replace("price_prompt_per_million: 0.15", "price_prompt_per_million: '0.2'")
                    .replace("    price_completion_per_million: 2\n", ""))
    assert changed.lines()[0] == "update model priced (price_prompt_per_million, price_completion_per_million)"
    model.refresh_from_db()
    assert (model.price_prompt_per_million, model.price_completion_per_million) == (Decimal("0.2"), None)
    assert "price_completion_per_million" not in yaml.safe_load(
        spec_dump_yaml(spec_export(customer)))["models"][0]


@pytest.mark.parametrize("value,message", [
    ("-1", "must not be negative"),
    ("0.00001", "at most 4 decimal places"),
    ("123456789", "at most 8 digits before the decimal point"),
    ("cheap", "must be a number"),
    ("true", "must be a number"),
    ("[1]", "must be a number"),
])
def test_price_mistakes_name_their_path(acme, value, message):
    customer, _ = acme
    with pytest.raises(ValidationFailed) as error:
        apply(customer, PRICED.replace("price_prompt_per_million: 0.15", f"price_prompt_per_million: {value}"))
    assert message in " ".join(error.value.details["models[0].price_prompt_per_million"])
    assert counts(customer) == (0, 0, 0, 0)
