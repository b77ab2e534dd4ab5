"""GET /api/tasks/{id}/stream/: server-sent events with Last-Event-ID resume, scoped like the REST API."""
import http.client
import json
import threading
import time

import pytest
from channels.db import database_sync_to_async
from django.db import connection
from django.test import AsyncClient

from conftest import token_for
from tests.streams_support import append_messages, make_task

pytestmark = pytest.mark.django_db(transaction=True)


def parse_sse(raw: bytes) -> list[dict]:
    """The `id`/`event`/`data` records of an event stream (comments and `retry` skipped)."""
    records = []
    for block in raw.decode().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if line and not line.startswith(":"))
        if "id" in fields:
            records.append({"id": int(fields["id"]), "event": fields["event"], "data": json.loads(fields["data"])})
    return records


async def read_all(response) -> bytes:
    return b"".join([chunk async for chunk in response.streaming_content])


def finished_task(customer):
    from tasks.services import task_finish

    task = make_task(customer, status="running")
    append_messages(task.pk, 3)
    task_finish(task_id=task.pk, status="succeeded", result={"text": "ok"}, usage={"prompt_tokens": 2})
    return task


async def test_last_event_id_resumes_and_the_stream_ends_after_the_final_status(make_customer):
    customer, user = await database_sync_to_async(make_customer)("sse-co")
    task = await database_sync_to_async(finished_task)(customer)
    response = await AsyncClient().get(
        f"/api/tasks/{task.pk}/stream/", headers={"Authorization": f"Bearer {token_for(user)}", "Last-Event-ID": "4"}
    )

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/event-stream")
    records = parse_sse(await read_all(response))
    assert [r["id"] for r in records] == [5, 6, 7]
    assert [r["event"] for r in records] == ["message", "usage", "status"]
    assert records[0]["data"]["content"] == {"text": "m3"} and records[0]["data"]["seq"] == 5
    assert records[-1]["data"]["content"] == {"status": "succeeded"}


async def test_after_query_parameter_and_token_parameter_work_for_eventsource_clients(make_customer):
    customer, user = await database_sync_to_async(make_customer)("sse-co")
    task = await database_sync_to_async(finished_task)(customer)
    response = await AsyncClient().get(f"/api/tasks/{task.pk}/stream/?after=6&token={token_for(user)}")
    assert [r["id"] for r in parse_sse(await read_all(response))] == [7]


async def test_errors_use_the_envelope(make_customer):
    alice, alice_user = await database_sync_to_async(make_customer)("sse-alice")
    _, bob_user = await database_sync_to_async(make_customer)("sse-bob")
    task = await database_sync_to_async(finished_task)(alice)
    url = f"/api/tasks/{task.pk}/stream/"

    client = AsyncClient()

    def bearer(user, scope="customer"):
        return {"Authorization": f"Bearer {token_for(user, scope=scope)}"}

    anonymous = await client.get(url)
    assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "not_authenticated"
    bad = await client.get(url, headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401 and bad.json()["error"]["code"] == "token_invalid"
    admin_scoped = await client.get(url, headers=bearer(alice_user, scope="admin"))
    assert admin_scoped.status_code == 401 and admin_scoped.json()["error"]["code"] == "token_invalid"
    for path in (url, f"/api/tasks/{task.pk + 1000}/stream/"):
        response = await client.get(path, headers=bearer(bob_user))
        assert response.status_code == 404
        assert response.json() == {"error": {"code": "not_found", "message": "Task not found", "details": {}}}
    invalid = await client.get(url, headers={**bearer(alice_user), "Last-Event-ID": "x"})
    assert invalid.status_code == 400 and invalid.json()["error"]["code"] == "validation_error"


def test_live_events_stream_through_a_real_server_and_resume_by_last_event_id(daphne_server, make_customer):
    from tasks.services import task_finish

    customer, user = make_customer("sse-live")
    task = make_task(customer, user, status="running")
    server = daphne_server

    def worker():
        try:
            time.sleep(0.5)
            append_messages(task.pk, 20, start=1)
            task_finish(task_id=task.pk, status="succeeded", result={"text": "ok"})
        finally:
            connection.close()

    writer = threading.Thread(target=worker)
    try:
        writer.start()
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=15)
        conn.request(
            "GET",
            f"/api/tasks/{task.pk}/stream/",
            headers={"Authorization": f"Bearer {token_for(user)}", "Last-Event-ID": "1"},
        )
        response = conn.getresponse()
        assert response.status == 200
        started = time.monotonic()
        records = parse_sse(response.read())  # returns when the server ends the stream
        assert time.monotonic() - started >= 0.4  # it waited for live events, not just history
    finally:
        writer.join(20)
    assert [r["id"] for r in records] == list(range(2, 2 + 20 + 1 + 1))
    assert records[-1]["event"] == "status" and records[-1]["data"]["content"] == {"status": "succeeded"}
