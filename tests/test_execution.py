"""Tasks really run: API -> RQ -> `manage.py runworker` -> sandboxed AgentChat child -> events, status, usage.

Real Postgres (or SQLite), Redis, RQ worker processes, child processes and AutoGen; the model is
AutoGen's replay client or a local OpenAI-compatible server (tests/openai_stub.py).
"""
import asyncio
import os
import signal
import threading
import time

import psutil
import pytest

from agents.models import Agent, ModelConfig
from tasks.models import Task, TaskEvent
from tests.execution_support import pid_gone, running, wait_for
from tests.openai_stub import MODEL_INFO, OpenAIStub

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

SLEEPY_CODE = "```python\nimport time\ntime.sleep(60)\n```"


@pytest.fixture(scope="module")
def workers(django_db_setup, django_db_blocker):
    with running("w1", "w2", reaper=True) as procs:
        yield procs


@pytest.fixture
def customer(make_customer):
    return make_customer()


def replay_model(customer, responses, name="replay"):
    return ModelConfig.objects.create(customer=customer, name=name, provider="replay", responses=responses)


def make_agent(customer, model, name="helper", **fields):
    return Agent.objects.create(customer=customer, name=name, model=model, system_message="You are helpful.", **fields)


def submit(client, **data) -> dict:
    response = client.post("/api/tasks/", data, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def finished(task_id: int, timeout: float = 30.0) -> Task:
    return wait_for(
        lambda: (t := Task.objects.get(pk=task_id)).is_finished and t,
        timeout=timeout,
        message=f"task {task_id} to finish",
    )


def running_pid(task_id: int, timeout: float = 30.0) -> int:
    return wait_for(
        lambda: Task.objects.filter(pk=task_id, status="running", pid__isnull=False).values_list("pid", flat=True).first(),
        timeout=timeout,
        message=f"task {task_id} to run",
    )


def events_of(task_id: int) -> list[dict]:
    return [e.as_dict() for e in TaskEvent.objects.filter(task_id=task_id).order_by("seq")]


def assert_contiguous(events: list[dict]) -> None:
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))


def tree_of(pid: int) -> list[int]:
    """The pids of a process and its descendants, once its code executor has started one."""
    process = psutil.Process(pid)
    return [pid] + [c.pid for c in process.children(recursive=True)]


def test_replay_agent_runs_to_success_with_events_and_usage(workers, customer, client_for):
    # given
    org, user = customer
    agent = make_agent(org, replay_model(org, ["Hello from the replay model. TERMINATE"]))
    # when
    created = submit(client_for(user), agent=agent.pk, input="Say hello")
    task = finished(created["id"])
    # then
    assert task.status == "succeeded", task.error
    assert task.result == {"text": "Hello from the replay model. TERMINATE", "stop_reason": "completed"}
    assert task.usage["prompt_tokens"] > 0 and task.usage["completion_tokens"] == 6
    assert task.usage["wall_seconds"] > 0 and task.usage["cpu_seconds"] > 0 and task.usage["peak_memory_mb"] > 0
    events = client_for(user).get(f"/api/tasks/{task.pk}/events/").json()["results"]
    assert_contiguous(events)
    assert [e["type"] for e in events] == ["status", "status", "message", "message", "usage", "status"]
    assert [e["content"]["status"] for e in events if e["type"] == "status"] == ["queued", "running", "succeeded"]
    assert events[3]["source"] == "helper" and events[3]["content"]["text"].startswith("Hello from the replay")


