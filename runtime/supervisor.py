"""Supervises one task's child process from the RQ work-horse, and always ends the task truthfully.

One asyncio loop owns the child's channel: it relays model calls through the broker, persists the
child's events in order, streams tokens live, and enforces cancel/stop/restart/killswitch (Redis
pub/sub, with the database's cancel_requested as the backstop), the wall-clock timeout and the
token budgets (the agents' max_tokens, the customer's monthly budget) by killing the sandbox's
whole tree. Every database write goes through tasks.services on one dedicated thread, so the loop
never blocks and never touches the ORM.
"""
import asyncio
import json
import logging
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from django.conf import settings
from django.db import connections

from . import control
from .broker import BudgetExceeded, ModelBroker, ModelFailed
from .sandbox import Sandbox, SandboxLimits

logger = logging.getLogger(__name__)

# The directory that holds the agentchild package: the only platform code a child can import.
AGENTCHILD_PARENT = Path(__file__).resolve().parent
LINE_LIMIT = 64 * 1024 * 1024
TICK_SECONDS = 0.05
CANCEL_POLL_SECONDS = 0.5
STATS_SECONDS = 1.0
LIMITS_SECONDS = 0.5
PERSIST_ATTEMPTS = 10
TOKEN_FLUSH_SECONDS = 0.1
# Event types a child may report; status, usage and error events are the supervisor's alone.
CHILD_EVENT_TYPES = {"message", "tool_call", "tool_result", "code_execution", "log"}
# A thread keeps at most this much AgentChat state (the whole `done` line, in bytes).
MAX_STATE_BYTES = 8 * 1024 * 1024
# After the child's channel closes, how long it may take to exit before we kill it.
EXIT_GRACE_SECONDS = 1.0

# A stop reason (Task.cancel_requested, control messages) -> how the task ends.
STOP_OUTCOMES = {
    "cancelled": ("cancelled", "cancelled", "Cancelled"),
    "killswitch": ("cancelled", "killswitch", "Stopped by the killswitch"),
    "stopped": ("cancelled", "cancelled", "The agent was stopped"),
}


@dataclass
class Outcome:
    status: str  # a final Task status, or "requeue"
    error: dict | None = None
    result: dict | None = None
    state: dict | None = None


@dataclass
class TaskContext:
    task_id: int
    customer_id: int
    agent_id: int | None
    input: str
    spec: dict
    thread_state: dict | None
    models: dict[int, dict]
    budgets: dict[int, int]
    limits: dict = field(default_factory=dict)


def _result(raw) -> dict:
    raw = raw if isinstance(raw, dict) else {}
    return {"text": str(raw.get("text") or ""), "stop_reason": str(raw.get("stop_reason") or "completed")}


def stop_outcome(reason: str) -> Outcome:
    if reason == "restart":
        return Outcome("requeue")
    status, code, message = STOP_OUTCOMES.get(reason, ("cancelled", "cancelled", f"Stopped ({reason})"))
    return Outcome(status, error={"code": code, "message": message})


def failed(code: str, message: str) -> Outcome:
    return Outcome("failed", error={"code": code, "message": message})


def load_task_context(task_id: int) -> TaskContext | None:
    """Read what the run needs (model credentials decrypted here, in the parent only)."""
    from accounts.crypto import decrypt
    from agents.models import ModelConfig
    from tasks.models import Task

    task = Task.objects.select_related("thread").filter(pk=task_id).first()
    if task is None or task.status != Task.Status.RUNNING:
        return None
    spec = task.spec or {}
    agents = spec.get("agents") or []
    model_ids = {a["model"] for a in agents}
    if spec.get("kind") == "team" and spec["team"].get("selector_model"):
        model_ids.add(spec["team"]["selector_model"])
    models = {}
    for config in ModelConfig.objects.filter(pk__in=model_ids, customer_id=task.customer_id):
        models[config.pk] = {
            "id": config.pk,
            "name": config.name,
            "provider": config.provider,
            "model": config.model,
            "base_url": config.base_url,
            "api_key": _decrypt_or_none(decrypt, config.api_key_encrypted),
            "model_info": dict(config.model_info or {}),
            "responses": list(config.responses or []),
        }
    defaults = settings.DEFAULT_AGENT_LIMITS
    limits = {key: max(int({**defaults, **(a.get("limits") or {})}[key]) for a in agents) for key in defaults} if agents else dict(defaults)
    budgets = {a["id"]: int({**defaults, **(a.get("limits") or {})}["max_tokens"]) for a in agents}
    return TaskContext(
        task_id=task.pk,
        customer_id=task.customer_id,
        agent_id=task.agent_id,
        input=task.input,
        spec=spec,
        thread_state=task.thread.state,
        models=models,
        budgets=budgets,
        limits=limits,
    )


