"""AgentChat messages and events -> the platform's task event types (message, tool_call, ...)."""
import json

from autogen_agentchat.messages import (
    BaseChatMessage,
    CodeExecutionEvent,
    CodeGenerationEvent,
    ModelClientStreamingChunkEvent,
    SelectSpeakerEvent,
    ThoughtEvent,
    ToolCallExecutionEvent,
    ToolCallRequestEvent,
)


# Events are for people and the database: long texts are cut (the agents still see them whole).
MAX_TEXT = 64 * 1024


def _clip(text) -> str:
    text = text if isinstance(text, str) else str(text)
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + f"\n[... {len(text) - MAX_TEXT} more characters]"


def _arguments(raw: str):
    try:
        return json.loads(raw)
    except (TypeError, ValueError):
        return raw


def _usage(message) -> dict | None:
    usage = getattr(message, "models_usage", None)
    if usage is None:
        return None
    return {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens}


class EventMapper:
    def __init__(self, names: dict | None = None):
        self._last_code: dict[str, str] = {}
        self._names = names or {}

    def map(self, message) -> list[dict]:
        source = getattr(message, "source", "") or ""
        source = self._names.get(source, source)
        if isinstance(message, ModelClientStreamingChunkEvent):
            return []  # the supervisor streams tokens live as it relays them
        if isinstance(message, ToolCallRequestEvent):
            calls = [
                {"type": "tool_call", "source": source, "content": {"id": c.id, "name": c.name, "arguments": _arguments(c.arguments)}}
                for c in message.content
            ]
            usage = _usage(message)
            if usage and calls:  # the model call that asked for the tools: its tokens, once
                calls[0]["content"]["models_usage"] = usage
            return calls
        if isinstance(message, ToolCallExecutionEvent):
            return [
                {
                    "type": "tool_result",
                    "source": source,
                    "content": {"call_id": r.call_id, "name": r.name, "content": _clip(r.content), "is_error": bool(r.is_error)},
                }
                for r in message.content
            ]
        if isinstance(message, CodeGenerationEvent):
            self._last_code[source] = message.content
            return []
        if isinstance(message, CodeExecutionEvent):
            return [
                {
                    "type": "code_execution",
                    "source": source,
                    "content": {
                        "code": _clip(self._last_code.pop(source, "")),
                        "output": _clip(message.result.output),
                        "exit_code": message.result.exit_code,
                    },
                }
            ]
        if isinstance(message, BaseChatMessage):
            content = {"text": _clip(message.to_text()), "message_type": message.type}
            usage = _usage(message)
            if usage:
                content["models_usage"] = usage
            return [{"type": "message", "source": source, "content": content}]
        if isinstance(message, ThoughtEvent):
            return [{"type": "log", "source": source, "content": {"kind": "thought", "text": _clip(message.content)}}]
        if isinstance(message, SelectSpeakerEvent):
            return [{"type": "log", "source": source, "content": {"kind": "select_speaker", "speakers": list(message.content)}}]
        return [{"type": "log", "source": source, "content": {"kind": getattr(message, "type", type(message).__name__), "text": _clip(message.to_text())}}]
