"""The child's end of the channel to its supervisor: JSON lines over an inherited unix socket.

The supervisor's end closing (the worker died or killed us) ends the whole process group at once:
a task's child never outlives the worker that runs it.
"""
import asyncio
import itertools
import json
import os
import signal
import socket
from datetime import date, datetime

LINE_LIMIT = 64 * 1024 * 1024


def _default(value):
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    return str(value)


def dumps(message: dict) -> bytes:
    return (json.dumps(message, default=_default, separators=(",", ":")) + "\n").encode()


def die_with_group() -> None:
    """Kill this process and everything it started (code executors run in our process group)."""
    try:
        os.killpg(os.getpgrp(), signal.SIGKILL)
    finally:
        os._exit(70)


class Channel:
    def __init__(self, fd: int):
        self._sock = socket.socket(fileno=fd)
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._pending: dict[int, asyncio.Queue] = {}
        self._ids = itertools.count(1)
        self._start: asyncio.Future | None = None
        self._write_lock = asyncio.Lock()

    async def open(self) -> dict:
        """Connect the streams, start reading, and return the supervisor's start message."""
        self._reader, self._writer = await asyncio.open_connection(sock=self._sock, limit=LINE_LIMIT)
        self._start = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().create_task(self._read_loop())
        return await self._start

    async def send(self, message: dict) -> None:
        async with self._write_lock:
            self._writer.write(dumps(message))
            await self._writer.drain()

    def new_request(self) -> tuple[int, asyncio.Queue]:
        request_id = next(self._ids)
        queue: asyncio.Queue = asyncio.Queue()
        self._pending[request_id] = queue
        return request_id, queue

    def end_request(self, request_id: int) -> None:
        self._pending.pop(request_id, None)

    async def _read_loop(self) -> None:
        try:
            while True:
                line = await self._reader.readline()
                if not line:
                    break
                message = json.loads(line)
                op = message.get("op")
                if op == "start" and not self._start.done():
                    self._start.set_result(message)
                elif op == "exit":
                    break
                elif "id" in message and message["id"] in self._pending:
                    self._pending[message["id"]].put_nowait(message)
        except Exception:  # noqa: BLE001 - a broken channel means the supervisor is gone
            pass
        die_with_group()
