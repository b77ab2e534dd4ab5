"""The shapes a team stores as data: termination conditions and the graph of a graph team.

Pure functions over JSON-like data (no Django models, no AutoGen): each returns the problems it
finds as "path: message" strings, the path relative to the field (`any[1].max_messages`), so that a
mistake deep in a combination is named exactly. The sandboxed child turns the same data into
AgentChat's conditions and DiGraph (runtime/agentchild/build.py).

Termination: a mapping of conditions, any of which ends the run
    {"max_messages": 6, "text_mention": "TERMINATE"}
or a combination, whose items are termination objects themselves
    {"any": [{"handoff": "user"}, {"all": [{"source_match": ["critic"]}, {"max_messages": 4}]}]}
"""
from collections import defaultdict

# key -> (what it holds, AgentChat class)
CONDITIONS = {
    "max_messages": "a positive integer (MaxMessageTermination)",
    "text_mention": "a non-empty string (TextMentionTermination)",
    "timeout_seconds": "a positive integer (TimeoutTermination)",
    "max_tokens": "a positive integer: total tokens (TokenUsageTermination)",
    "handoff": "the target of a handoff, a member's name or another name such as user (HandoffTermination)",
    "source_match": "a list of agent names: the run ends after one of them speaks (SourceMatchTermination)",
    "stop_message": "true: the run ends on a StopMessage (StopMessageTermination)",
    "function_call": "a tool name: the run ends once it was executed (FunctionCallTermination)",
}
COMBINATIONS = ("any", "all")
INT_KEYS = ("max_messages", "timeout_seconds", "max_tokens")
MAX_DEPTH = 4
MAX_ITEMS = 20
MAX_NAME = 100

EDGE_KEYS = ("source", "target", "condition", "activation", "activation_group")
MAX_EDGES = 200


def _positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _name(value) -> bool:
    return isinstance(value, str) and bool(value.strip()) and len(value) <= MAX_NAME


def termination_problems(termination, *, text_limit: int, path: str = "", depth: int = 0) -> list[str]:
    """Problems of a termination object, each "path: message"."""
    at = (lambda key: f"{path}.{key}" if path else key)
    here = path or "termination"
    if not isinstance(termination, dict):
        return [f"{here}: must be an object"]
    combos = [k for k in termination if k in COMBINATIONS]
    if combos:
        if len(termination) != 1:
            return [f"{here}: {combos[0]} stands alone; put the other conditions inside its list"]
        key = combos[0]
        items = termination[key]
        if depth >= MAX_DEPTH:
            return [f"{at(key)}: combinations nest at most {MAX_DEPTH} deep"]
        if not isinstance(items, list) or not items:
            return [f"{at(key)}: must be a non-empty list of termination objects"]
        if len(items) > MAX_ITEMS:
            return [f"{at(key)}: at most {MAX_ITEMS} items"]
        problems = []
        for i, item in enumerate(items):
            item_path = f"{at(key)}[{i}]"
            if isinstance(item, dict) and not item:
                problems.append(f"{item_path}: an empty object is no condition")
                continue
            problems += termination_problems(item, text_limit=text_limit, path=item_path, depth=depth + 1)
        return problems
    problems = [f"{at(k)}: unknown condition; allowed: {', '.join(list(CONDITIONS) + list(COMBINATIONS))}"
                for k in termination if k not in CONDITIONS]
    for key in INT_KEYS:
        if key in termination and not _positive_int(termination[key]):
            problems.append(f"{at(key)}: must be a positive integer")
    if "text_mention" in termination:
        value = termination["text_mention"]
        if not isinstance(value, str) or not value.strip():
            problems.append(f"{at('text_mention')}: must be a non-empty string")
        elif len(value) > text_limit:
            problems.append(f"{at('text_mention')}: at most {text_limit} characters (MAX_TEXT_MENTION_CHARS)")
    for key in ("handoff", "function_call"):
        if key in termination and not _name(termination[key]):
            problems.append(f"{at(key)}: must be a non-empty string of at most {MAX_NAME} characters")
    if "source_match" in termination:
        value = termination["source_match"]
        if not isinstance(value, list) or not value or not all(_name(v) for v in value):
            problems.append(f"{at('source_match')}: must be a non-empty list of agent names")
    if "stop_message" in termination and termination["stop_message"] is not True:
        problems.append(f"{at('stop_message')}: must be true (leave it out otherwise)")
    return problems


def termination_walk(termination, path: str = ""):
    """(path, key, value) of every condition in a (valid) termination object."""
    if not isinstance(termination, dict):
        return
    for key, value in termination.items():
        if key in COMBINATIONS and isinstance(value, list):
            for i, item in enumerate(value):
                yield from termination_walk(item, f"{path}.{key}[{i}]" if path else f"{key}[{i}]")
        else:
            yield (f"{path}.{key}" if path else key), key, value


def termination_member_problems(termination, member_names: list[str]) -> list[str]:
    """source_match names the team's members (by the names the customer gave them); a handoff names a
    member or an outside target that can be a tool name (`user`: transfer_to_user)."""
    problems = []
    for path, key, value in termination_walk(termination):
        if key == "source_match" and isinstance(value, list):
            unknown = [v for v in value if v not in member_names]
            if unknown:
                problems.append(f"{path}: not members of the team: {', '.join(map(str, unknown))}")
        if key == "handoff" and value not in member_names and not str(value).isidentifier():
            problems.append(f"{path}: {value!r} is not a member's name; another target must be an identifier "
                            "such as user")
    return problems


