"""A Redis that hangs (accepts connections, never answers) while a task is submitted.

The task is committed, so the answer is 201 with it, promptly; the job the web could not
enqueue is enqueued by the reaper once Redis answers again, and the task runs. A client that
retries without an Idempotency-Key never sees a 500 for a task that exists.
"""
import socket
import threading

import pytest
from django.conf import settings
from django.test import override_settings

from agents.models import Agent, ModelConfig
from tasks.models import Task
from tests.execution_support import running, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


class HungRedis:
    """A TCP listener that accepts every connection and never sends a byte back."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.accepted = []
        self.stopping = False
        self.thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self):
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)  # kept open, never read, never answered

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopping = True
        self.sock.close()
        for conn in self.accepted:
            conn.close()


def test_task_submitted_while_redis_hangs_is_201_and_runs_later(make_customer, client_for):
    customer, user = make_customer()
    model = ModelConfig.objects.create(customer=customer, name="replay", provider="replay",
                                       responses=["Done while Redis hung. TERMINATE"])
    agent = Agent.objects.create(customer=customer, name="helper", model=model)
    client = client_for(user)

    # given: every Redis client of the web points at a Redis that accepts and never answers
    with HungRedis() as hung, override_settings(
        REDIS_URL=hung.url,
        RQ_QUEUES={"default": {"URL": hung.url, "DEFAULT_TIMEOUT": 3600}},
        CHANNEL_LAYERS={"default": {"BACKEND": "channels_redis.core.RedisChannelLayer",
                                    "CONFIG": {"hosts": [hung.url], "prefix": "hung"}}},
    ):
        # when: a task is submitted (no Idempotency-Key)
        response = client.post("/api/tasks/", {"agent": agent.pk, "input": "hello"}, format="json")
        assert hung.accepted, "the web never tried the hung Redis"

    # then: the committed task is answered with 201, not a 500 a client would retry
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "queued"
    assert Task.objects.filter(customer=customer).count() == 1

    # and: once Redis answers again, the reaper enqueues the lost job and a worker runs the task
    assert settings.REDIS_URL != hung.url
    with running("hang-w1", reaper=True, TASK_REQUEUE_SECONDS="1"):
        task = wait_for(lambda: (t := Task.objects.get(pk=body["id"])).is_finished and t, timeout=60,
                        message="the task to run after Redis came back")
    assert task.status == "succeeded", (task.status, task.error)
    assert "Done while Redis hung" in task.result["text"]
