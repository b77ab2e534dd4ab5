"""The task and customer WebSocket streams through Channels' communicator: auth, close codes, resume."""
import asyncio

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from autogen_platform.asgi import application
from conftest import token_for
from tests.streams_support import append_messages, make_task

pytestmark = pytest.mark.django_db(transaction=True)


def db(func, *args, **kwargs):
    """An ORM call off the loop, bounded: a stuck one fails the test instead of hanging it."""
    return asyncio.wait_for(database_sync_to_async(func)(*args, **kwargs), 30)


async def connect(path, subprotocols=None):
    communicator = WebsocketCommunicator(application, path, subprotocols=subprotocols)
    connected, _ = await communicator.connect(timeout=5)
    assert connected
    return communicator


async def close_code(communicator):
    frame = await communicator.receive_output(timeout=5)
    while frame["type"] == "websocket.send":
        frame = await communicator.receive_output(timeout=5)
    assert frame["type"] == "websocket.close"
    return frame.get("code")


async def frames_until_close(communicator, timeout=5):
    """Every JSON frame the server sends until it closes; returns (frames, close code)."""
    import json

    frames = []
    while True:
        output = await communicator.receive_output(timeout=timeout)
        if output["type"] == "websocket.close":
            # as daphne does once the connection is closed: the consumer is told, and ends on its own (left
            # running, it was cancelled at the loop's close, and a cancelled live read sometimes never ended)
            await communicator.disconnect(code=output.get("code") or 1000, timeout=timeout)
            return frames, output.get("code")
        frames.append(json.loads(output["text"]))


def seqs(frames):
    return [f["event"]["seq"] for f in frames if f["type"] == "event"]


@pytest.fixture
def alice(make_customer):
    customer, user = make_customer("alice-co")
    return customer, user, token_for(user)


@pytest.fixture
def bob(make_customer):
    customer, user = make_customer("bob-co")
    return customer, user, token_for(user)


async def test_missing_token_closes_4401(alice):
    task = await db(make_task, alice[0])
    for path in (f"/ws/tasks/{task.pk}/", "/ws/events/"):
        communicator = await connect(path)
        assert await close_code(communicator) == 4401


async def test_bad_token_closes_4401(alice):
    task = await db(make_task, alice[0])
    for path in (f"/ws/tasks/{task.pk}/?token=not-a-jwt", "/ws/events/?token=" + alice[2][:-3] + "xyz"):
        communicator = await connect(path)
        assert await close_code(communicator) == 4401


async def test_admin_scoped_token_closes_4401(alice):
    task = await db(make_task, alice[0])
    admin_token = await db(token_for, alice[1], scope="admin")
    communicator = await connect(f"/ws/tasks/{task.pk}/?token={admin_token}")
    assert await close_code(communicator) == 4401


async def test_another_customers_task_and_a_missing_one_close_4404(alice, bob):
    bobs_task = await db(make_task, bob[0])
    for task_id in (bobs_task.pk, bobs_task.pk + 1000):
        communicator = await connect(f"/ws/tasks/{task_id}/?token={alice[2]}")
        assert await close_code(communicator) == 4404


async def test_bearer_subprotocol_authenticates_and_is_accepted(alice):
    task = await db(make_task, alice[0], status="succeeded")
    communicator = WebsocketCommunicator(application, f"/ws/tasks/{task.pk}/", subprotocols=["bearer", alice[2]])
    connected, subprotocol = await communicator.connect(timeout=5)
    assert connected and subprotocol == "bearer"
    await communicator.send_json_to({"after": 0})
    frames, code = await frames_until_close(communicator)
    assert code == 1000
    assert seqs(frames) == [1, 2, 3] and frames[-1] == {"type": "status", "status": "succeeded"}


async def test_bad_bearer_subprotocol_closes_4401_after_accepting_bearer(alice):
    task = await db(make_task, alice[0])
    communicator = WebsocketCommunicator(application, f"/ws/tasks/{task.pk}/", subprotocols=["bearer", "nope"])
    connected, subprotocol = await communicator.connect(timeout=5)
    assert connected and subprotocol == "bearer"
    assert await close_code(communicator) == 4401


