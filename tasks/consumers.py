"""WebSocket consumers: a task's live event stream and a customer's notice stream, both with lossless resume.

Task stream frames out (JSON):
  {"type": "event", "event": {seq, type, source, content, created_at}}   stored events, in seq order
  {"type": "status", "status": "running"}                                current status, then changes
  {"type": "token", "source": ..., "text": ...}                          streamed model tokens (not stored)
Customer stream frames out: stored notices {"type": "task_status"|"broadcast"|"killswitch", ..., "seq": N}
in seq order, {"type": "ready", "seq": N} once everything through N was sent, {"type": "gap", ...} when a
resume asks for notices already pruned. On both:
  {"type": "pong"}                                                       the answer to {"type": "ping"}
  {"error": {code, message, details}}                                    a client frame we could not use
Task stream frames in: a first {"after": SEQ}; {"input": {"text": ...}} or {"input": {"approve": true|false}}
answers a task waiting in input_required, as POST /api/tasks/{id}/input/ does: {"type": "input_accepted",
"status": "queued"}, or an error frame with the same codes.
Close codes: 4401 bad or missing token, or the token expired while the socket was open; 4404 no such task
for this customer (or no such stream path); 1000 after a finished task.
"""
import asyncio
import logging
import time
import weakref
from urllib.parse import parse_qs

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from rest_framework import exceptions as drf_exceptions

from accounts.authentication import CustomerJWTAuthentication
from accounts.selectors import customer_stream_read
from autogen_platform import metrics
from autogen_platform.errors import ApplicationError, NotFound, PermissionDeniedError, ValidationFailed, error_body
from autogen_platform.realtime import ALL_CUSTOMERS_GROUP, customer_group, task_group

from . import selectors
from .api.serializers import TaskInputSerializer
from .models import Task
from .services import task_answer

logger = logging.getLogger(__name__)

CLOSE_UNAUTHENTICATED = 4401
CLOSE_NOT_FOUND = 4404
CLOSE_NORMAL = 1000
BEARER_SUBPROTOCOL = "bearer"
# How long a new task socket waits for the client's {"after": SEQ} before replaying from the start.
AFTER_WAIT_SECONDS = 1.0
# With no live frame for this long, the stream checks the database itself (a lost live frame costs this much).
IDLE_CHECK_SECONDS = 5.0


def user_for_access_token(raw_token: str | None):
    """The active user of a customer that a `customer`-scoped access token names, else None."""
    return access_token_check(raw_token)[0]


def access_token_check(raw_token: str | None) -> tuple[object | None, float | None]:
    """(user, expiry as a Unix time) for a valid `customer`-scoped access token of a customer's user, else (None, None)."""
    if not raw_token:
        return None, None
    auth = CustomerJWTAuthentication()
    try:
        token = auth.get_validated_token(raw_token.encode())
        user = auth.get_user(token)
    except drf_exceptions.AuthenticationFailed:
        return None, None
    if getattr(user, "membership", None) is None:
        return None, None
    return user, token.get("exp")


def token_from_scope(scope) -> tuple[str | None, str | None]:
    """(subprotocol to accept with, raw token): `?token=` or subprotocols ["bearer", "<token>"]."""
    offered = list(scope.get("subprotocols") or [])
    subprotocol = BEARER_SUBPROTOCOL if BEARER_SUBPROTOCOL in offered else None
    if subprotocol is not None:
        index = offered.index(BEARER_SUBPROTOCOL)
        if index + 1 < len(offered):
            return subprotocol, offered[index + 1]
    query = parse_qs(scope.get("query_string", b"").decode(errors="replace"))
    tokens = query.get("token") or [None]
    return subprotocol, tokens[0]


def _read(func):
    """A read-only ORM call off the event loop. Not thread-sensitive: many sockets' reads run side by side
    on the loop's small thread pool (each call closes its connection) instead of queueing on one thread."""
    return database_sync_to_async(func, thread_sensitive=False)


