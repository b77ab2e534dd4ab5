"""Shapes of webhooks, their deliveries and schedules."""
from django.conf import settings
from rest_framework import serializers

from accounts.api.fields import CustomerPrimaryKeyRelatedField, StringField
from agents.models import Agent
from autogen_platform import serializers as strict
from integrations.models import TASK_EVENTS, Schedule, Webhook, WebhookDelivery
from integrations.services import schedule_upcoming
from tasks.models import Thread
from teams.models import Team


class WebhookSerializer(strict.ModelSerializer):
    url = serializers.URLField(max_length=2000, help_text="Where deliveries are POSTed (http or https).")
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=TASK_EVENTS), required=False,
        help_text="Events sent to this endpoint (default: the four task endings). An empty list: only the tasks "
                  "that name this webhook in POST /api/tasks/ `webhook`.")
    secret = StringField(
        write_only=True, required=False,
        help_text="Optional: bring your own signing secret (whsec_ + base64 of 24-64 bytes); otherwise one is "
                  "generated. Returned once, in the response to the create.")

    class Meta:
        model = Webhook
        fields = ["id", "url", "description", "events", "enabled", "secret", "created_at", "updated_at"]
        read_only_fields = ["id", "created_at", "updated_at"]


class WebhookCreatedSerializer(WebhookSerializer):
    """The create response: the only time the signing secret is shown."""

    secret = serializers.CharField(read_only=True, help_text="The signing secret (whsec_...): shown only now.")

    def to_representation(self, instance):
        data = super().to_representation(instance)
        data["secret"] = self.context.get("secret")
        return data


class WebhookSecretSerializer(strict.Serializer):
    secret = serializers.CharField(read_only=True, help_text="The new signing secret (whsec_...): shown only now.")


class DeliverySerializer(strict.ModelSerializer):
    status_code = serializers.IntegerField(source="response_status", read_only=True, allow_null=True,
                                           help_text="The HTTP status of the last attempt, or null (no answer).")
    payload = serializers.JSONField(read_only=True, help_text="The body sent, signed as Standard Webhooks says.")

    class Meta:
        model = WebhookDelivery
        fields = ["id", "message_id", "event", "task", "status", "attempts", "status_code", "latency_ms", "error",
                  "next_attempt_at", "created_at", "last_attempt_at", "delivered_at", "resent_from", "payload"]
        read_only_fields = fields


class DeliveryListQuerySerializer(strict.Serializer):
    status = serializers.ChoiceField(choices=WebhookDelivery.Status.choices, required=False)
    task = serializers.IntegerField(min_value=1, required=False)


class ScheduleSerializer(strict.ModelSerializer):
    agent = CustomerPrimaryKeyRelatedField(queryset=Agent.objects.all(), required=False, allow_null=True,
                                           help_text="Agent id; give exactly one of agent and team.")
    team = CustomerPrimaryKeyRelatedField(queryset=Team.objects.all(), required=False, allow_null=True,
                                          help_text="Team id; give exactly one of agent and team.")
    thread = CustomerPrimaryKeyRelatedField(
        queryset=Thread.objects.all(), required=False, allow_null=True,
        help_text="Every firing continues this conversation; omit for a new thread each time.")
    cron = StringField(required=False, allow_blank=True, max_length=200, help_text=(
        "Five-field cron expression (minute hour day-of-month month day-of-week), read in `timezone`. "
        "Give cron or interval_seconds."))
    interval_seconds = serializers.IntegerField(required=False, allow_null=True, min_value=1, help_text=(
        "Fire every N seconds instead of on a cron expression (at least SCHEDULE_MIN_INTERVAL_SECONDS)."))
    timezone = StringField(required=False, max_length=64, help_text="IANA time zone of the cron expression (default UTC).")
    input = StringField(trim_whitespace=False, max_length=settings.MAX_TASK_INPUT_CHARS,
                        help_text="The input of every task it starts.")
    next_run_at = serializers.DateTimeField(read_only=True, allow_null=True,
                                            help_text="The next firing (null while paused).")
    upcoming = serializers.SerializerMethodField(help_text="The next five firing times (empty while paused).")
    last_error = serializers.JSONField(read_only=True, allow_null=True, help_text=(
        "Why the last firing started no task ({code, message}: quota, killswitch, stopped agent), or null."))

    class Meta:
        model = Schedule
        fields = ["id", "name", "cron", "interval_seconds", "timezone", "agent", "team", "input", "thread", "enabled",
                  "next_run_at", "upcoming", "last_run_at", "last_task", "last_error", "created_at", "updated_at"]
        read_only_fields = ["id", "next_run_at", "upcoming", "last_run_at", "last_task", "last_error", "created_at",
                            "updated_at"]
        validators = []

    def get_upcoming(self, obj) -> list[str]:
        return [serializers.DateTimeField().to_representation(t) for t in schedule_upcoming(obj)]