async def test_finished_task_sends_history_then_final_status_then_closes_normally(alice):
    # given a task that ran and finished
    task = await db(make_task, alice[0], status="running")
    await db(append_messages, task.pk, 3)
    from tasks.services import task_finish

    await db(task_finish, task_id=task.pk, status="succeeded", result={"text": "ok"}, usage={"prompt_tokens": 3})
    # when a client follows it without `after`
    communicator = await connect(f"/ws/tasks/{task.pk}/?token={alice[2]}")
    frames, code = await frames_until_close(communicator)
    # then it gets every stored event once, in order, the final status, and a normal close
    assert seqs(frames) == list(range(1, 8))
    types = [f["event"]["type"] for f in frames if f["type"] == "event"]
    assert types == ["status", "status", "message", "message", "message", "usage", "status"]
    assert frames[-1] == {"type": "status", "status": "succeeded"}
    assert code == 1000


async def test_after_replays_only_what_was_missed(alice):
    task = await db(make_task, alice[0], status="succeeded")
    communicator = await connect(f"/ws/tasks/{task.pk}/?token={alice[2]}")
    await communicator.send_json_to({"after": 2})
    frames, code = await frames_until_close(communicator)
    assert seqs(frames) == [3] and code == 1000


async def test_events_written_before_and_during_the_connection_arrive_once_in_order(alice):
    # given a running task with events already stored
    task = await db(make_task, alice[0], status="running")
    await db(append_messages, task.pk, 5)
    communicator = await connect(f"/ws/tasks/{task.pk}/?token={alice[2]}")
    # when events keep being written while the socket hands over from history to live
    writer = asyncio.ensure_future(db(append_messages, task.pk, 40, start=6))
    await communicator.send_json_to({"after": 3})
    await writer
    from tasks.services import task_finish

    await db(task_finish, task_id=task.pk, status="succeeded", result={"text": "ok"})
    frames, code = await frames_until_close(communicator)
    # then every seq after 3 arrives exactly once, in order, up to the final status
    assert seqs(frames) == list(range(4, 2 + 5 + 40 + 1 + 1))
    assert frames[-1] == {"type": "status", "status": "succeeded"} and code == 1000


async def test_live_status_changes_are_sent(alice):
    task = await db(make_task, alice[0], status="queued")
    communicator = await connect(f"/ws/tasks/{task.pk}/?token={alice[2]}")
    await communicator.send_json_to({"after": 0})
    first = [await communicator.receive_json_from(timeout=5) for _ in range(2)]
    assert first == [
        {"type": "event", "event": first[0]["event"]},
        {"type": "status", "status": "queued"},
    ]
    from tasks.services import task_mark_running

    await db(task_mark_running, task_id=task.pk, worker="test")
    event = await communicator.receive_json_from(timeout=5)
    assert event["event"]["content"] == {"status": "running"}
    assert await communicator.receive_json_from(timeout=5) == {"type": "status", "status": "running"}
    await communicator.disconnect()


async def test_invalid_after_gets_an_error_frame(alice):
    task = await db(make_task, alice[0])
    communicator = await connect(f"/ws/tasks/{task.pk}/?token={alice[2]}")
    await communicator.send_json_to({"after": "x"})
    frame = await communicator.receive_json_from(timeout=5)
    assert frame["error"]["code"] == "validation_error"
    await communicator.disconnect()


async def test_two_customers_never_see_each_others_events(alice, bob):
    # given both customers following their own task and their own customer stream
    alices_task = await db(make_task, alice[0], status="queued")
    bobs_task = await db(make_task, bob[0], status="queued")
    alice_task_ws = await connect(f"/ws/tasks/{alices_task.pk}/?token={alice[2]}")
    bob_task_ws = await connect(f"/ws/tasks/{bobs_task.pk}/?token={bob[2]}")
    alice_events = await connect(f"/ws/events/?token={alice[2]}")
    bob_events = await connect(f"/ws/events/?token={bob[2]}")
    for ws in (alice_events, bob_events):
        assert (await ws.receive_json_from(timeout=5))["type"] == "ready"
    for ws in (alice_task_ws, bob_task_ws):
        await ws.send_json_to({"after": 0})
        assert (await ws.receive_json_from(timeout=5))["type"] == "event"
        assert await ws.receive_json_from(timeout=5) == {"type": "status", "status": "queued"}
    # when only alice's task runs and writes, and the platform broadcasts to everyone
    from accounts.services import customer_notice_publish
    from tasks.services import task_finish, task_mark_running

    await db(task_mark_running, task_id=alices_task.pk, worker="test")
    await db(append_messages, alices_task.pk, 2)
    await db(task_finish, task_id=alices_task.pk, status="succeeded", result={"text": "ok"})
    broadcast = {"type": "broadcast", "message": "maintenance", "level": "info"}
    await db(customer_notice_publish, customer_id=None, payload=broadcast)
    # then alice sees her task's events and status changes; bob sees none of them, both see the broadcast
    frames, code = await frames_until_close(alice_task_ws)
    assert seqs(frames) == [2, 3, 4, 5] and code == 1000
    alice_stream = [await alice_events.receive_json_from(timeout=5) for _ in range(3)]
    assert alice_stream == [
        {"type": "task_status", "task": alices_task.pk, "status": "running", "seq": 1},
        {"type": "task_status", "task": alices_task.pk, "status": "succeeded", "seq": 2},
        {**broadcast, "seq": 3},
    ]
    assert await bob_events.receive_json_from(timeout=5) == {**broadcast, "seq": 1}
    assert await bob_events.receive_nothing(timeout=0.3)
    assert await bob_task_ws.receive_nothing(timeout=0.3)
    for ws in (bob_task_ws, alice_events, bob_events):
        await ws.disconnect()


