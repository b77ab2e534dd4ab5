"""Build the AgentChat objects a task runs from its frozen spec (agents' pinned versions, team shape)."""
from functools import reduce

from autogen_agentchat.agents import AssistantAgent, CodeExecutorAgent
from autogen_agentchat.base import AndTerminationCondition, OrTerminationCondition, Response
from autogen_agentchat.conditions import (
    FunctionCallTermination,
    HandoffTermination,
    MaxMessageTermination,
    SourceMatchTermination,
    StopMessageTermination,
    TextMentionTermination,
    TimeoutTermination,
    TokenUsageTermination,
)
from autogen_agentchat.messages import CodeExecutionEvent, CodeGenerationEvent, TextMessage
from autogen_agentchat.teams import (
    DiGraphBuilder,
    GraphFlow,
    MagenticOneGroupChat,
    RoundRobinGroupChat,
    SelectorGroupChat,
    Swarm,
)
from autogen_core.tools import FunctionTool
from autogen_ext.tools.code_execution import PythonCodeExecutionTool

from . import human
from .model_client import BrokerChatCompletionClient
from .coderun import RunnerCodeExecutor
from .customtools import sandbox_tools
from .names import agent_identifier
from .tools import TOOLS

# A group chat needs a way to end; these apply when the team or agent sets none.
DEFAULT_MAX_MESSAGES = 20
CODE_LOOP_MAX_MESSAGES = 12


class SandboxCodeExecutorAgent(CodeExecutorAgent):
    """AutoGen's CodeExecutorAgent, also reporting which code ran and what it printed as events."""

    async def on_messages_stream(self, messages, cancellation_token):
        code_blocks = await self.extract_code_blocks_from_messages(messages)
        if not code_blocks:
            yield Response(chat_message=TextMessage(content=self.NO_CODE_BLOCKS_FOUND_MESSAGE, source=self.name))
            return
        code = "\n\n".join(block.code for block in code_blocks)
        yield CodeGenerationEvent(retry_attempt=0, content=code, code_blocks=code_blocks, source=self.name)
        result = await self.execute_code_block(code_blocks, cancellation_token)
        yield CodeExecutionEvent(retry_attempt=0, result=result, source=self.name)
        yield Response(chat_message=TextMessage(content=result.output, source=self.name))


def _tools(entry: dict, channel=None, ident: str = "") -> list:
    """The agent's tools in its `tools` order: built-in FunctionTools, and its customer tools (their frozen
    definitions), whose calls run in the sandbox's code runner, or for http tools are made by the supervisor
    over the channel (customtools)."""
    custom = {tool.name: tool for tool in sandbox_tools(entry, channel, ident)}
    return [
        FunctionTool(TOOLS[n]["function"], description=TOOLS[n]["description"], name=n) if n in TOOLS else custom[n]
        for n in entry.get("tools") or [] if n in TOOLS or n in custom
    ]


def _timeout(entry: dict) -> int:
    return int((entry.get("limits") or {}).get("timeout_seconds") or 60)


def _code_tool(entry: dict) -> PythonCodeExecutionTool:
    """AgentChat's code tool, for a member that runs code where no executor agent can follow it (swarm, graph):
    the agent calls it with the code, which the sandbox's code runner runs (another uid), never this process."""
    return PythonCodeExecutionTool(RunnerCodeExecutor(timeout=max(1, _timeout(entry))))


def _assistant(entry: dict, ident: str, channel, models: dict, stream: bool, handoffs=(),
               code_tool: bool = False) -> AssistantAgent:
    client = BrokerChatCompletionClient(
        # caller: the name events show (live tokens, model_waiting and trace turns are matched by it)
        channel, caller=entry["name"], agent=entry.get("id"), model=entry["model"], model_info=models[str(entry["model"])]
    )
    tools = _tools(entry, channel, ident) + ([_code_tool(entry)] if code_tool else [])
    tools = human.gate_tools(tools, entry, ident)
    kwargs = {}
    if tools:
        kwargs.update(tools=tools, reflect_on_tool_use=True, max_tool_iterations=5)
    if handoffs:
        kwargs["handoffs"] = list(handoffs)
    return AssistantAgent(
        ident,
        model_client=client,
        system_message=entry.get("system_message") or None,
        description=entry.get("description") or "An agent that provides assistance with ability to use tools.",
        model_client_stream=stream,
        **kwargs,
    )


def _executor(ident: str, taken: set, timeout: int, entry: dict | None = None) -> SandboxCodeExecutorAgent:
    # The code runs in the sandbox's code runner (another uid, no broker channel), never in this process.
    executor = RunnerCodeExecutor(timeout=max(1, timeout))
    name = agent_identifier(f"{ident}_executor", taken)
    return SandboxCodeExecutorAgent(
        name,
        code_executor=executor,
        description=f"Runs the Python and shell code blocks that {ident} writes and reports the output.",
        approval_func=human.code_approval(entry or {}, name),
    )


def _with_person(entry: dict, ident: str, assistant, taken: set):
    """A single agent with human_input: a person (a user proxy) answers after each of its replies (and
    after its code runs, with code_execution), until someone says TERMINATE."""
    participants = [assistant]
    if entry.get("code_execution"):
        participants.append(_executor(ident, taken, _timeout(entry), entry))
    participants.append(human.user_proxy({"description": "The person who gave the task"},
                                         agent_identifier("person", taken)))
    team = RoundRobinGroupChat(
        participants,
        termination_condition=TextMentionTermination("TERMINATE") | MaxMessageTermination(DEFAULT_MAX_MESSAGES),
    )
    return team, "agent+human" + ("+code" if entry.get("code_execution") else ""), {ident: entry["name"]}


