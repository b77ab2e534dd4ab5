"""One worker process runs many tasks at once (issue 10), each in its own sandbox: real worker processes,
real sandboxes, a local OpenAI-compatible stub that holds every answer until the test lets it go."""
import signal
import threading
import time

import django_rq
import psutil
import pytest
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry, FinishedJobRegistry, StartedJobRegistry

from agents.models import Agent, ModelConfig
from tasks.models import Task, TaskEvent
from tests.execution_support import pid_gone, running, wait_for
from tests.openai_stub import MODEL_INFO, OpenAIStub

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

MANY = 24  # tasks held by ONE worker at once (the issue asks for at least 20)


@pytest.fixture
def held():
    """A stub model whose answers wait until `release` is set: every task waits on it, as on a slow model."""
    release = threading.Event()
    with OpenAIStub([{"hold": release, "text": "Done. TERMINATE", "timeout": 120}] * 200) as stub:
        stub.release = release
        yield stub
        release.set()


def slow_agent(customer, stub, name="waiter", **fields):
    model = ModelConfig.objects.create(
        customer=customer, name=f"{name}-model", provider="openai", model="stub-model", base_url=stub.base_url,
        model_info=MODEL_INFO,
    )
    return Agent.objects.create(customer=customer, name=name, model=model, system_message="Wait.", **fields)


def submit_many(client, agent, n):
    ids = []
    for i in range(n):
        response = client.post("/api/tasks/", {"agent": agent.pk, "input": f"job {i}"}, format="json")
        assert response.status_code == 201, response.content
        ids.append(response.json()["id"])
    return ids


def running_through_api(client, ids) -> set[int]:
    rows = client.get("/api/tasks/?status=running&page_size=200").json()["results"]
    return {row["id"] for row in rows} & set(ids)


def all_running(client, ids, n, stub, timeout=120):
    """Wait until n of the tasks are `running` through the API and their model calls reached the stub."""
    return wait_for(
        lambda: len(running_through_api(client, ids)) >= n and len(stub.requests) >= n,
        timeout=timeout, interval=0.2, message=f"{n} tasks running at once",
    )


def finished(task_id, timeout=60):
    return wait_for(lambda: (t := Task.objects.get(pk=task_id)).is_finished and t, timeout=timeout, message=f"task {task_id} to end")


def sandbox_pids(ids) -> list[int]:
    return [p for p in Task.objects.filter(pk__in=ids).values_list("pid", flat=True) if p]


def failed_jobs_of(queue, ids) -> list[str]:
    mine = {f"task-{task_id}-" for task_id in ids}
    return [j for j in FailedJobRegistry(queue=queue).get_job_ids() if any(j.startswith(m) for m in mine)]


def assert_contiguous(task_id):
    seqs = list(TaskEvent.objects.filter(task_id=task_id).order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, len(seqs) + 1))


@pytest.fixture
def customer(make_customer):
    org, user = make_customer("busy", max_concurrent_tasks=100, max_tasks_per_day=10000)
    return org, user


