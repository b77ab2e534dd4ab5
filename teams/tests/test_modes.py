"""Team modes (swarm, graph, magentic_one) and every termination condition through the HTTP API:
what is accepted, and refusals that name the path of the mistake."""
import pytest

from teams.models import Team
from tests.api_support import assert_error, make_agent, make_model

pytestmark = pytest.mark.django_db


@pytest.fixture
def agents(owner):
    customer = owner.membership.customer
    return [make_agent(customer, name=name) for name in ("writer", "critic", "editor")]


def create(api, agents, **body):
    return api.post("/api/teams/", {"name": "t", "members": [a.pk for a in agents], **body}, format="json")


@pytest.mark.parametrize("termination", [
    {"max_messages": 4},
    {"text_mention": "DONE"},
    {"timeout_seconds": 30},
    {"max_tokens": 5000},
    {"handoff": "user"},
    {"handoff": "critic"},
    {"source_match": ["critic"]},
    {"stop_message": True},
    {"function_call": "calculator"},
    {"any": [{"handoff": "user"}, {"max_messages": 8}]},
    {"all": [{"source_match": ["editor"]}, {"any": [{"text_mention": "OK"}, {"max_messages": 3}]}]},
])
def test_every_termination_condition_is_stored_as_given(api, agents, termination):
    response = create(api, agents, termination=termination)

    assert response.status_code == 201, response.content
    assert response.json()["termination"] == termination
    assert api.get(f"/api/teams/{response.json()['id']}/").json()["termination"] == termination


@pytest.mark.parametrize("termination, message", [
    ({"any": [{"max_messages": 2}, {"all": [{"max_messages": 0}]}]}, "any[1].all[0].max_messages: must be a positive integer"),
    ({"all": []}, "all: must be a non-empty list of termination objects"),
    ({"any": [{}]}, "any[0]: an empty object is no condition"),
    ({"any": [{"max_messages": 2}], "text_mention": "x"}, "termination: any stands alone"),
    ({"source_match": ["ghost"]}, "source_match: not members of the team: ghost"),
    ({"any": [{"source_match": []}]}, "any[0].source_match: must be a non-empty list of agent names"),
    ({"stop_message": False}, "stop_message: must be true"),
    ({"function_call": ""}, "function_call: must be a non-empty string"),
    ({"handoff": "the boss"}, "handoff: 'the boss' is not a member's name"),
    ({"forever": True}, "forever: unknown condition"),
    ({"all": [{"timeout_seconds": "soon"}]}, "all[0].timeout_seconds: must be a positive integer"),
])
def test_termination_mistakes_are_refused_with_their_path(api, agents, termination, message):
    error = assert_error(create(api, agents, termination=termination), 400, "validation_error")

    assert any(m.startswith(message) for m in error["details"]["termination"]), error
    assert not Team.objects.exists()


def test_a_timeout_deep_in_a_combination_is_held_to_the_quota(owner, api, agents):
    quota = owner.membership.customer.max_timeout_seconds
    termination = {"any": [{"max_messages": 3}, {"all": [{"timeout_seconds": quota + 1}, {"max_messages": 9}]}]}

    assert_error(create(api, agents, termination=termination), 429, "quota_exceeded")


def test_swarm_team_needs_someone_to_hand_off_to(api, agents):
    error = assert_error(create(api, agents[:1], mode="swarm"), 400, "validation_error")
    assert "members" in error["details"]

    alone = create(api, agents[:1], mode="swarm", termination={"handoff": "user"})
    assert alone.status_code == 201, alone.content
    swarm = create(api, agents, mode="swarm", name="s2")
    assert swarm.status_code == 201 and swarm.json()["mode"] == "swarm"


