"""A person in the middle of a run: user proxies' input and approvals of tool calls and code runs.

When an agent asks a person (a user proxy's turn, a gated tool call, a code run that needs approval),
the run cannot wait here: the child saves the AgentChat state, tells the supervisor what is asked
(`{"op": "input", request, pending, state}`) and ends; the task waits without a process. When the
answer comes, a new child loads the state and finishes the interrupted turn from `pending` and the
answer (the person's text becomes the user proxy's message; approved calls run, denied ones do not and
the agent is told), then the run continues from there: the team's manager takes that message as the
asking member's response, whatever the team class. The code runner packs the work dir with the state
and unpacks it in the new sandbox.
"""
import asyncio
import json

from autogen_agentchat.agents import UserProxyAgent
from autogen_agentchat.agents import ApprovalResponse
from autogen_agentchat.base import Response, TaskResult
from autogen_agentchat.messages import (
    CodeExecutionEvent,
    CodeGenerationEvent,
    HandoffMessage,
    TextMessage,
    ToolCallExecutionEvent,
)
from autogen_agentchat.teams._group_chat._events import GroupChatAgentResponse, GroupChatStart
from autogen_core import CancellationToken, DefaultTopicId
from autogen_core.models import FunctionExecutionResult, FunctionExecutionResultMessage
from autogen_core.tools import FunctionTool
from autogen_ext.tools.code_execution import PythonCodeExecutionTool

from . import coderun

# What a denied tool call returns to the model.
DENIED_TOOL = "The user denied this tool call; it was not run."
DENIED_CODE = "denied by the user"
MAX_PROMPT = 4000
CODE_TOOL = "CodeExecutor"  # the name of AgentChat's PythonCodeExecutionTool
# After someone asked: how long the events already produced get to reach the channel before the state is saved.
SETTLE_TICKS = 10
SETTLE_SECONDS = 0.01


class _Asked:
    """The result of a run that stopped to ask a person (the request and state are sent)."""


ASKED = _Asked()


class Gate:
    """Where the agents of this child ask a person. The first question stops the run; the ones raised by
    calls running alongside it (parallel tool calls of the same turn) are part of it."""

    def __init__(self):
        self._asked: asyncio.Future | None = None
        # per AgentChat agent name: the approval rules and tools (to run the approved calls on resume)
        self.approval: dict[str, set] = {}
        self.tools: dict[str, dict] = {}
        # a code approval decided by a person, used once by the executor on resume
        self.code_decision: dict[str, bool] = {}

    def asked(self) -> asyncio.Future:
        if self._asked is None:
            self._asked = asyncio.get_running_loop().create_future()
        return self._asked

    async def ask(self, pending: dict):
        future = self.asked()
        if not future.done():
            future.set_result(pending)
        await asyncio.Event().wait()  # never answered here: the child saves its state and ends


GATE = Gate()


# -- the agents that ask -------------------------------------------------------------------------


class PlatformUserProxy(UserProxyAgent):
    """AgentChat's UserProxyAgent whose input comes from the task's API: asking stops the run."""

    def __init__(self, name: str, description: str = "A human user"):
        super().__init__(name, description=description or "A human user", input_func=self._ask)
        self._question = ""
        self._handoff_source = None

    async def on_messages_stream(self, messages, cancellation_token):
        handoff = self._get_latest_handoff(messages)
        self._handoff_source = handoff.source if handoff else None
        last = next((m for m in reversed(messages) if m.source != self.name), None)
        self._question = last.to_text() if last is not None else ""
        async for item in super().on_messages_stream(messages, cancellation_token):
            yield item

    async def _ask(self, prompt: str, cancellation_token=None) -> str:
        await GATE.ask({
            "kind": "input", "agent": self.name, "prompt": (self._question or prompt)[-MAX_PROMPT:],
            "handoff_source": self._handoff_source,
        })
        return ""  # not reached


class _Gated:
    """A tool whose calls wait for a person's approval (mixed into the tool's own class)."""

    _agent: str

    async def run_json(self, args, cancellation_token, call_id=None):
        await GATE.ask({"kind": "approval", "what": "tools", "agent": self._agent})

    async def run_approved(self, args, cancellation_token):
        return await super().run_json(args, cancellation_token)


class ApprovalTool(_Gated, FunctionTool):
    def __init__(self, func, *, description: str, name: str, agent: str):
        super().__init__(func, description=description, name=name)
        self._agent = agent