def test_one_worker_runs_many_tasks_side_by_side_and_a_cancel_touches_only_its_task(customer, client_for, held):
    org, user = customer
    client = client_for(user)
    with running("conc-one", WORKER_CONCURRENCY=64) as procs:
        ids = submit_many(client, slow_agent(org, held), MANY)
        all_running(client, ids, MANY, held)
        # every one of them runs in the same worker process, each in its own sandbox
        assert Task.objects.filter(pk__in=ids).values_list("worker", flat=True).distinct().count() == 1
        pids = sandbox_pids(ids)
        assert len(set(pids)) == MANY and all(psutil.pid_exists(p) for p in pids)
        # RQ's registries agree: every job started, none failed or abandoned
        queue = django_rq.get_queue("default")
        assert len(StartedJobRegistry(queue=queue).get_job_ids()) >= MANY
        assert not failed_jobs_of(queue, ids)
        jobs = Job.fetch_many([f"task-{task_id}-0" for task_id in ids], connection=queue.connection)
        assert {job.get_status(refresh=False) for job in jobs} == {JobStatus.STARTED}
        assert not queue.connection.lrange(queue.intermediate_queue_key, 0, -1)  # taken out of RQ's intermediate list

        # when one of them is cancelled
        victim, others = ids[0], ids[1:]
        victim_pid = Task.objects.get(pk=victim).pid
        assert client.post(f"/api/tasks/{victim}/cancel/").status_code == 200
        task = finished(victim, timeout=5)
        # then it alone ends, its tree gone; the others still run
        assert (task.status, task.error["code"]) == ("cancelled", "cancelled")
        wait_for(lambda: pid_gone(victim_pid), timeout=5, message="the cancelled sandbox to die")
        assert running_through_api(client, others) == set(others)

        # and when the model answers, every other task succeeds with its events whole
        held.release.set()
        for task_id in others:
            task = finished(task_id)
            assert task.status == "succeeded", task.error
            assert task.result["text"] == "Done. TERMINATE"
            assert_contiguous(task_id)
        assert_contiguous(victim)
        assert all(pid_gone(p) for p in pids)
        # and RQ calls every job finished, none failed
        wait_for(lambda: not StartedJobRegistry(queue=queue).get_job_ids(), timeout=10, message="RQ's started registry to empty")
        finished_jobs = set(FinishedJobRegistry(queue=queue).get_job_ids())
        assert {f"task-{task_id}-0" for task_id in ids} <= finished_jobs
        assert not failed_jobs_of(queue, ids)


def test_the_killswitch_ends_every_task_a_worker_holds(customer, client_for, held, admin_api):
    org, user = customer
    client = client_for(user)
    with running("conc-ks", WORKER_CONCURRENCY=64):
        ids = submit_many(client, slow_agent(org, held), MANY)
        all_running(client, ids, MANY, held)
        pids = sandbox_pids(ids)
        # the operator sees them side by side in the statistics
        stats = wait_for(lambda: (s := admin_api.get("/api/admin/stats/").json())["worker_slots"]["busy"] >= MANY and s,
                         timeout=5, message="the worker's busy slots in the statistics")
        assert stats["worker_slots"]["total"] == 64 and stats["running_sandboxes"] >= MANY
        response = admin_api.post("/api/admin/killswitch/", {"engaged": True, "reason": "drill"}, format="json")
        assert response.status_code == 200, response.content
        try:
            for task_id in ids:
                task = finished(task_id, timeout=10)
                assert (task.status, task.error["code"]) == ("cancelled", "killswitch")
            wait_for(lambda: all(pid_gone(p) for p in pids), timeout=5, message="every sandbox to die")
        finally:
            admin_api.post("/api/admin/killswitch/", {"engaged": False}, format="json")


def test_a_killed_worker_loses_its_tasks_truthfully_and_leaves_no_process(customer, client_for, held):
    org, user = customer
    client = client_for(user)
    with running("conc-kill", reaper=True, WORKER_CONCURRENCY=64) as procs:
        ids = submit_many(client, slow_agent(org, held), MANY)
        all_running(client, ids, MANY, held)
        pids = sandbox_pids(ids)
        # when the worker is SIGKILLed with all of them in flight
        procs.procs["conc-kill"].send_signal(signal.SIGKILL)
        # then each ends worker_lost within the lease (the reaper), and every sandbox tree is gone
        for task_id in ids:
            task = finished(task_id, timeout=20)
            assert (task.status, task.error["code"]) == ("failed", "worker_lost"), task.error
        wait_for(lambda: all(pid_gone(p) for p in pids), timeout=10, message="every sandbox to die with its worker")
        # and RQ no longer shows their jobs running: failed, like their tasks
        queue = django_rq.get_queue("default")
        started = " ".join(StartedJobRegistry(queue=queue).get_job_ids())
        assert not [task_id for task_id in ids if f"task-{task_id}-" in started]
        assert len(failed_jobs_of(queue, ids)) == len(ids)


