"""Teams through the HTTP API: ordered members, modes, termination conditions."""
import pytest

from teams.models import Team, TeamMember
from tests.api_support import assert_error, make_agent, make_model, make_task, make_team

pytestmark = pytest.mark.django_db


@pytest.fixture
def agents(owner):
    customer = owner.membership.customer
    return [make_agent(customer, name=name) for name in ("writer", "critic", "editor")]


def test_members_keep_their_order_and_a_team_always_ends(api, agents):
    writer, critic, editor = agents

    response = api.post("/api/teams/", {"name": "trio", "members": [editor.pk, writer.pk, critic.pk]}, format="json")

    assert response.status_code == 201
    body = response.json()
    assert body["members"] == [editor.pk, writer.pk, critic.pk]
    assert body["mode"] == "round_robin" and body["selector_model"] is None
    assert body["termination"] == {"max_messages": 10}
    assert list(TeamMember.objects.filter(team_id=body["id"]).order_by("position").values_list("agent_id", flat=True)) \
        == [editor.pk, writer.pk, critic.pk]

    reordered = api.patch(f"/api/teams/{body['id']}/", {"members": [critic.pk, editor.pk]}, format="json")
    assert reordered.json()["members"] == [critic.pk, editor.pk]
    assert api.get(f"/api/teams/{body['id']}/").json()["members"] == [critic.pk, editor.pk]
    assert api.get("/api/teams/").json()["results"][0]["members"] == [critic.pk, editor.pk]


def test_selector_mode_needs_one_of_the_customers_models(owner, api, agents, make_customer):
    selector = make_model(owner.membership.customer)
    foreign = make_model(make_customer("globex")[0])
    members = [a.pk for a in agents[:2]]

    missing = assert_error(api.post("/api/teams/", {"name": "s", "members": members, "mode": "selector"},
                                    format="json"), 400, "validation_error")
    assert "selector_model" in missing["details"]
    stranger = assert_error(api.post("/api/teams/", {"name": "s", "members": members, "mode": "selector",
                                                     "selector_model": foreign.pk}, format="json"), 400,
                            "validation_error")
    assert "selector_model" in stranger["details"]
    created = api.post("/api/teams/", {"name": "s", "members": members, "mode": "selector",
                                       "selector_model": selector.pk,
                                       "termination": {"text_mention": "TERMINATE", "max_tokens": 5000}},
                       format="json")
    assert created.status_code == 201
    assert created.json()["termination"] == {"text_mention": "TERMINATE", "max_tokens": 5000}

    # Back to round robin: the selector model no longer applies.
    back = api.patch(f"/api/teams/{created.json()['id']}/", {"mode": "round_robin"}, format="json")
    assert back.json()["selector_model"] is None


@pytest.mark.parametrize("payload, field", [
    ({"members": []}, "members"),
    ({"members": "dup"}, "members"),
    ({"members": "foreign"}, "members"),
    ({"termination": {"max_messages": 0}}, "termination"),
    ({"termination": {"text_mention": ""}}, "termination"),
    ({"termination": {"forever": True}}, "termination"),
    ({"termination": {"timeout_seconds": "soon"}}, "termination"),
    ({"mode": "hierarchy"}, "mode"),
])
def test_invalid_teams_are_refused_with_field_details(api, agents, make_customer, payload, field):
    if payload.get("members") == "dup":
        payload = {"members": [agents[0].pk, agents[0].pk]}
    elif payload.get("members") == "foreign":
        payload = {"members": [agents[0].pk, make_agent(make_customer("globex")[0]).pk]}
    body = {"name": "bad", "members": [agents[0].pk], **payload}

    error = assert_error(api.post("/api/teams/", body, format="json"), 400, "validation_error")

    assert field in error["details"], error
    assert not Team.objects.exists()


def test_timeout_above_quota_is_refused(owner, api, agents):
    quota = owner.membership.customer.max_timeout_seconds
    body = {"name": "slow", "members": [agents[0].pk], "termination": {"timeout_seconds": quota + 1}}

    assert_error(api.post("/api/teams/", body, format="json"), 429, "quota_exceeded")


def test_duplicate_name_conflicts_and_busy_team_cannot_be_deleted(owner, api, agents):
    team = make_team(owner.membership.customer, agents[:1], name="duo")
    assert_error(api.post("/api/teams/", {"name": "duo", "members": [agents[1].pk]}, format="json"), 409, "conflict")

    task = make_task(owner, team=team)
    assert_error(api.delete(f"/api/teams/{team.pk}/"), 409, "conflict")

    api.post(f"/api/tasks/{task.pk}/cancel/")
    assert api.delete(f"/api/teams/{team.pk}/").status_code == 204
    assert not Team.objects.filter(pk=team.pk).exists()
