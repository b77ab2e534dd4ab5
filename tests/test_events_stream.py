"""The customer's `/ws/events/` stream: stored notices with a seq, resume without loss, retention, keepalive
frames and token expiry on every stream. Through Channels' communicator on the real Redis layer and database;
every wait is bounded, so a stuck stream fails the test instead of hanging it."""
import asyncio
import threading
import time
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import connection

from autogen_platform.asgi import application
from conftest import token_for
from tests.streams_support import make_task

pytestmark = pytest.mark.django_db(transaction=True)

WAIT = 5


def db(func, *args, **kwargs):
    return asyncio.wait_for(database_sync_to_async(func)(*args, **kwargs), WAIT * 2)


def publish(customer_id, n, start=1):
    """`n` task status notices for the customer, one transaction each, as the services store them."""
    from accounts.services import customer_notice_publish

    return [customer_notice_publish(customer_id=customer_id, payload={"type": "task_status", "task": start + i,
                                                                      "status": "running"})[customer_id]
            for i in range(n)]


async def connect(path, subprotocols=None):
    communicator = WebsocketCommunicator(application, path, subprotocols=subprotocols)
    connected, _ = await communicator.connect(timeout=WAIT)
    assert connected
    return communicator


async def receive(ws):
    return await ws.receive_json_from(timeout=WAIT)


async def until_ready(ws):
    """Frames up to and including {"type": "ready"}."""
    frames = []
    while not frames or frames[-1].get("type") != "ready":
        frames.append(await receive(ws))
    return frames


async def close_code(ws):
    output = await ws.receive_output(timeout=WAIT)
    while output["type"] == "websocket.send":
        output = await ws.receive_output(timeout=WAIT)
    assert output["type"] == "websocket.close"
    return output.get("code")


@pytest.fixture
def alice(make_customer):
    customer, user = make_customer("alice-co")
    return customer, user, token_for(user)


@pytest.fixture
def bob(make_customer):
    customer, user = make_customer("bob-co")
    return customer, user, token_for(user)


async def test_a_reconnect_with_after_or_a_resume_frame_gets_exactly_what_was_missed(alice, bob):
    customer_id, token = alice[0].pk, alice[2]
    # given a follower that saw notices 1..3
    ws = await connect(f"/ws/events/?token={token}")
    assert await receive(ws) == {"type": "ready", "seq": 0}
    await db(publish, customer_id, 3)
    seen = [await receive(ws) for _ in range(3)]
    assert [f["seq"] for f in seen] == [1, 2, 3] and seen[0]["type"] == "task_status"
    await ws.disconnect()

    # when notices are stored while it is away: its own, and a broadcast to every customer
    from accounts.services import customer_notice_publish

    await db(publish, customer_id, 2, start=10)
    seqs = await db(customer_notice_publish, customer_id=None, payload={"type": "broadcast", "message": "hi"})
    assert seqs[customer_id] == 6 and seqs[bob[0].pk] == 1

    # then reconnecting with ?after=3 replays 4..6 in order, says it is live, and live ones follow
    ws = await connect(f"/ws/events/?token={token}&after=3")
    frames = await until_ready(ws)
    assert [f.get("seq") for f in frames] == [4, 5, 6, 6]
    assert frames[2] == {"type": "broadcast", "message": "hi", "seq": 6} and frames[-1] == {"type": "ready", "seq": 6}
    await db(publish, customer_id, 1, start=20)
    assert (await receive(ws))["seq"] == 7
    assert await ws.receive_nothing(timeout=0.3)

    # and a {"type": "resume"} frame on an open socket replays from where the client says it is
    await ws.send_json_to({"type": "resume", "after": 5})
    assert [f.get("seq") for f in await until_ready(ws)] == [6, 7, 7]
    await ws.send_json_to({"type": "resume", "after": -1})
    assert (await receive(ws))["error"]["code"] == "validation_error"
    await ws.disconnect()

    # a stream without `after` starts at the newest notice
    ws = await connect(f"/ws/events/?token={token}")
    assert await receive(ws) == {"type": "ready", "seq": 7}
    await ws.disconnect()


async def test_reconnects_while_notices_keep_coming_lose_nothing_and_repeat_nothing(alice):
    customer_id, token = alice[0].pk, alice[2]
    total = 60
    started = threading.Event()

    def writer():
        try:
            for i in range(total):
                publish(customer_id, 1, start=i)
                if i == 5:
                    started.set()
                time.sleep(0.01)
        finally:
            connection.close()

    thread = threading.Thread(target=writer)
    thread.start()
    received = []
    try:
        assert await asyncio.wait_for(asyncio.to_thread(started.wait, WAIT), WAIT * 2)
        after = 0
        for reads in (10, 15, None):  # two drops mid-stream, then follow to the end
            ws = await connect(f"/ws/events/?token={token}&after={after}")
            while reads is None or reads > 0:
                frame = await receive(ws)
                if frame["type"] == "ready":
                    continue
                received.append(frame["seq"])
                reads = reads - 1 if reads is not None else None
                if received[-1] == total:
                    break
            await ws.disconnect()
            after = received[-1]
            if after == total:
                break
    finally:
        await asyncio.to_thread(thread.join, 30)
    assert received == list(range(1, total + 1))


