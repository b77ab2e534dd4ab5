"""Customers' own tools in the sandboxed child: an AgentChat tool whose calls run in the code runner
(python tools), or are made by the supervisor (http tools: BrokerTool, below).

The tool's definition comes frozen in the task's spec (`tool_definitions` of an agent entry). This
process never compiles or runs its source: each call is one Python file sent to the code runner
(runtime/sandbox/coderunner.py), which runs it as a fresh interpreter under the task's second uid,
in the work directory, with the call's time limit. So a tool sees what the task's code sees, cannot
reach the agent process or its broker channel, and a tool that raises, loops or dies fails only
its own call: the model gets the error as the call's result (`is_error`), and the task goes on.

The runner's answer is data from the untrusted side: only the last result line carrying this call's
random marker is read, as JSON, and cut to MAX_RESULT_CHARS.
"""
import json
import secrets
from typing import Any, Mapping

from autogen_core import CancellationToken
from autogen_core.code_executor import CodeBlock
from autogen_core.tools import BaseTool, ToolSchema
from pydantic import BaseModel, ConfigDict

from .coderun import runner
from .human import GATE

MAX_RESULT_CHARS = 32768
# The exit codes the runner gives a run it stopped (as AutoGen's LocalCommandLineCodeExecutor).
TIMEOUT_EXIT, CANCEL_EXIT = 124, 125

# Runs in the code runner's interpreter, never here. Stdout carries only the result line: the tool's
# own prints go to stderr. Arguments are checked against the schema there too (jsonschema, a regex in
# a schema is the customer's to pay for).
HARNESS = '''\
import json as _json, sys as _sys
_NAME, _MARK = {name!r}, {marker!r}
_SOURCE = {source!r}
_SCHEMA, _ARGS = _json.loads({schema!r}), _json.loads({args!r})
_stdout, _sys.stdout = _sys.stdout, _sys.stderr


def _call():
    try:
        import jsonschema
    except ImportError:
        jsonschema = None
    if jsonschema is not None:
        errors = sorted(jsonschema.Draft202012Validator(_SCHEMA).iter_errors(_ARGS), key=lambda e: list(e.path))
        if errors:
            return {{"error": "arguments", "message": "; ".join(
                (".".join(map(str, e.path)) + ": " if e.path else "") + e.message for e in errors[:5])}}
    namespace = {{"__name__": "__tool__"}}
    try:
        exec(compile(_SOURCE, "<tool " + _NAME + ">", "exec"), namespace)
        value = namespace[_NAME](**_ARGS)
        if hasattr(value, "__await__"):
            import asyncio
            value = asyncio.run(value)
        if not isinstance(value, str):
            value = _json.dumps(value, default=repr, ensure_ascii=False)
        return {{"value": value}}
    except BaseException as exc:
        import traceback
        lines = [f.lineno for f in traceback.extract_tb(exc.__traceback__) if f.filename == "<tool " + _NAME + ">"]
        return {{"error": "exception", "type": type(exc).__name__, "message": str(exc)[:4000],
                "line": lines[-1] if lines else None}}


_result = _call()
_stdout.write("\\n" + _MARK + _json.dumps(_result) + "\\n")
_stdout.flush()
'''


class ToolCallFailed(Exception):
    """One call of a customer tool failed; its message is the call's result (is_error) for the model."""


class _Arguments(BaseModel):
    """Any object: the arguments are checked against the tool's own JSON Schema in the sandbox."""

    model_config = ConfigDict(extra="allow")


class SandboxTool(BaseTool[_Arguments, str]):
    """A customer's Python function tool (a FunctionTool to the agent) whose calls the code runner runs."""

    def __init__(self, definition: dict):
        super().__init__(_Arguments, str, definition["name"], definition.get("description") or definition["name"])
        self._definition = definition
        self._timeout = max(1, int(definition.get("timeout_seconds") or 30))

    @property
    def schema(self) -> ToolSchema:
        parameters = dict(self._definition.get("parameters") or {})
        parameters.setdefault("type", "object")
        parameters.setdefault("properties", {})
        return ToolSchema(name=self.name, description=self.description, parameters=parameters)

    async def run_json(self, args: Mapping[str, Any], cancellation_token: CancellationToken,
                       call_id: str | None = None) -> Any:
        return await self.run(_Arguments.model_validate(dict(args)), cancellation_token)

    async def run(self, args: _Arguments, cancellation_token: CancellationToken) -> str:
        target = runner()
        if target is None:
            raise ToolCallFailed(f"Tool {self.name}: the sandbox has no code runner to run it.")
        marker = f"\x1etool-result-{secrets.token_hex(8)}:"
        code = HARNESS.format(name=self.name, marker=marker, source=self._definition["source"],
                              schema=json.dumps(self.schema["parameters"]), args=json.dumps(args.model_dump()))
        result = await target.run([CodeBlock(code=code, language="python")], self._timeout, cancellation_token)
        return _answer(self.name, self._timeout, marker, result.exit_code, result.output)

    def with_approval(self, agent: str) -> "SandboxTool":
        """This tool, its calls waiting for a person's approval first (agentchild.human.gate_tools)."""
        tool = self

        class _Gated(SandboxTool):
            async def run_json(self, args, cancellation_token, call_id=None):
                await GATE.ask({"kind": "approval", "what": "tools", "agent": agent})

            async def run_approved(self, args, cancellation_token):
                return await tool.run_json(args, cancellation_token)

        return _Gated(self._definition)