def _decrypt_or_none(decrypt, token: str):
    """None when the stored key cannot be decrypted (FIELD_ENCRYPTION_KEY changed): the task ends model_error."""
    try:
        return decrypt(token)
    except ValueError:
        return None


def poll_stop_reason(task_id: int, customer_id: int) -> str:
    """The database backstop for kill orders: cancel_requested, or an engaged killswitch."""
    from adminpanel.services import killswitch_scope_engaged
    from tasks.models import Task

    reason = Task.objects.filter(pk=task_id).values_list("cancel_requested", flat=True).first()
    if reason:
        return reason
    return "killswitch" if killswitch_scope_engaged(customer_id) else ""


def monthly_tokens_left(task_id: int, customer_id: int, task_tokens: int) -> int:
    """Record the task's tokens so far; what is left of its customer's monthly budget, this task included."""
    from accounts.models import Customer
    from accounts.services import customer_tokens_this_month
    from tasks.services import task_record_tokens

    task_record_tokens(task_id=task_id, tokens=task_tokens)
    customer = Customer.objects.filter(pk=customer_id).first()
    if customer is None:
        return 0
    return customer.monthly_token_budget - customer_tokens_this_month(customer)


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


def sandbox_stats_key(task_id: int) -> str:
    return f"{settings.REDIS_NAMESPACE}:sandbox:{task_id}"


def sandbox_index_key() -> str:
    return f"{settings.REDIS_NAMESPACE}:sandboxes"