@_read
def _authorize_task(raw_token, pk) -> tuple[int | None, int | None, float | None]:
    """(None, task id, token expiry) when the token's customer owns the task; else (close code, None, None)."""
    user, expires_at = access_token_check(raw_token)
    if user is None:
        return CLOSE_UNAUTHENTICATED, None, None
    try:
        return None, selectors.task_get_for_user(user=user, pk=pk).pk, expires_at
    except ApplicationError:  # not found, or not theirs: the same answer
        return CLOSE_NOT_FOUND, None, None


@_read
def _authorize_customer(raw_token) -> tuple[int | None, int | None, float | None]:
    """(None, customer id, token expiry) for a valid customer token; else (4401, None, None)."""
    user, expires_at = access_token_check(raw_token)
    if user is None:
        return CLOSE_UNAUTHENTICATED, None, None
    return None, user.membership.customer_id, expires_at


# Group joins and leaves at once per process: redis-py's pool refuses (it does not wait) past its
# max_connections, which a few hundred sockets connecting together would otherwise exceed.
LAYER_CONCURRENCY = 32
_layer_slots: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore]" = weakref.WeakKeyDictionary()


def _slots() -> asyncio.Semaphore:
    loop = asyncio.get_running_loop()
    slots = _layer_slots.get(loop)
    if slots is None:
        slots = _layer_slots[loop] = asyncio.Semaphore(LAYER_CONCURRENCY)
    return slots


async def group_join(layer, groups, channel):
    async with _slots():
        for group in groups:
            await layer.group_add(group, channel)


async def group_leave(layer, groups, channel):
    async with _slots():
        for group in groups:
            await layer.group_discard(group, channel)


@database_sync_to_async
def _answer_input(raw_token, task_id, answer) -> dict:
    """A task socket's {"input": {...}} frame: the same rules as POST /api/tasks/{id}/input/."""
    try:
        user = user_for_access_token(raw_token)
        if user is None:
            raise NotFound("Task not found")
        if not user.membership.can_write:
            raise PermissionDeniedError("Viewers have read-only access")
        task = selectors.task_get_for_user(user=user, pk=task_id)
        serializer = TaskInputSerializer(data=answer if isinstance(answer, dict) else {})
        if not serializer.is_valid():
            raise ValidationFailed(details=serializer.errors)
        task = task_answer(actor=user, task=task, **serializer.validated_data)
    except ApplicationError as exc:
        return error_body(exc.code, exc.message, exc.details)
    return {"type": "input_accepted", "status": task.status}


_snapshot = _read(selectors.task_stream_snapshot)
_events_between = _read(selectors.task_events_between)



async def _watch_while_open(consumer) -> None:
    """Both streams: while the socket is open and quiet, look at the database (the record) every
    IDLE_CHECK_SECONDS for what the live layer may have missed."""
    loop = asyncio.get_running_loop()
    while not consumer.closed:
        await asyncio.sleep(IDLE_CHECK_SECONDS)
        if loop.time() - consumer.last_activity >= IDLE_CHECK_SECONDS:
            await consumer._check_database()


async def _close_broken(consumer) -> None:
    if not consumer.closed:
        consumer.closed = True
        await consumer.close(1011)

