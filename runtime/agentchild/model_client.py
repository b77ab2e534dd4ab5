"""The child's model client: a ChatCompletionClient with no key and no network; every request goes to the
supervisor's model broker (runtime/broker.py) over the task's channel.

The supervisor holds the customer's real model client and credentials, counts tokens, enforces
the agent's budget and answers with the CreateResult (streamed chunk by chunk when asked).
"""
from typing import Any, AsyncGenerator, Literal, Mapping, Optional, Sequence, Union

from autogen_core import CancellationToken
from autogen_core.models import ChatCompletionClient, CreateResult, LLMMessage, ModelInfo, RequestUsage
from autogen_core.tools import Tool, ToolSchema
from pydantic import BaseModel

from .channel import Channel


class ModelCallFailed(Exception):
    """The supervisor could not get an answer from the provider."""


def _tool_schema(tool) -> dict:
    return dict(tool.schema) if isinstance(tool, Tool) else dict(tool)


class BrokerChatCompletionClient(ChatCompletionClient):
    def __init__(self, channel: Channel, *, caller: str, agent: int | None, model: int, model_info: dict):
        self._channel = channel
        self._caller = caller
        self._agent = agent
        self._model = model
        self._model_info = ModelInfo(**model_info)
        self._last = RequestUsage(prompt_tokens=0, completion_tokens=0)
        self._total = RequestUsage(prompt_tokens=0, completion_tokens=0)

    def _request(self, messages, tools, tool_choice, json_output, extra_create_args, stream: bool) -> dict:
        if isinstance(tool_choice, Tool):
            tool_choice = "required"
        return {
            "op": "model",
            "caller": self._caller,
            "agent": self._agent,
            "model": self._model,
            "stream": stream,
            "messages": [m.model_dump(mode="json") for m in messages],
            "tools": [_tool_schema(t) for t in tools],
            "tool_choice": tool_choice,
            "json_output": bool(json_output) if json_output is not None else None,
            "extra_create_args": dict(extra_create_args),
        }

    def _account(self, result: CreateResult) -> CreateResult:
        self._last = result.usage
        self._total = RequestUsage(
            prompt_tokens=self._total.prompt_tokens + result.usage.prompt_tokens,
            completion_tokens=self._total.completion_tokens + result.usage.completion_tokens,
        )
        return result

    async def _call(self, request: dict, cancellation_token: Optional[CancellationToken]):
        request_id, replies = self._channel.new_request()
        try:
            await self._channel.send({**request, "id": request_id})
            while True:
                reply = await replies.get()
                if reply["op"] == "model_error":
                    raise ModelCallFailed(reply.get("message") or "model call failed")
                yield reply
                if reply["op"] == "model_result":
                    return
        finally:
            self._channel.end_request(request_id)

    async def create(
        self,
        messages: Sequence[LLMMessage],
        *,
        tools: Sequence[Tool | ToolSchema] = [],
        tool_choice: Tool | Literal["auto", "required", "none"] = "auto",
        json_output: Optional[bool | type[BaseModel]] = None,
        extra_create_args: Mapping[str, Any] = {},
        cancellation_token: Optional[CancellationToken] = None,
    ) -> CreateResult:
        request = self._request(messages, tools, tool_choice, json_output, extra_create_args, stream=False)
        async for reply in self._call(request, cancellation_token):
            if reply["op"] == "model_result":
                return self._account(CreateResult.model_validate(reply["result"]))
        raise ModelCallFailed("no answer from the model broker")

    async def create_stream(
        self,
        messages: Sequence[LLMMessage],
        *,
        tools: Sequence[Tool | ToolSchema] = [],
        tool_choice: Tool | Literal["auto", "required", "none"] = "auto",
        json_output: Optional[bool | type[BaseModel]] = None,
        extra_create_args: Mapping[str, Any] = {},
        cancellation_token: Optional[CancellationToken] = None,
    ) -> AsyncGenerator[Union[str, CreateResult], None]:
        request = self._request(messages, tools, tool_choice, json_output, extra_create_args, stream=True)
        async for reply in self._call(request, cancellation_token):
            if reply["op"] == "model_chunk":
                yield reply["text"]
            elif reply["op"] == "model_result":
                yield self._account(CreateResult.model_validate(reply["result"]))

    async def close(self) -> None:
        pass

    def actual_usage(self) -> RequestUsage:
        return self._last

    def total_usage(self) -> RequestUsage:
        return self._total

    def count_tokens(self, messages: Sequence[LLMMessage], *, tools: Sequence[Tool | ToolSchema] = []) -> int:
        # An estimate (about four characters a token): the supervisor counts the real usage.
        return sum(len(str(getattr(m, "content", ""))) for m in messages) // 4 + 1

    def remaining_tokens(self, messages: Sequence[LLMMessage], *, tools: Sequence[Tool | ToolSchema] = []) -> int:
        return 1_000_000

    @property
    def capabilities(self):  # deprecated in AutoGen, still abstract
        return self._model_info

    @property
    def model_info(self) -> ModelInfo:
        return self._model_info
