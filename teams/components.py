"""AutoGen AgentChat component JSON of teams: export (what a task of the team runs, as AgentChat's own
team class) and import read as plain data (see agents.components: no `load_component`, no import of a
module a document names, an explicit allow-list of providers, refusals that name their path)."""
from django.db import transaction

from core.services import audit_record
from agents.components import (
    Creator,
    Problems,
    assistant_component,
    check_keys,
    component,
    executor_component,
    gallery_rest,
    import_document,
    max_messages_condition,
    or_condition,
    read_agent,
    read_component,
    read_model,
    text_mention_condition,
    timeout_value,
    user_proxy_component,
    unique_name,
)
from agents.components import model_component
from runtime.agentchild.names import agent_identifier

from .conditions import handoff_targets
from .models import Team
from .services import team_create

TEAMS = {
    Team.Mode.ROUND_ROBIN: "autogen_agentchat.teams.RoundRobinGroupChat",
    Team.Mode.SELECTOR: "autogen_agentchat.teams.SelectorGroupChat",
    Team.Mode.SWARM: "autogen_agentchat.teams.Swarm",
    Team.Mode.GRAPH: "autogen_agentchat.teams.GraphFlow",
    Team.Mode.MAGENTIC_ONE: "autogen_agentchat.teams.MagenticOneGroupChat",
}
MODES = {provider: mode for mode, provider in TEAMS.items()}
CONDITIONS = "autogen_agentchat.conditions."
AND = "autogen_agentchat.base.AndTerminationCondition"
OR = "autogen_agentchat.base.OrTerminationCondition"


# Export


def _condition_component(key: str, value, idents: dict) -> dict:
    if key == "max_messages":
        return max_messages_condition(value)
    if key == "text_mention":
        return text_mention_condition(value)
    if key == "timeout_seconds":
        label, config = "TimeoutTermination", {"timeout_seconds": float(value)}
    elif key == "max_tokens":
        label, config = "TokenUsageTermination", {"max_total_token": value}
    elif key == "handoff":
        label, config = "HandoffTermination", {"target": idents.get(value, value)}
    elif key == "source_match":
        label, config = "SourceMatchTermination", {"sources": [idents.get(v, v) for v in value]}
    elif key == "stop_message":
        label, config = "StopMessageTermination", {}
    else:
        label, config = "FunctionCallTermination", {"function_name": value}
    return component(CONDITIONS + label, "termination", config, label=label)


def termination_component(conf: dict, idents: dict) -> dict:
    if "any" in conf:
        return or_condition([termination_component(c, idents) for c in conf["any"]])
    if "all" in conf:
        return component(AND, "termination", {"conditions": [termination_component(c, idents) for c in conf["all"]]},
                         label="AndTerminationCondition")
    parts = [_condition_component(k, v, idents) for k, v in conf.items()]
    return parts[0] if len(parts) == 1 else or_condition(parts)


