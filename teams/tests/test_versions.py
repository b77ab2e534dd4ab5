"""Team versions through the HTTP API: each behaviour change is a new immutable version; a rollback applies an
old one as a new version; the same shapes and errors as agents' versions."""
import pytest

from core.models import AuditLog
from tests.api_support import assert_error, make_agent, make_model

pytestmark = pytest.mark.django_db


@pytest.fixture
def agents(owner):
    customer = owner.membership.customer
    return [make_agent(customer, name=name) for name in ("writer", "critic", "editor")]


def test_changes_make_versions_and_a_rollback_is_a_new_version(api, agents):
    writer, critic, editor = agents
    # given a team at version 1
    team = api.post("/api/teams/", {"name": "duo", "members": [writer.pk, critic.pk]}, format="json").json()
    assert team["version"] == 1
    # when its members and termination change, and then only its name
    v2 = api.patch(f"/api/teams/{team['id']}/", {"members": [writer.pk, critic.pk, editor.pk],
                                                  "termination": {"max_messages": 4}}, format="json").json()
    renamed = api.patch(f"/api/teams/{team['id']}/", {"name": "trio"}, format="json").json()
    # then the behaviour change is version 2 and the rename is not a version
    assert v2["version"] == 2 and renamed["version"] == 2
    versions = api.get(f"/api/teams/{team['id']}/versions/").json()["results"]
    assert [v["version"] for v in versions] == [2, 1]
    assert versions[1]["snapshot"] == {"members": [writer.pk, critic.pk], "mode": "round_robin",
                                       "selector_model": None, "orchestrator_model": None,
                                       "termination": {"max_messages": 10}, "graph": {}}
    assert versions[0]["snapshot"]["members"] == [writer.pk, critic.pk, editor.pk]
    assert versions[0]["created_by"] and versions[0]["created_at"]

    # when it rolls back to version 1
    response = api.post(f"/api/teams/{team['id']}/rollback/", {"version": 1}, format="json")
    # then version 3 has version 1's behaviour, and the name stays
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["version"], body["name"], body["members"], body["termination"]) == (
        3, "trio", [writer.pk, critic.pk], {"max_messages": 10})
    assert [v["version"] for v in api.get(f"/api/teams/{team['id']}/versions/").json()["results"]] == [3, 2, 1]
    assert AuditLog.objects.filter(action="team.rollback", target=f"team:{team['id']}",
                                   details__from_version=1, details__version=3).exists()


def test_rollback_mistakes_are_refused_in_the_envelope(api, agents, owner, client_for, make_customer):
    writer, critic, editor = agents
    selector = make_model(owner.membership.customer, name="picker")
    team = api.post("/api/teams/", {"name": "s", "members": [writer.pk, editor.pk], "mode": "selector",
                                    "selector_model": selector.pk}, format="json").json()
    api.patch(f"/api/teams/{team['id']}/", {"mode": "round_robin", "selector_model": None, "members": [writer.pk]},
              format="json")

    missing = assert_error(api.post(f"/api/teams/{team['id']}/rollback/", {"version": 9}, format="json"), 400,
                           "validation_error")
    assert "no version 9" in str(missing["details"]["version"])
    typo = assert_error(api.post(f"/api/teams/{team['id']}/rollback/", {"versoin": 1}, format="json"), 400,
                        "validation_error")
    assert "versoin" in str(typo["details"])
    # an agent of version 1 is gone: the rollback is a conflict that names it, and changes nothing
    editor_id = editor.pk
    editor.delete()
    gone = assert_error(api.post(f"/api/teams/{team['id']}/rollback/", {"version": 1}, format="json"), 409,
                        "conflict")
    assert gone["details"]["members"] == [editor_id]
    assert api.get(f"/api/teams/{team['id']}/").json()["version"] == 2
    # a viewer reads the versions but cannot roll back; another customer does not find the team
    _, viewer = make_customer(owner.membership.customer.name, role="viewer")
    as_viewer = client_for(viewer)
    assert as_viewer.get(f"/api/teams/{team['id']}/versions/").status_code == 200
    assert_error(as_viewer.post(f"/api/teams/{team['id']}/rollback/", {"version": 1}, format="json"), 403,
                 "permission_denied")
    _, stranger = make_customer("globex")
    assert_error(client_for(stranger).get(f"/api/teams/{team['id']}/versions/"), 404, "not_found")