class ApprovalCodeTool(_Gated, PythonCodeExecutionTool):
    """AgentChat's code tool (a swarm or graph member's code runs) whose runs wait for approval."""

    def __init__(self, executor, *, agent: str):
        super().__init__(executor)
        self._agent = agent


def user_proxy(entry: dict, ident: str) -> PlatformUserProxy:
    return PlatformUserProxy(ident, description=entry.get("description") or "A human user")


def gate_tools(tools: list, entry: dict, ident: str) -> list:
    """The agent's tools, those named in its `approval` made to wait for a person."""
    approval = set(entry.get("approval") or [])
    if not approval:
        return tools
    if "code_execution" in approval:  # the code tool's runs are the agent's code runs
        approval.add(CODE_TOOL)
    GATE.approval[ident] = approval
    gated = []
    for tool in tools:
        if isinstance(tool, PythonCodeExecutionTool) and tool.name in approval:
            tool = ApprovalCodeTool(tool._executor, agent=ident)
        elif tool.name in approval:
            tool = ApprovalTool(tool._func, description=tool.description, name=tool.name, agent=ident)
        gated.append(tool)
    GATE.tools[ident] = {tool.name: tool for tool in gated}
    return gated


def code_approval(entry: dict, executor_ident: str):
    """The approval_func of a code executor whose runs need a person's approval (None: they do not)."""
    if "code_execution" not in (entry.get("approval") or []):
        return None

    async def approve(request) -> ApprovalResponse:
        decision = GATE.code_decision.pop(executor_ident, None)
        if decision is None:
            await GATE.ask({"kind": "approval", "what": "code", "agent": executor_ident, "code": request.code})
        if decision:
            return ApprovalResponse(approved=True, reason="approved by the user")
        return ApprovalResponse(approved=False, reason=DENIED_CODE)

    return approve


# -- stopping to ask -----------------------------------------------------------------------------


def _agent(runnable, ident: str):
    if getattr(runnable, "name", None) == ident and not hasattr(runnable, "_participants"):
        return runnable
    for participant in getattr(runnable, "_participants", []):
        if participant.name == ident:
            return participant
    raise RuntimeError(f"The agent {ident!r} that asked is not part of this run")


async def _pending_calls(agent) -> list:
    messages = await agent.model_context.get_messages()
    last = messages[-1] if messages else None
    content = getattr(last, "content", None)
    return list(content) if isinstance(content, list) else []


async def _describe(pending: dict, runnable, names: dict) -> dict:
    """What the person is shown: {prompt, kind, agent, tool_calls | code}."""
    ident = pending["agent"]
    shown = names.get(ident, ident)
    if pending["kind"] == "input":
        return {"kind": "input", "agent": shown, "prompt": pending.get("prompt") or "Your answer?"}
    if pending["what"] == "code":
        return {"kind": "approval", "agent": shown, "code": pending["code"],
                "prompt": f"{shown} wants to run this code:\n{pending['code']}"}
    gated = GATE.approval.get(ident, set())
    calls = [c for c in await _pending_calls(_agent(runnable, ident)) if c.name in gated]
    described = [{"id": c.id, "name": c.name, "arguments": _arguments(c.arguments)} for c in calls]
    lines = "\n".join(f"{c.name}({c.arguments})" for c in calls)
    return {"kind": "approval", "agent": shown, "tool_calls": described,
            "prompt": f"{shown} wants to call:\n{lines}"}


def _arguments(raw):
    try:
        return json.loads(raw)
    except (TypeError, ValueError):
        return raw


async def run_or_ask(channel, runnable, shape: str, start: dict, mapper, names: dict):
    """Run to the end (the TaskResult), or until an agent asks a person: then send the question and the
    saved state and return ASKED."""

    async def work():
        task = start["input"]
        if start.get("resume"):
            await _restore_workdir(channel, start["resume"].get("workdir"))
            task = await _continue(runnable, start["resume"], channel, mapper)
            if isinstance(task, TaskResult):
                return task
        result = None
        async for item in runnable.run_stream(task=task):
            if isinstance(item, TaskResult):
                result = item
                continue
            for event in mapper.map(item):
                await channel.send({"op": "event", **event})
        return result

    running = asyncio.ensure_future(work())
    asked = GATE.asked()
    await asyncio.wait({running, asked}, return_when=asyncio.FIRST_COMPLETED)
    if running.done():
        return running.result()
    for _ in range(SETTLE_TICKS):  # what the team produced before asking reaches the channel first
        await asyncio.sleep(SETTLE_SECONDS)
    pending = {**asked.result(), "run_from": _run_from}
    request = await _describe(pending, runnable, names)
    state = await runnable.save_state()
    workdir = await _keep_workdir(channel, int(start.get("workdir_limit") or 0))
    await channel.send({"op": "input", "request": request, "pending": pending, "state": {"shape": shape, "state": state},
                        "workdir": workdir})
    return ASKED


