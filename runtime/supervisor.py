"""The concurrent task runtime: one event loop per worker process supervises many tasks at once.

Each task runs in its own single-use sandboxed child (runtime.sandbox). What a worker holds per task
is small: a TaskRun (its channel, broker, counters, one timer), a few descriptors and its child. What
is shared by all the tasks of a worker:

    the event loop           one thread; a TaskRun is a coroutine, not a thread
    database threads         WORKER_DB_THREADS threads, each with its own connection (all ORM work)
    spawn threads            WORKER_SPAWN_THREADS threads that build sandboxes and clean them up
    one Redis client         kill orders (one control subscription), live tokens and events, stats
    one event writer         stores the events of every task in one transaction per batch, in order
    one housekeeping pass    heartbeats, the database's stop backstop, stats and limit checks: one
                             query / one pipeline per interval for all tasks, never a tick per task

A TaskRun always ends its task truthfully (through the TaskStore port: runtime imports no app above
it) and leaves its process tree gone. A child that floods its channel, breaks the protocol, crashes
or goes over a limit ends alone, with a precise error; its neighbours never wait on it.
"""
import asyncio
import contextvars
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

from django.conf import settings
from django.db import connections

from autogen_platform import logctx, metrics
from autogen_platform.realtime import group_send_many, task_group

from . import control, httptools, telemetry
from .broker import BudgetExceeded, ClientCache, ModelBroker, ModelFailed
from .keys import sandbox_index_key, sandbox_stats_key, worker_slots_key
from .outcomes import INPUT_REQUIRED, REQUEUE, ErrorCode, Final, Outcome, StopReason, failed, stop_outcome
from .ports import TaskContext, TaskStore, task_store
from .sandbox import Sandbox, SandboxLimits, probe_capabilities
from .sandbox.zygote import AGENTCHILD_PARENT

logger = logging.getLogger(__name__)

# Event types a child may report; status, usage and error events are the supervisor's alone.
CHILD_EVENT_TYPES = {"message", "tool_call", "tool_result", "code_execution", "log"}
# A thread keeps at most this much AgentChat state (the whole `done` line, in bytes).
MAX_STATE_BYTES = 8 * 1024 * 1024
# After the child's channel closes, how long it may take to exit before we kill it.
EXIT_GRACE_SECONDS = 1.0
EXIT_POLL_SECONDS = 0.05
PERSIST_ATTEMPTS = 10
# How long a killed sandbox's launcher may take to exit before its end is stored anyway (logged).
SANDBOX_EXIT_WAIT_SECONDS = 2.0
TOKEN_FLUSH_SECONDS = 0.1
CANCEL_POLL_SECONDS = 0.5
STATS_SECONDS = 1.0
# One event write takes at most this many events of one task (a flooding child cannot crowd out the
# others) and this many in all.
WRITE_EVENTS_PER_TASK = 200
# How long the event writer lets events gather once some are waiting (group commit): a short task's events then go
# in one transaction, most often with its end (events_for_end), not in one each as the child sends them.
WRITE_GATHER_SECONDS = 0.02
WRITE_EVENTS_TOTAL = 2000
# Task ends stored in one transaction at most.
WRITE_ENDS_TOTAL = 200
# Task starts stored in one transaction at most.
START_BATCH = 50
# Live frames sent together at most (one pipelined look for the groups that have a socket).
LIVE_BATCH = 200
# Messages read from one child before the loop lets the other tasks run.
READ_BURST = 64
# What the child's stdout/stderr keeps for the operator's log when it dies unexpectedly.
STDERR_TAIL_BYTES = 4096
# Ends the platform imposes on a running sandbox (counted as kills, by code, even when the kernel did it).
KILL_CODES = {ErrorCode.MEMORY_LIMIT, ErrorCode.CPU_LIMIT, ErrorCode.TIMEOUT, ErrorCode.OUTPUT_LIMIT,
              ErrorCode.TOKEN_BUDGET, ErrorCode.MODEL_ERROR}


def _result(raw) -> dict:
    raw = raw if isinstance(raw, dict) else {}
    return {"text": str(raw.get("text") or ""), "stop_reason": str(raw.get("stop_reason") or "completed")}


def child_env(workdir: Path, fd: int) -> dict:
    """The child's whole environment: no copy of os.environ, so no secret can leak into it."""
    return {
        "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(workdir),
        "TMPDIR": str(workdir),
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(AGENTCHILD_PARENT),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        "AGENTCHILD_FD": str(fd),
    }


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


class ProtocolViolation(Exception):
    """The child sent what no honest agent process sends at this point of the run."""


class OutputLimit(Exception):
    """The child's output went over the task's bound."""


# -- one task ------------------------------------------------------------------------------------


