"""What the runtime tells the operator about a task while it runs: model-call metrics and, with
tracing on, the task's spans (autogen_platform.metrics and autogen_platform.tracing do the rest).

ObservedClient wraps a provider client: every call the broker makes is counted by provider and
outcome (ok, error, timeout, cancelled) with its latency and tokens (also per customer), and is a
`chat {model}` span with the GenAI semantic conventions' attributes (gen_ai.system,
gen_ai.request.model, gen_ai.usage.input_tokens/output_tokens, ...), under the calling agent's turn;
the provider client's HTTP requests (httpx2, instrumented by autogen_platform.tracing) are its children.

TaskTrace continues a task's trace in the worker (the traceparent stored on its row by the API):
one `task.run` span from the task's creation to its stored end, with children for the queue wait,
the sandbox spawn, each agent turn (`invoke_agent {agent}`), each model call and each tool call
(`execute_tool {tool}`, code runs included). Turns and tool calls are derived here from the events
the child reports, rather than relayed from autogen-core's own spans in the child: the child is the
tenant's code and holds no network; relaying its spans would add a protocol operation whose content
an attacker controls straight into the operator's tracing backend, and the events already carry
what the spans would (who spoke, which tool, with what result). The spans a child can cause are
bounded per task (MAX_SPANS). With tracing off the runtime gets NO_TRACE, whose methods do nothing.
"""
import contextvars
import time
from urllib.parse import urlsplit

from autogen_platform import metrics, tracing

# The span a model call made now belongs under (its agent's turn); set in each model call's asyncio task.
MODEL_CALL_PARENT: contextvars.ContextVar = contextvars.ContextVar("model_call_parent", default=None)
# The customer whose task makes the model call (its tokens are counted per customer); set alongside.
MODEL_CALL_CUSTOMER: contextvars.ContextVar = contextvars.ContextVar("model_call_customer", default=None)
# Spans one task's child can cause at most (turns and tool calls; a flooding child makes no more).
MAX_SPANS = 1000
NAME_MAX = 120


def _outcome(exc: BaseException) -> str:
    import asyncio

    if isinstance(exc, (asyncio.CancelledError, GeneratorExit)):
        return "cancelled"
    if isinstance(exc, TimeoutError) or "Timeout" in type(exc).__name__:
        return "timeout"
    return "error"


class ObservedClient:
    """A provider client (OpenAIChatCompletionClient, ReplayChatCompletionClient) whose calls are measured."""

    def __init__(self, client, config: dict):
        self._client = client
        self.provider = str(config.get("provider") or "")
        self.model = str(config.get("model") or config.get("provider") or "model")[:NAME_MAX]
        parts = urlsplit(config.get("base_url") or "")
        self.server = (parts.hostname, parts.port) if parts.hostname else None

    def __getattr__(self, name):
        return getattr(self._client, name)

    async def create(self, messages, **kwargs):
        call = _ModelCall(self)
        try:
            token = call.enter()
            try:
                result = await self._client.create(messages, **kwargs)
            finally:
                call.leave(token)
        except BaseException as exc:
            call.end(exc=exc)
            raise
        call.end(result=result)
        return result

    async def create_stream(self, messages, **kwargs):
        call = _ModelCall(self)
        result = None
        try:
            items = self._client.create_stream(messages, **kwargs).__aiter__()
            while True:
                # the span is current only while the provider client runs, never across a yield to the caller
                token = call.enter()
                try:
                    item = await items.__anext__()
                except StopAsyncIteration:
                    break
                finally:
                    call.leave(token)
                if not isinstance(item, str):
                    result = item
                yield item
        except BaseException as exc:  # GeneratorExit too: the caller stopped reading (the task ended)
            call.end(exc=exc)
            raise
        call.end(result=result)


class _ModelCall:
    def __init__(self, client: ObservedClient):
        self.client = client
        self.started = time.monotonic()
        self.customer_id = MODEL_CALL_CUSTOMER.get()
        self.done = False
        self.span = None
        if tracing.active():
            from opentelemetry.trace import SpanKind

            attributes = {
                "gen_ai.operation.name": "chat",
                "gen_ai.system": client.provider,
                "gen_ai.provider.name": client.provider,
                "gen_ai.request.model": client.model,
            }
            if client.server:
                attributes["server.address"] = client.server[0]
                if client.server[1]:
                    attributes["server.port"] = client.server[1]
            self.span = tracing.tracer().start_span(
                f"chat {client.model}", context=MODEL_CALL_PARENT.get(), kind=SpanKind.CLIENT, attributes=attributes
            )

    def enter(self):
        """Make the call's span the current one while the provider client works, so that its HTTP requests
        (httpx2 instrumentation: one per attempt, the client's retries included) are children of it."""
        if self.span is None:
            return None
        from opentelemetry import context, trace

        return context.attach(trace.set_span_in_context(self.span))

    def leave(self, token) -> None:
        if token is not None:
            from opentelemetry import context

            context.detach(token)

    def end(self, result=None, exc: BaseException | None = None) -> None:
        if self.done:
            return
        self.done = True
        outcome = _outcome(exc) if exc is not None else ("ok" if result is not None else "error")
        usage = getattr(result, "usage", None)
        prompt = int(getattr(usage, "prompt_tokens", 0) or 0)
        completion = int(getattr(usage, "completion_tokens", 0) or 0)
        metrics.model_request(self.client.provider, outcome, time.monotonic() - self.started, prompt, completion,
                              customer_id=self.customer_id)
        if self.span is None:
            return
        from opentelemetry.trace import Status, StatusCode

        self.span.set_attribute("gen_ai.usage.input_tokens", prompt)
        self.span.set_attribute("gen_ai.usage.output_tokens", completion)
        finish = getattr(result, "finish_reason", None)
        if finish:
            self.span.set_attribute("gen_ai.response.finish_reasons", [str(finish)])
        if outcome != "ok":
            self.span.set_attribute("error.type", type(exc).__name__ if exc is not None else "no_result")
            self.span.set_status(Status(StatusCode.ERROR, outcome))
        self.span.end()


