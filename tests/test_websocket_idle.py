"""Against a real daphne and the real Redis: quiet streams stay open. Before the platform's channel layer, the
layer's blocking read (5 s) met redis-py's socket read timeout (5 s) and every quiet socket closed with 1011
after ~6 s. Here both streams stay quiet for longer than every timeout on the way (the layer's 3 s block and
10 s read timeout, daphne's protocol pings every second with a 5 s answer timeout, the streams' own 5 s
database check), and then still deliver."""
import json
import time

import pytest
from websockets.sync.client import connect

from conftest import token_for
from tests.live_server import Daphne
from tests.streams_support import make_task

pytestmark = pytest.mark.django_db(transaction=True)

QUIET_SECONDS = 12


@pytest.fixture(scope="module")
def pinging_daphne(django_db_setup, django_db_blocker):
    server = Daphne(args=["--ping-interval", "1", "--ping-timeout", "5"]).start()
    yield server
    server.stop()


def frames_within(ws, seconds):
    """Every frame the server sends within `seconds` (a closed socket raises ConnectionClosed)."""
    frames, deadline = [], time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            frames.append(json.loads(ws.recv(timeout=left)))
        except TimeoutError:
            break
    return frames


def test_quiet_streams_stay_open_longer_than_every_timeout_and_still_deliver(pinging_daphne, make_customer):
    from accounts.services import customer_notice_publish
    from tasks.services import task_event_append

    customer, user = make_customer("quiet-co")
    token = token_for(user)
    task = make_task(customer, user, status="running")
    # the client sends no pings of its own: only the server's keep the connection alive
    with connect(f"{pinging_daphne.ws_url}/ws/events/?token={token}", open_timeout=10, ping_interval=None) as events, \
            connect(f"{pinging_daphne.ws_url}/ws/tasks/{task.pk}/?token={token}", open_timeout=10,
                    ping_interval=None) as task_ws:
        assert json.loads(events.recv(timeout=10)) == {"type": "ready", "seq": 0}
        task_ws.send(json.dumps({"after": 0}))
        assert [f.get("status") for f in frames_within(task_ws, 3)][-1] == "running"

        # when both stay quiet (nothing to send) for longer than every timeout
        assert frames_within(events, QUIET_SECONDS) == []
        assert frames_within(task_ws, 0.1) == []

        # then both are still open and deliver at once
        seq = customer_notice_publish(customer_id=None, payload={"type": "broadcast", "message": "still there?"})
        event = task_event_append(task_id=task.pk, type="message", source="assistant", content={"text": "hello"})
        assert json.loads(events.recv(timeout=5)) == {"type": "broadcast", "message": "still there?",
                                                      "seq": seq[customer.pk]}
        assert json.loads(task_ws.recv(timeout=5))["event"]["seq"] == event["seq"]
        events.send(json.dumps({"type": "ping"}))
        assert json.loads(events.recv(timeout=5)) == {"type": "pong"}
