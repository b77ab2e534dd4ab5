"""The supervisor accepts from a task's child only what fits the run at that point (issue 9, point 3):
a forged or out-of-turn message stops the task instead of becoming its record."""
import asyncio
import json

import pytest

from runtime.ports import TaskContext
from runtime.supervisor import OutputLimit, ProtocolViolation, TaskRun


class _Runtime:
    """What a TaskRun needs of its runtime for _handle: a loop and the event hand-over."""

    def __init__(self, loop):
        self.loop = loop
        self.ready = []

    def events_ready(self, run):
        self.ready.append(run.task_id)


@pytest.fixture
def run():
    loop = asyncio.new_event_loop()
    task_run = TaskRun(_Runtime(loop), 7)
    task_run.ctx = TaskContext(task_id=7, customer_id=1, agent_id=3, input="hi", spec={"agents": [{"id": 3}]},
                               thread_state=None, models={}, budgets={3: 100})
    task_run._sample_stats = lambda ending=False: None
    yield task_run
    for call in task_run.model_calls.values():
        call.cancel()
    loop.run_until_complete(asyncio.sleep(0))
    loop.close()


def handle(run, message: dict):
    run._handle(message, json.dumps(message).encode())


def test_an_honest_run_is_accepted(run):
    handle(run, {"op": "event", "type": "message", "source": "helper", "content": {"text": "hi"}})
    handle(run, {"op": "done", "result": {"text": "hi"}, "state": {}})
    assert run.outcome.result().status == "succeeded"
    assert [e["type"] for e in run.pending] == ["message"]


@pytest.mark.parametrize("messages, why", [
    ([{"op": "done", "result": {}}, {"op": "done", "result": {"text": "forged"}}], "after the final report"),
    ([{"op": "error", "message": "x"}, {"op": "event", "type": "message"}], "after the final report"),
    ([{"op": "model_result", "id": 1}], "unknown operation"),
    ([{"op": "start"}], "unknown operation"),
    ([{"op": "model", "id": "one"}], "fresh id"),
])
def test_out_of_turn_messages_are_violations(run, messages, why):
    with pytest.raises(ProtocolViolation, match=why):
        for message in messages:
            handle(run, message)


def test_a_result_while_a_model_call_is_unanswered_is_a_violation(run):
    run.broker = type("B", (), {"call": staticmethod(lambda *a: asyncio.sleep(60))})()
    run.loop = run.rt.loop
    asyncio.set_event_loop(run.rt.loop)
    handle(run, {"op": "model", "id": 1, "model": 1})
    with pytest.raises(ProtocolViolation, match="unanswered"):
        handle(run, {"op": "done", "result": {"text": "forged"}})
    with pytest.raises(ProtocolViolation, match="fresh id"):
        handle(run, {"op": "model", "id": 1, "model": 1})


def test_a_big_event_is_stored_cut_and_marked(run, settings):
    settings.TASK_EVENT_MAX_BYTES = 1000
    handle(run, {"op": "event", "type": "code_execution", "content": {"code": "print()", "output": "x" * 50000, "exit_code": 0}})
    content = run.pending[0]["content"]
    assert content["truncated"] is True and len(json.dumps(content)) < 3000 and content["code"] == "print()"


def test_too_many_events_end_the_task_output_limit(run, settings):
    settings.TASK_MAX_EVENTS = 3
    for _ in range(3):
        handle(run, {"op": "event", "type": "log", "content": {"text": "."}})
    with pytest.raises(OutputLimit):
        handle(run, {"op": "event", "type": "log", "content": {"text": "."}})


INPUT_REQUEST = {"op": "input", "request": {"kind": "input", "prompt": "Which colour?", "agent": "customer"},
                 "pending": {"kind": "input", "agent": "customer"}, "state": {"shape": "team", "state": {}}}


def test_an_input_request_is_refused_when_no_agent_of_the_task_may_ask(run):
    with pytest.raises(ProtocolViolation, match="cannot make"):
        handle(run, INPUT_REQUEST)


def test_an_input_request_of_an_agent_that_may_ask_stops_the_run_with_its_state(run):
    run.ctx.spec = {"agents": [{"id": 3}, {"id": 4, "human_input": True}]}
    handle(run, INPUT_REQUEST)
    outcome = run.outcome.result()
    assert outcome.status == "input_required"
    assert outcome.request == {"prompt": "Which colour?", "kind": "input", "agent": "customer"}
    assert outcome.state["state"] == INPUT_REQUEST["state"] and outcome.state["pending"]["agent"] == "customer"
    with pytest.raises(ProtocolViolation, match="after the final report"):
        handle(run, {"op": "done", "result": {"text": "forged"}, "state": {}})


def test_an_input_request_keeps_a_packed_work_dir_within_its_limit_only(run, settings):
    settings.TASK_INPUT_WORKDIR_MAX_BYTES = 30
    run.ctx.spec = {"agents": [{"id": 3, "human_input": True}]}
    with pytest.raises(ProtocolViolation, match="work directory"):
        handle(run, {**INPUT_REQUEST, "workdir": "A" * 45})
    with pytest.raises(ProtocolViolation, match="work directory"):
        handle(run, {**INPUT_REQUEST, "workdir": {"path": "/etc"}})
    handle(run, {**INPUT_REQUEST, "workdir": "H4sI" + "A" * 36})
    assert run.outcome.result().state["workdir"] == "H4sI" + "A" * 36


def test_an_approval_request_needs_an_agent_with_approval(run):
    run.ctx.spec = {"agents": [{"id": 3, "human_input": True}]}
    with pytest.raises(ProtocolViolation, match="cannot make"):
        handle(run, {**INPUT_REQUEST, "request": {"kind": "approval", "prompt": "ok?"}})
    with pytest.raises(ProtocolViolation, match="without a kind"):
        handle(run, {**INPUT_REQUEST, "request": {"kind": "anything"}})
