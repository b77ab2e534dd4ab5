"""Build the AgentChat objects a task runs from its frozen spec (agents' pinned versions, team shape)."""
import re
import warnings
from pathlib import Path

from autogen_agentchat.agents import AssistantAgent, CodeExecutorAgent
from autogen_agentchat.base import Response
from autogen_agentchat.conditions import (
    MaxMessageTermination,
    TextMentionTermination,
    TimeoutTermination,
    TokenUsageTermination,
)
from autogen_agentchat.messages import CodeExecutionEvent, CodeGenerationEvent, TextMessage
from autogen_agentchat.teams import RoundRobinGroupChat, SelectorGroupChat
from autogen_core.tools import FunctionTool

from . import human
from .broker import BrokerChatCompletionClient
from .tools import TOOLS

# A group chat needs a way to end; these apply when the team or agent sets none.
DEFAULT_MAX_MESSAGES = 20
CODE_LOOP_MAX_MESSAGES = 12


def agent_identifier(name: str, taken: set) -> str:
    """AgentChat names must be identifiers and unique; platform names may hold dashes or spaces."""
    ident = re.sub(r"\W", "_", name).strip("_") or "agent"
    if ident[0].isdigit():
        ident = f"agent_{ident}"
    if ident == "user":
        ident = "user_agent"
    base, n = ident, 2
    while ident in taken:
        ident, n = f"{base}_{n}", n + 1
    taken.add(ident)
    return ident


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


def _tools(names: list[str]) -> list[FunctionTool]:
    return [
        FunctionTool(TOOLS[n]["function"], description=TOOLS[n]["description"], name=n) for n in names if n in TOOLS
    ]


def _assistant(entry: dict, ident: str, channel, models: dict, stream: bool) -> AssistantAgent:
    client = BrokerChatCompletionClient(
        channel, caller=ident, agent=entry.get("id"), model=entry["model"], model_info=models[str(entry["model"])]
    )
    tools = human.gate_tools(_tools(entry.get("tools") or []), entry, ident)
    kwargs = {}
    if tools:
        kwargs.update(tools=tools, reflect_on_tool_use=True, max_tool_iterations=5)
    return AssistantAgent(
        ident,
        model_client=client,
        system_message=entry.get("system_message") or None,
        description=entry.get("description") or "An agent that provides assistance with ability to use tools.",
        model_client_stream=stream,
        **kwargs,
    )


def _executor(ident: str, taken: set, timeout: int, entry: dict | None = None) -> SandboxCodeExecutorAgent:
    from autogen_ext.code_executors.local import LocalCommandLineCodeExecutor

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        executor = LocalCommandLineCodeExecutor(timeout=max(1, timeout), work_dir=Path.cwd())
    name = agent_identifier(f"{ident}_executor", taken)
    return SandboxCodeExecutorAgent(
        name,
        code_executor=executor,
        description=f"Runs the Python and shell code blocks that {ident} writes and reports the output.",
        approval_func=human.code_approval(entry or {}, name),
    )


def _termination(conf: dict):
    parts = []
    if conf.get("max_messages"):
        parts.append(MaxMessageTermination(int(conf["max_messages"])))
    if conf.get("text_mention"):
        parts.append(TextMentionTermination(str(conf["text_mention"])))
    if conf.get("timeout_seconds"):
        parts.append(TimeoutTermination(float(conf["timeout_seconds"])))
    if conf.get("max_tokens"):
        parts.append(TokenUsageTermination(max_total_token=int(conf["max_tokens"])))
    if not parts:
        parts.append(MaxMessageTermination(DEFAULT_MAX_MESSAGES))
    condition = parts[0]
    for part in parts[1:]:
        condition = condition | part
    return condition


def _with_person(entry: dict, ident: str, assistant, taken: set):
    """A single agent with human_input: a person (a user proxy) answers after each of its replies (and
    after its code runs, with code_execution), until someone says TERMINATE."""
    participants = [assistant]
    if entry.get("code_execution"):
        timeout = int((entry.get("limits") or {}).get("timeout_seconds") or 60)
        participants.append(_executor(ident, taken, timeout, entry))
    participants.append(human.user_proxy({"description": "The person who gave the task"},
                                         agent_identifier("person", taken)))
    team = RoundRobinGroupChat(
        participants,
        termination_condition=TextMentionTermination("TERMINATE") | MaxMessageTermination(DEFAULT_MAX_MESSAGES),
    )
    return team, "agent+human" + ("+code" if entry.get("code_execution") else ""), {ident: entry["name"]}


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
        timeout = int((entry.get("limits") or {}).get("timeout_seconds") or 60)
        team = RoundRobinGroupChat(
            [assistant, _executor(ident, taken, timeout, entry)],
            termination_condition=TextMentionTermination("TERMINATE", sources=[ident])
            | MaxMessageTermination(CODE_LOOP_MAX_MESSAGES),
        )
        return team, "agent+code", names

    team_spec = spec["team"]
    participants = []
    for entry in entries:
        ident = agent_identifier(entry["name"], taken)
        names[ident] = entry["name"]
        if entry.get("human_input"):  # a person answers for this member: a user proxy
            participants.append(human.user_proxy(entry, ident))
            continue
        participants.append(_assistant(entry, ident, channel, models, stream))
        if entry.get("code_execution"):
            timeout = int((entry.get("limits") or {}).get("timeout_seconds") or 60)
            participants.append(_executor(ident, taken, timeout, entry))
    termination = _termination(team_spec.get("termination") or {})
    shape = "team:" + team_spec["mode"] + ":" + ",".join(p.name for p in participants)
    if team_spec["mode"] == "selector":
        selector = BrokerChatCompletionClient(
            channel,
            caller="selector",
            agent=None,
            model=team_spec["selector_model"],
            model_info=models[str(team_spec["selector_model"])],
        )
        team = SelectorGroupChat(participants, model_client=selector, termination_condition=termination)
    else:
        team = RoundRobinGroupChat(participants, termination_condition=termination)
    return team, shape, names