def team_export(team: Team) -> dict:
    """GET /api/teams/{id}/component/: the team as AgentChat's class of its mode, members in order (a member
    with code_execution followed by its CodeExecutorAgent), model keys removed."""
    members = [m.agent for m in team.members.select_related("agent__model").order_by("position")]
    taken: set = set()
    idents = {a.name: agent_identifier(a.name, taken) for a in members}
    by_id = {a.pk: idents[a.name] for a in members}
    external = [t for t in handoff_targets(team.termination) if t not in idents]
    participants = []
    for agent in members:
        if agent.human_input:  # a person answers for it: AgentChat's user proxy
            participants.append(user_proxy_component(idents[agent.name], agent.description))
            continue
        handoffs = list(external)
        if team.mode == Team.Mode.SWARM:
            handoffs = [idents[a.name] for a in members if a.pk != agent.pk] + handoffs
        timeout = int((agent.limits or {}).get("timeout_seconds") or 60)
        # swarm and graph members run their code with AgentChat's code tool; other modes add an executor agent
        code_tool = agent.code_execution and team.mode in (Team.Mode.SWARM, Team.Mode.GRAPH)
        participants.append(assistant_component(ident=idents[agent.name], description=agent.description,
                                                system_message=agent.system_message, model_config=agent.model,
                                                tools=list(agent.tools), handoffs=handoffs,
                                                code_timeout=timeout if code_tool else None,
                                                tool_definitions=agent.behaviour().get("tool_definitions")))
        if agent.code_execution and not code_tool:
            participants.append(executor_component(idents[agent.name], timeout))
    config = {"name": team.name, "description": f"{team.name}: a {team.mode} team of the platform",
              "participants": participants,
              "termination_condition": termination_component(team.termination or {"max_messages": 10}, idents)}
    if team.mode == Team.Mode.SELECTOR:
        # AgentChat's default prompts are part of the config it dumps (imported here only, for these modes).
        from autogen_agentchat.teams import SelectorGroupChat

        defaults = SelectorGroupChat.__init__.__kwdefaults__
        config.update(model_client=model_component(team.selector_model), selector_prompt=defaults["selector_prompt"],
                      allow_repeated_speaker=False, max_selector_attempts=3, emit_team_events=False,
                      model_client_streaming=False)
    elif team.mode == Team.Mode.MAGENTIC_ONE:
        from autogen_agentchat.teams._group_chat._magentic_one._prompts import ORCHESTRATOR_FINAL_ANSWER_PROMPT

        config.update(model_client=model_component(team.orchestrator_model), max_turns=20, max_stalls=3,
                      final_answer_prompt=ORCHESTRATOR_FINAL_ANSWER_PROMPT, emit_team_events=False)
    elif team.mode == Team.Mode.GRAPH:
        nodes = {ident: {"name": ident, "edges": [], "activation": "all"} for ident in by_id.values()}
        for edge in (team.graph or {}).get("edges", []):
            target = by_id[edge["target"]]
            nodes[by_id[edge["source"]]]["edges"].append({
                "target": target, "condition": edge.get("condition"),
                "activation_group": edge.get("activation_group") or target,
                "activation_condition": edge.get("activation") or "all"})
        config["graph"] = {"nodes": nodes, "default_start_node": by_id[members[0].pk]}
    else:
        config["emit_team_events"] = False
    # AutoGen Studio shows a component's label as its name
    return component(TEAMS[team.mode], "team", config, label=team.name, description=f"The platform team {team.name}")


# Import