async def test_customer_stream_carries_only_that_customers_notices(alice, bob):
    from accounts.services import customer_notice_publish

    alice_events = await connect(f"/ws/events/?token={alice[2]}")
    bob_events = await connect(f"/ws/events/?token={bob[2]}")
    for ws in (alice_events, bob_events):
        assert await ws.receive_json_from(timeout=5) == {"type": "ready", "seq": 0}
    notice = {"type": "killswitch", "engaged": True, "customer": alice[0].pk, "reason": "abuse"}
    await db(customer_notice_publish, customer_id=alice[0].pk, payload=notice)
    assert await alice_events.receive_json_from(timeout=5) == {**notice, "seq": 1}
    assert await bob_events.receive_nothing(timeout=0.3)
    await alice_events.disconnect()
    await bob_events.disconnect()


async def test_an_out_of_range_task_id_is_simply_not_found(alice):
    communicator = await connect(f"/ws/tasks/{10**30}/?token={alice[2]}")
    assert await close_code(communicator) == 4404


@pytest.mark.parametrize("path", ["/ws/nothing/", "/ws/tasks/abc/", "/ws/tasks/1"])
async def test_an_unknown_websocket_path_closes_4404_instead_of_failing(path):
    communicator = await connect(path)
    assert await close_code(communicator) == 4404


def _waiting_task(customer):
    from tasks.services import task_suspend

    task = make_task(customer)
    task_suspend(task_id=task.pk, request={"prompt": "Which colour?", "kind": "input", "agent": "customer"},
                 suspension={"state": {}, "pending": {"kind": "input"}}, usage={})
    return task


async def test_a_waiting_task_is_answered_over_its_socket(alice):
    # given a task waiting for input, followed live
    task = await database_sync_to_async(_waiting_task)(alice[0])
    communicator = await connect(f"/ws/tasks/{task.pk}/?token={alice[2]}")
    await communicator.send_json_to({"after": 0})
    frames = []
    while not any(f.get("type") == "status" and f.get("status") == "input_required" for f in frames):
        frames.append(await communicator.receive_json_from(timeout=5))
    request = [f["event"] for f in frames if f["type"] == "event" and f["event"]["type"] == "input_request"]
    assert request and request[0]["content"]["prompt"] == "Which colour?"
    # when the answer of the wrong kind, then the right one, is sent as a frame
    await communicator.send_json_to({"input": {"approve": True}})
    refused = await communicator.receive_json_from(timeout=5)
    while "error" not in refused:
        refused = await communicator.receive_json_from(timeout=5)
    assert refused["error"]["code"] == "validation_error"
    await communicator.send_json_to({"input": {"text": "Blue"}})
    # then it is taken (the task is queued again) and a second answer is a conflict
    reply = await communicator.receive_json_from(timeout=5)
    while reply.get("type") != "input_accepted":
        reply = await communicator.receive_json_from(timeout=5)
    assert reply["status"] == "queued"
    await communicator.send_json_to({"input": {"text": "Red"}})
    conflict = await communicator.receive_json_from(timeout=5)
    while "error" not in conflict:
        conflict = await communicator.receive_json_from(timeout=5)
    assert conflict["error"]["code"] == "conflict"
    await communicator.disconnect()