# -- a task's trace in the worker --------------------------------------------------------------------


class NoTrace:
    """Tracing off: every hook is a no-op."""

    trace_id = None

    def spawned(self, started_ns: int, start: str | None, error: str | None = None) -> None:
        pass

    def model_parent(self, caller: str):
        return None

    def event(self, kind: str, source: str, content) -> None:
        pass

    def kill(self, reason: str) -> None:
        pass

    def end(self, outcome) -> None:
        pass


NO_TRACE = NoTrace()


def task_trace(ctx) -> NoTrace:
    """The trace of a task that starts running now (its queue wait recorded), or NO_TRACE."""
    if not tracing.active():
        return NO_TRACE
    return TaskTrace(ctx)


def _clip(value, n: int = NAME_MAX) -> str:
    return str(value if value is not None else "")[:n]


class TaskTrace(NoTrace):
    def __init__(self, ctx):
        from opentelemetry.trace import SpanKind

        self.tracer = tracing.tracer()
        now = time.time_ns()
        queued = int(ctx.created_at * 1e9) if ctx.created_at else now
        attributes = {"platform.task.id": ctx.task_id, "platform.customer.id": ctx.customer_id}
        if ctx.agent_id is not None:
            attributes["platform.agent.id"] = ctx.agent_id
        self.root = self.tracer.start_span(
            "task.run", context=tracing.context_from(ctx.traceparent), kind=SpanKind.CONSUMER,
            attributes=attributes, start_time=min(queued, now),
        )
        self.trace_id = f"{self.root.get_span_context().trace_id:032x}"
        self.spans = 0
        self.turn = None
        self.turn_source = None
        self.tools: dict[str, object] = {}
        self.last_ns = now
        self._child("task.queue_wait", start_time=min(queued, now)).end(end_time=now)

    def _child(self, name: str, parent=None, **kwargs):
        from opentelemetry import trace

        return self.tracer.start_span(name, context=trace.set_span_in_context(parent or self.root), **kwargs)

    def spawned(self, started_ns: int, start: str | None, error: str | None = None) -> None:
        span = self._child("sandbox.spawn", start_time=started_ns, attributes={"platform.sandbox.start": start or "none"})
        if error:
            self._fail(span, error)
        span.end()
        self.last_ns = time.time_ns()

    def _fail(self, span, message: str) -> None:
        from opentelemetry.trace import Status, StatusCode

        span.set_status(Status(StatusCode.ERROR, _clip(message, 500)))

    def _room(self) -> bool:
        self.spans += 1
        if self.spans > MAX_SPANS:
            self.root.set_attribute("platform.spans_dropped", self.spans - MAX_SPANS)
            return False
        return True

    def _turn_of(self, source: str):
        """The open turn of `source`, opened now if another agent (or nobody) had the turn."""
        source = _clip(source)
        if self.turn is not None and self.turn_source == source:
            return self.turn
        self._end_turn()
        if not self._room():
            return None
        from opentelemetry.trace import SpanKind

        self.turn = self._child(f"invoke_agent {source}", kind=SpanKind.INTERNAL, start_time=self.last_ns, attributes={
            "gen_ai.operation.name": "invoke_agent", "gen_ai.system": "autogen", "gen_ai.agent.name": source,
        })
        self.turn_source = source
        return self.turn

    def _end_turn(self) -> None:
        if self.turn is not None:
            self.turn.end()
            self.turn = self.turn_source = None

    def model_parent(self, caller: str):
        from opentelemetry import trace

        turn = self._turn_of(caller)
        return trace.set_span_in_context(turn or self.root)

    def event(self, kind: str, source: str, content) -> None:
        content = content if isinstance(content, dict) else {}
        if kind == "message":
            if self.turn is not None and self.turn_source == _clip(source):
                self._end_turn()
        elif kind == "tool_call":
            turn = self._turn_of(source)
            if turn is not None and self._room():
                name, call_id = _clip(content.get("name")), _clip(content.get("id"))
                self.tools[call_id] = self._child(f"execute_tool {name}", parent=turn, attributes={
                    "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name, "gen_ai.tool.call.id": call_id,
                })
        elif kind == "tool_result":
            span = self.tools.pop(_clip(content.get("call_id")), None)
            if span is not None:
                if content.get("is_error"):
                    self._fail(span, "the tool reported an error")
                span.end()
        elif kind == "code_execution":
            turn = self._turn_of(source)
            if turn is not None and self._room():
                span = self._child("execute_tool code_execution", parent=turn, start_time=self.last_ns, attributes={
                    "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "code_execution",
                    "platform.exit_code": _clip(content.get("exit_code"), 20),
                })
                if content.get("exit_code") not in (0, "0"):
                    self._fail(span, "the code exited with an error")
                span.end()
        self.last_ns = time.time_ns()

    def kill(self, reason: str) -> None:
        self.root.add_event("sandbox.kill", {"reason": _clip(reason, 40)})

    def end(self, outcome) -> None:
        for span in self.tools.values():
            span.end()
        self.tools.clear()
        self._end_turn()
        self.root.set_attribute("platform.task.status", str(outcome.status))
        code = (outcome.error or {}).get("code")
        if code:
            self.root.set_attribute("platform.task.error_code", str(code))
            self._fail(self.root, (outcome.error or {}).get("message") or str(code))
        self.root.end()
