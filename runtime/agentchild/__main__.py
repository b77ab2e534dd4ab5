"""Entry point of a task's child process: `python -m agentchild` (fd of the channel in AGENTCHILD_FD).

Reads the start message (spec, input, thread state, model capabilities), builds the agent or
team, runs it with run_stream and reports every message and event, then the result and the
state to save on the thread. Holds no secret and touches no database, Redis or network.
"""
import asyncio
import ctypes
import os
import signal
import sys
import traceback
import warnings

from .channel import Channel, die_with_group
from .linux import PR_SET_DUMPABLE, PR_SET_PDEATHSIG


def _harden() -> None:
    """First thing: not dumpable (an exec made us dumpable again), so nothing of the task's but us may
    open /proc/1/mem, ptrace us or pidfd_getfd the broker channel; and no import from the work dir,
    which the code runner writes (`python -m` put it first on sys.path)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    try:
        cwd = os.getcwd()
    except OSError:
        cwd = None
    sys.path[:] = [p for p in sys.path if p not in ("", ".", cwd)]


def _die_with_parent() -> None:
    """Belt and braces next to the channel's EOF: the kernel kills us if the supervisor dies."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() == 1:
            os._exit(70)
    except (OSError, AttributeError):
        pass


def _final_text(result) -> str:
    from autogen_agentchat.messages import BaseChatMessage

    for message in reversed(result.messages):
        if isinstance(message, BaseChatMessage) and message.source != "user":
            return message.to_text()
    return ""


def _swarm_resume(state: dict, text: str, shape: str):
    """A swarm that ended handing off outside the team (to "user") resumes with the person's answer
    handed back to the agent that asked, as AgentChat requires (a HandoffMessage to a member)."""
    from autogen_agentchat.messages import HandoffMessage

    members = shape.split(":", 2)[2].split(",")
    thread = (state.get("agent_states") or {}).get("SwarmGroupChatManager", {}).get("message_thread") or []
    for message in reversed(thread):
        if message.get("type") == "HandoffMessage":
            if message.get("target") not in members and message.get("source") in members:
                return [HandoffMessage(source="user", target=message["source"], content=text)]
            break
    return text


async def run(channel: Channel, start: dict) -> None:
    from . import human
    from .build import build
    from .events import EventMapper

    runnable, shape, names = build(start["spec"], channel, start["models"], stream=start.get("stream", True))
    saved = start.get("state")
    resume = start.get("resume")
    if saved:
        if saved.get("shape") == shape:
            await human.load_state(runnable, saved["state"], resume["pending"] if resume else None)
        elif resume:
            raise RuntimeError("The state saved while the task waited for input does not fit its agents any more")
        else:
            await channel.send(
                {"op": "event", "type": "log", "source": "platform",
                 "content": {"kind": "state_not_loaded", "text": "The thread's saved conversation belongs to another agent or team shape; starting fresh."}}
            )
    mapper = EventMapper(names)
    # a swarm resumed on its thread goes back to the agent that handed off to the user
    if saved and not resume and saved.get("shape") == shape and shape.startswith("team:swarm:"):
        start = {**start, "input": _swarm_resume(saved["state"], start["input"], shape)}
    # runs to the end, or stops when an agent asks a person (the question and the state are sent)
    result = await human.run_or_ask(channel, runnable, shape, start, mapper, names)
    if result is human.ASKED:
        return
    state = await runnable.save_state()
    await channel.send(
        {
            "op": "done",
            "result": {"text": _final_text(result) if result else "", "stop_reason": (result.stop_reason if result else None) or "completed"},
            "state": {"shape": shape, "state": state},
        }
    )


def error_message(exc: BaseException) -> str:
    """`Type: text`; an exception without text (an `assert` in AgentChat) says where it was raised instead,
    so that the task's error names the part that failed."""
    text = str(exc).strip()
    if text:
        return f"{type(exc).__name__}: {text}"
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return type(exc).__name__
    frame = frames[-1]
    where = frame.filename.split("site-packages/", 1)[-1]
    line = f": {frame.line}" if frame.line else ""
    return f"{type(exc).__name__} in {where}, line {frame.lineno}, in {frame.name}{line}"


async def main() -> None:
    _harden()
    channel = Channel(int(os.environ["AGENTCHILD_FD"]))
    start = await channel.open()
    try:
        await run(channel, start)
    except MemoryError:
        await channel.send({"op": "error", "code": "memory_limit", "message": "The task ran out of memory"})
    except Exception as exc:  # noqa: BLE001 - every failure of the agent is reported, then we exit
        traceback.print_exc(file=sys.stderr)
        await channel.send({"op": "error", "code": "agent_error", "message": error_message(exc)})
    # Wait for the supervisor to read our report and close the channel (the reader then ends us).
    await asyncio.sleep(30)
    die_with_group()


if __name__ == "__main__":
    _die_with_parent()
    warnings.simplefilter("ignore")
    asyncio.run(main())