class _StreamConsumer(AsyncJsonWebsocketConsumer):
    closed = False
    expiry = None
    counted = False  # in platform_stream_connections{kind="websocket"}, from accept to disconnect

    async def accept(self, subprotocol=None, headers=None):
        await super().accept(subprotocol, headers)
        if not self.counted:
            self.counted = True
            metrics.stream_opened("websocket")

    async def websocket_disconnect(self, message):
        if self.counted:
            self.counted = False
            metrics.stream_closed("websocket")
        await super().websocket_disconnect(message)

    async def dispatch(self, message):
        # Channels' dispatch first hops to Django's one sync thread to close stale connections, for
        # consumers that use the ORM on the loop. Ours never do (every read goes through _read, which
        # manages its connections): skipping the hop keeps one busy sync thread from delaying every socket.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def _refuse(self, code):
        # Closing before accepting would reach the client as an HTTP 403 with no code at all.
        await self.accept(self.subprotocol)
        await self.close(code)

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        try:
            content = await self.decode_json(text_data) if text_data else None
        except ValueError:
            content = None
        if content is None:
            await self.send_json(error_body("validation_error", "Frames must be JSON text"))
            return
        if isinstance(content, dict) and content.get("type") == "ping":
            # An application-level keepalive for clients that cannot see protocol pings (browsers).
            if not self.closed:
                await self.send_json({"type": "pong"})
            return
        await self.receive_json(content)

    def close_on_expiry(self, expires_at: float | None) -> None:
        """Close the socket with 4401 when its access token expires: a token is good for its lifetime only,
        however long the socket stays open. The client connects again with a fresh token and resumes."""
        if expires_at is not None:
            self.expiry = asyncio.create_task(self._expire_at(float(expires_at)))

    async def _expire_at(self, expires_at: float) -> None:
        await asyncio.sleep(max(0.0, expires_at - time.time()))
        if self.closed:
            return
        self.closed = True
        await self.send_json(error_body("token_invalid", "The access token expired: connect again with a fresh one"))
        await self.close(CLOSE_UNAUTHENTICATED)

    def stop_expiry(self) -> None:
        if self.expiry is not None:
            self.expiry.cancel()


class UnknownPathConsumer(_StreamConsumer):
    """Any other /ws/ path: accepted and closed with 4404, like a missing task, rather than an HTTP 500."""

    subprotocol = None

    async def connect(self):
        await self._refuse(CLOSE_NOT_FOUND)