def read_termination(problems: Problems, path: str, data, depth: int = 0) -> dict | None:
    """A termination component -> a termination object (teams.conditions); names are AgentChat names."""
    read = read_component(problems, path, data, ("termination",))
    if read is None:
        return None
    provider, config = read
    cpath = f"{path}.config"
    if provider in (AND, OR):
        items = config.get("conditions")
        if not isinstance(items, list) or not items or depth > 3:
            problems.add(f"{cpath}.conditions", "must be a non-empty list of conditions (nested at most 4 deep)")
            return None
        parts = [read_termination(problems, f"{cpath}.conditions[{i}]", c, depth + 1) for i, c in enumerate(items)]
        return {"all" if provider == AND else "any": parts} if None not in parts else None
    name = provider.removeprefix(CONDITIONS)
    simple = {
        "MaxMessageTermination": ("max_messages", "max_messages"),
        "TextMentionTermination": ("text_mention", "text"),
        "HandoffTermination": ("handoff", "target"),
        "SourceMatchTermination": ("source_match", "sources"),
        "FunctionCallTermination": ("function_call", "function_name"),
    }
    if not provider.startswith(CONDITIONS):
        name = ""
    if name in simple:
        key, field = simple[name]
        check_keys(problems, cpath, config, {field: None, "include_agent_event": None, "sources": None})
        if config.get("include_agent_event"):
            problems.add(f"{cpath}.include_agent_event", "not supported: messages are counted, not events")
        if name == "TextMentionTermination" and config.get("sources"):
            problems.add(f"{cpath}.sources", "not supported: any agent's message counts")
        if field not in config:
            problems.add(f"{cpath}.{field}", "required")
            return None
        return {key: config[field]}
    if name == "TimeoutTermination":
        check_keys(problems, cpath, config, {"timeout_seconds": None})
        try:
            return {"timeout_seconds": timeout_value(config.get("timeout_seconds"))}
        except (TypeError, ValueError):
            problems.add(f"{cpath}.timeout_seconds", "must be a number of seconds")
            return None
    if name == "TokenUsageTermination":
        check_keys(problems, cpath, config, {"max_total_token": None, "max_prompt_token": None,
                                            "max_completion_token": None})
        for key in ("max_prompt_token", "max_completion_token"):
            if config.get(key) is not None:
                problems.add(f"{cpath}.{key}", "not supported: only max_total_token (termination max_tokens)")
        if config.get("max_total_token") is None:
            problems.add(f"{cpath}.max_total_token", "required")
            return None
        return {"max_tokens": config["max_total_token"]}
    if name == "StopMessageTermination":
        check_keys(problems, cpath, config, {})
        return {"stop_message": True}
    problems.add(f"{path}.provider", f"termination {provider!r} is not supported; supported: MaxMessage, TextMention, "
                                     "Timeout, TokenUsage, Handoff, SourceMatch, StopMessage, FunctionCall terminations "
                                     "and their and/or combinations")
    return None


def _rename(termination, names: dict):
    """AgentChat names in source_match and handoff -> the platform names of the created agents."""
    if isinstance(termination, dict):
        out = {}
        for key, value in termination.items():
            if key in ("any", "all"):
                out[key] = [_rename(v, names) for v in value]
            elif key == "source_match":
                out[key] = [names.get(v, v) for v in value]
            elif key == "handoff":
                out[key] = names.get(value, value)
            else:
                out[key] = value
        return out
    return termination


def _handoff_targets_in(termination) -> set:
    return set(handoff_targets(termination)) if termination else set()


