"""A task's stored events as a transcript people read: one entry per agent message, the tool calls, tool
results and code executions that led to it folded under it, with its time and tokens; status changes,
logs and errors as short lines in between. Every event appears exactly once (its seq is on its element)."""
import json
from dataclasses import dataclass, field
from datetime import datetime

from autogen_platform.markdown import render_markdown
from runtime.outcomes import ErrorCode

FOLDED = ("tool_call", "tool_result", "code_execution")
# What each end of a run means, for people (error codes of the contract).
ERROR_EXPLANATIONS = {
    ErrorCode.TIMEOUT: "The run took longer than its time limit (the agent's timeout_seconds or the team's termination).",
    ErrorCode.MEMORY_LIMIT: "The sandbox went over the agent's memory limit (memory_mb).",
    ErrorCode.CPU_LIMIT: "The sandbox used more CPU time than the agent's limit (cpu_seconds).",
    ErrorCode.TOKEN_BUDGET: "The run used up its token budget (max_tokens) or the customer's monthly budget.",
    ErrorCode.KILLSWITCH: "A platform operator engaged the killswitch.",
    ErrorCode.CANCELLED: "Someone cancelled the run, or its agent was stopped.",
    ErrorCode.AGENT_ERROR: "The agent itself failed (see the message).",
    ErrorCode.MODEL_ERROR: "The model endpoint failed or refused the call (see the message for the endpoint and cause).",
    ErrorCode.WORKER_LOST: "The worker running the task went away.",
    ErrorCode.SANDBOX_ERROR: "The sandbox could not be started or broke.",
    ErrorCode.OUTPUT_LIMIT: "The run produced more output than the platform keeps.",
    ErrorCode.INPUT_TIMEOUT: "Nobody answered the run's question in time.",
}


@dataclass
class Turn:
    kind: str  # "message", "steps" (folded events with no message after them), "line"
    seq: int
    source: str = ""
    html: str = ""
    text: str = ""
    at: datetime | None = None
    elapsed: float | None = None  # seconds since the previous message (or the run's start)
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    steps: list = field(default_factory=list)
    event_type: str = ""


@dataclass
class Step:
    seq: int
    type: str
    source: str
    at: datetime | None
    title: str = ""
    body: str = ""
    output: str = ""
    exit_code: int | None = None
    is_error: bool = False
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


def _text(content) -> str:
    if isinstance(content, dict) and isinstance(content.get("text"), str):
        return content["text"]
    return json.dumps(content, default=str) if content is not None else ""


def _step(event) -> Step:
    c = event.content or {}
    step = Step(seq=event.seq, type=event.type, source=event.source, at=event.created_at)
    if event.type == "tool_call":
        step.title = f"calls {c.get('name', '?')}"
        step.body = json.dumps(c.get("arguments"), indent=2, default=str)
        usage = c.get("models_usage") or {}
        step.prompt_tokens, step.completion_tokens = usage.get("prompt_tokens"), usage.get("completion_tokens")
    elif event.type == "tool_result":
        step.title = f"{c.get('name', '?')} returned" + (" an error" if c.get("is_error") else "")
        step.body = str(c.get("content", ""))
        step.is_error = bool(c.get("is_error"))
    else:  # code_execution
        step.title = f"ran code (exit {c.get('exit_code')})"
        step.body = str(c.get("code", ""))
        step.output = str(c.get("output", ""))
        step.exit_code = c.get("exit_code")
        step.is_error = c.get("exit_code") not in (0, None)
    return step


def _line(event) -> Turn:
    c = event.content if isinstance(event.content, dict) else {}
    if event.type == "status":
        text = f"status: {c.get('status', '')}" + (f" ({c['reason']})" if c.get("reason") else "")
    elif event.type == "usage":
        text = "usage: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in c.items())
    elif event.type == "error":
        text = f"error {c.get('code', '')}: {c.get('message', '')}"
    elif event.type == "log":
        if c.get("kind") == "select_speaker":
            text = "next speaker: " + ", ".join(map(str, c.get("speakers", [])))
        elif c.get("kind") == "UserInputRequestedEvent":  # AgentChat's user proxy takes its turn
            text = f"{event.source or 'a person'}'s turn: waiting for a person's answer"
        else:
            text = f"{c.get('kind', 'log')}: {c.get('text', '')}"
    elif event.type == "input_request":
        who = c.get("agent") or event.source or "the run"
        text = (f"{who} asks for approval: " if c.get("kind") == "approval" else f"{who} asks: ") + str(c.get("prompt", ""))
    elif event.type == "input_response":
        by = event.source or "someone"
        if c.get("kind") == "approval":
            text = f"{'approved' if c.get('approve') else 'denied'} by {by}"
        else:
            text = f"answered by {by}: {c.get('text', '')}"
    else:
        text = f"{event.type}: {_text(event.content)}"
    return Turn(kind="line", seq=event.seq, source=event.source, text=text, at=event.created_at, event_type=event.type)


def build_transcript(events, started_at=None) -> list[Turn]:
    """Events in seq order -> turns in order. Folded events wait for the next message of their source."""
    turns: list[Turn] = []
    pending: dict[str, list[Step]] = {}
    previous = started_at
    for event in events:
        if event.type in FOLDED:
            pending.setdefault(event.source, []).append(_step(event))
            continue
        if event.type == "message":
            c = event.content if isinstance(event.content, dict) else {}
            usage = c.get("models_usage") or {}
            elapsed = (event.created_at - previous).total_seconds() if previous and event.created_at else None
            previous = event.created_at
            text = _text(event.content)
            turns.append(Turn(
                kind="message", seq=event.seq, source=event.source, html=render_markdown(text), text=text,
                at=event.created_at, elapsed=elapsed, prompt_tokens=usage.get("prompt_tokens"),
                completion_tokens=usage.get("completion_tokens"), steps=pending.pop(event.source, []),
                event_type="message",
            ))
            continue
        turns.append(_line(event))
    # Steps no message followed (yet: the run goes on, or it ended in between), in their own entries.
    for source, steps in pending.items():
        turns.append(Turn(kind="steps", seq=steps[0].seq, source=source, steps=steps, at=steps[0].at))
    return turns


def shown_seqs(turns) -> list[int]:
    seqs = []
    for turn in turns:
        if turn.kind != "steps":
            seqs.append(turn.seq)
        seqs += [s.seq for s in turn.steps]
    return sorted(seqs)
