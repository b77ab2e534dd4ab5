"""Threads, tasks and their ordered events."""
from django.conf import settings
from django.db import models
from django.db.models import Q

from accounts.models import Customer
from runtime.outcomes import ErrorCode, StopReason
from agents.models import Agent
from teams.models import Team


class Thread(models.Model):
    """A conversation: tasks on one thread continue from the AgentChat state the last one saved."""

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="threads")
    agent = models.ForeignKey(Agent, null=True, blank=True, on_delete=models.SET_NULL, related_name="threads")
    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.SET_NULL, related_name="threads")
    # AgentChat save_state() output after the last finished task on the thread.
    state = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        target = self.agent or self.team
        return f"thread {self.pk} ({target})" if target else f"thread {self.pk}"


class Task(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        INPUT_REQUIRED = "input_required"  # waiting for a person's answer: no process, no worker slot
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"
        TIMED_OUT = "timed_out"

    FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED, Status.TIMED_OUT)
    # How a task can end (runtime.outcomes.ErrorCode: one vocabulary for the runtime and the API).
    ERROR_CODES = tuple(code.value for code in ErrorCode)

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="tasks")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="tasks"
    )
    agent = models.ForeignKey(Agent, null=True, blank=True, on_delete=models.SET_NULL, related_name="tasks")
    agent_version = models.PositiveIntegerField(null=True, blank=True)
    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.SET_NULL, related_name="tasks")
    # The team's version the task runs (TeamVersion.version), set with agent_version when the spec is frozen;
    # null for an agent's task and for team tasks made before it was recorded.
    team_version = models.PositiveIntegerField(null=True, blank=True)
    thread = models.ForeignKey(Thread, on_delete=models.CASCADE, related_name="tasks")
    input = models.TextField()
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED, db_index=True)
    result = models.JSONField(null=True, blank=True)
    error = models.JSONField(null=True, blank=True)
    usage = models.JSONField(default=dict, blank=True)
    # prompt + completion tokens, kept as a column so budgets are one SUM.
    tokens_used = models.PositiveBigIntegerField(default=0)
    idempotency_key = models.CharField(max_length=200, null=True, blank=True)
    # The exact AgentChat spec the task runs (agents' pinned versions, team, termination), frozen at creation.
    spec = models.JSONField(default=dict, blank=True)
    # Highest seq handed out for this task's events; incremented under a row lock.
    last_seq = models.PositiveIntegerField(default=0)
    # Set when a running task is asked to stop, to why: a cancel, its agent's stop or restart (a restart ends
    # nothing: the task goes back to the queue), the killswitch, a newer task on its thread. Empty otherwise.
    stop_requested = models.CharField(max_length=20, blank=True, default="", choices=StopReason.choices)
    attempts = models.PositiveIntegerField(default=0)
    # Set while the task waits `queued` for one of its customer's max_concurrent_tasks slots (no job
    # in the queue then: a finishing task of the customer, or the reaper, enqueues it again).
    waiting_since = models.DateTimeField(null=True, blank=True)
    # Set while the task waits `queued` for the unfinished task before it on its thread (no job then: the
    # thread's running task, when it ends, enqueues the oldest such task; a thread's tasks never overlap).
    waits_for_thread = models.BooleanField(default=False)
    # Bumped each time the task's job is enqueued again (a slot freed, a lost job): job ids stay unique.
    requeues = models.PositiveIntegerField(default=0)
    # While it waits in input_required (and until it ends): what a person was asked, the AgentChat state
    # saved when the run stopped to ask, the answer once given (tasks.services.task_suspend / task_answer).
    suspension = models.JSONField(null=True, blank=True)
    # When a task waiting for input ends timed_out (input_timeout) if nobody answered.
    input_deadline = models.DateTimeField(null=True, blank=True, db_index=True)
    worker = models.CharField(max_length=200, blank=True, default="")
    # Integrations: the webhook this task alone reports to, and the schedule that started it.
    webhook = models.ForeignKey("integrations.Webhook", null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="+")
    schedule = models.ForeignKey("integrations.Schedule", null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="tasks")
    pid = models.IntegerField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # W3C traceparent of the `task.create` span when tracing is on: the worker continues that trace.
    traceparent = models.CharField(max_length=55, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=(Q(agent__isnull=False) & Q(team__isnull=True))
                | (Q(agent__isnull=True) & Q(team__isnull=False))
                | Q(status__in=["succeeded", "failed", "cancelled", "timed_out"]),
                name="task_agent_xor_team",
            ),
            models.CheckConstraint(
                condition=Q(status__in=["queued", "running", "input_required", "succeeded", "failed", "cancelled",
                                        "timed_out"]),
                name="task_status_valid",
            ),
            models.UniqueConstraint(
                fields=["customer", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="task_idempotency_key_unique_per_customer",
            ),
        ]
        indexes = [models.Index(fields=["customer", "status"]), models.Index(fields=["status", "heartbeat_at"])]

    def __str__(self):
        target = self.agent or self.team
        return f"task {self.pk} ({target}, {self.status})" if target else f"task {self.pk} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED

    @property
    def trace_id(self) -> str | None:
        """The id of the task's trace (OpenTelemetry), or None when tracing was off at its creation."""
        parts = self.traceparent.split("-")
        return parts[1] if len(parts) == 4 else None


class TaskEvent(models.Model):
    class Type(models.TextChoices):
        STATUS = "status"
        MESSAGE = "message"
        TOOL_CALL = "tool_call"
        TOOL_RESULT = "tool_result"
        CODE_EXECUTION = "code_execution"
        USAGE = "usage"
        ERROR = "error"
        LOG = "log"
        MODEL_WAITING = "model_waiting"
        INPUT_REQUEST = "input_request"  # {prompt, kind: input|approval, ...}: the task waits for an answer
        INPUT_RESPONSE = "input_response"  # the answer given ({kind, text} or {kind, approve})

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="events")
    seq = models.PositiveIntegerField()
    type = models.CharField(max_length=20, choices=Type.choices)
    source = models.CharField(max_length=200, blank=True, default="")
    content = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["task", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["task", "seq"], name="taskevent_seq_unique"),
            models.CheckConstraint(condition=Q(seq__gte=1), name="taskevent_seq_positive"),
        ]

    def __str__(self):
        return f"task {self.task_id} #{self.seq} {self.type}"

    def as_dict(self) -> dict:
        return {
            "seq": self.seq,
            "type": self.type,
            "source": self.source,
            "content": self.content,
            "created_at": self.created_at.isoformat().replace("+00:00", "Z"),
        }