async def _note(channel, kind: str, text: str) -> None:
    await channel.send({"op": "event", "type": "log", "source": "platform", "content": {"kind": kind, "text": text}})


async def _keep_workdir(channel, limit: int) -> str | None:
    """What the code wrote, packed to be unpacked when the task resumes (the sandbox ends meanwhile)."""
    archive, too_large = await coderun.pack_workdir(limit)
    if too_large:
        await _note(channel, "workdir_not_kept", f"The work directory is over {limit} bytes packed: its files are "
                                                 "not kept while the task waits for input.")
    return archive


async def _restore_workdir(channel, archive) -> None:
    if isinstance(archive, str) and archive and not await coderun.unpack_workdir(archive):
        await _note(channel, "workdir_not_restored", "The work directory kept while the task waited could not be "
                                                     "restored; the task goes on without its files.")


# -- resuming ------------------------------------------------------------------------------------


def prepare_state(state: dict, pending: dict) -> dict:
    """The asking agent's turn is finished on resume (not replayed): what it was given is used up, as
    AgentChat clears a participant's buffer after its turn."""
    agents = state.get("agent_states") if isinstance(state, dict) else None
    ident = pending.get("agent")
    if isinstance(agents, dict) and isinstance(agents.get(ident), dict):
        agents = {**agents, ident: {**agents[ident], "message_buffer": []}}
        return {**state, "agent_states": agents}
    return state


class _AnswerOfTheAskingTurn:
    """Stands in for a team manager's GroupChatStart handler in a resumed run: the start message is the
    answer of the member whose turn asked (the user proxy's reply, the agent's reply after its approved
    calls), delivered as AgentChat delivers a member's response: logged, given to the other members, then
    the manager's own handle_agent_response (thread, turn count, termination, next speaker). A new start
    (and MagenticOne's planning) would not continue the run where it stopped; this is the same for every
    team class, since each manager handles a member's response in handle_agent_response."""

    def __init__(self, ordinary: list):
        self.ordinary = ordinary

    @staticmethod
    def router(message, ctx) -> bool:
        return True

    async def __call__(self, manager, start, ctx):
        manager._handlers[GroupChatStart] = self.ordinary  # used once
        message = start.messages[-1]
        answer = GroupChatAgentResponse(response=Response(chat_message=message), name=message.source)
        await manager._output_message_queue.put(message)
        # To the members, as the member's container publishes it (the runtime does not deliver it to us).
        await manager.publish_message(answer, topic_id=DefaultTopicId(type=manager._group_topic_type),
                                      cancellation_token=ctx.cancellation_token)
        manager._active_speakers = [message.source]  # what the manager was waiting for when the state was saved
        await manager.handle_agent_response(answer, ctx)


def _resume_at_the_asking_turn(team) -> None:
    """Before the team is initialised (load_state does it): its manager takes the resumed run's start as
    the asking member's answer. AgentChat builds the manager through this factory method; its message
    handlers are looked up per instance (RoutedAgent._handlers), so one entry is replaced."""
    original = team._create_group_chat_manager_factory

    def factory(*args, **kwargs):
        make = original(*args, **kwargs)

        def create():
            manager = make()
            manager._handlers[GroupChatStart] = [_AnswerOfTheAskingTurn(list(manager._handlers[GroupChatStart]))]
            return manager

        return create

    team._create_group_chat_manager_factory = factory


# Where this task's run starts in its team's message thread (a thread's earlier tasks come before it).
_run_from = 0


def _thread(runnable, state: dict) -> list:
    name = getattr(runnable, "_group_chat_manager_name", None)
    manager = ((state or {}).get("agent_states") or {}).get(name) if name else None
    thread = manager.get("message_thread") if isinstance(manager, dict) else None
    return thread if isinstance(thread, list) else []


async def _count_the_run_so_far(runnable, thread: list) -> None:
    """A termination condition keeps no saved state in AgentChat: given the messages of the run before the
    question again, it counts (max_messages, max_tokens, an `all` half met) from where the run stood."""
    condition = getattr(runnable, "_termination_condition", None)
    if condition is None or not thread:
        return
    if await condition([runnable._message_factory.create(m) for m in thread]) is not None:
        await condition.reset()  # cannot be (the run went on after these), but never start terminated


