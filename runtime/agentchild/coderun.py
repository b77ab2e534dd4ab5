"""The agent's code executor: the code is run by the sandbox's code runner, never by this process.

The launcher started the runner (runtime/sandbox/coderunner.py) beside us under the task's second
uid, holding nothing but its end of a socket; ours is AGENTCHILD_RUNNER_FD. This executor sends the
code blocks there and turns the answer into a CodeResult. The runner's answer is data from the
untrusted side: it is parsed defensively and never interpreted beyond exit code, output and file.
"""
import asyncio
import json
import os
import socket
from typing import List

from autogen_core import CancellationToken
from autogen_core.code_executor import CodeBlock, CodeExecutor, CodeResult

REPLY_LIMIT = 80 << 20  # one answer: the runner keeps 32 MB of output, JSON may escape it


class _Runner:
    """The one connection to the runner, shared by every executor of the task, one run at a time."""

    def __init__(self, fd: int):
        self.fd = fd
        self.lock = asyncio.Lock()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def run(self, blocks: List[CodeBlock], timeout: int, cancellation_token: CancellationToken) -> CodeResult:
        async with self.lock:
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection(sock=socket.socket(fileno=self.fd), limit=REPLY_LIMIT)
            request = {"op": "run", "blocks": [{"language": b.language, "code": b.code} for b in blocks], "timeout": timeout}
            try:
                self.writer.write((json.dumps(request) + "\n").encode())
                await self.writer.drain()
            except (ConnectionError, RuntimeError):
                return CodeResult(exit_code=1, output="The code runner is gone.")
            reply = asyncio.ensure_future(self.reader.readline())
            cancellation_token.link_future(reply)
            try:
                line = await asyncio.shield(reply)
            except asyncio.CancelledError:
                # Stop the run, and read its answer so the next run gets its own.
                try:
                    self.writer.write(b'{"op": "cancel"}\n')
                    await self.writer.drain()
                    if not reply.done():  # we were cancelled, the read goes on: its answer comes now
                        await asyncio.wait_for(reply, 5)
                    elif reply.cancelled():  # the token cancelled the read itself
                        await asyncio.wait_for(self.reader.readline(), 5)
                except Exception:  # noqa: BLE001
                    pass
                raise
            except (ValueError, ConnectionError, asyncio.LimitOverrunError):
                return CodeResult(exit_code=1, output="The code runner sent an answer over the size limit.")
            return _result(line)


    async def call(self, request: dict) -> dict:
        """One request that is not a run (pack, unpack): its answer, {} when there is none."""
        async with self.lock:
            try:
                if self.writer is None:
                    self.reader, self.writer = await asyncio.open_connection(sock=socket.socket(fileno=self.fd),
                                                                             limit=REPLY_LIMIT)
                self.writer.write((json.dumps(request) + "\n").encode())
                await self.writer.drain()
                answer = json.loads(await self.reader.readline())
            except (ValueError, ConnectionError, RuntimeError, asyncio.LimitOverrunError):
                return {}
            return answer if isinstance(answer, dict) else {}


def _result(line: bytes) -> CodeResult:
    try:
        answer = json.loads(line)
        exit_code, output = answer["exit_code"], answer["output"]
        if not isinstance(exit_code, int) or not isinstance(output, str):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        return CodeResult(exit_code=1, output="The code runner ended without an answer." if not line else "The code runner's answer was not understood.")
    return CodeResult(exit_code=exit_code, output=output)


_runner: _Runner | None = None


def runner() -> _Runner | None:
    """The task's code runner, or None when the sandbox started none."""
    global _runner
    if _runner is None and os.environ.get("AGENTCHILD_RUNNER_FD", "").isdigit():
        _runner = _Runner(int(os.environ["AGENTCHILD_RUNNER_FD"]))
    return _runner


class RunnerCodeExecutor(CodeExecutor):
    """Runs code blocks in the sandbox's code runner, with a timeout per run (exit code 124 when over)."""

    def __init__(self, timeout: int = 60):
        self._timeout = max(1, int(timeout))

    async def execute_code_blocks(self, code_blocks: List[CodeBlock], cancellation_token: CancellationToken) -> CodeResult:
        target = runner()
        if target is None:
            return CodeResult(exit_code=1, output="Code execution is not available in this sandbox.")
        return await target.run(code_blocks, self._timeout, cancellation_token)

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def restart(self) -> None:
        pass


async def pack_workdir(limit: int) -> tuple[str | None, bool]:
    """The work dir, packed by the code runner (which owns it) to outlive a wait for a person:
    (base64 tar.gz or None, whether it was over `limit`)."""
    target = runner()
    if target is None or limit <= 0:
        return None, False
    answer = await target.call({"op": "pack", "limit": int(limit)})
    archive = answer.get("archive")
    return (archive if isinstance(archive, str) else None), bool(answer.get("too_large"))


async def unpack_workdir(archive: str) -> bool:
    target = runner()
    if target is None:
        return False
    return (await target.call({"op": "unpack", "archive": archive})).get("ok") is True
