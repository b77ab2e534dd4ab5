"""/readyz of a real daphne names what is missing: Redis, or a live worker; it is 200 once a real worker runs."""
import uuid
from pathlib import Path

import pytest
import requests

from tests.execution_support import running, wait_for
from tests.live_server import Daphne, free_port


def _readyz(server):
    return requests.get(server.http_url + "/readyz", timeout=10)


@pytest.fixture
def namespace():
    """A Redis namespace of the test's own: workers of other tests do not count here."""
    return f"ready-{uuid.uuid4().hex[:8]}"


@pytest.mark.django_db(transaction=True)
def test_readyz_names_redis_when_the_servers_redis_does_not_answer():
    server = Daphne(env={"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}).start()  # nothing listens there
    try:
        response = _readyz(server)
    finally:
        server.stop()

    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "not_ready"
    assert "Redis does not answer" in error["message"]
    assert "redis" in error["details"]["failing"]
    assert error["details"]["checks"]["database"] == "ok"
    # the server's log says what is not ready, as a warning: not a server error
    log = Path(server.log_path).read_text()
    assert "WARNING runtime.health Not ready: " in log and "Redis does not answer" in log
    assert "ERROR" not in log


@pytest.mark.django_db(transaction=True)
def test_readyz_needs_a_live_worker_and_is_ready_when_one_runs(namespace, settings):
    settings.REDIS_NAMESPACE = namespace  # the workers started below report in it too
    server = Daphne(env={"REDIS_NAMESPACE": namespace}).start()
    try:
        # given no worker
        response = _readyz(server)
        assert response.status_code == 503
        assert response.json()["error"]["details"]["failing"] == ["workers"]
        assert response.json()["error"]["message"] == "Not ready: no live worker"

        # when a worker runs
        with running("ready-w1"):
            ready = wait_for(lambda: (r := _readyz(server)).status_code == 200 and r, 90, message="/readyz 200")

            # then the platform is ready, with one live worker
            assert ready.json() == {"status": "ready", "checks": {"database": "ok", "redis": "ok", "workers": 1}}

        # and when it stopped, it no longer counts (at once when it unregistered on its way out; a worker
        # that had to be killed, as on a busy host, once its last report is WORKER_SLOTS_STALE_SECONDS old)
        # (a requests.Response is falsy for a 503: wait for the status, then read the body)
        wait_for(lambda: _readyz(server).status_code == 503, 15, message="/readyz 503")
        response = _readyz(server)
        assert response.json()["error"]["details"]["failing"] == ["workers"]
    finally:
        server.stop()