async def load_state(runnable, state: dict, pending: dict | None) -> None:
    """Load a saved state; when it was saved while someone was asked (pending), ready to finish that turn."""
    global _run_from
    if pending is None:
        await runnable.load_state(state)
        _run_from = len(_thread(runnable, state))
        return
    if hasattr(runnable, "_participants"):
        _resume_at_the_asking_turn(runnable)
    await runnable.load_state(prepare_state(state, pending))
    _run_from = int(pending.get("run_from") or 0)
    await _count_the_run_so_far(runnable, _thread(runnable, state)[_run_from:])


def _skip_own_messages(agent) -> None:
    """The turn finished on resume is delivered to the team's members by its manager; its author must not
    get it back (AgentChat never delivers an agent its own message)."""
    original = agent.on_messages_stream

    async def on_messages_stream(messages, cancellation_token):
        async for item in original([m for m in messages if m.source != agent.name], cancellation_token):
            yield item

    agent.on_messages_stream = on_messages_stream


async def _send(channel, mapper, item) -> None:
    for event in mapper.map(item):
        await channel.send({"op": "event", **event})


async def _run_call(ident: str, call) -> FunctionExecutionResult:
    tool = GATE.tools.get(ident, {}).get(call.name)
    if tool is None:
        return FunctionExecutionResult(content=f"Error: the tool {call.name!r} is not available", call_id=call.id,
                                       is_error=True, name=call.name)
    try:
        args = json.loads(call.arguments or "{}")
        run = tool.run_approved if isinstance(tool, _Gated) else tool.run_json
        value = await run(args, CancellationToken())
        return FunctionExecutionResult(content=tool.return_value_as_string(value), call_id=call.id, is_error=False,
                                       name=call.name)
    except Exception as exc:  # noqa: BLE001 - a failing tool fails its call, as in AgentChat
        return FunctionExecutionResult(content=f"Error: {exc}", call_id=call.id, is_error=True, name=call.name)


async def _continue(runnable, resume: dict, channel, mapper):
    """Finish the turn that asked, with the person's answer. Returns the message the team continues
    from, or (a single agent, whose turn is the whole run) the TaskResult."""
    pending, answer = resume.get("pending") or {}, resume.get("answer") or {}
    ident = pending.get("agent")
    agent = _agent(runnable, ident)
    if pending.get("kind") == "input":
        text = str(answer.get("text") or "")
        _skip_own_messages(agent)
        if pending.get("handoff_source"):
            return HandoffMessage(content=text, target=pending["handoff_source"], source=ident)
        return TextMessage(content=text, source=ident)
    approved = answer.get("approve") is True
    if pending.get("what") == "code":
        GATE.code_decision[ident] = approved
        blocks = agent._extract_markdown_code_blocks(pending.get("code") or "")
        await _send(channel, mapper, CodeGenerationEvent(retry_attempt=0, content="\n\n".join(b.code for b in blocks),
                                                         code_blocks=blocks, source=ident))
        result = await agent.execute_code_block(blocks, CancellationToken())
        await _send(channel, mapper, CodeExecutionEvent(retry_attempt=0, result=result, source=ident))
        _skip_own_messages(agent)
        return TextMessage(content=result.output, source=ident)
    # tool calls: the approved (and ungated) ones run, the denied ones do not and the model is told
    gated = GATE.approval.get(ident, set())
    results = []
    for call in await _pending_calls(agent):
        if call.name in gated and not approved:
            results.append(FunctionExecutionResult(content=DENIED_TOOL, call_id=call.id, is_error=True, name=call.name))
        else:
            results.append(await _run_call(ident, call))
    await agent.model_context.add_message(FunctionExecutionResultMessage(content=results))
    await _send(channel, mapper, ToolCallExecutionEvent(content=results, source=ident))
    response = None
    async for item in agent.on_messages_stream([], CancellationToken()):
        if isinstance(item, Response):
            response = item
        else:
            await _send(channel, mapper, item)
    if response is None:
        raise RuntimeError(f"The agent {ident!r} gave no answer after its tool calls")
    if agent is runnable:
        await _send(channel, mapper, response.chat_message)
        return TaskResult(messages=[response.chat_message], stop_reason=None)
    _skip_own_messages(agent)
    return response.chat_message