def _read_team(problems: Problems, path: str, data) -> dict | None:
    read = read_component(problems, path, data, ("team",))
    if read is None:
        return None
    provider, config = read
    cpath = f"{path}.config"
    mode = MODES.get(provider)
    if mode is None:
        problems.add(f"{path}.provider", f"team provider {provider!r} is not supported; supported: "
                                         f"{', '.join(TEAMS.values())}")
        return None
    platform = "the platform decides it"
    known = {"name": None, "description": "not kept", "participants": None, "termination_condition": None,
             "max_turns": "not supported: use termination max_messages", "emit_team_events": platform}
    if mode == Team.Mode.SELECTOR:
        known.update(model_client=None, selector_prompt="AgentChat's default selector prompt is used",
                     allow_repeated_speaker=platform, max_selector_attempts=platform, model_client_streaming=platform,
                     model_context=platform, selector_func=None, candidate_func=None)
        for key in ("selector_func", "candidate_func"):
            if config.get(key):
                problems.add(f"{cpath}.{key}", "not supported: functions are code")
    elif mode == Team.Mode.MAGENTIC_ONE:
        known.update(model_client=None, max_stalls=platform, final_answer_prompt="AgentChat's default prompt is used")
    elif mode == Team.Mode.GRAPH:
        known.update(graph=None)
    check_keys(problems, cpath, config, known)
    termination = None
    if config.get("termination_condition") is not None:
        termination = read_termination(problems, f"{cpath}.termination_condition", config["termination_condition"])
    targets = _handoff_targets_in(termination)
    participants = config.get("participants")
    if not isinstance(participants, list) or not participants:
        problems.add(f"{cpath}.participants", "a team needs at least one participant")
        return None
    idents = [p.get("config", {}).get("name") if isinstance(p, dict) and isinstance(p.get("config"), dict) else None
              for p in participants]
    for i, ident in enumerate(idents):
        if ident is not None and ident in idents[:i]:
            problems.add(f"{cpath}.participants[{i}].config.name", f"{ident!r} is the name of an earlier participant")
    allowed = (set(filter(None, idents)) | targets) if mode == Team.Mode.SWARM else targets
    agents = []
    for i, participant in enumerate(participants):
        ppath = f"{cpath}.participants[{i}]"
        if isinstance(participant, dict) and participant.get("component_type") == "team":
            problems.add(ppath, "nested teams are not supported")
            continue
        agent = read_agent(problems, ppath, participant, handoffs_allowed=allowed,
                           code_tool=mode in (Team.Mode.SWARM, Team.Mode.GRAPH))
        if agent is None:
            continue
        if agent["kind"] == "executor":
            if not agents or agents[-1]["code_execution"] or agents[-1]["kind"] == "person" \
                    or mode in (Team.Mode.SWARM, Team.Mode.GRAPH):
                problems.add(f"{ppath}.config.model_client", "a CodeExecutorAgent without a model client runs the "
                             "code of the AssistantAgent right before it (round robin, selector, magentic_one teams; "
                             "in swarm and graph teams a member runs its code with AgentChat's code tool, "
                             "PythonCodeExecutionTool)")
                continue
            agents[-1]["code_execution"] = True
            agents[-1]["executor"] = agent["name"]
            continue
        agents.append(agent)
    if agents and all(a["kind"] == "person" for a in agents) and config.get("model_client") is None:
        problems.add(f"{cpath}.participants", "a team of user proxies only: it needs an agent with a model")
    # AgentChat names a team after its class unless told otherwise; AutoGen Studio keeps the name it shows in `label`
    name = config.get("name")
    if not name or name == provider.rsplit(".", 1)[1]:
        name = data.get("label") or name or "imported-team"
    result = {"mode": mode, "name": name, "agents": agents,
              "termination": termination}
    if mode == Team.Mode.SELECTOR:
        result["selector_model"] = read_model(problems, f"{cpath}.model_client", config.get("model_client"))
    if mode == Team.Mode.MAGENTIC_ONE:
        result["orchestrator_model"] = read_model(problems, f"{cpath}.model_client", config.get("model_client"))
    if mode == Team.Mode.GRAPH:
        result["graph"] = _read_graph(problems, f"{cpath}.graph", config.get("graph"), [a["name"] for a in agents])
    return result


def _read_graph(problems: Problems, path: str, graph, names: list[str]) -> dict | None:
    """A DiGraph -> (entry name, edges by AgentChat name); the entry becomes the first member."""
    if not isinstance(graph, dict) or not isinstance(graph.get("nodes"), dict):
        problems.add(path, "required: {nodes: {name: {name, edges: [...]}}, default_start_node}")
        return None
    check_keys(problems, path, graph, {"nodes": None, "default_start_node": None})
    edges, targets = [], set()
    for name, node in graph["nodes"].items():
        npath = f"{path}.nodes.{name}"
        if name not in names:
            problems.add(npath, f"{name!r} is not a participant of the team")
            continue
        if not isinstance(node, dict):
            problems.add(npath, "must be an object {name, edges, activation}")
            continue
        check_keys(problems, npath, node, {"name": None, "edges": None, "activation": None})
        for i, edge in enumerate(node.get("edges") or []):
            epath = f"{npath}.edges[{i}]"
            if not isinstance(edge, dict):
                problems.add(epath, "must be an object {target, condition, ...}")
                continue
            check_keys(problems, epath, edge, {"target": None, "condition": None, "activation_group": None,
                                               "activation_condition": None})
            if edge.get("target") not in names:
                problems.add(f"{epath}.target", f"{edge.get('target')!r} is not a participant of the team")
                continue
            if edge.get("condition") is not None and not isinstance(edge["condition"], str):
                problems.add(f"{epath}.condition", "only text conditions are supported (a callable is code)")
                continue
            item = {"source": name, "target": edge["target"]}
            if edge.get("condition"):
                item["condition"] = edge["condition"]
            if edge.get("activation_condition", "all") != "all":
                item["activation"] = edge["activation_condition"]
            if edge.get("activation_group") and edge["activation_group"] != edge["target"]:
                item["activation_group"] = edge["activation_group"]
            targets.add(edge["target"])
            edges.append(item)
    entry = graph.get("default_start_node")
    if entry is None:
        starts = [n for n in names if n not in targets]
        if len(starts) != 1:
            problems.add(f"{path}.default_start_node", "the platform's graph has one entry (its first member): name it")
            return None
        entry = starts[0]
    if entry not in names:
        problems.add(f"{path}.default_start_node", f"{entry!r} is not a participant of the team")
        return None
    return {"entry": entry, "edges": edges}