def test_seqs_are_handed_out_once_each_in_commit_order_under_concurrency(make_customer):
    from accounts.models import CustomerNotice
    from accounts.services import customer_notice_publish

    acme, _ = make_customer("acme")
    globex, _ = make_customer("globex")
    errors = []

    def publisher(n, broadcast):
        try:
            for _ in range(n):
                customer_notice_publish(customer_id=None if broadcast else acme.pk, payload={"type": "x"})
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=publisher, args=(15, i == 0)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    assert list(CustomerNotice.objects.filter(customer=acme).order_by("seq").values_list("seq", flat=True)) == list(
        range(1, 61))
    assert list(CustomerNotice.objects.filter(customer=globex).order_by("seq").values_list("seq", flat=True)) == list(
        range(1, 16))
    assert acme.stream.last_seq == 60


def test_the_services_announce_through_the_stored_stream(make_customer, client_for, admin_api):
    """Task status changes, broadcasts and killswitch notices all become stored notices of the customer."""
    from accounts.models import CustomerNotice
    from tasks.services import task_finish, task_mark_running

    customer, user = make_customer("acme")
    task = make_task(customer, user, status="queued")
    task_mark_running(task_id=task.pk, worker="w")
    task_finish(task_id=task.pk, status="succeeded", result={"text": "ok"})
    admin_api.post("/api/admin/broadcast/", {"message": "Maintenance", "level": "warning"}, format="json")
    admin_api.post("/api/admin/killswitch/", {"engaged": True, "customer": customer.pk, "reason": "abuse"}, format="json")
    stored = [(n.seq, n.payload["type"], n.payload.get("status")) for n in CustomerNotice.objects.filter(customer=customer)]
    assert stored == [(1, "task_status", "running"), (2, "task_status", "succeeded"), (3, "broadcast", None),
                      (4, "killswitch", None)]


async def test_pruned_notices_are_reported_as_a_gap_on_resume(alice):
    from accounts.models import CustomerNotice
    from accounts.services import customer_notices_prune

    customer_id, token = alice[0].pk, alice[2]
    await db(publish, customer_id, 12)
    # the reaper keeps the newest CUSTOMER_STREAM_KEEP (here 5)
    assert await db(customer_notices_prune, keep=5, slack=0) == 7
    kept = await db(lambda: list(CustomerNotice.objects.filter(customer_id=customer_id).values_list("seq", flat=True)))
    assert kept == [8, 9, 10, 11, 12]
    ws = await connect(f"/ws/events/?token={token}&after=2")
    frames = await until_ready(ws)
    assert frames[0] == {"type": "gap", "after": 2, "missing_through": 7}
    assert [f["seq"] for f in frames[1:]] == [8, 9, 10, 11, 12, 12]
    await ws.disconnect()


async def test_ping_frames_get_pong_on_every_stream(alice):
    task = await db(make_task, alice[0], status="running")
    for path in (f"/ws/tasks/{task.pk}/?token={alice[2]}", f"/ws/events/?token={alice[2]}"):
        ws = await connect(path)
        await ws.send_json_to({"type": "ping"})
        frames = [await receive(ws)]
        while frames[-1] != {"type": "pong"}:
            frames.append(await receive(ws))
        assert all("error" not in f for f in frames)
        await ws.disconnect()


async def test_a_token_that_expires_while_the_socket_is_open_closes_it_with_4401(alice):
    from rest_framework_simplejwt.tokens import AccessToken

    def short_token():
        access = AccessToken.for_user(alice[1])
        access["scope"] = "customer"
        access.set_exp(lifetime=timedelta(seconds=2))
        return str(access)

    token = await db(short_token)
    task = await db(make_task, alice[0], status="running")
    events = await connect(f"/ws/events/?token={token}")
    assert (await receive(events))["type"] == "ready"  # accepted: the token was good when it connected
    task_ws = await connect(f"/ws/tasks/{task.pk}/?token={token}")
    await task_ws.send_json_to({"after": 0})
    assert (await receive(task_ws))["type"] == "event"
    for ws in (events, task_ws):
        assert await close_code(ws) == 4401


def test_a_killswitch_stores_the_notices_of_the_tasks_it_ends_in_order(make_customer, admin_api):
    from accounts.models import CustomerNotice

    customer, user = make_customer("acme")
    tasks = [make_task(customer, user, status="queued") for _ in range(3)]
    response = admin_api.post("/api/admin/killswitch/", {"engaged": True, "customer": customer.pk, "reason": "x"},
                              format="json")
    assert response.status_code == 200
    stored = [(n.seq, n.payload["type"], n.payload.get("task"), n.payload.get("status"))
              for n in CustomerNotice.objects.filter(customer=customer)]
    assert stored == [(1, "killswitch", None, None)] + [(2 + i, "task_status", t.pk, "cancelled") for i, t in enumerate(tasks)]