class TaskStreamConsumer(_StreamConsumer):
    """`/ws/tasks/{id}/`: the stored events after the client's `after`, then the live ones, each seq once."""

    async def connect(self):
        self.task_id = None
        self.after = 0
        self.after_given = asyncio.Event()
        self.last_sent = None  # None until the history has been sent
        self.pending = []  # live events that arrived before the history was sent
        self.status = None
        self.closed = False
        self.lock = asyncio.Lock()
        self.runner = None
        self.subprotocol, raw_token = token_from_scope(self.scope)
        self.raw_token = raw_token
        refused, self.task_id, expires_at = await _authorize_task(raw_token, self.scope["url_route"]["kwargs"]["task_id"])
        if refused:
            await self._refuse(refused)
            return
        # Join first, read the history second: whatever is written meanwhile arrives live and is deduplicated.
        await group_join(self.channel_layer, [task_group(self.task_id)], self.channel_name)
        await self.accept(self.subprotocol)
        self.close_on_expiry(expires_at)
        self.last_activity = asyncio.get_running_loop().time()
        self.runner = asyncio.create_task(self._run())

    async def disconnect(self, code):
        self.closed = True
        self.stop_expiry()
        if self.runner is not None:
            self.runner.cancel()
        if self.task_id is not None:
            await group_leave(self.channel_layer, [task_group(self.task_id)], self.channel_name)

    async def receive_json(self, content, **kwargs):
        if self.task_id is not None and isinstance(content, dict) and "input" in content:
            await self.send_json(await _answer_input(self.raw_token, self.task_id, content["input"]))
            return
        if self.task_id is None or self.after_given.is_set() or self.last_sent is not None:
            return  # only a first {"after": SEQ} means something; later frames (pings) are ignored
        after = content.get("after") if isinstance(content, dict) else None
        if isinstance(after, bool) or not isinstance(after, int) or after < 0:
            await self.send_json(
                error_body("validation_error", 'Send {"after": SEQ} with SEQ a non-negative integer', {"after": after})
            )
            return
        self.after = after
        self.after_given.set()

    async def _run(self):
        try:
            try:
                await asyncio.wait_for(self.after_given.wait(), AFTER_WAIT_SECONDS)
            except asyncio.TimeoutError:
                pass
            await self._replay(self.after)
            await _watch_while_open(self)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - a broken stream must end visibly, not hang the client
            logger.exception("task stream %s failed", self.task_id)
            await _close_broken(self)

    async def _replay(self, after):
        async with self.lock:
            status, history = await _snapshot(task_id=self.task_id, after=after)
            if not status:
                return await self._gone()
            self.last_sent = after
            for event in history:
                await self._send_event(event)
            await self._send_status(status)
            pending, self.pending = self.pending, []
            for event in sorted(pending, key=lambda e: e["seq"]):
                await self._deliver(event)
            if status in Task.FINISHED:
                await self._finish(status)

    async def _check_database(self):
        """Safety net for a lost live frame: anything stored past what we sent goes out now."""
        async with self.lock:
            if self.closed:
                return
            status, events = await _snapshot(task_id=self.task_id, after=self.last_sent)
            if not status:
                return await self._gone()
            for event in events:
                await self._deliver(event)
            if status in Task.FINISHED:
                await self._finish(status)
            else:
                await self._send_status(status)
            self.last_activity = asyncio.get_running_loop().time()

    async def _deliver(self, event):
        """Send a live or fetched event unless already sent; fill a gap before it from the database."""
        if self.closed or event["seq"] <= self.last_sent:
            return
        if event["seq"] > self.last_sent + 1:
            for missing in await _events_between(task_id=self.task_id, after=self.last_sent, upto=event["seq"] - 1):
                await self._send_event(missing)
        await self._send_event(event)

    async def _send_event(self, event):
        if self.closed or event["seq"] <= self.last_sent:
            return
        await self.send_json({"type": "event", "event": event})
        self.last_sent = event["seq"]
        if event["type"] == "status":
            status = (event.get("content") or {}).get("status")
            if status in Task.FINISHED:
                await self._finish(status)

    async def _send_status(self, status):
        if self.closed or not status or status == self.status:
            return
        self.status = status
        await self.send_json({"type": "status", "status": status})

    async def _gone(self):
        """The task was deleted under the stream."""
        self.closed = True
        await self.close(CLOSE_NOT_FOUND)

    async def _finish(self, status):
        if self.closed:
            return
        await self._send_status(status)
        self.closed = True
        await self.close(CLOSE_NORMAL)

    # Group messages from autogen_platform.realtime.

    async def task_event(self, message):
        self.last_activity = asyncio.get_running_loop().time()
        async with self.lock:
            if self.last_sent is None:
                self.pending.append(message["event"])
            else:
                await self._deliver(message["event"])

    async def task_status(self, message):
        self.last_activity = asyncio.get_running_loop().time()
        async with self.lock:
            if self.last_sent is None or self.closed:
                return  # the history's snapshot carries the status
            if message["status"] in Task.FINISHED:
                # The final events are stored before this is sent: send any we have not, then close.
                for event in await _events_between(task_id=self.task_id, after=self.last_sent):
                    await self._deliver(event)
                await self._finish(message["status"])
            else:
                await self._send_status(message["status"])

    async def task_token(self, message):
        if self.last_sent is not None and not self.closed:
            await self.send_json({"type": "token", "source": message.get("source", ""), "text": message["text"]})


_stream_read = _read(customer_stream_read)


def _after_from_query(scope) -> tuple[int | None, str | None]:
    """(SEQ of `?after=SEQ`, or None; the raw value when it is not a non-negative integer)."""
    values = parse_qs(scope.get("query_string", b"").decode(errors="replace")).get("after")
    if not values:
        return None, None
    try:
        after = int(values[0])
    except ValueError:
        return None, values[0]
    return (after, None) if after >= 0 else (None, values[0])


