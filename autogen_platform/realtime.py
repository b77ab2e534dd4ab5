"""Channels group names, the platform's channel layer, and the one way services and jobs push live frames to sockets."""
import asyncio
import logging
import os
import threading
import time

from asgiref.sync import SyncToAsync, async_to_sync
from channels.layers import get_channel_layer
from channels_redis.core import RedisChannelLayer as _RedisChannelLayer
from channels_redis.core import create_pool
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from redis.exceptions import TimeoutError as RedisTimeoutError

logger = logging.getLogger(__name__)

ALL_CUSTOMERS_GROUP = "customers.all"


class RedisChannelLayer(_RedisChannelLayer):
    """channels_redis' layer with a blocking read that always ends before the socket's read timeout.

    A socket's receive loop waits for frames with BZPOPMIN, `brpop_timeout` seconds at most, then asks
    again. channels_redis waits 5 s; redis-py (>= 6) gives every connection a 5 s socket read timeout by
    default. The server's empty answer then arrives just as the client gives up: redis-py raises
    TimeoutError, the receive loop dies and daphne closes every quiet WebSocket with 1011 after ~6 s.
    Here the block is BLOCK_SECONDS and the read timeout BLOCK_SECONDS + READ_MARGIN_SECONDS: the margin
    covers a loop that is late to read the answer (a loaded host), and the read timeout still bounds how
    long a hung Redis goes unnoticed. An explicit `socket_timeout` in a host entry must leave that margin.
    """

    BLOCK_SECONDS = 3
    READ_MARGIN_SECONDS = 7
    CONNECT_TIMEOUT_SECONDS = 5
    brpop_timeout = BLOCK_SECONDS

    def create_pool(self, index):
        host = dict(self.hosts[index])
        read_timeout = host.setdefault("socket_timeout", self.BLOCK_SECONDS + self.READ_MARGIN_SECONDS)
        if read_timeout is not None and read_timeout <= self.brpop_timeout + 1:
            raise ImproperlyConfigured(
                f"channel layer socket_timeout {read_timeout} s must exceed its blocking read ({self.brpop_timeout} s)"
                " by more than a second, or quiet WebSockets close with 1011"
            )
        host.setdefault("socket_connect_timeout", self.CONNECT_TIMEOUT_SECONDS)
        return create_pool(host)

    async def group_send_many(self, frames: list[tuple[str, dict]], concurrency: int = 8) -> None:
        """Several frames, each group's in order: the groups that have a member (a socket following them) are
        found with one pipelined count per Redis connection; only those get group_send.

        group_send asks Redis twice for a group's members before it sends anything; most frames go to groups
        nobody follows (a task's own group while no socket watches it), so a worker's task paid those round
        trips five times or more (the live frames of its start, events and end). Written here because the
        layer has no call for several groups."""
        by_group: dict[str, list[dict]] = {}
        for group, message in frames:
            by_group.setdefault(group, []).append(message)
        followed = await self._followed(list(by_group))
        gate = asyncio.Semaphore(concurrency)

        async def send(group, messages):
            async with gate:
                for message in messages:
                    await self.group_send(group, message)

        await asyncio.gather(*(send(group, by_group[group]) for group in by_group if group in followed))

    async def _followed(self, groups: list[str]) -> set[str]:
        """The groups with at least one member that group_send would not discard as expired."""
        by_index: dict[int, list[str]] = {}
        for group in groups:
            by_index.setdefault(self.consistent_hash(group), []).append(group)
        oldest = int(time.time()) - self.group_expiry  # group_send drops members scored at or below this
        followed = set()
        for index, members in by_index.items():
            async with self.connection(index).pipeline(transaction=False) as pipe:
                for group in members:
                    pipe.zcount(self._group_key(group), f"({oldest}", "+inf")
                counts = await pipe.execute()
            followed.update(group for group, count in zip(members, counts) if count)
        return followed


def task_group(task_id: int) -> str:
    return f"task.{task_id}"


def customer_group(customer_id: int) -> str:
    return f"customer.{customer_id}"


async def _group_send(layer, group: str, message: dict) -> None:
    # A Redis that hangs must not hold the caller (a request that already committed) for long.
    await asyncio.wait_for(layer.group_send(group, message), timeout=settings.REDIS_WEB_TIMEOUT_SECONDS)


# After a delivery timed out (a hung Redis) this process skips live frames for a few seconds: one
# request pays one bounded wait, not one per frame. Clients catch up from the database (seq resume).
SKIP_AFTER_TIMEOUT_SECONDS = 5.0
_skip_until = 0.0


async def _await(coroutine) -> None:
    await coroutine


_sender: tuple[int, asyncio.AbstractEventLoop] | None = None
_sender_lock = threading.Lock()


