"""The runtime's vocabulary: how a task can end (error codes), why it is stopped (stop reasons), and the
outcome a run reports. One place for these names; the apps above import them from here."""
from dataclasses import dataclass
from enum import StrEnum

from django.db import models


class ErrorCode(models.TextChoices):
    """The `error.code` a finished task carries (the public contract's list)."""

    TIMEOUT = "timeout"
    MEMORY_LIMIT = "memory_limit"
    CPU_LIMIT = "cpu_limit"
    TOKEN_BUDGET = "token_budget"
    KILLSWITCH = "killswitch"
    CANCELLED = "cancelled"
    AGENT_ERROR = "agent_error"
    MODEL_ERROR = "model_error"
    WORKER_LOST = "worker_lost"
    SANDBOX_ERROR = "sandbox_error"
    OUTPUT_LIMIT = "output_limit"
    INPUT_TIMEOUT = "input_timeout"


class StopReason(models.TextChoices):
    """Why a running task is asked to stop (Task.stop_requested, control messages)."""

    CANCELLED = "cancelled"
    KILLSWITCH = "killswitch"
    RESTART = "restart"  # its agent was restarted: the task runs again on the current version
    SHUTDOWN = "shutdown"  # its worker shut down before the task ended
    # a newer task on its thread stopped it (tasks.services.task_create's multitask_strategy); a rollback
    # also deletes it once it ended
    INTERRUPT = "interrupt"
    ROLLBACK = "rollback"


class Final(StrEnum):
    """Final task statuses (what `Outcome.status` holds, besides REQUEUE)."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"


REQUEUE = "requeue"
# Not an end: the run stopped to ask a person (user proxy input, tool-call approval); its state is saved
# and it resumes in a new sandbox when the answer comes (tasks.services.task_answer).
INPUT_REQUIRED = "input_required"

# A stop reason -> (final status, error code, message).
STOP_OUTCOMES = {
    StopReason.CANCELLED: (Final.CANCELLED, ErrorCode.CANCELLED, "Cancelled"),
    StopReason.KILLSWITCH: (Final.CANCELLED, ErrorCode.KILLSWITCH, "Stopped by the killswitch"),
    StopReason.SHUTDOWN: (Final.FAILED, ErrorCode.WORKER_LOST, "The worker running the task shut down before it ended"),
    StopReason.INTERRUPT: (Final.CANCELLED, ErrorCode.CANCELLED, "Interrupted by a newer task on its thread"),
    StopReason.ROLLBACK: (Final.CANCELLED, ErrorCode.CANCELLED, "Interrupted by a newer task on its thread"),
}


@dataclass
class Outcome:
    status: str  # a Final status, REQUEUE or INPUT_REQUIRED
    error: dict | None = None
    result: dict | None = None
    state: dict | None = None
    request: dict | None = None  # INPUT_REQUIRED: what the person is asked ({prompt, kind, ...})


def failed(code: ErrorCode, message: str) -> Outcome:
    return Outcome(Final.FAILED, error={"code": str(code), "message": message})


def stop_outcome(reason: str, message: str | None = None) -> Outcome:
    """How a task ends when it is stopped for `reason` (a restart puts it back in the queue): the one mapping
    from stop reason to outcome. `message` replaces the reason's own."""
    if reason == StopReason.RESTART:
        return Outcome(REQUEUE)
    status, code, own = STOP_OUTCOMES.get(reason, (Final.CANCELLED, ErrorCode.CANCELLED, f"Stopped ({reason})"))
    return Outcome(str(status), error={"code": str(code), "message": message or own})
