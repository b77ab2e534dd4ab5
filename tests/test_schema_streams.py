"""The live streams in the OpenAPI schema: the SSE path (text/event-stream, its message shape) and the WebSocket
frames (named components and `x-websockets`), checked against what the streams really send."""
import asyncio
import json

import jsonschema
import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import AsyncClient, Client

from autogen_platform.asgi import application
from conftest import token_for
from tests.streams_support import append_messages, make_task

pytestmark = pytest.mark.django_db(transaction=True)


def served_schema() -> dict:
    response = Client().get("/api/schema/?format=json")
    assert response.status_code == 200
    return json.loads(response.content)


def validator(schema: dict, component: str):
    """A JSON Schema validator of one component, its $refs resolved within the served document."""
    return jsonschema.Draft4Validator({**schema, "$ref": f"#/components/schemas/{component}"})


def parse_sse(raw: bytes) -> list[dict]:
    records = []
    for block in raw.decode().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if line and not line.startswith(":"))
        if "id" in fields:
            records.append({"id": int(fields["id"]), "event": fields["event"], "data": json.loads(fields["data"])})
    return records


def test_a_client_author_finds_the_sse_stream_and_the_websocket_frames_in_the_schema():
    schema = served_schema()

    stream = schema["paths"]["/api/tasks/{id}/stream/"]["get"]
    assert list(stream["responses"]["200"]["content"]) == ["text/event-stream"]
    assert {p["name"] for p in stream["parameters"]} == {"id", "after", "Last-Event-ID", "token"}
    assert stream["x-sse-events"]["message_schema"] == {"$ref": "#/components/schemas/TaskStreamMessage"}
    assert stream["responses"]["404"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorEnvelope")
    sockets = schema["x-websockets"]
    assert set(sockets) == {"/ws/tasks/{id}/", "/ws/events/"}
    assert sockets["/ws/tasks/{id}/"]["close_codes"].keys() >= {"4401", "4404", "1000"}
    components = schema["components"]["schemas"]
    for name in ("WsTaskClientFrame", "WsTaskServerFrame", "WsEventsClientFrame", "WsEventsServerFrame",
                 "TaskStreamMessage"):
        assert name in components, name
        # every $ref the frames make points at a component the document has
        for ref in _refs(components[name]):
            assert _resolves(schema, ref), ref
    assert _resolves(schema, stream["x-sse-events"]["event_names"]["$ref"])
    # frames a client may send are described, and a typo is not one of them
    client_frame = validator(schema, "WsTaskClientFrame")
    for frame in ({"after": 0}, {"input": {"text": "Blue"}}, {"input": {"approve": False}}, {"type": "ping"}):
        client_frame.validate(frame)
    assert not client_frame.is_valid({"input": {"txet": "Blue"}})


def _resolves(document: dict, ref: str) -> bool:
    node = document
    for part in ref.removeprefix("#/").split("/"):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _refs(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


async def test_what_the_streams_send_fits_the_schema(make_customer):
    schema = await database_sync_to_async(served_schema)()
    customer, user = await database_sync_to_async(make_customer)("schema-streams")
    token = token_for(user)

    def a_finished_task():
        from tasks.services import task_finish

        task = make_task(customer, status="running")
        append_messages(task.pk, 2)
        task_finish(task_id=task.pk, status="succeeded", result={"text": "ok"}, usage={"prompt_tokens": 2})
        return task

    task = await database_sync_to_async(a_finished_task)()

    # the SSE stream: every message fits TaskStreamMessage
    response = await AsyncClient().get(f"/api/tasks/{task.pk}/stream/", headers={"Authorization": f"Bearer {token}"})
    assert response["Content-Type"].startswith("text/event-stream")
    records = parse_sse(b"".join([chunk async for chunk in response.streaming_content]))
    assert records and records[-1]["event"] == "status"
    message = validator(schema, "TaskStreamMessage")
    for record in records:
        message.validate(record)

    # the task socket: event, status, pong and error frames fit WsTaskServerFrame
    task_frames = validator(schema, "WsTaskServerFrame")
    socket = WebsocketCommunicator(application, f"/ws/tasks/{task.pk}/", subprotocols=["bearer", token])
    assert (await socket.connect(timeout=5))[0]
    await socket.send_json_to({"after": 0})
    frames = []
    while True:
        output = await socket.receive_output(timeout=5)
        if output["type"] == "websocket.close":
            break
        frames.append(json.loads(output["text"]))
    assert {f["type"] for f in frames} == {"event", "status"}
    for frame in frames:
        task_frames.validate(frame)

    # the customer's socket: ready, a task_status notice, pong and an error frame fit WsEventsServerFrame
    events_frames = validator(schema, "WsEventsServerFrame")
    events = WebsocketCommunicator(application, f"/ws/events/?token={token}&after=0")
    assert (await events.connect(timeout=5))[0]
    received = [await events.receive_json_from(timeout=5)]
    while received[-1].get("type") != "ready":
        received.append(await events.receive_json_from(timeout=5))
    await events.send_json_to({"type": "ping"})
    received.append(await asyncio.wait_for(events.receive_json_from(), 5))
    await events.send_json_to({"type": "resume", "after": "x"})
    received.append(await asyncio.wait_for(events.receive_json_from(), 5))
    assert [f.get("type") for f in received[-2:]] == ["pong", None] and "error" in received[-1]
    assert any(f.get("type") == "task_status" for f in received)
    for frame in received:
        events_frames.validate(frame)
    await events.disconnect()