@pytest.mark.parametrize("mode", ["swarm", "graph"])
def test_swarm_and_graph_teams_take_members_that_run_code(owner, api, agents, mode):
    coder = make_agent(owner.membership.customer, name="coder", code_execution=True)

    graph = {"edges": [{"source": agents[0].pk, "target": coder.pk}]} if mode == "graph" else None
    created = create(api, [agents[0], coder], mode=mode, **({"graph": graph} if graph else {}))

    assert created.status_code == 201, created.content
    assert created.json()["members"] == [agents[0].pk, coder.pk]


def test_graph_team_keeps_its_edges_and_starts_at_the_first_member(api, agents):
    writer, critic, editor = agents
    graph = {"edges": [
        {"source": writer.pk, "target": critic.pk},
        {"source": critic.pk, "target": writer.pk, "condition": "REVISE"},
        {"source": critic.pk, "target": editor.pk, "condition": "APPROVE"},
    ]}

    response = create(api, agents, mode="graph", graph=graph)

    assert response.status_code == 201, response.content
    assert response.json()["graph"] == graph
    # Leaving graph mode drops the graph; a graph given outside it is refused.
    team_id = response.json()["id"]
    assert api.patch(f"/api/teams/{team_id}/", {"mode": "round_robin"}, format="json").json()["graph"] is None
    error = assert_error(api.patch(f"/api/teams/{team_id}/", {"graph": graph}, format="json"), 400, "validation_error")
    assert error["details"] == {"graph": ["Only used in graph mode"]}


@pytest.mark.parametrize("edges, message", [
    ([], "edges: agent {critic} (members[1]) is not reachable from the entry"),
    ([("w", "c", None), ("c", "w", None), ("c", "e", None)], "edges: the cycle"),
    ([("w", "c", None), ("c", "e", "OK"), ("c", "w", None)], "edges[1]: agent {critic} has both conditional and unconditional edges"),
    ([("w", "c", None), ("c", "e", None), ("e", "w", None)], "edges: the graph needs a member with no outgoing edge"),
    ([("w", "ghost", None)], "edges[0].target: agent 999999 is not a member of the team"),
    ([("w", "c", None), ("w", "c", None)], "edges[1]: the same edge is given twice"),
    ([("w", "c", None), ("w", "e", None), ("c", "e", "x", "any")], "edges[2].activation: edges into agent {editor}"),
])
def test_graph_mistakes_are_refused_with_their_path(api, agents, edges, message):
    writer, critic, editor = agents
    ids = {"w": writer.pk, "c": critic.pk, "e": editor.pk, "ghost": 999999}
    graph = {"edges": [{"source": ids[e[0]], "target": ids[e[1]],
                        **({"condition": e[2]} if e[2] else {}), **({"activation": e[3]} if len(e) > 3 else {})}
                       for e in edges]}

    error = assert_error(create(api, agents, mode="graph", graph=graph), 400, "validation_error")

    expected = message.format(critic=critic.pk, editor=editor.pk)
    assert any(m.startswith(expected) for m in error["details"]["graph"]), error


def test_magentic_one_needs_an_orchestrator_model_of_the_customer(owner, api, agents, make_customer):
    orchestrator = make_model(owner.membership.customer, name="orchestrator")
    foreign = make_model(make_customer("globex")[0])

    missing = assert_error(create(api, agents, mode="magentic_one"), 400, "validation_error")
    assert missing["details"] == {"orchestrator_model": ["Required in magentic_one mode"]}
    assert "orchestrator_model" in assert_error(
        create(api, agents, mode="magentic_one", orchestrator_model=foreign.pk), 400, "validation_error")["details"]
    wrong_mode = assert_error(create(api, agents, orchestrator_model=orchestrator.pk), 400, "validation_error")
    assert wrong_mode["details"] == {"orchestrator_model": ["Only used in magentic_one mode"]}

    response = create(api, agents, mode="magentic_one", orchestrator_model=orchestrator.pk)
    assert response.status_code == 201, response.content
    assert response.json()["orchestrator_model"] == orchestrator.pk and response.json()["selector_model"] is None