def _answer(name: str, timeout: int, marker: str, exit_code: int, output: str) -> str:
    """The call's result text, or ToolCallFailed saying precisely why there is none."""
    if exit_code == TIMEOUT_EXIT and marker not in output:
        raise ToolCallFailed(f"Tool {name} timed out after {timeout} s; the call was stopped.")
    if exit_code == CANCEL_EXIT and marker not in output:
        raise ToolCallFailed(f"Tool {name}: the call was cancelled.")
    at = output.rfind(marker)
    try:
        answer = json.loads(output[at + len(marker):].split("\n", 1)[0]) if at >= 0 else None
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        tail = output.strip()[-500:]
        raise ToolCallFailed(f"Tool {name} ended (exit code {exit_code}) without a result"
                             + (f": {tail}" if tail else "."))
    if answer.get("error") == "arguments":
        raise ToolCallFailed(f"Tool {name}: the arguments do not match its parameters: {answer.get('message')}")
    if answer.get("error"):
        line = answer.get("line")
        where = f" (line {line} of the tool's source)" if isinstance(line, int) else ""
        raise ToolCallFailed(f"Tool {name} raised {answer.get('type')}: {answer.get('message')}{where}")
    value = answer.get("value")
    value = value if isinstance(value, str) else json.dumps(value)
    if len(value) > MAX_RESULT_CHARS:
        value = value[:MAX_RESULT_CHARS] + f"\n[result cut at {MAX_RESULT_CHARS} characters]"
    return value


class BrokerTool(SandboxTool):
    """A customer's HTTP tool: this process never makes the request (it has no network). The call's arguments
    go to the supervisor over the task's channel (op "tool"); the worker checks them against the tool's
    definition it holds (not this process's copy), makes the request with the tool's secret headers, which
    never come here, and answers with the result or what failed (runtime/httptools.py)."""

    def __init__(self, definition: dict, channel, caller: str = ""):
        super().__init__(definition)
        self._channel, self._caller = channel, caller

    async def run(self, args: _Arguments, cancellation_token: CancellationToken) -> str:
        arguments = args.model_dump()
        problem = _arguments_problem(self.schema["parameters"], arguments)
        if problem:
            raise ToolCallFailed(f"Tool {self.name}: the arguments do not match its parameters: {problem}")
        request_id, replies = self._channel.new_request()
        try:
            await self._channel.send({"op": "tool", "id": request_id, "caller": self._caller, "name": self.name,
                                      "arguments": arguments})
            reply = await replies.get()
        finally:
            self._channel.end_request(request_id)
        if not reply.get("ok"):
            raise ToolCallFailed(str(reply.get("text") or f"Tool {self.name} failed"))
        return str(reply.get("text") or "")

    def with_approval(self, agent: str) -> "BrokerTool":
        tool = self

        class _Gated(BrokerTool):
            async def run_json(self, args, cancellation_token, call_id=None):
                await GATE.ask({"kind": "approval", "what": "tools", "agent": agent})

            async def run_approved(self, args, cancellation_token):
                return await tool.run_json(args, cancellation_token)

        return _Gated(self._definition, self._channel, self._caller)


def _arguments_problem(schema: dict, arguments: dict) -> str | None:
    """The arguments checked against the tool's schema here, in the sandbox (a regex in a schema is the
    customer's to pay for, not the worker's)."""
    try:
        import jsonschema
    except ImportError:
        return None
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(arguments), key=lambda e: list(e.path))
    if not errors:
        return None
    return "; ".join((".".join(map(str, e.path)) + ": " if e.path else "") + e.message for e in errors[:5])


def sandbox_tools(entry: dict, channel=None, caller: str = "") -> list[SandboxTool]:
    """The customer tools of one agent entry of the spec, in its `tools` order: python tools run in the code
    runner, http tools through the supervisor (channel)."""
    return [BrokerTool(definition, channel, caller) if definition.get("kind") == "http" else SandboxTool(definition)
            for definition in entry.get("tool_definitions") or []]