def handoff_targets(termination) -> list[str]:
    """The handoff targets the termination names (the agents get a handoff to each)."""
    targets = []
    for _, key, value in termination_walk(termination):
        if key == "handoff" and value not in targets:
            targets.append(value)
    return targets


# Graph


def graph_problems(graph, member_ids: list[int], *, text_limit: int) -> list[str]:
    """Problems of a graph over the team's members, "path: message" (relative to the graph field).

    The same rules as AgentChat's DiGraph.graph_validate (a leaf node, no node with both
    conditional and unconditional edges, every cycle with a conditional edge, one activation per
    target and group), plus: edges join members, and every member is reachable from the entry
    (the first member)."""
    if not isinstance(graph, dict):
        return ["graph: must be an object {edges: [...]}"]
    problems = [f"{k}: unknown key; allowed: edges" for k in graph if k != "edges"]
    edges = graph.get("edges", [])
    if not isinstance(edges, list):
        return problems + ["edges: must be a list of {source, target, condition?}"]
    if len(edges) > MAX_EDGES:
        return problems + [f"edges: at most {MAX_EDGES} edges"]
    members = set(member_ids)
    seen = set()
    valid = []
    for i, edge in enumerate(edges):
        at = f"edges[{i}]"
        if not isinstance(edge, dict):
            problems.append(f"{at}: must be an object {{source, target, condition?}}")
            continue
        before = len(problems)
        problems += [f"{at}.{k}: unknown key; allowed: {', '.join(EDGE_KEYS)}" for k in edge if k not in EDGE_KEYS]
        for key in ("source", "target"):
            value = edge.get(key)
            if value is None:
                problems.append(f"{at}.{key}: required (an agent id of a member)")
            elif not isinstance(value, int) or isinstance(value, bool):
                problems.append(f"{at}.{key}: must be an agent id")
            elif value not in members:
                problems.append(f"{at}.{key}: agent {value} is not a member of the team")
        condition = edge.get("condition")
        if condition is not None and (not isinstance(condition, str) or not condition.strip()):
            problems.append(f"{at}.condition: must be a non-empty string (the edge is taken when the message contains it)")
        elif isinstance(condition, str) and len(condition) > text_limit:
            problems.append(f"{at}.condition: at most {text_limit} characters (MAX_TEXT_MENTION_CHARS)")
        if edge.get("activation", "all") not in ("all", "any"):
            problems.append(f"{at}.activation: must be all or any")
        group = edge.get("activation_group")
        if group is not None and not _name(group):
            problems.append(f"{at}.activation_group: must be a non-empty string")
        if len(problems) > before:
            continue
        key = (edge["source"], edge["target"], edge.get("condition"))
        if key in seen:
            problems.append(f"{at}: the same edge is given twice")
            continue
        seen.add(key)
        valid.append((i, edge))
    if problems:
        return problems
    return _graph_structure_problems(valid, member_ids)


def _graph_structure_problems(edges: list, member_ids: list[int]) -> list[str]:
    problems = []
    out = defaultdict(list)
    for i, edge in edges:
        out[edge["source"]].append((i, edge))
    # Every member reachable from the entry.
    entry, reached, stack = member_ids[0], {member_ids[0]}, [member_ids[0]]
    while stack:
        for _, edge in out[stack.pop()]:
            if edge["target"] not in reached:
                reached.add(edge["target"])
                stack.append(edge["target"])
    for position, member in enumerate(member_ids):
        if member not in reached:
            problems.append(f"edges: agent {member} (members[{position}]) is not reachable from the entry, "
                            f"agent {entry} (the first member)")
    if not any(not out[m] for m in member_ids):
        problems.append("edges: the graph needs a member with no outgoing edge, where a run ends")
    for member in member_ids:
        kinds = {edge.get("condition") is None for _, edge in out[member]}
        if len(kinds) > 1:
            first = min(i for i, _ in out[member])
            problems.append(f"edges[{first}]: agent {member} has both conditional and unconditional edges; "
                            "give every edge leaving it a condition, or none")
    activations = {}
    for i, edge in edges:
        group = (edge["target"], edge.get("activation_group") or edge["target"])
        activation = edge.get("activation", "all")
        if activations.setdefault(group, (activation, i))[0] != activation:
            problems.append(f"edges[{i}].activation: edges into agent {edge['target']} (same activation group) "
                            f"disagree: edges[{activations[group][1]}] says {activations[group][0]}")
    problems += _cycle_problems(out, member_ids)
    return problems


def _cycle_problems(out, member_ids: list[int]) -> list[str]:
    """A cycle whose edges are all unconditional never ends (AgentChat refuses it)."""
    problems, visited, stack, path = [], set(), set(), []

    def visit(node):
        visited.add(node)
        stack.add(node)
        path.append(node)
        for _, edge in out[node]:
            target = edge["target"]
            if target not in visited:
                visit(target)
            elif target in stack:
                cycle = path[path.index(target):]
                if all(e.get("condition") is None for n in cycle for _, e in out[n]):
                    names = " -> ".join(str(n) for n in cycle + cycle[:1])
                    problems.append(f"edges: the cycle {names} has no conditional edge to leave it")
        stack.discard(node)
        path.pop()

    for member in member_ids:
        if member not in visited:
            visit(member)
    return problems