def _condition_part(key: str, value, idents: dict):
    if key == "max_messages":
        return MaxMessageTermination(int(value))
    if key == "text_mention":
        return TextMentionTermination(str(value))
    if key == "timeout_seconds":
        return TimeoutTermination(float(value))
    if key == "max_tokens":
        return TokenUsageTermination(max_total_token=int(value))
    if key == "handoff":
        return HandoffTermination(target=idents.get(value, value))
    if key == "source_match":
        return SourceMatchTermination([idents.get(v, v) for v in value])
    if key == "stop_message":
        return StopMessageTermination()
    if key == "function_call":
        return FunctionCallTermination(function_name=str(value))
    raise ValueError(f"unknown termination condition {key!r}")


def _condition(conf: dict, idents: dict):
    """A termination object (teams.conditions) -> AgentChat's condition: a mapping's conditions are
    alternatives (or), {"any": [...]} is or, {"all": [...]} is and."""
    if "any" in conf:
        return reduce(lambda a, b: a | b, [_condition(c, idents) for c in conf["any"]])
    if "all" in conf:
        parts = [_condition(c, idents) for c in conf["all"]]
        return parts[0] if len(parts) == 1 else AndTerminationCondition(*parts)
    parts = [_condition_part(k, v, idents) for k, v in conf.items()]
    return parts[0] if len(parts) == 1 else OrTerminationCondition(*parts)


def _termination(conf: dict, idents: dict | None = None):
    if not conf:
        return MaxMessageTermination(DEFAULT_MAX_MESSAGES)
    return _condition(conf, idents or {})


def handoff_targets(conf) -> list[str]:
    targets = []
    if isinstance(conf, dict):
        for key, value in conf.items():
            if key in ("any", "all"):
                for item in value:
                    targets += [t for t in handoff_targets(item) if t not in targets]
            elif key == "handoff" and value not in targets:
                targets.append(value)
    return targets


def build(spec: dict, channel, models: dict, stream: bool = True):
    """Return (runnable, shape, names): the agent or team to run, a key saying which state it can
    load, and AgentChat name -> platform agent name (events show the names customers gave)."""
    taken: set = set()
    entries = spec["agents"]
    names: dict = {}
    if spec["kind"] == "agent":
        entry = entries[0]
        ident = agent_identifier(entry["name"], taken)
        names[ident] = entry["name"]
        assistant = _assistant(entry, ident, channel, models, stream)
        if not entry.get("code_execution") and not entry.get("human_input"):
            return assistant, "agent", names
        if entry.get("human_input"):
            return _with_person(entry, ident, assistant, taken)
        team = RoundRobinGroupChat(
            [assistant, _executor(ident, taken, _timeout(entry), entry)],
            termination_condition=TextMentionTermination("TERMINATE", sources=[ident])
            | MaxMessageTermination(CODE_LOOP_MAX_MESSAGES),
        )
        return team, "agent+code", names

    team_spec = spec["team"]
    mode = team_spec["mode"]
    conf = team_spec.get("termination") or {}
    for entry in entries:
        names[agent_identifier(entry["name"], taken)] = entry["name"]
    idents = {name: ident for ident, name in names.items()}
    # A handoff condition names a member or an outside target such as "user": every agent can hand off to it.
    external = [idents.get(t, t) for t in handoff_targets(conf) if t not in idents]
    # In a swarm or a graph the next speaker follows from the member's own message (a handoff, an edge), so
    # a member that runs code does it itself, with the code tool, instead of an executor agent after it.
    code_tool = mode in ("swarm", "graph")
    participants = []
    by_id = {}
    for entry in entries:
        ident = idents[entry["name"]]
        if entry.get("human_input"):  # a person answers for this member: a user proxy
            proxy = human.user_proxy(entry, ident)
            by_id[entry.get("id")] = proxy
            participants.append(proxy)
            continue
        handoffs = list(external)
        if mode == "swarm":
            handoffs = [idents[e["name"]] for e in entries if e is not entry] + handoffs
        runs_code = bool(entry.get("code_execution"))
        agent = _assistant(entry, ident, channel, models, stream, handoffs=handoffs, code_tool=runs_code and code_tool)
        by_id[entry.get("id")] = agent
        participants.append(agent)
        if runs_code and not code_tool:
            participants.append(_executor(ident, taken, _timeout(entry), entry))
    termination = _termination(conf, idents)
    shape = "team:" + mode + ":" + ",".join(p.name for p in participants)

    def client(field: str, caller: str):
        return BrokerChatCompletionClient(
            channel, caller=caller, agent=None, model=team_spec[field], model_info=models[str(team_spec[field])]
        )

    if mode == "selector":
        team = SelectorGroupChat(participants, model_client=client("selector_model", "selector"),
                                 termination_condition=termination)
    elif mode == "swarm":
        team = Swarm(participants, termination_condition=termination)
    elif mode == "graph":
        builder = DiGraphBuilder()
        for agent in participants:
            builder.add_node(agent)
        for edge in (team_spec.get("graph") or {}).get("edges", []):
            builder.add_edge(
                by_id[edge["source"]], by_id[edge["target"]], condition=edge.get("condition"),
                activation_group=edge.get("activation_group"), activation_condition=edge.get("activation") or "all",
            )
        builder.set_entry_point(participants[0])
        team = GraphFlow(builder.get_participants(), graph=builder.build(), termination_condition=termination)
    elif mode == "magentic_one":
        team = MagenticOneGroupChat(participants, model_client=client("orchestrator_model", "orchestrator"),
                                    termination_condition=termination)
    else:
        team = RoundRobinGroupChat(participants, termination_condition=termination)
    return team, shape, names
