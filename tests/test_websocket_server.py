"""Against a real daphne: follow a running task, lose the connection twice (a dropped socket, a server
restart), resume with {"after": SEQ} and end with exactly the stored sequence."""
import json
import socket
import threading
import time

import pytest
from django.db import connection
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from conftest import token_for
from tests.streams_support import make_task

pytestmark = pytest.mark.django_db(transaction=True)

TOTAL_MESSAGES = 120


def write_events_while_running(task_id, pause, started, go_on):
    """What a worker does: append events one by one, then finish the task.

    It waits for `go_on` before the last messages so that some surely arrive live on the last socket.
    """
    from tasks.services import task_event_append, task_finish

    try:
        for i in range(1, TOTAL_MESSAGES + 1):
            task_event_append(task_id=task_id, type="message", source="assistant", content={"text": f"m{i}"})
            if i == 10:
                started.set()
            if i == TOTAL_MESSAGES - 20:
                go_on.wait(30)
            time.sleep(pause)
        task_finish(task_id=task_id, status="succeeded", result={"text": "done"}, usage={"prompt_tokens": 1})
    finally:
        connection.close()


def follow(ws, until=None, received=None):
    """Read frames into `received` until the server closes (returns True) or `until(received)` holds (False)."""
    while True:
        try:
            frame = json.loads(ws.recv(timeout=10))
        except ConnectionClosed:
            return True
        received.append(frame)
        if until is not None and until(received):
            return False


def event_seqs(frames):
    return [f["event"]["seq"] for f in frames if f["type"] == "event"]


def test_reconnecting_with_after_yields_the_exact_sequence_across_drops_and_restarts(daphne_server, make_customer):
    daphne = daphne_server
    customer, user = make_customer("live-co")
    token = token_for(user)
    task = make_task(customer, user, status="running")
    started, go_on = threading.Event(), threading.Event()
    writer = threading.Thread(target=write_events_while_running, args=(task.pk, 0.01, started, go_on))
    writer.start()
    try:
        assert started.wait(10)
        url = f"{daphne.ws_url}/ws/tasks/{task.pk}/?token={token}"
        received = []

        # connect mid-run, read a while, then drop the socket without a closing handshake
        ws = connect(url, open_timeout=10)
        ws.send(json.dumps({"after": 0}))
        assert not follow(ws, until=lambda r: len(event_seqs(r)) >= 30, received=received)
        ws.socket.shutdown(socket.SHUT_RDWR)
        ws.socket.close()
        time.sleep(0.3)  # events keep being written while nobody listens

        # reconnect with what we have, read a while, then restart the server under the socket
        ws = connect(url, open_timeout=10)
        ws.send(json.dumps({"after": event_seqs(received)[-1]}))
        assert not follow(ws, until=lambda r: len(event_seqs(r)) >= 70, received=received)
        daphne.stop()
        assert follow(ws, received=[]) is True  # the old server closed it
        daphne.start()

        # reconnect to the new server and follow to the end
        ws = connect(url, open_timeout=10)
        ws.send(json.dumps({"after": event_seqs(received)[-1]}))
        go_on.set()
        assert follow(ws, received=received) is True
        assert ws.close_code == 1000
    finally:
        writer.join(30)

    from tasks.models import TaskEvent

    stored = list(TaskEvent.objects.filter(task=task).order_by("seq").values_list("seq", flat=True))
    assert stored == list(range(1, TOTAL_MESSAGES + 5))  # queued, running, messages, usage, final status
    assert event_seqs(received) == stored
    assert received[-1] == {"type": "status", "status": "succeeded"}