class TaskRun:
    """One task in one sandbox, supervised by coroutines on the runtime's loop."""

    def __init__(self, runtime: "Runtime", task_id: int, loaded: "tuple[TaskContext | None, BaseException | None]" = None):
        self.rt = runtime
        self.task_id = task_id
        self.loaded = loaded  # what the start's database hop read (see _start_many_then_load), if it did
        self.ctx: TaskContext | None = None
        self.box: Sandbox | None = None
        self.broker: ModelBroker | None = None
        self.unwinding: asyncio.Future | None = None  # the cancelled reader and model calls, once the run ended
        self.closed = False  # True once the run ended and its reader and model calls were cancelled: no more events
        self.outcome: asyncio.Future = runtime.loop.create_future()
        self.ended_at: float | None = None
        self.spawned_at: float | None = None
        self.started_at_iso = ""
        self.writer: asyncio.StreamWriter | None = None
        # events waiting for the event writer; inflight: taken by a write not yet committed
        self.pending: deque = deque()
        self.inflight = 0
        self.drained = asyncio.Event()
        self.pending_tokens: dict[str, str] = {}
        self.token_flush: asyncio.TimerHandle | None = None
        self.model_calls: dict[int, asyncio.Task] = {}
        self.tool_calls: dict[int, asyncio.Task] = {}  # HTTP tool calls the worker is making for the child
        self.tool_slots = asyncio.Semaphore(MAX_TOOL_CALLS)  # of which at most this many at once
        self.reported = False  # the child sent done or error
        self.output_bytes = 0
        self.events = 0
        self.stderr_tail = b""
        self.peak_memory_mb = 0.0
        self.cpu_seconds = 0.0
        self.last_stats: dict = {}
        self.timeout_handle: asyncio.TimerHandle | None = None
        self.tokens_noted = 0  # the tokens last handed to the runtime for recording
        self.created = time.monotonic()
        self.trace = telemetry.NO_TRACE

    @property
    def customer_id(self) -> int | None:
        return self.ctx.customer_id if self.ctx else None

    # -- the run --------------------------------------------------------------------------------

    def mark(self, phase: str) -> None:
        """Where the run's time goes (debug log: one line a phase, milliseconds since it was handed over)."""
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("task %s: %s at %.1f ms", self.task_id, phase, (time.monotonic() - self.created) * 1000)

    async def run(self) -> None:
        logctx.set_fields(task=self.task_id)  # this run's asyncio task and the ones it starts
        try:
            try:
                if self.loaded is None:
                    self.ctx = await self.rt.db(self.rt.store.load, self.task_id)
                else:
                    self.ctx, error = self.loaded
                    self.loaded = None
                    if error is not None:
                        raise error
                self.mark("loaded")
            except Exception:  # noqa: BLE001 - a task that cannot even be read must still end
                logger.exception("task %s: could not load what it runs", self.task_id)
                await self._retrying(
                    self.rt.store.finish, self.task_id, status=Final.FAILED,
                    error={"code": ErrorCode.SANDBOX_ERROR, "message": "The platform could not prepare the task"},
                )
                return
            if self.ctx is None:
                logger.info("task %s is not running any more: nothing to supervise", self.task_id)
                return
            self.trace = telemetry.task_trace(self.ctx)
            logctx.set_fields(customer=self.ctx.customer_id, agent=self.ctx.agent_id, trace_id=self.trace.trace_id)
            try:
                outcome = await self._supervise()
            except Exception:  # noqa: BLE001 - a supervisor bug must still end the task
                logger.exception("supervisor of task %s failed", self.task_id)
                outcome = failed(ErrorCode.SANDBOX_ERROR, "The platform failed while supervising the task")
            finally:
                self._kill_child()
            try:
                await self._persist(outcome)
            finally:
                self.trace.end(outcome)
        finally:
            self._release()

    def end(self, outcome: Outcome, reason: str | None = None) -> None:
        """The first outcome wins: later ones (the child's report after a kill, say) are ignored."""
        if not self.outcome.done():
            self.ended_at = time.monotonic()
            self._count_kill(outcome, reason)
            self.outcome.set_result(outcome)

    def stop(self, reason: str) -> None:
        """End the run now: its sandbox is killed here, not when the run's coroutine next gets the loop
        (a killswitch over 200 runs kills every tree first, then lets them unwind and record their end)."""
        self.end(stop_outcome(reason), reason)
        self._kill_child()

    def _count_kill(self, outcome: Outcome, reason: str | None) -> None:
        """A sandbox ended by the platform (a stop, a limit, a broken protocol), not by its own report or crash."""
        if self.reported or self.box is None or self.box.pid is None:
            return
        code = (outcome.error or {}).get("code")
        # a sandbox_error with the child still there is a broken protocol (a kill); with it gone, a crash
        if reason or code in KILL_CODES or (code == ErrorCode.SANDBOX_ERROR and self.box.poll() is None):
            metrics.kill(reason or code)
            self.trace.kill(reason or code)

    async def _supervise(self) -> Outcome:
        ctx = self.ctx
        self.broker = ModelBroker(ctx.models, ctx.budgets, monthly_left=self._monthly_left, clients=self.rt.clients)
        self.broker.restore((ctx.resume or {}).get("broker"))
        self.tokens_noted = self.broker.prompt_tokens + self.broker.completion_tokens  # what the row holds
        missing = {a["model"] for a in ctx.spec.get("agents", [])} - set(ctx.models)
        if missing:
            self.broker.error = ModelFailed(f"Model configuration(s) {sorted(missing)} no longer exist")
        if self.broker.error is not None:
            await self.broker.close()
            return failed(ErrorCode.MODEL_ERROR, str(self.broker.error))
        if self.outcome.done():  # stopped before its sandbox was built
            await self.broker.close()
            return self.outcome.result()
        limits = SandboxLimits(
            memory_mb=ctx.limits["memory_mb"], cpu_seconds=ctx.limits["cpu_seconds"], timeout_seconds=ctx.limits["timeout_seconds"],
            cpu_weight=settings.SANDBOX_CPU_WEIGHT,
        )
        # The code runner (a second uid for the code agents run) only when some agent runs code, or has customer
        # tools (their calls run there too: runtime/agentchild/customtools.py).
        code = any((a or {}).get("code_execution")
                   or any(d.get("kind", "python") == "python" for d in (a or {}).get("tool_definitions") or [])
                   for a in ctx.spec.get("agents") or [])
        self.box = Sandbox(task_id=ctx.task_id, limits=limits, root=settings.SANDBOX_ROOT, code_runner=code)
        parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        out_r, out_w = os.pipe()
        spawn_started, spawn_started_ns = time.monotonic(), time.time_ns()
        def spawn() -> bool:
            # Stopped while it waited for a spawn thread (a killswitch right after a burst: tens of runs queue
            # behind WORKER_SPAWN_THREADS), nothing is built: its end need not wait for a sandbox to be made
            # only to be killed. (A read of the future's state from this thread: set once, on the loop.)
            if self.outcome.done():
                return False
            self.box.spawn(
                [sys.executable, "-m", "agentchild"],
                env=child_env(self.box.workdir, child_sock.fileno()),
                pass_fds=(child_sock.fileno(),),
                stdout=out_w,
                stderr=out_w,
                warm=settings.SANDBOX_WARM_START,
            )
            return True

        try:
            # A blocking build (cgroups, zygote fork, layers): on a spawn thread, never on the loop.
            built = await self.rt.in_spawn_thread(spawn)
        except Exception as exc:  # noqa: BLE001 - whatever the sandbox refused, the task says so
            logger.exception("task %s: sandbox spawn failed", ctx.task_id)
            self.trace.spawned(spawn_started_ns, None, error=str(exc))
            parent_sock.close()
            os.close(out_r)
            return failed(ErrorCode.SANDBOX_ERROR, f"The sandbox could not start: {exc}")
        finally:
            child_sock.close()
            os.close(out_w)
        if built:
            start = "warm" if self.box.warm else "cold"
            metrics.sandbox_spawned(start, time.monotonic() - spawn_started)  # the wait for a spawn thread included
            self.trace.spawned(spawn_started_ns, start)
        if self.outcome.done():  # stopped while its sandbox waited to be built, or was being built
            os.close(out_r)
            parent_sock.close()
            await self.broker.close()
            return self.outcome.result()
        self.spawned_at = time.monotonic()
        self.mark("spawned")
        self.started_at_iso = _now_iso()
        self.timeout_handle = self.rt.loop.call_later(ctx.limits["timeout_seconds"], self._on_timeout)
        self.rt.attach(ctx.task_id, self.box.pid)
        os.set_blocking(out_r, False)
        self.rt.loop.add_reader(out_r, self._read_output, out_r)

        reader, self.writer = await asyncio.open_connection(sock=parent_sock, limit=settings.TASK_MESSAGE_MAX_BYTES)
        await self.send(
            {
                "op": "start",
                "task": ctx.task_id,
                "input": ctx.input,
                "spec": _child_spec(ctx.spec),
                "models": self.broker.model_infos(),
                "state": ctx.thread_state,
                "stream": True,
                "resume": _child_resume(ctx.resume),
                "workdir_limit": _packed_limit(),
            }
        )
        reading = asyncio.ensure_future(self._read_loop(reader))
        try:
            return await self.outcome
        finally:
            self.mark("ended")
            if self.timeout_handle is not None:
                self.timeout_handle.cancel()
            reading.cancel()
            calls = list(self.model_calls.values()) + list(self.tool_calls.values())
            for call in calls:
                call.cancel()
            self.rt.loop.remove_reader(out_r)
            os.close(out_r)
            self._sample_stats(ending=True)
            self._kill_child()
            try:
                self.writer.close()
            except Exception:  # noqa: BLE001
                pass
            # The reader and the model calls, cancelled, add nothing to the run any more (no event, no
            # token): the end is stored without waiting for them to unwind (a cancelled HTTP request
            # closes its connection over several turns of the loop: 0.4-0.8 s for 100 runs killed
            # together), and the slot is given back once they did (_persist).
            # Nothing they would still add is kept: a model call's "waiting" report, say, whose timer fires
            # before the call took its cancellation, would come after the end's events.
            self.closed = True
            self.unwinding = asyncio.ensure_future(self._unwind(reading, calls))

    async def _unwind(self, reading: asyncio.Future, calls: list) -> None:
        await asyncio.gather(reading, *calls, return_exceptions=True)
        self.mark("gathered")
        await self.broker.close()

    def _on_timeout(self) -> None:
        self.end(self._timeout_outcome())

    def _kill_child(self) -> None:
        # Once its cgroup was killed for good the tree runs nothing more: a run is stopped by a kill order,
        # the database's stop backstop (every CANCEL_POLL_SECONDS) and its own unwinding, and each kill is
        # a cgroup write the kernel serializes (measured under a killswitch over 200 runs: 7 kills a run,
        # 0.58 s of the loop's time). cleanup() still kills whatever is left of a launcher that did not exit.
        if self.box is None or self.box.pid is None or self.box.killed_for_good:
            return
        try:
            self.box.kill()
        except Exception:  # noqa: BLE001 - kill is idempotent; never let it hide the outcome
            logger.exception("task %s: sandbox kill failed", self.task_id)

    async def send(self, message: dict) -> None:
        try:
            self.writer.write((json.dumps(message, separators=(",", ":")) + "\n").encode())
            await self.writer.drain()
        except (ConnectionError, RuntimeError):
            pass  # the child is gone; the read loop ends the task

    # -- the end --------------------------------------------------------------------------------

    async def _persist(self, outcome: Outcome) -> None:
        boxed = self.box is not None and self.box.pid is not None
        try:
            await self._store_end(outcome, boxed)
        finally:
            if self.unwinding is not None:
                await asyncio.gather(self.unwinding, return_exceptions=True)
            # whatever the end (stored, requeued, suspended for input, or failing to store), the tree's
            # cgroups and work dir go before the slot is given back
            if boxed:
                try:
                    await self.rt.in_spawn_thread(self.box.cleanup)
                except Exception:  # noqa: BLE001
                    logger.exception("task %s: sandbox cleanup failed", self.task_id)
                self.mark("cleaned up")

    async def _store_end(self, outcome: Outcome, boxed: bool) -> None:
        store = self.rt.store
        # The end is stored as soon as the tree is gone (its counters read); removing the cgroups and
        # the work dir comes after, off the loop: with 200 tasks killed at once, their ends must not
        # queue behind 200 directory removals on a few threads (measured: 1.3 s of a 2.5 s killswitch).
        # A tree killed for good through its cgroup (frozen, then SIGKILL; or cgroup.kill) runs nothing
        # more: its end is stored without waiting for the kernel to tear 200 processes down (~0.6 s
        # under a killswitch); cleanup() below waits for the exit before the slot is given back.
        if boxed:
            if not self.box.killed_for_good:
                await self._exited(SANDBOX_EXIT_WAIT_SECONDS)
            self._sample_stats()
        self.mark("exited")
        if self.spawned_at is not None:
            metrics.sandbox_finished(self.cpu_seconds, self.peak_memory_mb * 2**20)
        self.rt.unpublish(self.task_id)
        if outcome.status in (REQUEUE, INPUT_REQUIRED):
            await self.rt.events_drained(self)
            self.mark("events stored")
            if outcome.status == REQUEUE:
                await self._retrying(store.requeue, self.task_id)
            else:
                await self._suspend(outcome)
            return
        # its last events go with its end, in one transaction (those already being written are waited for)
        last_events = await self.rt.events_for_end(self)
        end = self.ended_at or time.monotonic()
        usage = {
            "prompt_tokens": self.broker.prompt_tokens if self.broker else 0,
            "completion_tokens": self.broker.completion_tokens if self.broker else 0,
            "cpu_seconds": round(self.cpu_seconds, 3),
            "peak_memory_mb": round(self.peak_memory_mb, 1),
            "wall_seconds": round(end - self.spawned_at, 3) if self.spawned_at else 0.0,
        }
        usage = _with_earlier_usage(usage, self.ctx.resume if self.ctx else None)
        end = {
            "status": outcome.status,
            "result": outcome.result,
            "error": outcome.error,
            "usage": usage,
            "thread_state": outcome.state if outcome.status == Final.SUCCEEDED else None,
            "events": last_events,
        }
        for attempt in range(PERSIST_ATTEMPTS):
            try:
                await self.rt.finish(self.task_id, end)
                break
            except Exception:  # noqa: BLE001 - the end of a task must be written (the reaper is the last resort)
                if attempt == PERSIST_ATTEMPTS - 1:
                    raise
                logger.warning("task %s: storing its end failed, retrying", self.task_id, exc_info=True)
                await asyncio.sleep(1)
        self.mark("finished")
        logger.info(
            "task %s ended %s%s after %.2f s (%s start, %s+%s tokens, %.2f CPU s, %.0f MB)", self.task_id, outcome.status,
            f" ({outcome.error['code']})" if outcome.error else "", usage["wall_seconds"],
            ("warm" if self.box.warm else "cold") if self.box is not None and self.spawned_at else "no",
            usage["prompt_tokens"], usage["completion_tokens"], usage["cpu_seconds"], usage["peak_memory_mb"],
        )

    async def _exited(self, timeout: float) -> None:
        """Wait, on the loop, until the sandbox's launcher has exited (it was killed: at once, normally)."""
        box = self.box
        if box.poll() is not None:
            return
        fd = box.exit_fd()
        if fd is None:  # no pidfds: a thread waits
            try:
                await self.rt.in_spawn_thread(box.wait, timeout)
            except subprocess.TimeoutExpired:
                logger.warning("task %s: sandbox did not exit after kill", self.task_id)
            return
        exited = self.rt.loop.create_future()
        self.rt.loop.add_reader(fd, lambda: exited.done() or exited.set_result(None))
        try:
            await asyncio.wait_for(exited, timeout)
        except asyncio.TimeoutError:
            logger.warning("task %s: sandbox did not exit %.0f s after kill", self.task_id, timeout)
        finally:
            self.rt.loop.remove_reader(fd)
        box.poll()

    async def _retrying(self, fn, *args, **kwargs):
        """The end of a task must be written: retry through a database hiccup (the reaper is the last resort)."""
        for attempt in range(PERSIST_ATTEMPTS):
            try:
                return await self.rt.db(fn, *args, **kwargs)
            except Exception:  # noqa: BLE001
                if attempt == PERSIST_ATTEMPTS - 1:
                    raise
                logger.warning("task %s: %s failed, retrying", self.task_id, fn.__name__, exc_info=True)
                await asyncio.sleep(1)

    def _release(self) -> None:
        if self.token_flush is not None:
            self.token_flush.cancel()
        self.rt.ended(self)

    # -- the child's channel --------------------------------------------------------------------

    async def _read_loop(self, reader: asyncio.StreamReader) -> None:
        burst = 0
        try:
            while True:
                try:
                    line = await reader.readuntil(b"\n")
                except asyncio.IncompleteReadError:
                    break  # the channel closed (a last line cut short: the child died writing it)
                except asyncio.LimitOverrunError:
                    # Keep the start of what it sent, so the user sees what flooded.
                    head = await reader.read(settings.TASK_EVENT_MAX_BYTES)
                    self.add_event("log", "platform", {
                        "kind": "output_limit", "truncated": True,
                        "text": head.decode(errors="replace"),
                    })
                    raise OutputLimit(
                        f"The task sent a message over {settings.TASK_MESSAGE_MAX_BYTES // 2**20} MB; its output was cut there"
                    ) from None
                self._count_output(len(line))
                try:
                    message = json.loads(line)
                except ValueError:
                    raise ProtocolViolation("a line that is not JSON") from None
                if not isinstance(message, dict):
                    raise ProtocolViolation("a message that is not an object")
                self._handle(message, line)
                burst += 1
                if burst >= READ_BURST:  # a chatty child yields to the others
                    burst = 0
                    await asyncio.sleep(0)
        except OutputLimit as exc:
            self._kill_child()
            self.end(failed(ErrorCode.OUTPUT_LIMIT, str(exc)))
            return
        except ProtocolViolation as exc:
            logger.warning("task %s: protocol violation: %s", self.task_id, exc)
            self._kill_child()
            self.end(failed(ErrorCode.SANDBOX_ERROR, f"The task's process broke the platform's protocol ({exc}) and was stopped"))
            return
        except ConnectionError as exc:
            logger.warning("task %s: bad channel from the child: %s", self.task_id, exc)
        # The channel closed without a report: the child died. Let it finish exiting, then ask why.
        deadline = time.monotonic() + EXIT_GRACE_SECONDS
        while self.box.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(EXIT_POLL_SECONDS)
        self.end(self._death_outcome())

    def _count_output(self, size: int) -> None:
        self.output_bytes += size
        if self.output_bytes > settings.TASK_OUTPUT_LIMIT_BYTES:
            raise OutputLimit(f"The task's output went over {settings.TASK_OUTPUT_LIMIT_BYTES // 2**20} MB; it was cut there")

    def _handle(self, message: dict, line: bytes) -> None:
        """One message of the child, checked against what the run allows at this point."""
        op = message.get("op")
        if self.reported:
            raise ProtocolViolation(f"{op!r} after the final report")
        if op == "event":
            self.events += 1
            if self.events > settings.TASK_MAX_EVENTS:
                raise OutputLimit(f"The task sent more than {settings.TASK_MAX_EVENTS} events; it was cut there")
            kind = message.get("type") if message.get("type") in CHILD_EVENT_TYPES else "log"
            content = _bounded(message.get("content"))
            self.add_event(kind, str(message.get("source") or ""), content)
            self.trace.event(kind, str(message.get("source") or ""), content)
        elif op == "model":
            request_id = message.get("id")
            if not isinstance(request_id, int) or request_id in self.model_calls:
                raise ProtocolViolation("a model request without a fresh id")
            if len(self.model_calls) >= max(4, len(self.ctx.spec.get("agents") or [])):
                raise ProtocolViolation("more model requests at once than the task has agents")
            self.model_calls[request_id] = asyncio.ensure_future(self._answer_model(message))
        elif op == "tool":
            request_id = message.get("id")
            if not isinstance(request_id, int) or request_id in self.tool_calls or request_id in self.model_calls:
                raise ProtocolViolation("a tool request without a fresh id")
            definition = _http_tool(self.ctx.spec, message.get("name"))
            if definition is None:
                raise ProtocolViolation("a tool request for no HTTP tool of the task's agents")
            if len(self.tool_calls) >= MAX_TOOL_REQUESTS:
                raise ProtocolViolation(f"more than {MAX_TOOL_REQUESTS} HTTP tool calls waiting at once")
            self.tool_calls[request_id] = asyncio.ensure_future(self._answer_tool(request_id, definition, message))
        elif op == "done":
            self.mark("done")
            if self.model_calls:
                raise ProtocolViolation("a result while a model call is still unanswered")
            self.reported = True
            self._sample_stats(ending=True)
            self.end(Outcome(Final.SUCCEEDED, result=_result(message.get("result")), state=self._thread_state(message, line)))
        elif op == "input":
            self._on_input_request(message, line)
        elif op == "error":
            self.reported = True
            code = message.get("code") if message.get("code") in (ErrorCode.AGENT_ERROR, ErrorCode.MEMORY_LIMIT) else ErrorCode.AGENT_ERROR
            self.end(failed(code, str(message.get("message") or "The agent failed")[:2000]))
        else:
            raise ProtocolViolation(f"unknown operation {str(op)[:40]!r}")

    def _on_input_request(self, message: dict, line: bytes) -> None:
        """The child stopped to ask a person (a user proxy's turn, a tool call or code run that needs
        approval) and sent its saved state: accepted only when the task's spec lets one of its agents
        ask that, with no model call unanswered and a state small enough to keep."""
        request = message.get("request")
        if not isinstance(request, dict) or request.get("kind") not in ("input", "approval"):
            raise ProtocolViolation("an input request without a kind")
        if request["kind"] not in human_input_kinds(self.ctx.spec):
            raise ProtocolViolation(f"an input request of kind {request['kind']!r} the task's agents cannot make")
        if self.model_calls:
            raise ProtocolViolation("an input request while a model call is still unanswered")
        if not isinstance(message.get("state"), dict) or not isinstance(message.get("pending"), dict):
            raise ProtocolViolation("an input request without the state to resume from")
        workdir = message.get("workdir")
        if workdir is not None and not (isinstance(workdir, str) and len(workdir) <= _packed_limit() * 4 // 3 + 4):
            raise ProtocolViolation("an input request whose work directory is not a packed one within its limit")
        self.reported = True
        self._sample_stats()
        if len(line) > MAX_STATE_BYTES:
            self.end(failed(ErrorCode.AGENT_ERROR, "The conversation state is too large to keep while waiting for input"))
            return
        shown = {
            "prompt": str(request.get("prompt") or "")[:MAX_PROMPT_CHARS],
            "kind": request["kind"],
            "agent": str(request.get("agent") or "")[:200],
        }
        for key in ("tool_calls", "code"):
            if key in request:
                shown[key] = request[key]
        # the work dir (packed by the code runner, opaque here) is kept with the state, on the task row
        self.end(Outcome(INPUT_REQUIRED, state={"state": message["state"], "pending": message["pending"],
                                                "workdir": workdir}, request=_bounded(shown)))

    async def _suspend(self, outcome: Outcome) -> None:
        """Store what the run needs to resume and the question, then remove the sandbox (its tree is gone; the
        slot is given back when this returns). The work dir outlives the wait packed in the state, when the
        child kept it (TASK_INPUT_WORKDIR_MAX_BYTES)."""
        end = self.ended_at or time.monotonic()
        usage = _with_earlier_usage({
            "prompt_tokens": self.broker.prompt_tokens if self.broker else 0,
            "completion_tokens": self.broker.completion_tokens if self.broker else 0,
            "cpu_seconds": round(self.cpu_seconds, 3),
            "peak_memory_mb": round(self.peak_memory_mb, 1),
            "wall_seconds": round(end - self.spawned_at, 3) if self.spawned_at else 0.0,
        }, self.ctx.resume)
        suspension = {**outcome.state, "broker": self.broker.snapshot() if self.broker else {}}
        await self._retrying(self.rt.store.suspend, self.task_id, request=outcome.request, suspension=suspension,
                             usage=usage)
        self.mark("waiting for input")  # _persist removes the sandbox: the resumed run gets a new one

    def _read_output(self, fd: int) -> None:
        """The child's stdout and stderr: counted against its output limit, the tail kept for the log."""
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.rt.loop.remove_reader(fd)
            return
        self.stderr_tail = (self.stderr_tail + data)[-STDERR_TAIL_BYTES:]
        try:
            self._count_output(len(data))
        except OutputLimit as exc:
            self.rt.loop.remove_reader(fd)
            self._kill_child()
            self.end(failed(ErrorCode.OUTPUT_LIMIT, str(exc)))

    def add_event(self, kind: str, source: str, content) -> None:
        if self.closed:
            return
        self.pending.append({"type": kind, "source": source, "content": content})
        self.drained.clear()
        self.rt.events_ready(self)

    def _thread_state(self, message: dict, line: bytes) -> dict | None:
        if len(line) > MAX_STATE_BYTES:
            self.add_event("log", "platform", {"kind": "state_not_saved", "text": "The conversation state is too large to keep on the thread."})
            return None
        return message.get("state")

    def _death_outcome(self) -> Outcome:
        code = self.box.poll()
        reason = self.box.end_reason() if code is not None else None
        if reason:
            return self._limit_outcome(reason)
        tail = self.stderr_tail.decode(errors="replace").strip()
        if tail:
            logger.warning("task %s: the child ended unexpectedly (exit status %s); its last output:\n%s", self.task_id, code, tail)
        return failed(ErrorCode.SANDBOX_ERROR, f"The task's process ended unexpectedly (exit status {code})")

    def _limit_outcome(self, reason: str) -> Outcome:
        if reason == ErrorCode.MEMORY_LIMIT:
            return failed(ErrorCode.MEMORY_LIMIT, f"The task went over its memory limit of {self.box.limits.memory_mb} MB")
        if reason == ErrorCode.CPU_LIMIT:
            return failed(ErrorCode.CPU_LIMIT, f"The task went over its CPU limit of {self.box.limits.cpu_seconds} s")
        if reason == ErrorCode.TIMEOUT:
            return self._timeout_outcome()
        return failed(ErrorCode.SANDBOX_ERROR, f"The sandbox ended the task ({reason})")

    def _timeout_outcome(self) -> Outcome:
        return Outcome(Final.TIMED_OUT, error={"code": ErrorCode.TIMEOUT, "message": f"The task ran longer than {self.ctx.limits['timeout_seconds']} s"})

    # -- model calls ----------------------------------------------------------------------------

    async def _answer_model(self, request: dict) -> None:
        request_id, caller = request.get("id"), str(request.get("caller") or "")[:200]

        async def on_chunk(text: str) -> None:
            self.pending_tokens[caller] = self.pending_tokens.get(caller, "") + text
            if self.token_flush is None:
                self.token_flush = self.rt.loop.call_later(TOKEN_FLUSH_SECONDS, self._flush_tokens)
            await self.send({"op": "model_chunk", "id": request_id, "text": text})

        started = time.monotonic()
        telemetry.MODEL_CALL_PARENT.set(self.trace.model_parent(caller))  # this call's own asyncio task
        telemetry.MODEL_CALL_CUSTOMER.set(self.ctx.customer_id)  # whose tokens (platform_customer_model_tokens)
        self.mark("model call")
        try:
            result = await self.broker.call(
                request, on_chunk, on_waiting=lambda content: self.add_event("model_waiting", caller or "platform", content))
        except BudgetExceeded as exc:
            self.end(failed(ErrorCode.TOKEN_BUDGET, str(exc)))
            return
        except ModelFailed as exc:
            self.end(failed(ErrorCode.MODEL_ERROR, str(exc)[:2000]))
            return
        finally:
            self.model_calls.pop(request_id, None)
        self._flush_tokens()  # the whole answer is out live before its message is stored
        logger.debug(
            "task %s: model call by %s took %.2fs (%s+%s tokens)",
            self.task_id, caller, time.monotonic() - started, result.usage.prompt_tokens, result.usage.completion_tokens,
        )
        await self.send({"op": "model_result", "id": request_id, "result": result.model_dump(mode="json")})

    async def _answer_tool(self, request_id: int, definition: dict, message: dict) -> None:
        """One HTTP tool call, made here (never in the sandbox) from the task's own frozen definition, with the
        allow-list and secret headers as the database holds them now; the answer, or what failed, goes back."""
        name = definition["name"]
        try:
            async with self.tool_slots:
                answer = await self._http_call(definition, message)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - a platform fault fails the call, not the task
            logger.exception("task %s: HTTP tool %s failed in the platform", self.task_id, name)
            answer = httptools.Answer(False, f"Tool {name}: the platform could not make the call.", "platform")
        finally:
            self.tool_calls.pop(request_id, None)
        if not answer.ok:
            self.add_event("log", str(message.get("caller") or "platform")[:200], {
                "kind": "http_tool_failed", "tool": name, "failure": answer.failure, "status": answer.status,
                "text": answer.text[:2000]})
        await self.send({"op": "tool_result", "id": request_id, **answer.message()})

    async def _http_call(self, definition: dict, message: dict) -> "httptools.Answer":
        access = await self.rt.db(self.rt.store.http_tool_access, self.ctx.customer_id, definition["name"])
        return await httptools.call(
            definition, message.get("arguments"), hosts=access.get("hosts") or [], secrets=access.get("secrets"),
            allow_private=settings.HTTP_TOOLS_ALLOW_PRIVATE, max_bytes=settings.HTTP_TOOL_MAX_RESPONSE_BYTES)

    async def _monthly_left(self, tokens: int) -> int:
        if tokens != self.tokens_noted:
            # recorded with the worker's next write (this task's next events, a heartbeat, or its end)
            self.tokens_noted = tokens
            self.rt.note_tokens(self.task_id, tokens)
        try:
            return await self.rt.db(self.rt.store.tokens_left, self.ctx.task_id, self.ctx.customer_id, tokens)
        except Exception:  # noqa: BLE001 - a database hiccup lets this call through; the next one checks again
            logger.warning("task %s: monthly token budget check failed", self.task_id, exc_info=True)
            return 1

    def _flush_tokens(self) -> None:
        if self.token_flush is not None:
            self.token_flush.cancel()
            self.token_flush = None
        tokens, self.pending_tokens = self.pending_tokens, {}
        if self.closed:  # the run ended (its status frame went out): a cancelled call's last chunks are not news
            return
        for source, text in tokens.items():
            self.rt.live({"type": "task.token", "source": source, "text": text}, self.task_id)

    # -- stats ----------------------------------------------------------------------------------

    def _sample_stats(self, ending: bool = False) -> None:
        """Counters of the tree; also ends the run when the sandbox killed it over a limit.

        ending: a sample taken as the run ends, before its tree is gone; skipped when the tree's cgroups
        still count it after the exit (the end stores the sample taken then, which holds everything this
        one would): five or six counter files fewer to read for each."""
        if self.box is None or self.box.pid is None:
            return
        if ending and self.box.counted_after_exit:
            return
        try:
            stats = self.box.stats()
        except Exception:  # noqa: BLE001 - stats are best effort
            return
        self.cpu_seconds = max(self.cpu_seconds, float(stats.get("cpu_seconds") or 0))
        self.peak_memory_mb = max(self.peak_memory_mb, float(stats.get("peak_memory_mb") or 0), float(stats.get("memory_mb") or 0))
        self.last_stats = stats

    def check(self) -> None:
        """Once a second (the housekeeping pass): stats, and with them the limits the kernel does not
        enforce (the sandbox kills a tree over one; the channel's end then reports which)."""
        self._sample_stats()


# The longest question shown to a person (the rest of the conversation is in the task's events).
MAX_PROMPT_CHARS = 8000
# HTTP tool calls the worker makes at once for one task (the others of its agents' parallel calls wait their
# turn), and how many may wait: more is not what an honest child sends.
MAX_TOOL_CALLS = 8
MAX_TOOL_REQUESTS = 256
# What the child needs of an HTTP tool's definition (never its URL or headers: the worker holds those).
CHILD_HTTP_TOOL_KEYS = ("name", "kind", "description", "parameters", "timeout_seconds", "version")


def _http_tool(spec: dict, name) -> dict | None:
    """The frozen definition of the task's HTTP tool of this name (the worker's copy of the spec)."""
    for agent in (spec or {}).get("agents") or []:
        for definition in agent.get("tool_definitions") or []:
            if definition.get("kind") == "http" and definition.get("name") == name:
                return definition
    return None


def _child_spec(spec: dict) -> dict:
    """The spec the child gets: HTTP tools' definitions cut to what an agent needs to call them."""
    agents = (spec or {}).get("agents") or []
    if not any(d.get("kind") == "http" for a in agents for d in a.get("tool_definitions") or []):
        return spec
    cut = []
    for agent in agents:
        definitions = agent.get("tool_definitions")
        if definitions:
            agent = {**agent, "tool_definitions": [
                {k: d[k] for k in CHILD_HTTP_TOOL_KEYS if k in d} if d.get("kind") == "http" else d
                for d in definitions]}
        cut.append(agent)
    return {**spec, "agents": cut}


def human_input_kinds(spec: dict) -> set:
    """What the task's agents may stop to ask a person: "input" (an agent with human_input) and
    "approval" (an agent whose tools or code execution need approval)."""
    kinds = set()
    for agent in (spec or {}).get("agents") or []:
        if agent.get("human_input"):
            kinds.add("input")
        if agent.get("approval"):
            kinds.add("approval")
    return kinds


def _child_resume(resume: dict | None) -> dict | None:
    """What the child needs to continue after a person answered (never the platform's counters)."""
    if not resume:
        return None
    return {"pending": resume.get("pending") or {}, "answer": resume.get("answer") or {},
            "workdir": resume.get("workdir")}


def _packed_limit() -> int:
    """How large a work dir kept over a wait for input may be, packed (it travels in the state's message)."""
    return max(0, min(int(settings.TASK_INPUT_WORKDIR_MAX_BYTES), MAX_STATE_BYTES // 2))


def _with_earlier_usage(usage: dict, resume: dict | None) -> dict:
    """A resumed run's usage counts the runs before it stopped to ask (tokens come back in the broker)."""
    earlier = (resume or {}).get("usage") or {}
    if not earlier:
        return usage
    return {
        **usage,
        "cpu_seconds": round(usage["cpu_seconds"] + float(earlier.get("cpu_seconds") or 0), 3),
        "peak_memory_mb": max(usage["peak_memory_mb"], float(earlier.get("peak_memory_mb") or 0)),
        "wall_seconds": round(usage["wall_seconds"] + float(earlier.get("wall_seconds") or 0), 3),
    }


def _bounded(content):
    """An event's content, cut to TASK_EVENT_MAX_BYTES (text fields shortened, marked truncated)."""
    limit = settings.TASK_EVENT_MAX_BYTES
    size = len(json.dumps(content, separators=(",", ":"), default=str))
    if size <= limit:
        return content
    if isinstance(content, dict):
        cut = dict(content)
        budget = limit // max(1, len(cut))
        for key, value in cut.items():
            if isinstance(value, str) and len(value) > budget:
                cut[key] = value[:budget]
        cut["truncated"] = True
        if len(json.dumps(cut, separators=(",", ":"), default=str)) <= limit + 1024:
            return cut
    return {"text": json.dumps(content, default=str)[:limit], "truncated": True}


# -- the worker's runtime ------------------------------------------------------------------------


class Runtime:
    """The event loop of one worker process and everything its task runs share.

    Thread-safe entry points for the worker's main thread: start(), wait_for_slot(), submit(),
    busy, shutdown(). Everything else runs on the loop's thread.
    """

    def __init__(self, *, concurrency: int, worker_name: str, store: TaskStore | None = None):
        self.concurrency = max(1, concurrency)
        self.worker_name = worker_name
        self.store = store or task_store()
        self.loop = asyncio.new_event_loop()
        self.runs: dict[int, TaskRun] = {}
        self.clients: dict = {}  # shared model clients (runtime.broker.ClientCache)
        self._reserved = 0
        self._slots = threading.Condition()
        self._thread = threading.Thread(target=self._thread_main, name="runtime-loop", daemon=True)
        self._ready = threading.Event()
        self._db_pool = ThreadPoolExecutor(settings.WORKER_DB_THREADS, thread_name_prefix="runtime-db")
        # The event writer and the housekeeping (heartbeats, stop backstop) have a database thread each:
        # tasks starting behind a customer's row lock, or a slow query of one task, never hold them up.
        self._writer_pool = ThreadPoolExecutor(1, thread_name_prefix="runtime-db-events")
        self._house_pool = ThreadPoolExecutor(1, thread_name_prefix="runtime-db-house")
        self._spawn_pool = ThreadPoolExecutor(settings.WORKER_SPAWN_THREADS, thread_name_prefix="runtime-spawn")
        # what the worker does after a task (RQ's registries): one thread, in order
        self._after_pool = ThreadPoolExecutor(1, thread_name_prefix="runtime-after")
        self._dirty: dict[int, TaskRun] = {}  # runs with events to store, in the order they got them
        # pids of sandboxes started since the last write: stored with the next events or heartbeat, not
        # in a write of their own (shown to operators; the lease does not depend on them)
        self._pids: dict[int, int | None] = {}
        # tokens of running tasks not recorded yet (task id -> tokens so far), likewise: a model call's tokens
        # go with the events that follow it, not in a write transaction of their own
        self._tokens: dict[int, int] = {}
        self._finishing: deque = deque()  # (task id, its end, future) waiting for the finisher
        self._starting: deque = deque()  # (task id, future) waiting for the starter
        self._live: deque = deque()
        self._gone: list[int] = []  # ended tasks whose live stats are still published
        self._unpublishing = False
        self._background: set[asyncio.Future] = set()
        self._stopping = False

    # -- the worker's side (main thread) --------------------------------------------------------

    def start(self) -> "Runtime":
        # The sandboxes take this host's layers from the probe: run it here, at start (once per process,
        # cached; runworker already did), never from a Sandbox's constructor.
        probe_capabilities()
        self._thread.start()
        self._ready.wait(30)
        return self

    @property
    def busy(self) -> int:
        with self._slots:
            return self._reserved

    def wait_for_slot(self, timeout: float) -> bool:
        """Block until fewer than `concurrency` tasks are held (True), or timeout (False)."""
        with self._slots:
            return self._slots.wait_for(lambda: self._reserved < self.concurrency, timeout)

    def submit(self, task_id: int, on_end=None) -> None:
        """Run a task (already running in the database, or about to be started by us): takes a slot
        until it ended; on_end() is called from a runtime thread afterwards."""
        with self._slots:
            self._reserved += 1
        asyncio.run_coroutine_threadsafe(self._run(task_id, on_end), self.loop)

    def shutdown(self, grace_seconds: float) -> None:
        """Let the tasks held run up to grace_seconds, then stop the rest (failed, worker_lost), store their
        ends and stop the loop."""
        if not self._thread.is_alive():
            return
        future = asyncio.run_coroutine_threadsafe(self._drain(grace_seconds), self.loop)
        try:
            future.result(grace_seconds + 60)
        except Exception:  # noqa: BLE001
            logger.exception("runtime shutdown did not finish cleanly")
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self._after_pool.shutdown(wait=True)
        for pool in (self._db_pool, self._writer_pool, self._house_pool, self._spawn_pool):
            pool.shutdown(wait=False, cancel_futures=True)

    # -- the loop's thread ----------------------------------------------------------------------

    def _thread_main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._open())
        self._ready.set()
        self.loop.run_forever()

    async def _open(self) -> None:
        import redis.asyncio as aioredis

        self.clients = ClientCache()
        self.redis = aioredis.Redis.from_url(settings.REDIS_URL, health_check_interval=30)
        self._events_ready = asyncio.Event()
        self._live_ready = asyncio.Event()
        self._finish_ready = asyncio.Event()
        self._start_ready = asyncio.Event()
        for loop in (self._control_loop(), self._starter(), self._event_writer(), self._finisher(), self._live_sender(),
                     self._housekeeping()):
            self.background(loop)

    def background(self, awaitable) -> asyncio.Future:
        future = asyncio.ensure_future(awaitable)
        self._background.add(future)
        future.add_done_callback(self._background_done)
        return future

    def _background_done(self, future: asyncio.Future) -> None:
        self._background.discard(future)
        if not future.cancelled() and future.exception() is not None:
            logger.warning("runtime background work failed: %r", future.exception())

    async def db(self, fn, *args, pool=None, **kwargs):
        """Run an ORM call on one of the shared database threads (never on the loop), in the caller's log context."""
        context = contextvars.copy_context()
        return await self.loop.run_in_executor(pool or self._db_pool, context.run, _with_connection, fn, args, kwargs)

    async def in_spawn_thread(self, fn, *args, **kwargs):
        return await self.loop.run_in_executor(self._spawn_pool, lambda: fn(*args, **kwargs))

    async def _run(self, task_id: int, on_end) -> None:
        run = None
        try:
            if task_id in self.runs:  # a duplicate job of a task this worker runs already
                return
            loaded = await self._start(task_id)
            if loaded is None:
                return
            run = TaskRun(self, task_id, loaded)
            self.runs[task_id] = run
            if self._stopping:
                run.stop(StopReason.SHUTDOWN)
            await run.run()
        except Exception:  # noqa: BLE001 - one task's failure never takes the runtime down
            logger.exception("task %s: the runtime failed to run it", task_id)
        finally:
            if run is None or self.runs.get(task_id) is run:
                self.runs.pop(task_id, None)
            with self._slots:
                self._reserved -= 1
                self._slots.notify_all()
            if on_end is not None:
                self._after_pool.submit(_quietly, on_end)

    async def _start(self, task_id: int):
        """The task's start and the read of what it runs (see _start_many_then_load), batched with the other
        starts handed in meanwhile."""
        future = self.loop.create_future()
        self._starting.append((task_id, future))
        self._start_ready.set()
        return await future

    async def _starter(self) -> None:
        """One batch of starts at a time: the starts handed in while one is stored go together in the next
        (one write transaction, one hop to a database thread, for a burst of jobs)."""
        while True:
            await self._start_ready.wait()
            self._start_ready.clear()
            while self._starting:
                batch = _take(self._starting, START_BATCH)
                try:
                    results = await self.db(_start_many_then_load, self.store, [t for t, _ in batch], self.worker_name)
                except Exception as exc:  # noqa: BLE001 - each run reports its own
                    results = [exc] * len(batch)
                _resolve([future for _, future in batch], results)

    def ended(self, run: TaskRun) -> None:
        self._dirty.pop(run.task_id, None)
        self._pids.pop(run.task_id, None)  # not stored after its end (the task may run elsewhere by then)
        self._tokens.pop(run.task_id, None)  # its end (or suspension) recorded its usage

    # -- kill orders ----------------------------------------------------------------------------

    async def _control_loop(self) -> None:
        """Kill orders published on Redis (the fast path; the database poll is the backstop): one
        subscription for the whole worker, dispatched by task and customer."""
        while True:
            pubsub = None
            try:
                pubsub = self.redis.pubsub()
                await pubsub.subscribe(control.control_channel())
                async for message in pubsub.listen():
                    if message.get("type") != "message":
                        continue
                    try:
                        order = json.loads(message["data"])
                    except ValueError:
                        continue
                    self.dispatch(order)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - Redis hiccup: resubscribe; the database poll still works
                logger.warning("control subscription failed, retrying", exc_info=True)
                await asyncio.sleep(1)
            finally:
                if pubsub is not None:
                    try:
                        await pubsub.aclose()
                    except Exception:  # noqa: BLE001
                        pass

    def dispatch(self, order: dict) -> None:
        reason = order.get("reason") or StopReason.CANCELLED
        if order.get("kind") == "kill":
            run = self.runs.get(order.get("task"))
            if run is not None:
                run.stop(reason)
        elif order.get("kind") == "kill_scope":
            customer = order.get("customer")
            for run in list(self.runs.values()):
                if customer is None or run.customer_id == customer:
                    run.stop(reason)

    # -- events ---------------------------------------------------------------------------------

    def events_ready(self, run: TaskRun) -> None:
        self._dirty.setdefault(run.task_id, run)
        self._events_ready.set()

    def attach(self, task_id: int, pid: int | None) -> None:
        self._pids[task_id] = pid

    def note_tokens(self, task_id: int, tokens: int) -> None:
        self._tokens[task_id] = tokens

    def _take_pids(self) -> tuple[dict[int, int | None], dict[int, int]]:
        """The pids and tokens to record with the next write."""
        pids, self._pids = self._pids, {}
        tokens, self._tokens = self._tokens, {}
        return pids, tokens

    def _give_back_pids(self, taken: tuple[dict[int, int | None], dict[int, int]]) -> None:
        """A write that failed: its pids and tokens go with the next one (unless newer ones came meanwhile)."""
        self._pids = {**taken[0], **self._pids}
        self._tokens = {**taken[1], **self._tokens}

    async def events_for_end(self, run: TaskRun) -> list[dict]:
        """Wait until the run's events being written are stored; take the ones still waiting, which the caller
        stores with the task's end (one transaction, not two). A long backlog is written first, as usual."""
        while run.inflight or len(run.pending) > WRITE_EVENTS_PER_TASK:
            if run.pending:
                self.events_ready(run)
            run.drained.clear()
            await run.drained.wait()
        self._dirty.pop(run.task_id, None)
        events = list(run.pending)
        run.pending.clear()
        return events

    async def events_drained(self, run: TaskRun) -> None:
        """Wait until every event the run produced is stored (the writer retries through hiccups)."""
        while run.pending or run.inflight:
            if run.pending:
                self.events_ready(run)
            run.drained.clear()
            await run.drained.wait()

    async def _event_writer(self) -> None:
        """Every task's events, stored by one writer: one transaction per batch, each task's in order."""
        while True:
            await self._events_ready.wait()
            await asyncio.sleep(WRITE_GATHER_SECONDS)
            self._events_ready.clear()
            batches: dict[int, list[dict]] = {}
            taken: list[TaskRun] = []
            total = 0
            for task_id, run in list(self._dirty.items()):
                if total >= WRITE_EVENTS_TOTAL:
                    break
                n = min(len(run.pending), WRITE_EVENTS_PER_TASK, WRITE_EVENTS_TOTAL - total)
                batch = [run.pending.popleft() for _ in range(n)]
                if not run.pending:
                    self._dirty.pop(task_id, None)
                if batch:
                    batches[task_id] = batch
                    run.inflight += len(batch)
                    taken.append(run)
                    total += len(batch)
            if not batches:
                continue
            pids = self._take_pids()
            try:
                stored = await self.db(self.store.append_events, batches, *pids, pool=self._writer_pool)
            except Exception:  # noqa: BLE001 - keep them, in order, for the next try
                logger.warning("storing %s events failed, retrying", total, exc_info=True)
                self._give_back_pids(pids)
                for run in taken:
                    run.pending.extendleft(reversed(batches[run.task_id]))
                    run.inflight -= len(batches[run.task_id])
                    self._dirty.setdefault(run.task_id, run)
                await asyncio.sleep(0.5)
                self._events_ready.set()
                continue
            for run in taken:
                run.inflight -= len(batches[run.task_id])
                if not run.inflight:  # events_for_end waits for this; events_drained checks pending too
                    run.drained.set()
            for task_id, events in stored.items():
                for event in events:
                    self.live({"type": "task.event", "event": event}, task_id)
            if self._dirty:
                self._events_ready.set()

    async def finish(self, task_id: int, end: dict) -> bool:
        """Store a task's end. Ends that come together (a killswitch, a burst) share one transaction."""
        future = self.loop.create_future()
        self._finishing.append((task_id, end, future))
        self._finish_ready.set()
        return await future

    async def _finisher(self) -> None:
        while True:
            await self._finish_ready.wait()
            if len(self.runs) > len(self._finishing):
                # Other tasks are running and may end in a moment: let their ends gather (group commit) rather
                # than store each in a transaction of its own (measured in a burst of trivial tasks: 1.6 ends a
                # transaction without this, 3.5 with it; docs/benchmarks.md). A task ending alone is stored at once.
                await asyncio.sleep(WRITE_GATHER_SECONDS)
            self._finish_ready.clear()
            batch = _take(self._finishing, WRITE_ENDS_TOTAL)
            if not batch:
                continue
            try:
                results = await self.db(self.store.finish_many, [(t, end) for t, end, _ in batch], pool=self._writer_pool)
            except Exception as exc:  # noqa: BLE001 - each run retries its own
                results = [exc] * len(batch)
            _resolve([future for _, _, future in batch], results)
            if self._finishing:
                self._finish_ready.set()

    def live(self, message: dict, task_id: int) -> None:
        """A frame for the task's live sockets: best effort, in order (the database is the record)."""
        if len(self._live) >= settings.WORKER_LIVE_BACKLOG:
            self._live.popleft()  # sockets fill a gap from the database
        self._live.append((task_id, message))
        self._live_ready.set()

    async def _live_sender(self) -> None:
        from channels.layers import get_channel_layer

        layer = get_channel_layer()
        while True:
            await self._live_ready.wait()
            self._live_ready.clear()
            while self._live:
                # what queued meanwhile goes together: only the groups someone follows cost a send
                batch = _take(self._live, LIVE_BATCH)
                try:
                    await group_send_many(layer, [(task_group(task_id), message) for task_id, message in batch])
                except Exception:  # noqa: BLE001 - live delivery is best effort
                    logger.debug("live delivery of %d frames failed", len(batch), exc_info=True)

    # -- housekeeping ---------------------------------------------------------------------------

    async def _housekeeping(self) -> None:
        """Heartbeats, the database's stop backstop, stats and limits: one pass for all tasks, never one
        timer per task; each database or Redis round trip is one for the whole worker."""
        next_beat = next_poll = next_stats = 0.0
        beat = poll = publish = None
        while True:
            now = time.monotonic()
            if now >= next_beat and (beat is None or beat.done()) and self.runs:
                beat = self.background(self._heartbeat())
                next_beat = now + settings.TASK_HEARTBEAT_SECONDS
            if now >= next_poll and (poll is None or poll.done()) and self.runs:
                scope = {r.task_id: r.customer_id for r in self.runs.values() if r.ctx is not None}
                poll = self.background(self._poll_stops(scope))
                next_poll = now + CANCEL_POLL_SECONDS
            if now >= next_stats:
                spawned = [r for r in self.runs.values() if r.spawned_at is not None and not r.outcome.done()]
                for run in spawned:
                    run.check()
                if publish is None or publish.done():
                    publish = self.background(self._publish_stats(spawned))
                next_stats = now + STATS_SECONDS
            await asyncio.sleep(min(CANCEL_POLL_SECONDS, STATS_SECONDS) / 2)

    async def _heartbeat(self) -> None:
        pids = self._take_pids()
        try:
            await self.db(self.store.heartbeat, list(self.runs), *pids, pool=self._house_pool)
        except Exception:
            self._give_back_pids(pids)
            raise

    async def _poll_stops(self, scope: dict[int, int]) -> None:
        for task_id, reason in (await self.db(self.store.stop_reasons, scope, pool=self._house_pool)).items():
            run = self.runs.get(task_id)
            if run is not None:
                run.stop(reason)

    async def _publish_stats(self, runs: list[TaskRun]) -> None:
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.hset(worker_slots_key(), self.worker_name, json.dumps(
                    {"total": self.concurrency, "busy": self.busy, "at": time.time()}
                ))
                for run in runs:
                    stats, key = run.last_stats, sandbox_stats_key(run.task_id)
                    pipe.hset(key, mapping={
                        "task": run.task_id,
                        "customer": run.customer_id,
                        "agent": run.ctx.agent_id or "",
                        "pid": run.box.pid,
                        "cpu_seconds": stats.get("cpu_seconds", 0),
                        "memory_mb": stats.get("memory_mb", 0),
                        "started_at": run.started_at_iso,
                    })
                    pipe.expire(key, max(5, int(3 * STATS_SECONDS)))
                if runs:
                    pipe.sadd(sandbox_index_key(), *[run.task_id for run in runs])
                await pipe.execute()
        except Exception:  # noqa: BLE001 - live stats are best effort
            logger.debug("stats publish failed", exc_info=True)

    def unpublish(self, task_id: int) -> None:
        """Take a finished task's live stats down. Tasks that end together (a killswitch) share one round
        trip: one coroutine per task would ask the Redis pool for 200 connections at once."""
        self._gone.append(task_id)
        if not self._unpublishing:
            self._unpublishing = True
            self.background(self._unpublish_gone())

    async def _unpublish_gone(self) -> None:
        try:
            while self._gone:
                ids, self._gone = self._gone, []
                try:
                    async with self.redis.pipeline(transaction=False) as pipe:
                        pipe.delete(*[sandbox_stats_key(task_id) for task_id in ids])
                        pipe.srem(sandbox_index_key(), *ids)
                        await pipe.execute()
                except Exception:  # noqa: BLE001 - the keys expire on their own
                    logger.debug("stats removal failed", exc_info=True)
        finally:
            self._unpublishing = False

    # -- shutdown -------------------------------------------------------------------------------

    async def _drain(self, grace_seconds: float) -> None:
        self._stopping = True
        deadline = time.monotonic() + grace_seconds
        while self.runs and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        for run in list(self.runs.values()):
            run.stop(StopReason.SHUTDOWN)
        while self.busy:
            await asyncio.sleep(0.05)
        while self._dirty:
            self._events_ready.set()
            await asyncio.sleep(0.05)
        pending = list(self._background)
        for future in pending:
            future.cancel()
        # Let them unwind first: a stats report still in flight would otherwise land after the removal
        # below and keep this worker "live" for WORKER_SLOTS_STALE_SECONDS after it is gone.
        await asyncio.gather(*pending, return_exceptions=True)
        await self.clients.close()
        try:
            await self.redis.hdel(worker_slots_key(), self.worker_name)
        except Exception:  # noqa: BLE001 - the report goes stale on its own
            pass
        try:
            await self.redis.aclose()
        except Exception:  # noqa: BLE001
            pass


def _take(queue: deque, limit: int) -> list:
    """The oldest `limit` items of a queue the loop fills (a batch for the starter, finisher or live sender)."""
    return [queue.popleft() for _ in range(min(len(queue), limit))]


def _resolve(futures: list, results: list) -> None:
    """Each waiting run gets its own result of a batch: a value, or the exception that kept it from being stored."""
    for future, result in zip(futures, results):
        if future.done():
            continue
        if isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)


def _start_many_then_load(store: TaskStore, task_ids: list[int], worker: str) -> list:
    """Start the tasks (one transaction) and read what each started one runs, in one hop to a database
    thread (TaskStore.start_and_load_many). Per task: None when it does not start, (context, None), (None, the
    error) when it started but could not be read (its run ends it failed), or the exception that kept it from
    starting.

    Two hops queued FIFO on the same threads made a burst's first load wait behind every start handed in
    before it (measured: the first task of 50 read its spec ~0.4 s after its start); one transaction per
    start made each take the SQLite writer lock (and its wait) on its own."""
    out = store.start_and_load_many(task_ids, worker)
    if any(isinstance(r, tuple) and r[1] is not None for r in out):
        connections["default"].close_if_unusable_or_obsolete()
    return out


def _with_connection(fn, args, kwargs):
    """One ORM call on a database thread, which keeps its connection; one that failed is dropped if broken."""
    try:
        return fn(*args, **kwargs)
    except Exception:
        connections["default"].close_if_unusable_or_obsolete()
        raise


def _quietly(fn) -> None:
    try:
        fn()
    except Exception:  # noqa: BLE001 - bookkeeping after a task must not take a thread down
        logger.exception("after-task bookkeeping failed")


def run_one(task_id: int) -> None:
    """Run a single task to its end in this process (a plain RQ worker's job, tools, tests)."""
    runtime = Runtime(concurrency=1, worker_name=f"{socket.gethostname()}/{os.getpid()}").start()
    done = threading.Event()
    runtime.submit(task_id, on_end=done.set)
    done.wait()
    runtime.shutdown(0)
