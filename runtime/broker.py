"""The model broker: the supervisor's side of every model call a task's child makes.

The child holds no key. For each request it sends, the broker rebuilds the LLM messages, calls the
customer's real client (OpenAIChatCompletionClient, or ReplayChatCompletionClient whose position
is kept for the whole task), relays streamed chunks, counts tokens per agent and ends the task
when an agent goes over its max_tokens, or when its customer's monthly token budget is used up.
"""
import asyncio
import ipaddress
import json
import socket
from urllib.parse import urlsplit

from autogen_core.models import CreateResult, LLMMessage
from pydantic import TypeAdapter

from .telemetry import ObservedClient
from .model_check import describe_failure, endpoint_of

_MESSAGES = TypeAdapter(list[LLMMessage])

REPLAY_MODEL_INFO = {
    "vision": False,
    "function_calling": True,
    "json_output": True,
    "family": "unknown",
    "structured_output": False,
}
# What a child may pass through to the provider (never the model name, key or endpoint).
ALLOWED_EXTRA_ARGS = {
    "temperature", "top_p", "max_tokens", "stop", "seed", "presence_penalty", "frequency_penalty",
    "response_format", "parallel_tool_calls",
}


class ModelFailed(Exception):
    """The provider failed: the task ends model_error with this message (naming the endpoint and the cause)."""


class BudgetExceeded(Exception):
    """An agent went over its max_tokens, or the customer over its monthly budget: the task ends token_budget."""


def endpoint_refusal(base_url: str) -> str | None:
    """Why the worker must not call this endpoint, or None. Calls leave from the worker, not the sandbox,
    so with MODEL_ENDPOINTS_ALLOW_PRIVATE off a customer cannot aim them at the platform's own network."""
    from django.conf import settings

    if settings.MODEL_ENDPOINTS_ALLOW_PRIVATE or not base_url:
        return None
    return public_addresses(base_url)[0]


def public_addresses(url: str, *, allow_private: bool = False) -> tuple[str | None, list[str]]:
    """(why the platform must not call this http(s) URL or None, the addresses its host resolves to).

    Shared by model endpoints and webhook deliveries: every address the name resolves to must be
    public (unless allow_private), and a caller that connects to one of the returned addresses itself
    cannot be turned to a private one by a second, different DNS answer."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{url!r} is not an http(s) URL", []
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except (OSError, ValueError) as exc:
        return f"cannot resolve {parts.hostname}: {exc}", []
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    if not allow_private:
        for address in sorted(addresses):
            if not ipaddress.ip_address(address.split("%")[0]).is_global:
                return f"{parts.hostname} resolves to {address}, a non-public address this platform does not call", []
    return None, addresses


def build_client(config: dict, *, max_retries: int | None = None):
    """config: {id, name, provider, model, base_url, api_key (plain), model_info, responses}.
    max_retries: the OpenAI client's retries of a failed request (None: its default)."""
    if config["provider"] == "replay":
        from autogen_ext.models.replay import ReplayChatCompletionClient

        info = {**REPLAY_MODEL_INFO, **(config.get("model_info") or {})}
        responses = [replay_response(str(r), i) for i, r in enumerate(config.get("responses") or [])]
        return ReplayChatCompletionClient(responses, model_info=info)
    if config["provider"] == "openai":
        from autogen_ext.models.openai import OpenAIChatCompletionClient

        if config.get("api_key") is None:
            raise ModelFailed(f"The API key of model {config.get('name')!r} cannot be decrypted: set it again")
        refusal = endpoint_refusal(config.get("base_url") or "")
        if refusal:
            raise ModelFailed(f"Model {config.get('name')!r}: {refusal}")
        kwargs = {"model": config["model"], "api_key": config["api_key"] or "missing-api-key"}
        if config.get("base_url"):
            kwargs["base_url"] = config["base_url"]
        if config.get("model_info"):
            kwargs["model_info"] = {**REPLAY_MODEL_INFO, "function_calling": True, **config["model_info"]}
        if max_retries is not None:
            kwargs["max_retries"] = max_retries
        return OpenAIChatCompletionClient(**kwargs)
    raise ModelFailed(f"Unknown model provider {config['provider']!r}")


