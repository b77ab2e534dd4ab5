"""Input that would bloat storage is refused with a validation_error naming the field; lists are paged.

Reproduces issue 9 point 4: a 40 KB YAML body with aliases stored a 100 MB row. Now aliases are
refused, and every stored list and text has a cap (settings; README "Configuration").
"""
import pytest
from django.conf import settings
from django.test import override_settings

from agents.models import Agent, ModelConfig
from tasks.models import Task
from tests.api_support import assert_error, make_agent, make_model

pytestmark = pytest.mark.django_db

ALIAS_BOMB = """\
a: &a ["xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]
models:
  - name: bomb
    provider: replay
    responses: [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]
"""


def test_yaml_aliases_are_refused_and_nothing_is_stored(api, owner):
    response = api.post("/api/apply/", ALIAS_BOMB, content_type="application/yaml")
    error = assert_error(response, 400, "validation_error")
    assert "alias" in error["message"].lower()
    assert "spec" in error["details"]
    assert not ModelConfig.objects.filter(customer=owner.membership.customer).exists()


def test_a_plain_alias_is_refused_too(api):
    spec = "models:\n  - &m {name: one, provider: replay, responses: [hi]}\n  - *m\n"
    error = assert_error(api.post("/api/apply/", spec, content_type="application/yaml"), 400, "validation_error")
    assert "alias" in error["message"].lower()


def test_deeply_nested_yaml_is_a_validation_error(api):
    spec = "models: " + "[" * 20000 + "]" * 20000
    assert_error(api.post("/api/apply/", spec, content_type="application/yaml"), 400, "validation_error")


@override_settings(MAX_REPLAY_RESPONSES=3)
def test_too_many_replay_responses_are_refused(api):
    response = api.post("/api/models/", {"name": "many", "provider": "replay", "responses": ["a"] * 4}, format="json")
    error = assert_error(response, 400, "validation_error")
    assert "responses" in error["details"]
    assert "3" in " ".join(error["details"]["responses"])
    assert not ModelConfig.objects.filter(name="many").exists()


@override_settings(MAX_REPLAY_RESPONSE_CHARS=10)
def test_a_too_long_replay_response_is_refused_in_the_api_and_in_a_spec(api):
    response = api.post("/api/models/", {"name": "long", "provider": "replay", "responses": ["x" * 11]}, format="json")
    assert "responses" in assert_error(response, 400, "validation_error")["details"]
    spec = {"models": [{"name": "long", "provider": "replay", "responses": ["ok", "x" * 11]}]}
    error = assert_error(api.post("/api/apply/", spec, format="json"), 400, "validation_error")
    assert "models[0].responses" in error["details"], error


@override_settings(MAX_SYSTEM_MESSAGE_CHARS=20, MAX_DESCRIPTION_CHARS=10)
def test_too_long_system_message_and_description_are_refused(api, owner):
    model = make_model(owner.membership.customer)
    response = api.post("/api/agents/", {"name": "a", "model": model.pk, "system_message": "s" * 21}, format="json")
    assert "system_message" in assert_error(response, 400, "validation_error")["details"]
    response = api.post("/api/agents/", {"name": "a", "model": model.pk, "description": "d" * 11}, format="json")
    assert "description" in assert_error(response, 400, "validation_error")["details"]
    spec = {"models": [{"name": "m", "provider": "replay", "responses": ["hi"]}],
            "agents": [{"name": "a", "model": "m", "system_message": "s" * 21}]}
    error = assert_error(api.post("/api/apply/", spec, format="json"), 400, "validation_error")
    assert "agents[0].system_message" in error["details"], error
    assert not Agent.objects.filter(customer=owner.membership.customer).exists()


@override_settings(MAX_TASK_INPUT_CHARS=50)
def test_a_too_long_task_input_is_refused(api, owner):
    agent = make_agent(owner.membership.customer)
    response = api.post("/api/tasks/", {"agent": agent.pk, "input": "i" * 51}, format="json")
    assert "input" in assert_error(response, 400, "validation_error")["details"]
    assert not Task.objects.exists()


@override_settings(MAX_TEXT_MENTION_CHARS=5)
def test_a_too_long_termination_text_is_refused(api, owner):
    agent = make_agent(owner.membership.customer)
    response = api.post("/api/teams/", {"name": "t", "members": [agent.pk],
                                        "termination": {"text_mention": "TERMINATE"}}, format="json")
    assert "termination" in assert_error(response, 400, "validation_error")["details"]


@override_settings(MAX_SPEC_OBJECTS=2)
def test_a_spec_with_too_many_objects_is_refused(api):
    spec = {"models": [{"name": f"m{i}", "provider": "replay", "responses": ["hi"]} for i in range(3)]}
    error = assert_error(api.post("/api/apply/", spec, format="json"), 400, "validation_error")
    assert "models" in error["details"], error


@pytest.mark.parametrize("value", ["null", "0", "-1", "abc", "1.5"])
def test_a_bad_page_size_is_a_validation_error(api, value):
    error = assert_error(api.get(f"/api/models/?page_size={value}"), 400, "validation_error")
    assert "page_size" in error["details"]


def test_page_size_is_capped_and_every_list_is_paged(api, owner):
    customer = owner.membership.customer
    for i in range(3):
        make_model(customer, name=f"m{i}")
    body = api.get("/api/models/?page_size=100000").json()
    assert set(body) >= {"count", "results", "next", "previous"}
    assert len(body["results"]) == 3
    body = api.get("/api/models/?page_size=2").json()
    assert len(body["results"]) == 2 and body["next"]
    assert settings.REST_FRAMEWORK["PAGE_SIZE"] <= settings.MAX_PAGE_SIZE


def test_a_bad_page_number_is_not_found_in_the_envelope(api):
    assert_error(api.get("/api/models/?page=abc"), 404, "not_found")