def test_sigterm_lets_held_tasks_finish_within_the_grace_then_ends_the_rest(customer, client_for, held):
    org, user = customer
    client = client_for(user)
    with running("conc-term", WORKER_CONCURRENCY=64, WORKER_SHUTDOWN_GRACE_SECONDS=3) as procs:
        ids = submit_many(client, slow_agent(org, held), 6)
        all_running(client, ids, 6, held)
        pids = sandbox_pids(ids)
        worker = procs.procs["conc-term"]
        worker.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        # a task submitted after the signal is not taken by the stopping worker
        later = client.post("/api/tasks/", {"agent": Task.objects.get(pk=ids[0]).agent_id, "input": "late"}, format="json").json()["id"]
        worker.wait(30)
        assert worker.returncode == 0
        for task_id in ids:
            task = finished(task_id, timeout=5)
            assert (task.status, task.error["code"]) == ("failed", "worker_lost"), task.error
            assert "shut down" in task.error["message"]
        assert Task.objects.get(pk=later).status == "queued"
        assert all(pid_gone(p) for p in pids)


def test_a_flooding_child_ends_output_limit_and_its_neighbour_is_unharmed(customer, client_for, held):
    org, user = customer
    client = client_for(user)
    flood = "```python\nimport sys\nfor _ in range(400):\n    sys.stdout.write('x' * 100000 + '\\n')\n```"
    flooder_model = ModelConfig.objects.create(customer=org, name="flood", provider="replay", responses=[flood, "TERMINATE"])
    flooder = Agent.objects.create(customer=org, name="flooder", model=flooder_model, code_execution=True,
                                   system_message="Flood.")
    with running("conc-flood", WORKER_CONCURRENCY=8, TASK_MESSAGE_MAX_BYTES=4 * 1024 * 1024):
        quiet = submit_many(client, slow_agent(org, held), 1)[0]
        all_running(client, [quiet], 1, held)
        noisy = submit_many(client, flooder, 1)[0]
        task = finished(noisy, timeout=60)
        assert (task.status, task.error["code"]) == ("failed", "output_limit"), task.error
        cut = TaskEvent.objects.filter(task_id=noisy, type="log", content__kind="output_limit").first()
        assert cut is not None and cut.content["truncated"] and 0 < len(cut.content["text"]) <= 256 * 1024
        assert_contiguous(noisy)
        # the quiet neighbour kept running and ends well
        assert Task.objects.get(pk=quiet).status == "running"
        held.release.set()
        task = finished(quiet)
        assert task.status == "succeeded", task.error
        assert_contiguous(quiet)


def test_tasks_ride_out_a_redis_outage(customer, client_for, held):
    """Every client connection dropped and every command held for 3 s, as in a restart: the held tasks keep
    running, their events are whole (the database is the record), and control and stats come back."""
    import redis as redis_client
    from django.conf import settings

    org, user = customer
    client = client_for(user)
    with running("conc-redis", WORKER_CONCURRENCY=64) as procs:
        ids = submit_many(client, slow_agent(org, held), 10)
        all_running(client, ids, 10, held)
        server = redis_client.Redis.from_url(settings.REDIS_URL)
        server.client_kill_filter(_type="normal", skipme=True)
        server.client_kill_filter(_type="pubsub", skipme=True)
        server.client_pause(3000)  # every client (this one too) waits 3 s, as on a server restarting
        # the worker is still there and still holds them
        assert procs.procs["conc-redis"].poll() is None
        assert running_through_api(client, ids) == set(ids)
        # a cancel still reaches its sandbox
        victim_pid = Task.objects.get(pk=ids[0]).pid
        assert client.post(f"/api/tasks/{ids[0]}/cancel/").status_code == 200
        assert finished(ids[0], timeout=10).status == "cancelled"
        wait_for(lambda: pid_gone(victim_pid), timeout=5, message="the cancelled sandbox to die")
        held.release.set()
        for task_id in ids[1:]:
            task = finished(task_id)
            assert task.status == "succeeded", task.error
            assert_contiguous(task_id)
        # and the worker takes new work afterwards
        later = submit_many(client, Agent.objects.get(customer=org, name="waiter"), 1)[0]
        assert finished(later).status == "succeeded"
        assert procs.procs["conc-redis"].poll() is None