class CustomerStreamConsumer(_StreamConsumer):
    """`/ws/events/`: the customer's notices (task status changes, broadcasts, killswitch notices), each
    stored with the stream's next seq. `?after=SEQ` or a {"type": "resume", "after": SEQ} frame replays
    the kept notices after SEQ, then the live ones follow, each seq once and in order; without either the
    stream starts at the newest notice. {"type": "ready", "seq": N} says everything through N was sent."""

    async def connect(self):
        self.joined = []
        self.customer_id = None
        self.last_sent = None  # None until the stream's position is known
        self.pending = []  # live notices that arrived before it was
        self.lock = asyncio.Lock()
        self.runner = None
        self.subprotocol, raw_token = token_from_scope(self.scope)
        refused, self.customer_id, expires_at = await _authorize_customer(raw_token)
        if refused:
            await self._refuse(refused)
            return
        # Join first, read the stored notices second: whatever is stored meanwhile arrives live and is deduplicated.
        self.joined = [customer_group(self.customer_id), ALL_CUSTOMERS_GROUP]
        await group_join(self.channel_layer, self.joined, self.channel_name)
        await self.accept(self.subprotocol)
        self.close_on_expiry(expires_at)
        self.last_activity = asyncio.get_running_loop().time()
        self.runner = asyncio.create_task(self._run())

    async def disconnect(self, code):
        self.closed = True
        self.stop_expiry()
        if self.runner is not None:
            self.runner.cancel()
        await group_leave(self.channel_layer, self.joined, self.channel_name)

    async def receive_json(self, content, **kwargs):
        if self.customer_id is None or not isinstance(content, dict) or content.get("type") != "resume":
            return  # nothing else to ask of this stream
        after = content.get("after")
        if isinstance(after, bool) or not isinstance(after, int) or after < 0:
            await self.send_json(error_body(
                "validation_error", 'Send {"type": "resume", "after": SEQ} with SEQ a non-negative integer', {"after": after}))
            return
        await self._resume(after)

    async def _run(self):
        try:
            after, invalid = _after_from_query(self.scope)
            if invalid is not None:
                await self.send_json(error_body("validation_error", "after must be a non-negative integer", {"after": invalid}))
            await self._resume(after)
            await _watch_while_open(self)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - a broken stream must end visibly, not hang the client
            logger.exception("events stream of customer %s failed", self.customer_id)
            await _close_broken(self)

    async def _resume(self, after: int | None):
        """Send the kept notices after `after` (None: none, start at the newest), then `ready`."""
        async with self.lock:
            if self.closed:
                return
            stream = await _stream_read(customer_id=self.customer_id, after=after)
            if after is None or after > stream["last_seq"]:
                after = stream["last_seq"]  # a seq from the future (another database): start at the newest
            elif after < stream["pruned_through"]:
                await self.send_json({"type": "gap", "after": after, "missing_through": stream["pruned_through"]})
            self.last_sent = after
            for notice in stream["notices"]:
                await self._send_notice(notice)
            await self.send_json({"type": "ready", "seq": self.last_sent})
            pending, self.pending = self.pending, []
            for notice in sorted(pending, key=lambda n: n["seq"]):
                await self._deliver(notice)

    async def _check_database(self):
        """Safety net for a lost live frame: anything stored past what we sent goes out now."""
        async with self.lock:
            if self.closed or self.last_sent is None:
                return
            stream = await _stream_read(customer_id=self.customer_id, after=self.last_sent)
            for notice in stream["notices"]:
                await self._send_notice(notice)
            self.last_activity = asyncio.get_running_loop().time()

    async def _deliver(self, notice):
        """Send a live notice unless already sent; fill a gap before it from the database."""
        if self.closed or notice["seq"] <= self.last_sent:
            return
        if notice["seq"] > self.last_sent + 1:
            stream = await _stream_read(customer_id=self.customer_id, after=self.last_sent, upto=notice["seq"] - 1)
            for missing in stream["notices"]:
                await self._send_notice(missing)
        await self._send_notice(notice)

    async def _send_notice(self, notice):
        if self.closed or notice["seq"] <= self.last_sent:
            return
        await self.send_json(notice)
        self.last_sent = notice["seq"]

    # Group messages from autogen_platform.realtime.

    async def customer_message(self, message):
        notice = message["payload"]
        seqs = message.get("seqs")
        if seqs is not None:  # one frame for every customer, with each one's seq
            seq = seqs.get(str(self.customer_id))
            if seq is None:
                return  # stored before this customer existed
            notice = {**notice, "seq": seq}
        if "seq" not in notice:
            return  # not a stored notice: nothing sends those any more
        self.last_activity = asyncio.get_running_loop().time()
        async with self.lock:
            if self.last_sent is None:
                self.pending.append(notice)
            else:
                await self._deliver(notice)
