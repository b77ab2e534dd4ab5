"""What the runtime needs of a task, and nothing more: the port the task app implements.

The runtime (supervisor, worker) imports no app above it. It reaches tasks, customers and model
configurations only through a TaskStore, whose implementation settings.RUNTIME_TASK_STORE names
(tasks.runtime_store.DjangoTaskStore). Every method is synchronous and may touch the database: the
runtime calls them on its bounded pool of database threads, never on its event loop.
"""
from dataclasses import dataclass, field
from typing import Protocol

from django.conf import settings
from django.utils.module_loading import import_string


@dataclass
class TaskContext:
    """What a run needs, read once when it starts (model credentials decrypted, in the worker only)."""

    task_id: int
    customer_id: int
    agent_id: int | None
    input: str
    spec: dict
    thread_state: dict | None
    models: dict[int, dict]  # model config id -> {id, name, provider, model, base_url, api_key, model_info, responses}
    budgets: dict[int, int]  # agent id -> max_tokens
    limits: dict = field(default_factory=dict)  # memory_mb, cpu_seconds, timeout_seconds, max_tokens
    traceparent: str = ""  # W3C trace context of the request that created the task ("": tracing was off)
    created_at: float | None = None  # unix time the task was queued
    # A run that resumes after a person answered: {pending (the child's), answer, usage, broker, workdir
    # (the code runner's packed work dir, or None)}; its
    # saved AgentChat state is thread_state.
    resume: dict | None = None


class TaskStore(Protocol):
    def start(self, task_id: int, worker: str) -> bool:
        """queued -> running (under the customer's concurrency quota); False: nothing to run now."""

    def start_many(self, task_ids: list[int], worker: str) -> list:
        """start() for several tasks in one transaction, in order: per task True/False, or the exception that
        kept that one from starting (the others are not undone by it)."""

    def start_and_load_many(self, task_ids: list[int], worker: str) -> list:
        """start_many(), then what each started task runs, read with its start: per task None (not started),
        (its context, None), (None, the error that kept it from being read), or the exception that kept it
        from starting."""

    def load(self, task_id: int) -> TaskContext | None:
        """The running task's context; None when it is not running (any more)."""

    def heartbeat(self, task_ids: list[int], pids: dict[int, int | None] | None = None,
                  tokens: dict[int, int] | None = None) -> None:
        """These running tasks are alive (one write for all of a worker's tasks); pids: the sandboxes started
        since the worker's last write (task id -> pid), tokens: running tasks' tokens so far that changed
        since (task id -> tokens, counted in their customers' monthly budgets), recorded with it."""

    def append_events(self, batches: dict[int, list[dict]], pids: dict[int, int | None] | None = None,
                      tokens: dict[int, int] | None = None) -> dict[int, list[dict]]:
        """Store events of several tasks, each task's in order with contiguous seqs, and pids and tokens as
        heartbeat() does, in one transaction; returns the stored events ({seq, type, source, content,
        created_at}) by task, for live delivery."""

    def stop_reasons(self, scope: dict[int, int]) -> dict[int, str]:
        """scope: task id -> customer id. The stop reasons recorded for any of them (cancel, stop, restart,
        killswitch): the database backstop of the control messages."""

    def tokens_left(self, task_id: int, customer_id: int, task_tokens: int) -> int:
        """What is left of the task's customer's monthly budget, the task's tokens so far (task_tokens)
        counted. A read: the runtime records the tokens with its next heartbeat() or append_events()."""

    def finish_many(self, ends: list[tuple[int, dict]]) -> list:
        """Several tasks' final status, once each, in one transaction: ends are (task id, {status, result,
        error, usage, thread_state, events}), events being the run's last ones not stored yet. Returns, per end, True/False (stored / already finished) or the
        exception that kept that one from being stored."""

    def finish(self, task_id: int, *, status: str, result=None, error=None, usage=None, thread_state=None) -> bool:
        """The task's final status, once."""

    def requeue(self, task_id: int) -> bool:
        """Back to queued on its agent's current version (a restart)."""

    def http_tool_access(self, customer_id: int, name: str) -> dict:
        """What an HTTP tool's call needs now: {"hosts": the customer's allow-list, "secrets": the tool's secret
        headers (name -> value) or None when the tool is gone}. Read at each call, never sent to the child."""

    def suspend(self, task_id: int, *, request: dict, suspension: dict, usage: dict) -> bool:
        """running -> input_required: the run stopped to ask a person; suspension ({state, pending, broker})
        is what its resumption needs. False when the task is not running any more."""


_store: TaskStore | None = None


def task_store() -> TaskStore:
    global _store
    if _store is None:
        _store = import_string(settings.RUNTIME_TASK_STORE)()
    return _store