def person_model(read: dict, creator: Creator):
    """The model configuration a user proxy's agent row points to: the first member's, else the team's own
    (the person answers; the model is never called for it)."""
    for model in [a["model"] for a in read["agents"]] + [read.get("selector_model"), read.get("orchestrator_model")]:
        if model:
            return creator.model(model, model["model"] or f"{read['name']}-replay")
    raise AssertionError("a team of user proxies only is refused when read")


def teams_import(*, actor, customer, data, request=None) -> dict:
    """POST /api/teams/import/: one team component, or every team of a gallery file, in one transaction: its
    models, agents (the entry of a graph first) and the team."""
    kind, documents = import_document(data)
    problems = Problems()
    reads = []
    for path, document in documents:
        if kind == "gallery":
            teams = document.get("teams")
            gallery_rest(problems, path, document, "teams")
            if not isinstance(teams, list) or not teams:
                problems.add(f"{path}.teams", "the gallery has no teams to import")
                continue
            items = [(f"{path}.teams[{i}]", t) for i, t in enumerate(teams)]
        else:
            items = [(path, document)]
        for item_path, item in items:
            read = _read_team(problems, item_path, item)
            if read is not None:
                reads.append(read)
    problems.raise_if_any()
    with transaction.atomic():
        creator = Creator(actor=actor, customer=customer, request=request)
        creator.tools(problems)
        team_names = set(Team.objects.filter(customer=customer).values_list("name", flat=True))
        for read in reads:
            agents = read["agents"]
            if read.get("graph"):
                entry = read["graph"]["entry"]
                agents = sorted(agents, key=lambda a: a["name"] != entry)
            created = {}
            for agent in agents:
                created[agent["name"]] = creator.agent(agent, None if agent["model"] else person_model(read, creator))
            names = {ident: agent.name for ident, agent in created.items()}
            values = {"mode": read["mode"], "members": [created[a["name"]] for a in agents],
                      "termination": _rename(read["termination"], names) if read["termination"] else None}
            for field in ("selector_model", "orchestrator_model"):
                if read.get(field):
                    model = read[field]
                    values[field] = creator.model(model, model["model"] or f"{read['name']}-{field.split('_')[0]}")
            if read.get("graph"):
                values["graph"] = {"edges": [
                    {**edge, "source": created[edge["source"]].pk, "target": created[edge["target"]].pk}
                    for edge in read["graph"]["edges"]]}
            name = unique_name(read["name"], team_names)
            if name != read["name"]:
                creator.renamed.append({"kind": "team", "wanted": read["name"], "name": name})
            team = team_create(actor=actor, customer=customer, name=name, request=request, **values)
            creator.created["teams"].append({"id": team.pk, "name": team.name})
        audit_record(actor=actor, action="team.import", target=f"customer:{customer.pk}", customer=customer,
                     request=request, details={"teams": [t["id"] for t in creator.created["teams"]]})
    return creator.result(problems)