def replay_response(text: str, position: int):
    """A replay answer: the text itself, or, for a text that is the JSON object {"tool_calls": [{"name", "arguments"}]}
    (the test stub's convention), a scripted tool call, so that a demo agent on a replay model really calls its tool."""
    stripped = text.strip()
    if not (stripped.startswith("{") and '"tool_calls"' in stripped):
        return text
    try:
        calls = json.loads(stripped).get("tool_calls")
    except (ValueError, AttributeError):
        return text
    if not (isinstance(calls, list) and calls and all(isinstance(c, dict) and isinstance(c.get("name"), str)
                                                      for c in calls)):
        return text
    from autogen_core import FunctionCall
    from autogen_core.models import RequestUsage

    return CreateResult(
        finish_reason="function_calls",
        content=[FunctionCall(id=f"replay-{position}-{i}", name=c["name"], arguments=json.dumps(c.get("arguments") or {}))
                 for i, c in enumerate(calls)],
        usage=RequestUsage(prompt_tokens=0, completion_tokens=max(1, len(stripped) // 4)),
        cached=False,
    )


class ClientCache:
    """The provider clients of one worker, shared by its tasks: one per distinct configuration (its own
    HTTP connection pool and TLS context), not one per task. Replay clients keep a position, so each task
    gets its own. Idle clients beyond IDLE_CLIENTS are closed, oldest first."""

    IDLE_CLIENTS = 64

    def __init__(self):
        self._clients: dict[str, object] = {}
        self._users: dict[str, int] = {}
        self._idle: list[str] = []

    @staticmethod
    def key(config: dict) -> str:
        fields = ("provider", "model", "base_url", "api_key", "model_info")
        return json.dumps({k: config.get(k) for k in fields}, sort_keys=True, default=str)

    def acquire(self, config: dict):
        if config["provider"] == "replay":
            return build_client(config), None
        key = self.key(config)
        client = self._clients.get(key)
        if client is None:
            client = self._clients[key] = build_client(config)
        self._users[key] = self._users.get(key, 0) + 1
        if key in self._idle:
            self._idle.remove(key)
        return client, key

    async def release(self, key: str | None) -> None:
        if key is None or key not in self._users:
            return
        self._users[key] -= 1
        if self._users[key] > 0:
            return
        del self._users[key]
        self._idle.append(key)
        while len(self._idle) > self.IDLE_CLIENTS:
            await _close(self._clients.pop(self._idle.pop(0)))

    async def release_all(self, keys: list) -> None:
        for key in keys:
            await self.release(key)

    async def close(self) -> None:
        clients, self._clients, self._users, self._idle = list(self._clients.values()), {}, {}, []
        for client in clients:
            await _close(client)


class _Waiting:
    """Bounds each wait for the provider (MODEL_CALL_TIMEOUT_SECONDS) and reports a long one once."""

    def __init__(self, on_waiting, content: dict):
        from django.conf import settings

        self.timeout = settings.MODEL_CALL_TIMEOUT_SECONDS
        self.after = settings.MODEL_WAITING_SECONDS
        self.on_waiting, self.content = on_waiting, content
        self.reported = False
        self.handle = None

    async def bounded(self, awaitable):
        if self.on_waiting is not None and not self.reported:
            loop = asyncio.get_running_loop()
            self.handle = loop.call_later(self.after, self._report)
        try:
            async with asyncio.timeout(self.timeout):  # one timer, no task per chunk (unlike wait_for)
                return await awaitable
        finally:
            self.done()

    def _report(self) -> None:
        self.reported, self.handle = True, None
        try:
            self.on_waiting({**self.content, "waited_seconds": self.after, "timeout_seconds": self.timeout})
        except Exception:  # noqa: BLE001 - a report must never break the call
            pass

    def done(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None


async def _aclose(stream) -> None:
    try:
        await stream.aclose()
    except Exception:  # noqa: BLE001 - a stream cut short (a timeout) closes as best it can
        pass


async def _close(client) -> None:
    try:
        await client.close()
    except Exception:  # noqa: BLE001 - closing is best effort
        pass


def estimate_tokens(messages: list, tools: list) -> int:
    """A request's prompt size in tokens, before it is sent: about four characters a token of its JSON
    (no tokenizer file is needed, so it works offline and for every provider)."""
    size = len(json.dumps(messages, separators=(",", ":"), default=str)) + len(json.dumps(tools, separators=(",", ":"), default=str))
    return size // 4 + 1


class ModelBroker:
    def __init__(self, configs: dict[int, dict], budgets: dict[int, int], monthly_left=None, clients: ClientCache | None = None):
        """configs: model config id -> config; budgets: agent id -> max_tokens (0: none).

        monthly_left(task_tokens) -> int, awaited before and after each call: records the task's
        tokens so far and returns what is left of the customer's monthly budget (<= 0: used up).
        clients: the worker's shared provider clients (None: this broker's own).
        """
        self.providers = {mid: c["provider"] for mid, c in configs.items()}
        self.names = {mid: c.get("name", str(mid)) for mid, c in configs.items()}
        self.endpoints = {mid: endpoint_of(c) for mid, c in configs.items()}
        self.cache = clients if clients is not None else ClientCache()
        self.budgets = budgets
        self.monthly_left = monthly_left
        self.used_by_agent: dict[int, int] = {}
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.calls = 0
        self.error: ModelFailed | None = None  # a client that could not be built: the task ends model_error
        self.clients = {}
        self._keys: list[str | None] = []  # what close() gives back to the cache (also after a failure here)
        for mid, config in configs.items():
            try:
                client, key = self.cache.acquire(config)
                self._keys.append(key)
                self.clients[mid] = ObservedClient(client, config)  # each call counted (and traced)
            except ModelFailed as exc:
                self.error = exc
                return
            except Exception as exc:  # noqa: BLE001 - any construction failure is the configuration's
                self.error = ModelFailed(f"Model {self.names[mid]!r} cannot be used: {exc}")
                return

    def model_infos(self) -> dict[str, dict]:
        return {str(mid): dict(client.model_info) for mid, client in self.clients.items()}

    def tokens_left(self, agent_id) -> int | None:
        """What the task (and the calling agent) may still spend; None: no limit."""
        used = self.prompt_tokens + self.completion_tokens
        left = []
        total_budget = sum(self.budgets.values())
        if total_budget:
            left.append(total_budget - used)
        budget = self.budgets.get(agent_id)
        if budget:
            left.append(budget - self.used_by_agent.get(agent_id, 0))
        return min(left) if left else None

    async def call(self, request: dict, on_chunk, on_waiting=None) -> CreateResult:
        """Answer one request from the child; on_chunk(text) is awaited for each streamed chunk.

        Each wait for the provider (the answer, or the next streamed chunk) is bounded by
        MODEL_CALL_TIMEOUT_SECONDS; on_waiting(content) is called once when a wait passes
        MODEL_WAITING_SECONDS, so a stuck endpoint shows in the task's stream while it waits."""
        client = self.clients.get(request.get("model"))
        if client is None:
            raise ModelFailed(f"Model configuration {request.get('model')} is not available to this task")
        raw_messages, tools = request.get("messages") or [], request.get("tools") or []
        extra = {k: v for k, v in (request.get("extra_create_args") or {}).items() if k in ALLOWED_EXTRA_ARGS}
        kwargs = {"tools": tools, "json_output": request.get("json_output"), "extra_create_args": extra}
        if request.get("tool_choice") in ("auto", "required", "none") and tools:
            kwargs["tool_choice"] = request["tool_choice"]
        monthly = await self._check_monthly(before=True)
        # The budget is checked before the call with the request's size, and the completion capped to
        # what is left: one call can never spend far past a budget.
        left = [n for n in (self.tokens_left(request.get("agent")), monthly) if n is not None]
        if left:
            prompt = estimate_tokens(raw_messages, tools)
            room = min(left) - prompt
            if room <= 0:
                raise BudgetExceeded(
                    f"The next model call needs about {prompt} prompt tokens; the task has {min(left)} tokens left of its budget"
                )
            if self.providers[request["model"]] == "openai":
                requested = extra.get("max_tokens")
                extra["max_tokens"] = min(int(requested), room) if isinstance(requested, int) and requested > 0 else room
        waiting = _Waiting(on_waiting, {"model": self.names.get(request["model"], "model"),
                                        "endpoint": self.endpoints.get(request["model"], "")})
        try:
            messages = _MESSAGES.validate_python(raw_messages)
            result = None
            if request.get("stream"):
                if self.providers[request["model"]] == "openai":
                    kwargs["include_usage"] = True
                stream = client.create_stream(messages, **kwargs).__aiter__()
                try:
                    while True:
                        try:
                            item = await waiting.bounded(stream.__anext__())
                        except StopAsyncIteration:
                            break
                        if isinstance(item, str):
                            await on_chunk(item)
                        else:
                            result = item
                finally:
                    await _aclose(stream)
                if result is None:
                    raise ModelFailed("The model's stream ended without a result")
            else:
                result = await waiting.bounded(client.create(messages, **kwargs))
        except ModelFailed:
            raise
        except Exception as exc:  # noqa: BLE001 - the endpoint and the cause are what the customer needs
            failure = describe_failure(exc, timeout_seconds=waiting.timeout)
            raise ModelFailed(failure.message(self.names.get(request["model"], "model"),
                                              self.endpoints.get(request["model"], ""))) from exc
        finally:
            waiting.done()
        self._account(request.get("agent"), result)
        await self._check_monthly(before=False)
        return result

    async def _check_monthly(self, *, before: bool) -> int | None:
        if self.monthly_left is None:
            return None
        left = await self.monthly_left(self.prompt_tokens + self.completion_tokens)
        # Before a call, nothing left refuses it; after one, only going over ends the task.
        if left < 0 or (before and left == 0):
            raise BudgetExceeded("The customer's monthly token budget is used up")
        return left

    def _account(self, agent_id, result: CreateResult) -> None:
        self.calls += 1
        prompt, completion = int(result.usage.prompt_tokens or 0), int(result.usage.completion_tokens or 0)
        self.prompt_tokens += prompt
        self.completion_tokens += completion
        # The whole task is held to the sum of its agents' budgets, whoever the child says called.
        total_budget = sum(self.budgets.values())
        if total_budget and self.prompt_tokens + self.completion_tokens > total_budget:
            raise BudgetExceeded(f"The task used {self.prompt_tokens + self.completion_tokens} tokens, over its budget of {total_budget}")
        if agent_id not in self.budgets:
            return
        used = self.used_by_agent.get(agent_id, 0) + prompt + completion
        self.used_by_agent[agent_id] = used
        budget = self.budgets.get(agent_id)
        if budget and used > budget:
            raise BudgetExceeded(f"The agent used {used} tokens, over its budget of {budget}")

    def snapshot(self) -> dict:
        """What a run that stops to ask a person must carry to its resumption: the tokens counted so far
        and where each replay script stands (a new sandbox gets fresh clients)."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "used_by_agent": {str(k): v for k, v in self.used_by_agent.items()},
            "replay_positions": {
                str(mid): int(getattr(client, "_current_index", 0))
                for mid, client in self.clients.items() if self.providers.get(mid) == "replay"
            },
        }

    def restore(self, snapshot: dict | None) -> None:
        """Continue from a snapshot() taken before the run stopped to ask a person."""
        if not snapshot:
            return
        self.prompt_tokens = int(snapshot.get("prompt_tokens") or 0)
        self.completion_tokens = int(snapshot.get("completion_tokens") or 0)
        for key, used in (snapshot.get("used_by_agent") or {}).items():
            agent_id = int(key) if str(key).isdigit() else key
            self.used_by_agent[agent_id] = int(used)
        for key, position in (snapshot.get("replay_positions") or {}).items():
            client = self.clients.get(int(key)) if str(key).isdigit() else None
            if client is not None and self.providers.get(int(key)) == "replay":
                # the provider client itself, not the measuring wrapper around it (telemetry.ObservedClient):
                # setting an attribute on the wrapper would not move the script
                getattr(client, "_client", client)._current_index = int(position)

    async def close(self) -> None:
        for mid, client in self.clients.items():
            if self.providers.get(mid) == "replay":
                await _close(client)
        keys, self._keys = self._keys, []
        await self.cache.release_all(keys)


def preload() -> None:
    """Import the provider clients once in the worker, so that every forked work-horse starts warm."""
    import autogen_ext.models.openai  # noqa: F401
    import autogen_ext.models.replay  # noqa: F401
