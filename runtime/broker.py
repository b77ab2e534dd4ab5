"""The model broker: the supervisor's side of every model call a task's child makes.

The child holds no key. For each request it sends, the broker rebuilds the LLM messages, calls the
customer's real client (OpenAIChatCompletionClient, or ReplayChatCompletionClient whose position
is kept for the whole task), relays streamed chunks, counts tokens per agent and ends the task
when an agent goes over its max_tokens, or when its customer's monthly token budget is used up.
"""
import ipaddress
import socket
from urllib.parse import urlsplit

from autogen_core.models import CreateResult, LLMMessage
from pydantic import TypeAdapter

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
    """The provider failed: the task ends model_error with this message."""


class BudgetExceeded(Exception):
    """An agent went over its max_tokens, or the customer over its monthly budget: the task ends token_budget."""


def endpoint_refusal(base_url: str) -> str | None:
    """Why the worker must not call this endpoint, or None. Calls leave from the worker, not the sandbox,
    so with MODEL_ENDPOINTS_ALLOW_PRIVATE off a customer cannot aim them at the platform's own network."""
    from django.conf import settings

    if settings.MODEL_ENDPOINTS_ALLOW_PRIVATE or not base_url:
        return None
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"base_url {base_url!r} is not an http(s) URL"
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(parts.hostname, parts.port or 443)}
    except OSError as exc:
        return f"cannot resolve {parts.hostname}: {exc}"
    for address in sorted(addresses):
        if not ipaddress.ip_address(address.split("%")[0]).is_global:
            return f"{parts.hostname} resolves to {address}, a non-public address this platform does not call"
    return None


def build_client(config: dict):
    """config: {id, name, provider, model, base_url, api_key (plain), model_info, responses}."""
    if config["provider"] == "replay":
        from autogen_ext.models.replay import ReplayChatCompletionClient

        info = {**REPLAY_MODEL_INFO, **(config.get("model_info") or {})}
        return ReplayChatCompletionClient([str(r) for r in config.get("responses") or []], model_info=info)
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
        return OpenAIChatCompletionClient(**kwargs)
    raise ModelFailed(f"Unknown model provider {config['provider']!r}")


class ModelBroker:
    def __init__(self, configs: dict[int, dict], budgets: dict[int, int], monthly_left=None):
        """configs: model config id -> config; budgets: agent id -> max_tokens.

        monthly_left(task_tokens) -> int, awaited before and after each call: records the task's
        tokens so far and returns what is left of the customer's monthly budget (<= 0: used up).
        """
        self.providers = {mid: c["provider"] for mid, c in configs.items()}
        self.names = {mid: c.get("name", str(mid)) for mid, c in configs.items()}
        self.clients = {}
        for mid, config in configs.items():
            try:
                self.clients[mid] = build_client(config)
            except ModelFailed:
                raise
            except Exception as exc:  # noqa: BLE001 - any construction failure is the configuration's
                raise ModelFailed(f"Model {self.names[mid]!r} cannot be used: {exc}") from exc
        self.budgets = budgets
        self.monthly_left = monthly_left
        self.used_by_agent: dict[int, int] = {}
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.calls = 0

    def model_infos(self) -> dict[str, dict]:
        return {str(mid): dict(client.model_info) for mid, client in self.clients.items()}

    async def call(self, request: dict, on_chunk) -> CreateResult:
        """Answer one request from the child; on_chunk(text) is awaited for each streamed chunk."""
        client = self.clients.get(request.get("model"))
        if client is None:
            raise ModelFailed(f"Model configuration {request.get('model')} is not available to this task")
        kwargs = {
            "tools": request.get("tools") or [],
            "json_output": request.get("json_output"),
            "extra_create_args": {k: v for k, v in (request.get("extra_create_args") or {}).items() if k in ALLOWED_EXTRA_ARGS},
        }
        if request.get("tool_choice") in ("auto", "required", "none") and kwargs["tools"]:
            kwargs["tool_choice"] = request["tool_choice"]
        await self._check_monthly(before=True)
        try:
            messages = _MESSAGES.validate_python(request.get("messages") or [])
            result = None
            if request.get("stream"):
                if self.providers[request["model"]] == "openai":
                    kwargs["include_usage"] = True
                async for item in client.create_stream(messages, **kwargs):
                    if isinstance(item, str):
                        await on_chunk(item)
                    else:
                        result = item
                if result is None:
                    raise ModelFailed("The model's stream ended without a result")
            else:
                result = await client.create(messages, **kwargs)
        except ModelFailed:
            raise
        except Exception as exc:  # noqa: BLE001 - the provider's message is what the customer needs
            raise ModelFailed(f"{self.names.get(request['model'], 'model')}: {exc}") from exc
        self._account(request.get("agent"), result)
        await self._check_monthly(before=False)
        return result

    async def _check_monthly(self, *, before: bool) -> None:
        if self.monthly_left is None:
            return
        left = await self.monthly_left(self.prompt_tokens + self.completion_tokens)
        # Before a call, nothing left refuses it; after one, only going over ends the task.
        if left < 0 or (before and left == 0):
            raise BudgetExceeded("The customer's monthly token budget is used up")

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

    async def close(self) -> None:
        for client in self.clients.values():
            try:
                await client.close()
            except Exception:  # noqa: BLE001 - closing is best effort
                pass


def preload() -> None:
    """Import the provider clients once in the worker, so that every forked work-horse starts warm."""
    import autogen_ext.models.openai  # noqa: F401
    import autogen_ext.models.replay  # noqa: F401