def test_idempotent_creation_runs_one_task(workers, customer, client_for):
    org, user = customer
    agent = make_agent(org, replay_model(org, ["Once. TERMINATE"]))
    client = client_for(user)
    first = client.post("/api/tasks/", {"agent": agent.pk, "input": "hi"}, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    again = client.post("/api/tasks/", {"agent": agent.pk, "input": "hi"}, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    assert finished(first.json()["id"]).status == "succeeded"
    assert Task.objects.filter(customer=org).count() == 1


def test_round_robin_team_alternates_and_stops_on_max_messages(workers, customer, client_for):
    from teams.models import Team, TeamMember

    org, user = customer
    model = replay_model(org, ["Draft one.", "Critique one.", "Draft two.", "Critique two."])
    writer, critic = make_agent(org, model, "writer"), make_agent(org, model, "the critic")
    team = Team.objects.create(customer=org, name="duo", mode="round_robin", termination={"max_messages": 4})
    TeamMember.objects.create(team=team, agent=writer, position=0)
    TeamMember.objects.create(team=team, agent=critic, position=1)
    task = finished(submit(client_for(user), team=team.pk, input="Write a haiku")["id"])
    assert task.status == "succeeded", task.error
    messages = [e for e in events_of(task.pk) if e["type"] == "message"]
    assert [m["source"] for m in messages] == ["user", "writer", "the critic", "writer"]
    assert task.result["text"] == "Draft two."
    assert "Maximum number of messages 4 reached" in task.result["stop_reason"]


def test_selector_team_lets_the_selector_model_pick_speakers(workers, customer, client_for):
    from teams.models import Team, TeamMember

    org, user = customer
    members = replay_model(org, ["Facts: water boils at 100 C.", "Summary: hot. DONE"], name="members")
    selector = replay_model(org, ["researcher", "summarizer"], name="selector")
    researcher = make_agent(org, members, "researcher", description="Finds facts.")
    summarizer = make_agent(org, members, "summarizer", description="Summarizes.")
    team = Team.objects.create(
        customer=org, name="panel", mode="selector", selector_model=selector, termination={"text_mention": "DONE", "max_messages": 6}
    )
    TeamMember.objects.create(team=team, agent=researcher, position=0)
    TeamMember.objects.create(team=team, agent=summarizer, position=1)
    task = finished(submit(client_for(user), team=team.pk, input="Boiling water?")["id"])
    assert task.status == "succeeded", task.error
    assert [m["source"] for m in events_of(task.pk) if m["type"] == "message"] == ["user", "researcher", "summarizer"]
    assert "DONE" in task.result["stop_reason"]


def test_openai_provider_goes_through_the_broker_and_the_child_never_holds_the_key(workers, customer, client_for):
    from accounts.crypto import encrypt

    org, user = customer
    release = threading.Event()
    with OpenAIStub([{"hold": release, "text": "Streamed answer from the stub. TERMINATE"}]) as stub:
        model = ModelConfig.objects.create(
            customer=org, name="local", provider="openai", model="stub-model", base_url=stub.base_url,
            api_key_encrypted=encrypt("sk-test-secret-123"), model_info=MODEL_INFO,
        )
        agent = make_agent(org, model)
        created = submit(client_for(user), agent=agent.pk, input="Hello provider")
        pid = running_pid(created["id"])
        wait_for(lambda: stub.requests, message="the model request")
        environ = b"".join(open(f"/proc/{p}/environ", "rb").read() for p in tree_of(pid))
        cmdlines = b"".join(open(f"/proc/{p}/cmdline", "rb").read() for p in tree_of(pid))
        release.set()
        task = finished(created["id"])
    assert task.status == "succeeded", task.error
    assert task.result["text"] == "Streamed answer from the stub. TERMINATE"
    # The child's own environment was read; a warm-started child (a fork of the zygote, which was
    # started with an empty environment) shows the zygote's, and its os.environ is the supervisor's.
    assert b"AGENTCHILD_FD=" in environ or (b"sandbox/zygote.py" in cmdlines and environ == b""), (environ, cmdlines)
    assert b"sk-test-secret-123" not in environ and b"DATABASE_URL" not in environ and b"REDIS_URL" not in environ
    request = stub.requests[0]
    assert request["headers"]["authorization"] == "Bearer sk-test-secret-123"
    assert request["body"]["stream"] is True and request["body"]["stream_options"] == {"include_usage": True}
    assert request["body"]["messages"][-1]["content"] == "Hello provider"
    assert task.usage["completion_tokens"] == 6  # counted from the provider's usage chunk


def test_streamed_tokens_reach_the_task_group_live(workers, customer):
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    from autogen_platform import realtime
    from tasks.services import task_create

    org, _ = customer
    release = threading.Event()
    with OpenAIStub([{"hold": release, "text": "One two three four. TERMINATE"}]) as stub:
        model = ModelConfig.objects.create(
            customer=org, name="local", provider="openai", model="stub-model", base_url=stub.base_url, model_info=MODEL_INFO
        )
        task, _ = task_create(actor="test", customer=org, input="Count", agent=make_agent(org, model))

        async def listen():
            layer = get_channel_layer()
            channel = await layer.new_channel()
            await layer.group_add(realtime.task_group(task.pk), channel)
            # the answer streams once we listen (a silent channel layer read times out after 5 s)
            await asyncio.get_running_loop().run_in_executor(None, lambda: wait_for(lambda: stub.requests, message="the model call"))
            release.set()
            tokens, deadline = [], time.monotonic() + 30
            while time.monotonic() < deadline:
                message = await asyncio.wait_for(layer.receive(channel), 30)
                if message["type"] == "task.token":
                    tokens.append(message["text"])
                if message["type"] == "task.status" and message["status"] in Task.FINISHED:
                    return message["status"], tokens
            return None, tokens

        status, tokens = async_to_sync(listen)()
    assert status == "succeeded"
    assert "".join(tokens) == "One two three four. TERMINATE"


def test_thread_continuation_sends_the_earlier_conversation(workers, customer, client_for):
    org, user = customer
    with OpenAIStub(["Nice to meet you, Ada.", "Your name is Ada."]) as stub:
        model = ModelConfig.objects.create(
            customer=org, name="local", provider="openai", model="stub-model", base_url=stub.base_url, model_info=MODEL_INFO
        )
        agent = make_agent(org, model)
        first = finished(submit(client_for(user), agent=agent.pk, input="My name is Ada.")["id"])
        assert first.status == "succeeded", first.error
        second = finished(submit(client_for(user), agent=agent.pk, input="What is my name?", thread=first.thread_id)["id"])
    assert second.status == "succeeded", second.error
    assert second.thread_id == first.thread_id
    contents = [m.get("content") for m in stub.requests[1]["body"]["messages"]]
    assert contents[-3:] == ["My name is Ada.", "Nice to meet you, Ada.", "What is my name?"]


def test_tool_call_runs_the_registry_tool(workers, customer, client_for):
    org, user = customer
    with OpenAIStub([{"tool_calls": [{"name": "calculator", "arguments": {"expression": "6*7"}}]}, "It is 42. TERMINATE"]) as stub:
        model = ModelConfig.objects.create(
            customer=org, name="local", provider="openai", model="stub-model", base_url=stub.base_url, model_info=MODEL_INFO
        )
        agent = make_agent(org, model, tools=["calculator"])
        task = finished(submit(client_for(user), agent=agent.pk, input="What is 6*7?")["id"])
    assert task.status == "succeeded", task.error
    events = events_of(task.pk)
    call = next(e for e in events if e["type"] == "tool_call")
    result = next(e for e in events if e["type"] == "tool_result")
    assert call["content"]["name"] == "calculator" and call["content"]["arguments"] == {"expression": "6*7"}
    assert result["content"]["content"] == "42" and result["content"]["is_error"] is False
    assert [t["function"]["name"] for t in stub.requests[0]["body"]["tools"]] == ["calculator"]
    assert task.result["text"] == "It is 42. TERMINATE"


def test_code_executing_agent_runs_the_code_in_its_work_dir(workers, customer, client_for):
    org, user = customer
    code = "```python\nimport os\nprint(6 * 7, os.getcwd())\n```"
    agent = make_agent(org, replay_model(org, [code, "The answer is 42. TERMINATE"]), code_execution=True)
    task = finished(submit(client_for(user), agent=agent.pk, input="Compute 6*7 with Python")["id"])
    assert task.status == "succeeded", task.error
    events = events_of(task.pk)
    executions = [e for e in events if e["type"] == "code_execution"]
    assert len(executions) == 1, events
    execution = executions[0]
    assert execution["content"]["exit_code"] == 0
    assert "import os" in execution["content"]["code"]
    assert execution["content"]["output"].startswith("42 ") and "task-" in execution["content"]["output"]
    assert task.result["text"] == "The answer is 42. TERMINATE"


def test_only_a_task_that_runs_code_gets_a_code_runner(workers, customer, client_for):
    """The code runner (a second process under a second uid for the code agents write) costs a fork:
    a task whose agents have no code_execution goes without it."""
    org, user = customer
    client = client_for(user)
    release = threading.Event()
    with OpenAIStub([{"hold": release, "text": "Done. TERMINATE", "timeout": 60}] * 4) as stub:
        model = ModelConfig.objects.create(customer=org, name="held", provider="openai", model="stub-model",
                                           base_url=stub.base_url, model_info=MODEL_INFO)
        plain = submit(client, agent=make_agent(org, model, name="plain").pk, input="Wait")["id"]
        coder = submit(client, agent=make_agent(org, model, name="coder", code_execution=True).pk, input="Wait")["id"]
        wait_for(lambda: len(stub.requests) >= 2, timeout=60, message="both tasks waiting on their model")
        uids = {}
        for task_id in (plain, coder):
            tree = [psutil.Process(pid) for pid in tree_of(running_pid(task_id))]
            uids[task_id] = sorted(p.uids().real for p in tree)
        release.set()
        for task_id in (plain, coder):
            assert finished(task_id).status == "succeeded"
    # The agent; with code, also the code runner under the code uid. (Above them, a launcher running as root
    # where there is one: a cold start, or a warm one outside mode "root"; warm in mode "root" the agent is the
    # zygote's child itself.)
    tasks_own = {task_id: [uid for uid in found if uid != 0] for task_id, found in uids.items()}
    assert len(tasks_own[plain]) == 1 and len(uids[plain]) <= 2, uids
    assert len(tasks_own[coder]) == 2 and tasks_own[coder][1] == tasks_own[coder][0] + 100000, uids


def test_cancel_kills_the_whole_tree_quickly(workers, customer, client_for):
    org, user = customer
    agent = make_agent(org, replay_model(org, [SLEEPY_CODE]), code_execution=True)
    client = client_for(user)
    created = submit(client, agent=agent.pk, input="Sleep")
    pid = running_pid(created["id"])
    pids = wait_for(lambda: len(t := tree_of(pid)) >= 2 and t, message="the code executor's process")
    started = time.monotonic()
    response = client.post(f"/api/tasks/{created['id']}/cancel/")
    assert response.status_code == 200
    task = finished(created["id"], timeout=5)
    assert time.monotonic() - started < 2.0
    assert task.status == "cancelled" and task.error["code"] == "cancelled"
    wait_for(lambda: all(pid_gone(p) for p in pids), timeout=2, message="the task's processes to be gone")


def test_wall_clock_timeout_ends_timed_out(workers, customer, client_for):
    org, user = customer
    agent = make_agent(org, replay_model(org, [SLEEPY_CODE]), code_execution=True, limits={"timeout_seconds": 2})
    task = finished(submit(client_for(user), agent=agent.pk, input="Sleep")["id"], timeout=15)
    assert task.status == "timed_out" and task.error["code"] == "timeout"
    assert 2 <= task.usage["wall_seconds"] < 4


def test_cpu_limit_ends_the_task_failed_cpu_limit(workers, customer, client_for):
    org, user = customer
    busy = "```python\nwhile True:\n    pass\n```"
    agent = make_agent(org, replay_model(org, [busy, "TERMINATE"]), code_execution=True, limits={"cpu_seconds": 3})
    task = finished(submit(client_for(user), agent=agent.pk, input="Spin")["id"], timeout=20)
    assert task.status == "failed" and task.error["code"] == "cpu_limit", task.error
    assert task.usage["cpu_seconds"] >= 3


def test_token_budget_ends_the_task(workers, customer, client_for):
    org, user = customer
    long_answer = " ".join(["word"] * 500)
    agent = make_agent(org, replay_model(org, [long_answer]), limits={"max_tokens": 400})
    task = finished(submit(client_for(user), agent=agent.pk, input="Talk a lot")["id"])
    assert task.status == "failed" and task.error["code"] == "token_budget"
    assert task.usage["completion_tokens"] == 500


def test_a_call_that_cannot_fit_the_budget_is_not_made(workers, customer, client_for):
    # given a budget far smaller than the prompt (the print storm fed back to the model)
    org, user = customer
    with OpenAIStub(["never sent"]) as stub:
        model = ModelConfig.objects.create(
            customer=org, name="local", provider="openai", model="stub-model", base_url=stub.base_url, model_info=MODEL_INFO
        )
        agent = make_agent(org, model, limits={"max_tokens": 1000})
        task = finished(submit(client_for(user), agent=agent.pk, input="x " * 20000)["id"])
        # then the task ends token_budget before the provider is asked, and nothing is charged
        assert task.status == "failed" and task.error["code"] == "token_budget", task.error
        assert "prompt tokens" in task.error["message"] and "1000" in task.error["message"]
        assert stub.requests == []
    assert task.usage["prompt_tokens"] == 0 and task.usage["completion_tokens"] == 0


def test_a_call_may_complete_only_what_is_left_of_the_budget(workers, customer, client_for):
    org, user = customer
    with OpenAIStub(["Short. TERMINATE"]) as stub:
        model = ModelConfig.objects.create(
            customer=org, name="local", provider="openai", model="stub-model", base_url=stub.base_url, model_info=MODEL_INFO
        )
        agent = make_agent(org, model, limits={"max_tokens": 5000})
        task = finished(submit(client_for(user), agent=agent.pk, input="Hi")["id"])
        assert task.status == "succeeded", task.error
        # the provider was told to stop before the budget runs out: under what is left, never over
        cap = stub.requests[0]["body"]["max_tokens"]
        assert 0 < cap < 5000


def test_provider_failure_is_a_model_error_with_its_message(workers, customer, client_for):
    org, user = customer
    with OpenAIStub([{"status": 400, "message": "model 'stub-model' is overloaded"}]) as stub:
        model = ModelConfig.objects.create(
            customer=org, name="local", provider="openai", model="stub-model", base_url=stub.base_url, model_info=MODEL_INFO
        )
        task = finished(submit(client_for(user), agent=make_agent(org, model).pk, input="Hi")["id"])
    assert task.status == "failed" and task.error["code"] == "model_error"
    assert "overloaded" in task.error["message"]


def test_restart_requeues_a_running_task_on_the_current_version(workers, customer, client_for):
    org, user = customer
    agent = make_agent(org, replay_model(org, [SLEEPY_CODE]), code_execution=True)
    client = client_for(user)
    created = submit(client, agent=agent.pk, input="Sleep")
    running_pid(created["id"])
    # a new version: the restarted task must run it
    response = client.patch(f"/api/agents/{agent.pk}/", {"system_message": "You are terse."}, format="json")
    assert response.status_code == 200, response.content
    assert client.post(f"/api/agents/{agent.pk}/restart/").status_code == 200
    wait_for(lambda: Task.objects.get(pk=created["id"]).attempts == 2 and Task.objects.get(pk=created["id"]).status == "running",
             timeout=15, message="the task to run again")
    task = Task.objects.get(pk=created["id"])
    assert task.agent_version == 2 and task.spec["agents"][0]["system_message"] == "You are terse."
    assert {"status": "queued", "reason": "restart"} in [e["content"] for e in events_of(task.pk) if e["type"] == "status"]
    client.post(f"/api/tasks/{task.pk}/cancel/")
    assert finished(task.pk, timeout=5).status == "cancelled"


def test_killswitch_ends_running_tasks_of_the_customer(workers, customer, client_for):
    from adminpanel.services import killswitch_set

    org, user = customer
    agent = make_agent(org, replay_model(org, [SLEEPY_CODE]), code_execution=True)
    created = submit(client_for(user), agent=agent.pk, input="Sleep")
    pid = running_pid(created["id"])
    started = time.monotonic()
    killswitch_set(actor="test", engaged=True, customer=org, reason="incident")
    task = finished(created["id"], timeout=5)
    assert time.monotonic() - started < 1.5
    assert task.status == "cancelled" and task.error["code"] == "killswitch"
    wait_for(lambda: pid_gone(pid), timeout=2, message="the sandbox to be gone")
    killswitch_set(actor="test", engaged=False, customer=org)


def test_processes_lists_the_live_sandbox(workers, customer, client_for):
    org, user = customer
    agent = make_agent(org, replay_model(org, [SLEEPY_CODE]), code_execution=True)
    client = client_for(user)
    created = submit(client, agent=agent.pk, input="Sleep")
    pid = running_pid(created["id"])
    rows = wait_for(lambda: client.get(f"/api/agents/{agent.pk}/processes/").json(), timeout=5, message="a live process")
    assert rows[0]["task"] == created["id"] and rows[0]["pid"] == pid
    assert rows[0]["memory_mb"] > 0 and rows[0]["started_at"]
    client.post(f"/api/tasks/{created['id']}/cancel/")
    finished(created["id"], timeout=5)
    assert wait_for(lambda: client.get(f"/api/agents/{agent.pk}/processes/").json() == [], timeout=3, message="no process")


def test_killed_worker_ends_the_task_worker_lost_and_the_next_task_succeeds(workers, customer, client_for):
    org, user = customer
    agent = make_agent(org, replay_model(org, [SLEEPY_CODE]), code_execution=True)
    client = client_for(user)
    created = submit(client, agent=agent.pk, input="Sleep")
    pid = running_pid(created["id"])
    name, worker = workers.worker_for(Task.objects.get(pk=created["id"]).worker)
    horse = psutil.Process(worker.pid).children()
    # when: the worker and its work-horse die without a word
    os.kill(worker.pid, signal.SIGKILL)
    for process in horse:
        process.kill()
    worker.wait()
    killed_at = time.monotonic()
    # then: the reaper ends the task, and the orphaned child notices its supervisor is gone
    task = finished(created["id"], timeout=10)
    assert task.status == "failed" and task.error["code"] == "worker_lost"
    assert time.monotonic() - killed_at < 6
    wait_for(lambda: pid_gone(pid), timeout=3, message="the orphaned child to exit")
    workers.start_worker(name)
    follow_up = make_agent(org, replay_model(org, ["Still here. TERMINATE"], name="again"), name="again")
    assert finished(submit(client, agent=follow_up.pk, input="Hi")["id"]).status == "succeeded"


def queued_without_job(org, agent, *, age_seconds: float) -> Task:
    """A queued task whose job never reached Redis (as after a Redis loss), created age_seconds ago."""
    from datetime import timedelta

    from django.utils import timezone

    from tasks.models import Thread
    from tasks.services import build_task_spec

    task = Task.objects.create(
        customer=org, agent=agent, agent_version=1, thread=Thread.objects.create(customer=org, agent=agent),
        input="Hello?", spec=build_task_spec(agent=agent),
    )
    TaskEvent.objects.create(task=task, seq=1, type="status", content={"status": "queued"})
    Task.objects.filter(pk=task.pk).update(last_seq=1, created_at=timezone.now() - timedelta(seconds=age_seconds))
    return task


def test_reaper_enqueues_a_queued_task_whose_job_was_lost(workers, customer):
    org, _ = customer
    agent = make_agent(org, replay_model(org, ["Found again. TERMINATE"]))
    # given: a queued task whose job never reached Redis, queued for a while
    task = queued_without_job(org, agent, age_seconds=300)
    # then: the reaper puts it back on the queue and it runs
    task = finished(task.pk, timeout=20)
    assert task.status == "succeeded" and task.result["text"] == "Found again. TERMINATE"
    assert_contiguous(events_of(task.pk))


def test_an_exception_in_the_agent_ends_agent_error(workers, customer, client_for):
    org, user = customer
    agent = make_agent(org, replay_model(org, ["Never said. TERMINATE"]))
    first = finished(submit(client_for(user), agent=agent.pk, input="Hi")["id"])
    # given: the thread's saved conversation is damaged, so loading it raises inside the child
    from tasks.models import Thread

    Thread.objects.filter(pk=first.thread_id).update(state={"shape": "agent", "state": {"llm_context": "damaged"}})
    task = finished(submit(client_for(user), agent=agent.pk, input="Again", thread=first.thread_id)["id"])
    assert task.status == "failed" and task.error["code"] == "agent_error"
    assert task.error["message"]
    assert [e["type"] for e in events_of(task.pk)][-3:] == ["usage", "error", "status"]
