"""Webhook endpoints and their deliveries, and schedules that start tasks on their own."""
from django.conf import settings
from django.db import models
from django.db.models import Q

from accounts.models import Customer

TASK_EVENTS = ("task.succeeded", "task.failed", "task.cancelled", "task.timed_out", "task.input_required")


class Webhook(models.Model):
    """An endpoint of a customer's that is told when its tasks end (the events it lists).

    A webhook listing no events receives only the tasks that name it (POST /api/tasks/ `webhook`)."""

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="webhooks")
    url = models.URLField(max_length=2000)
    description = models.CharField(max_length=500, blank=True, default="")
    events = models.JSONField(default=list, blank=True)
    # "whsec_" + base64 of the signing key, encrypted at rest (accounts.crypto), shown once on create.
    secret_encrypted = models.TextField()
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]

    def __str__(self):
        return f"webhook {self.pk} -> {self.url}"


class WebhookDelivery(models.Model):
    """One message to one endpoint, and how sending it went. Retries keep the row (and the message id);
    a re-send is a new row with the same message id, so that receivers can tell it is the same message."""

    class Status(models.TextChoices):
        PENDING = "pending"  # waits for next_attempt_at
        QUEUED = "queued"  # a job is on the webhooks queue
        SENDING = "sending"  # a delivery worker holds it until lease_until
        SUCCEEDED = "succeeded"
        FAILED = "failed"  # given up: WEBHOOK_MAX_ATTEMPTS, or refused before any attempt

    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries")
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="webhook_deliveries")
    task = models.ForeignKey("tasks.Task", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    event = models.CharField(max_length=40)
    message_id = models.CharField(max_length=64, db_index=True)
    payload = models.JSONField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    attempts = models.PositiveIntegerField(default=0)
    response_status = models.PositiveIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True, default="")
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    queued_at = models.DateTimeField(null=True, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    resent_from = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "next_attempt_at"]), models.Index(fields=["webhook", "-created_at"])]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["pending", "queued", "sending", "succeeded", "failed"]),
                name="webhookdelivery_status_valid",
            ),
        ]


class Schedule(models.Model):
    """Starts a task of an agent or team on a cron expression in a time zone, or every N seconds."""

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="schedules")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    name = models.CharField(max_length=200)
    cron = models.CharField(max_length=200, blank=True, default="")
    interval_seconds = models.PositiveIntegerField(null=True, blank=True)
    timezone = models.CharField(max_length=64, default="UTC")
    agent = models.ForeignKey("agents.Agent", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    team = models.ForeignKey("teams.Team", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    input = models.TextField()
    thread = models.ForeignKey("tasks.Thread", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    enabled = models.BooleanField(default=True)
    # The next firing (UTC); the scheduler's lease: a firing moves it on with a conditional UPDATE.
    next_run_at = models.DateTimeField(null=True, blank=True)
    last_run_at = models.DateTimeField(null=True, blank=True)
    last_task = models.ForeignKey("tasks.Task", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # Why the last firing created no task ({code, message}), or null.
    last_error = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["enabled", "next_run_at"])]
        constraints = [
            models.UniqueConstraint(fields=["customer", "name"], name="schedule_name_unique_per_customer"),
            models.CheckConstraint(
                condition=(Q(agent__isnull=False) & Q(team__isnull=True)) | (Q(agent__isnull=True) & Q(team__isnull=False)),
                name="schedule_agent_xor_team",
            ),
            models.CheckConstraint(
                condition=(~Q(cron="") & Q(interval_seconds__isnull=True)) | (Q(cron="") & Q(interval_seconds__gte=1)),
                name="schedule_cron_xor_interval",
            ),
        ]

    def __str__(self):
        return f"schedule {self.pk} {self.name!r}"