def _run(coroutine) -> None:
    """Run a send from synchronous code, and wait for it.

    In a thread that serves a running event loop (a view under daphne), asgiref hands it to that loop.
    Elsewhere (a worker's or the reaper's database thread, a management command) asgiref would build a
    new event loop, and with it a new Redis connection, for every frame: ~10 ms each, which made a
    killswitch over 200 tasks take seconds. There, one long-lived loop per process sends them all.
    """
    if getattr(SyncToAsync.threadlocal, "main_event_loop_pid", None) == os.getpid():
        async_to_sync(_await)(coroutine)
        return
    global _sender
    with _sender_lock:
        if _sender is None or _sender[0] != os.getpid():  # a forked child needs its own
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="realtime-sender", daemon=True).start()
            _sender = (os.getpid(), loop)
        loop = _sender[1]
    asyncio.run_coroutine_threadsafe(coroutine, loop).result(settings.REDIS_WEB_TIMEOUT_SECONDS + 1)


def _send(group: str, message: dict) -> None:
    global _skip_until
    if time.monotonic() < _skip_until:
        logger.debug("live delivery to %s skipped: Redis failed recently", group)
        return
    try:
        layer = get_channel_layer()
        if layer is not None:
            _run(_group_send(layer, group, message))
    except (TimeoutError, asyncio.TimeoutError, RedisTimeoutError):
        _skip_until = time.monotonic() + SKIP_AFTER_TIMEOUT_SECONDS
        logger.warning("live delivery to %s timed out; skipping live frames for %g s", group, SKIP_AFTER_TIMEOUT_SECONDS)
    except Exception:  # noqa: BLE001 - live delivery is best effort; the database is the record
        logger.warning("live delivery to %s failed", group, exc_info=True)


# Frames of one batch in flight at once: the channel layer's connection pool is small and bounded.
SEND_MANY_CONCURRENCY = 8


async def _group_send_many(layer, frames: list[tuple[str, dict]]) -> None:
    await asyncio.wait_for(group_send_many(layer, frames), timeout=settings.REDIS_WEB_TIMEOUT_SECONDS)


async def group_send_many(layer, frames: list[tuple[str, dict]]) -> None:
    """Frames to several groups, each group's in order (the layer's group_send_many where it has one)."""
    if isinstance(layer, RedisChannelLayer):
        await layer.group_send_many(frames, SEND_MANY_CONCURRENCY)
        return
    gate = asyncio.Semaphore(SEND_MANY_CONCURRENCY)
    by_group: dict[str, list[dict]] = {}
    for group, message in frames:
        by_group.setdefault(group, []).append(message)

    async def send(group, messages):
        async with gate:
            for message in messages:
                await layer.group_send(group, message)

    await asyncio.gather(*(send(group, messages) for group, messages in by_group.items()))


def send_many(frames: list[tuple[str, dict]]) -> None:
    """Several frames at once (a killswitch ending 200 tasks): sent concurrently, one wait for them all."""
    global _skip_until
    if not frames:
        return
    if time.monotonic() < _skip_until:
        logger.debug("live delivery of %d frames skipped: Redis failed recently", len(frames))
        return
    try:
        layer = get_channel_layer()
        if layer is not None:
            _run(_group_send_many(layer, frames))
    except (TimeoutError, asyncio.TimeoutError, RedisTimeoutError):
        _skip_until = time.monotonic() + SKIP_AFTER_TIMEOUT_SECONDS
        logger.warning("live delivery of %d frames timed out; skipping live frames for %g s", len(frames), SKIP_AFTER_TIMEOUT_SECONDS)
    except Exception:  # noqa: BLE001 - live delivery is best effort; the database is the record
        logger.warning("live delivery of %d frames failed", len(frames), exc_info=True)


def task_event_frame(task_id: int, event: dict) -> tuple[str, dict]:
    return task_group(task_id), {"type": "task.event", "event": event}


def task_status_frame(task_id: int, status: str) -> tuple[str, dict]:
    return task_group(task_id), {"type": "task.status", "status": status}


def customer_frame(customer_id: int | None, payload: dict) -> tuple[str, dict]:
    group = ALL_CUSTOMERS_GROUP if customer_id is None else customer_group(customer_id)
    return group, {"type": "customer.message", "payload": payload}


def send_task_event(task_id: int, event: dict) -> None:
    _send(task_group(task_id), {"type": "task.event", "event": event})


def send_task_token(task_id: int, source: str, text: str) -> None:
    _send(task_group(task_id), {"type": "task.token", "source": source, "text": text})


def send_task_status(task_id: int, status: str) -> None:
    _send(task_group(task_id), {"type": "task.status", "status": status})


def send_customer(customer_id: int | None, payload: dict) -> None:
    """A frame on a customer's events stream; customer None means every customer. The platform's notices go
    through accounts.services.customer_notice_publish, which stores them with a seq first."""
    group = ALL_CUSTOMERS_GROUP if customer_id is None else customer_group(customer_id)
    _send(group, {"type": "customer.message", "payload": payload})