class Supervisor:
    def __init__(self, task_id: int):
        self.task_id = task_id
        self.box: Sandbox | None = None
        self.broker: ModelBroker | None = None
        self.pending_events: list[dict] = []
        # (write, its events) while the flush loop waits for a batch of events to be stored
        self.flushing: tuple[asyncio.Future, list[dict]] | None = None
        self.pending_tokens: dict[str, str] = {}
        self.model_calls: set[asyncio.Task] = set()
        self.peak_memory_mb = 0.0
        self.cpu_seconds = 0.0
        self.spawned_at: float | None = None
        self.ended_at: float | None = None

    def run(self) -> None:
        asyncio.run(self._main())

    # -- plumbing -------------------------------------------------------------------------------

    async def db(self, fn, *args, **kwargs):
        """Run an ORM call on the supervisor's one database thread (in order, off the loop)."""
        return await asyncio.get_running_loop().run_in_executor(self.db_pool, lambda: fn(*args, **kwargs))

    def end(self, outcome: Outcome) -> None:
        """The first outcome wins: later ones (the child's report after a kill, say) are ignored."""
        if not self.outcome.done():
            self.ended_at = time.monotonic()
            self.outcome.set_result(outcome)

    async def send(self, message: dict) -> None:
        try:
            self.writer.write((json.dumps(message, separators=(",", ":")) + "\n").encode())
            await self.writer.drain()
        except (ConnectionError, RuntimeError):
            pass  # the child is gone; the read loop ends the task

    # -- the run --------------------------------------------------------------------------------

    async def _main(self) -> None:
        self.db_pool = ThreadPoolExecutor(1, thread_name_prefix=f"task-{self.task_id}-db")
        self.live_pool = ThreadPoolExecutor(1, thread_name_prefix=f"task-{self.task_id}-live")
        self.outcome = asyncio.get_running_loop().create_future()
        self.redis = None
        try:
            try:
                ctx = await self.db(load_task_context, self.task_id)
            except Exception:  # noqa: BLE001 - a task that cannot even be read must still end
                logger.exception("task %s: could not load what it runs", self.task_id)
                from tasks.services import task_finish

                await self._retrying(
                    task_finish, task_id=self.task_id, status="failed",
                    error={"code": "sandbox_error", "message": "The platform could not prepare the task"},
                )
                return
            if ctx is None:
                logger.info("task %s is not running any more: nothing to supervise", self.task_id)
                return
            try:
                outcome = await self._supervise(ctx)
            except Exception:  # noqa: BLE001 - a supervisor bug must still end the task
                logger.exception("supervisor of task %s failed", self.task_id)
                outcome = failed("sandbox_error", "The platform failed while supervising the task")
            finally:
                self._kill_child()
            await self._persist(ctx, outcome)
        finally:
            if self.redis is not None:
                try:
                    await self.redis.aclose()
                except Exception:  # noqa: BLE001
                    pass
            await self.db(connections.close_all)
            self.db_pool.shutdown(wait=True)
            self.live_pool.shutdown(wait=True)

    async def _supervise(self, ctx: TaskContext) -> Outcome:
        try:
            self.broker = ModelBroker(ctx.models, ctx.budgets, monthly_left=lambda tokens: self._monthly_left(ctx, tokens))
            missing = {a["model"] for a in ctx.spec.get("agents", [])} - set(ctx.models)
            if missing:
                raise ModelFailed(f"Model configuration(s) {sorted(missing)} no longer exist")
        except ModelFailed as exc:
            return failed("model_error", str(exc))

        import redis.asyncio as aioredis

        self.redis = aioredis.Redis.from_url(settings.REDIS_URL)
        try:  # listen for kill orders before the child exists, so that none is missed
            pubsub = await self._subscribe()
        except Exception:  # noqa: BLE001 - the control loop retries; the database poll is the backstop
            logger.warning("task %s: control subscription failed", ctx.task_id, exc_info=True)
            pubsub = None
        limits = SandboxLimits(
            memory_mb=ctx.limits["memory_mb"], cpu_seconds=ctx.limits["cpu_seconds"], timeout_seconds=ctx.limits["timeout_seconds"]
        )
        self.box = Sandbox(task_id=ctx.task_id, limits=limits, root=settings.SANDBOX_ROOT)
        parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.box.spawn(
                [sys.executable, "-m", "agentchild"],
                env=child_env(self.box.workdir, child_sock.fileno()),
                pass_fds=(child_sock.fileno(),),
                warm=settings.SANDBOX_WARM_START,
            )
        except Exception as exc:  # noqa: BLE001 - whatever the sandbox refused, the task says so
            logger.exception("task %s: sandbox spawn failed", ctx.task_id)
            parent_sock.close()
            return failed("sandbox_error", f"The sandbox could not start: {exc}")
        finally:
            child_sock.close()
        self.spawned_at = time.monotonic()
        self.started_at_iso = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
        from tasks.services import task_attach_process

        await self.db(task_attach_process, task_id=ctx.task_id, pid=self.box.pid)

        reader, self.writer = await asyncio.open_connection(sock=parent_sock, limit=LINE_LIMIT)
        await self.send(
            {
                "op": "start",
                "task": ctx.task_id,
                "input": ctx.input,
                "spec": ctx.spec,
                "models": self.broker.model_infos(),
                "state": ctx.thread_state,
                "stream": True,
            }
        )
        self.events_ready = asyncio.Event()
        workers = [
            asyncio.create_task(self._read_loop(reader)),
            asyncio.create_task(self._control_loop(ctx, pubsub)),
            asyncio.create_task(self._watch_loop(ctx)),
            asyncio.create_task(self._flush_loop()),
        ]
        try:
            outcome = await self.outcome
        finally:
            for worker in [*workers, *self.model_calls]:
                worker.cancel()
            await asyncio.gather(*workers, *self.model_calls, return_exceptions=True)
            self._sample_stats()
            self._kill_child()
            try:
                self.writer.close()
            except Exception:  # noqa: BLE001
                pass
            await self.broker.close()
        return outcome

    def _kill_child(self) -> None:
        if self.box is None or self.box.pid is None:
            return
        try:
            self.box.kill()
        except Exception:  # noqa: BLE001 - kill is idempotent; never let it hide the outcome
            logger.exception("task %s: sandbox kill failed", self.task_id)

    async def _persist(self, ctx: TaskContext, outcome: Outcome) -> None:
        from tasks.services import task_events_append, task_finish, task_requeue

        if self.box is not None and self.box.pid is not None:
            try:
                await asyncio.to_thread(self.box.wait, 2)
            except Exception:  # noqa: BLE001 - a tree that refuses to die is logged, not waited on forever
                logger.warning("task %s: sandbox did not exit after kill", ctx.task_id)
            self._sample_stats()
            try:
                await asyncio.to_thread(self.box.cleanup)
            except Exception:  # noqa: BLE001
                logger.exception("task %s: sandbox cleanup failed", ctx.task_id)
        if self.redis is not None:
            try:
                await self.redis.delete(sandbox_stats_key(ctx.task_id))
                await self.redis.srem(sandbox_index_key(), ctx.task_id)
            except Exception:  # noqa: BLE001 - the key expires on its own
                pass
        if self.flushing is not None:
            # the run ended while a batch was being stored: let it land, or store it again here
            write, batch = self.flushing
            try:
                await write
            except Exception:  # noqa: BLE001
                self.pending_events[:0] = batch
        events, self.pending_events = self.pending_events, []
        if events:
            await self._retrying(task_events_append, task_id=ctx.task_id, events=events)
        if outcome.status == "requeue":
            await self._retrying(task_requeue, task_id=ctx.task_id)
            return
        end = self.ended_at or time.monotonic()
        usage = {
            "prompt_tokens": self.broker.prompt_tokens if self.broker else 0,
            "completion_tokens": self.broker.completion_tokens if self.broker else 0,
            "cpu_seconds": round(self.cpu_seconds, 3),
            "peak_memory_mb": round(self.peak_memory_mb, 1),
            "wall_seconds": round(end - self.spawned_at, 3) if self.spawned_at else 0.0,
        }
        await self._retrying(
            task_finish,
            task_id=ctx.task_id,
            status=outcome.status,
            result=outcome.result,
            error=outcome.error,
            usage=usage,
            thread_state=outcome.state if outcome.status == "succeeded" else None,
        )

    async def _retrying(self, fn, **kwargs):
        """The end of a task must be written: retry through a database hiccup (the reaper is the last resort)."""
        for attempt in range(PERSIST_ATTEMPTS):
            try:
                return await self.db(fn, **kwargs)
            except Exception:  # noqa: BLE001
                if attempt == PERSIST_ATTEMPTS - 1:
                    raise
                logger.warning("task %s: %s failed, retrying", self.task_id, fn.__name__, exc_info=True)
                await asyncio.sleep(1)

    # -- loops ----------------------------------------------------------------------------------

    async def _read_loop(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                message = json.loads(line)
                op = message.get("op")
                if op == "event":
                    kind = message.get("type") if message.get("type") in CHILD_EVENT_TYPES else "log"
                    self.pending_events.append(
                        {"type": kind, "source": str(message.get("source") or ""), "content": message.get("content")}
                    )
                    self.events_ready.set()
                elif op == "model":
                    self.model_calls.add(asyncio.create_task(self._answer_model(message)))
                elif op == "done":
                    self._sample_stats()
                    self.end(Outcome("succeeded", result=_result(message.get("result")), state=self._thread_state(message, line)))
                elif op == "error":
                    code = message.get("code") if message.get("code") in ("agent_error", "memory_limit") else "agent_error"
                    self.end(failed(code, str(message.get("message") or "The agent failed")[:2000]))
        except (ValueError, ConnectionError) as exc:
            logger.warning("task %s: bad channel from the child: %s", self.task_id, exc)
        # The channel closed without a report: the child died. Let it finish exiting, then ask why.
        deadline = time.monotonic() + EXIT_GRACE_SECONDS
        while self.box.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(TICK_SECONDS)
        self.end(self._death_outcome())

    def _thread_state(self, message: dict, line: bytes) -> dict | None:
        if len(line) > MAX_STATE_BYTES:
            self.pending_events.append(
                {"type": "log", "source": "platform", "content": {"kind": "state_not_saved", "text": "The conversation state is too large to keep on the thread."}}
            )
            return None
        return message.get("state")

    def _death_outcome(self) -> Outcome:
        code = self.box.poll()
        reason = self.box.end_reason() if code is not None else None
        return self._limit_outcome(reason) if reason else failed(
            "sandbox_error", f"The task's process ended unexpectedly (exit status {code})"
        )

    def _limit_outcome(self, reason: str) -> Outcome:
        if reason == "memory_limit":
            return failed("memory_limit", f"The task went over its memory limit of {self.box.limits.memory_mb} MB")
        if reason == "cpu_limit":
            return failed("cpu_limit", f"The task went over its CPU limit of {self.box.limits.cpu_seconds} s")
        if reason == "timeout":
            return self._timeout_outcome()
        return failed("sandbox_error", f"The sandbox ended the task ({reason})")

    def _timeout_outcome(self) -> Outcome:
        return Outcome("timed_out", error={"code": "timeout", "message": f"The task ran longer than {self.box.limits.timeout_seconds} s"})

    async def _answer_model(self, request: dict) -> None:
        request_id, caller = request.get("id"), request.get("caller") or ""

        async def on_chunk(text: str) -> None:
            self.pending_tokens[caller] = self.pending_tokens.get(caller, "") + text
            await self.send({"op": "model_chunk", "id": request_id, "text": text})

        started = time.monotonic()
        try:
            result = await self.broker.call(request, on_chunk)
        except BudgetExceeded as exc:
            self.end(failed("token_budget", str(exc)))
            return
        except ModelFailed as exc:
            self.end(failed("model_error", str(exc)[:2000]))
            return
        if self.pending_tokens:
            self._flush_tokens()  # the whole answer is out live before its message is stored
        logger.debug(
            "task %s: model call by %s took %.2fs (%s+%s tokens)",
            self.task_id, caller, time.monotonic() - started, result.usage.prompt_tokens, result.usage.completion_tokens,
        )
        await self.send({"op": "model_result", "id": request_id, "result": result.model_dump(mode="json")})

    async def _monthly_left(self, ctx: TaskContext, tokens: int) -> int:
        try:
            return await self.db(monthly_tokens_left, ctx.task_id, ctx.customer_id, tokens)
        except Exception:  # noqa: BLE001 - a database hiccup lets this call through; the next one checks again
            logger.warning("task %s: monthly token budget check failed", ctx.task_id, exc_info=True)
            return 1

    async def _subscribe(self):
        pubsub = self.redis.pubsub()
        await pubsub.subscribe(control.control_channel())
        return pubsub

    async def _control_loop(self, ctx: TaskContext, pubsub) -> None:
        """Kill orders published on Redis: the fast path (the database poll is the backstop)."""
        while True:
            try:
                pubsub = pubsub or await self._subscribe()
                async for message in pubsub.listen():
                    if message.get("type") != "message":
                        continue
                    try:
                        order = json.loads(message["data"])
                    except ValueError:
                        continue
                    mine = (order.get("kind") == "kill" and order.get("task") == ctx.task_id) or (
                        order.get("kind") == "kill_scope" and order.get("customer") in (None, ctx.customer_id)
                    )
                    if mine:
                        self.end(stop_outcome(order.get("reason") or "cancelled"))
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - Redis hiccup: resubscribe; the database poll still works
                logger.warning("task %s: control subscription failed, retrying", ctx.task_id, exc_info=True)
                pubsub = None
                await asyncio.sleep(1)

    async def _watch_loop(self, ctx: TaskContext) -> None:
        """Wall-clock timeout, the database's kill backstop, heartbeat, live stats and tokens."""
        from tasks.services import task_heartbeat

        deadline = self.spawned_at + ctx.limits["timeout_seconds"]
        next_poll = next_stats = next_tokens = next_limits = 0.0
        next_beat = time.monotonic() + settings.TASK_HEARTBEAT_SECONDS
        poll = None
        while True:
            now = time.monotonic()
            if now >= deadline:
                self.end(self._timeout_outcome())
                return
            if poll is not None and poll.done():
                reason = poll.result() if not poll.exception() else ""
                if reason:
                    self.end(stop_outcome(reason))
                    return
                poll = None
            if poll is None and now >= next_poll:
                poll = asyncio.ensure_future(self.db(poll_stop_reason, ctx.task_id, ctx.customer_id))
                next_poll = now + CANCEL_POLL_SECONDS
            if now >= next_beat:
                asyncio.ensure_future(self._quietly(self.db(task_heartbeat, task_id=ctx.task_id)))
                next_beat = now + settings.TASK_HEARTBEAT_SECONDS
            if now >= next_limits:
                # The sandbox kills the tree when it went over a limit the kernel does not enforce.
                reason = self.box.check_limits()
                if reason:
                    self.end(self._limit_outcome(reason))
                    return
                next_limits = now + LIMITS_SECONDS
            if now >= next_stats:
                self._sample_stats()
                asyncio.ensure_future(self._publish_stats(ctx))
                next_stats = now + STATS_SECONDS
            if now >= next_tokens and self.pending_tokens:
                self._flush_tokens()
                next_tokens = now + TOKEN_FLUSH_SECONDS
            await asyncio.sleep(TICK_SECONDS)

    async def _quietly(self, awaitable) -> None:
        try:
            await awaitable
        except Exception:  # noqa: BLE001 - a missed heartbeat is retried on the next one
            logger.warning("task %s: heartbeat failed", self.task_id, exc_info=True)

    async def _flush_loop(self) -> None:
        from tasks.services import task_events_append

        while True:
            await self.events_ready.wait()
            self.events_ready.clear()
            events, self.pending_events = self.pending_events, []
            if not events:
                continue
            # Shielded: the end of the run cancels this loop, and must not drop a batch still waiting
            # for the database thread (_persist awaits it).
            write = asyncio.ensure_future(self.db(task_events_append, task_id=self.task_id, events=events))
            self.flushing = (write, events)
            try:
                await asyncio.shield(write)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - keep them for the next try; the order is kept
                logger.warning("task %s: storing events failed, retrying", self.task_id, exc_info=True)
                self.pending_events[:0] = events
                self.flushing = None
                await asyncio.sleep(0.5)
                self.events_ready.set()
            else:
                self.flushing = None

    # -- live data ------------------------------------------------------------------------------

    def _flush_tokens(self) -> None:
        from autogen_platform import realtime

        tokens, self.pending_tokens = self.pending_tokens, {}
        for source, text in tokens.items():
            self.live_pool.submit(realtime.send_task_token, self.task_id, source, text)

    def _sample_stats(self) -> None:
        if self.box is None or self.box.pid is None:
            return
        try:
            stats = self.box.stats()
        except Exception:  # noqa: BLE001 - stats are best effort
            return
        self.cpu_seconds = max(self.cpu_seconds, float(stats.get("cpu_seconds") or 0))
        self.peak_memory_mb = max(self.peak_memory_mb, float(stats.get("peak_memory_mb") or 0), float(stats.get("memory_mb") or 0))
        self.last_stats = stats

    async def _publish_stats(self, ctx: TaskContext) -> None:
        stats = getattr(self, "last_stats", None) or {}
        key = sandbox_stats_key(ctx.task_id)
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.hset(
                    key,
                    mapping={
                        "task": ctx.task_id,
                        "customer": ctx.customer_id,
                        "agent": ctx.agent_id or "",
                        "pid": self.box.pid,
                        "cpu_seconds": stats.get("cpu_seconds", 0),
                        "memory_mb": stats.get("memory_mb", 0),
                        "started_at": self.started_at_iso,
                    },
                )
                pipe.expire(key, max(5, int(3 * STATS_SECONDS)))
                pipe.sadd(sandbox_index_key(), ctx.task_id)
                await pipe.execute()
        except Exception:  # noqa: BLE001 - live stats are best effort
            logger.debug("task %s: stats publish failed", ctx.task_id, exc_info=True)


def supervise(task_id: int) -> None:
    Supervisor(task_id).run()
