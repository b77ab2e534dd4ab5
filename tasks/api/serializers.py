"""Shapes of tasks, task events and threads."""
from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from accounts.api.fields import CustomerPrimaryKeyRelatedField, StringField
from agents.api.serializers import PassThroughMixin
from agents.models import Agent
from autogen_platform import serializers as strict
from tasks.models import Task, TaskEvent, Thread
from tasks.selectors import EVENTS_DEFAULT_LIMIT, EVENTS_MAX_LIMIT
from tasks.services import task_input_request, task_member_versions
from teams.models import Team

USAGE_KEYS = ("prompt_tokens", "completion_tokens", "cpu_seconds", "peak_memory_mb", "wall_seconds")


class TaskCreateSerializer(strict.Serializer):
    agent = CustomerPrimaryKeyRelatedField(queryset=Agent.objects.all(), required=False, allow_null=True,
                                           help_text="Agent id; give exactly one of agent and team.")
    team = CustomerPrimaryKeyRelatedField(queryset=Team.objects.all(), required=False, allow_null=True,
                                          help_text="Team id; give exactly one of agent and team.")
    input = StringField(trim_whitespace=False, max_length=settings.MAX_TASK_INPUT_CHARS,
                        help_text="The user message the task starts with.")
    thread = CustomerPrimaryKeyRelatedField(
        queryset=Thread.objects.all(), required=False, allow_null=True,
        help_text="Continue this earlier conversation (same agent or team); omit to start a new thread.",
    )
    webhook = CustomerPrimaryKeyRelatedField(
        # integrations.Webhook, named by Task.webhook: integrations sits above tasks, so no import
        queryset=Task._meta.get_field("webhook").related_model.objects.all(), required=False, allow_null=True,
        help_text="A webhook id (GET /api/webhooks/) told when this task ends, whatever events it lists.",
    )
    multitask_strategy = serializers.ChoiceField(
        choices=["reject", "enqueue", "interrupt", "rollback"], default="enqueue",
        error_messages={"invalid_choice": '"{input}" is not a strategy: one of reject, enqueue, interrupt, rollback.'},
        help_text="On a thread with an unfinished task: reject (409 conflict), enqueue (wait for it), interrupt "
                  "(stop it: it ends cancelled; this task continues from the thread's saved state) or rollback "
                  "(stop it and delete it with its events).",
    )

    def validate(self, attrs):
        if (attrs.get("agent") is None) == (attrs.get("team") is None):
            raise serializers.ValidationError("Give exactly one of agent or team")
        return attrs


class TaskBatchCreateSerializer(strict.Serializer):
    tasks = TaskCreateSerializer(
        many=True, min_length=1, max_length=settings.MAX_TASK_BATCH,
        error_messages={"min_length": "Give at least one task.",
                        "max_length": "At most {max_length} tasks in one batch (MAX_TASK_BATCH)."},
        help_text="The tasks, each as POST /api/tasks/ takes it; created in this order, all or none "
                  "(at most MAX_TASK_BATCH).",
    )


class TaskErrorSerializer(PassThroughMixin, serializers.Serializer):
    code = serializers.ChoiceField(choices=Task.ERROR_CODES)
    message = serializers.CharField()


class UsageSerializer(serializers.Serializer):
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    cpu_seconds = serializers.FloatField()
    peak_memory_mb = serializers.FloatField()
    wall_seconds = serializers.FloatField()

    def to_representation(self, instance):
        return {**{key: 0 for key in USAGE_KEYS}, **(instance or {})}


class TaskResultSerializer(PassThroughMixin, serializers.Serializer):
    text = serializers.CharField(help_text="The final message's text.")
    stop_reason = serializers.CharField(help_text="Why the run stopped, e.g. the termination condition met, "
                                                  "or `completed`.")


class InputRequestSerializer(PassThroughMixin, serializers.Serializer):
    prompt = serializers.CharField(help_text="What the person is asked (for an approval: which call).")
    kind = serializers.ChoiceField(choices=["input", "approval"],
                                   help_text="input: answer with {text}; approval: answer with {approve: true|false}.")
    agent = serializers.CharField(help_text="The agent that asks (a user proxy, or the agent whose call needs approval).")
    tool_calls = serializers.ListField(child=serializers.DictField(), required=False,
                                       help_text="approval of tool calls: [{id, name, arguments}].")
    code = serializers.CharField(required=False, help_text="approval of code execution: the code to run.")
    expires_at = serializers.DateTimeField(help_text="After this the task ends timed_out (input_timeout).")


class TaskInputSerializer(strict.Serializer):
    text = StringField(required=False, trim_whitespace=False, max_length=settings.MAX_TASK_INPUT_CHARS,
                       help_text="The answer to an input request (kind input).")
    approve = serializers.BooleanField(required=False, allow_null=True, default=None,
                                       help_text="The decision on an approval request (kind approval).")

    def validate(self, attrs):
        if attrs.get("text") is None and attrs.get("approve") is None:
            raise serializers.ValidationError("Send {text} for an input request or {approve: true|false} for an approval")
        return attrs


class MemberVersionSerializer(serializers.Serializer):
    agent = serializers.IntegerField(help_text="The member agent's id.")
    name = serializers.CharField(help_text="Its name when the task was created.")
    version = serializers.IntegerField(help_text="The agent version the task runs.")


class TaskSerializer(strict.ClassCachedFieldsMixin, serializers.ModelSerializer):
    error = TaskErrorSerializer(allow_null=True, read_only=True, help_text="Why the task did not succeed, or null.")
    input_request = serializers.SerializerMethodField(
        help_text="While the task waits in input_required: what it asks, and how to answer (POST .../input/).")
    usage = UsageSerializer(read_only=True)
    result = TaskResultSerializer(read_only=True, allow_null=True,
                                  help_text="What the run produced (final message and stop reason); null until "
                                            "the task succeeds.")
    member_versions = serializers.SerializerMethodField(
        help_text="A team's task: the version of each member agent it runs, in speaking order ([] for an agent's "
                  "task, whose version is agent_version).")
    trace_id = serializers.CharField(read_only=True, allow_null=True,
                                     help_text="The task's OpenTelemetry trace id (32 hex digits) when tracing was on "
                                               "at its creation, else null.")

    class Meta:
        model = Task
        fields = ["id", "agent", "agent_version", "team", "team_version", "member_versions", "thread", "input", "status", "result", "error", "usage",
                  "schedule", "webhook", "input_request", "created_at", "started_at", "finished_at", "trace_id"]
        read_only_fields = fields

    @extend_schema_field(MemberVersionSerializer(many=True))
    def get_member_versions(self, obj) -> list[dict]:
        return task_member_versions(obj)

    @extend_schema_field(InputRequestSerializer(allow_null=True))
    def get_input_request(self, obj) -> dict | None:
        return task_input_request(obj)


class EventsQuerySerializer(serializers.Serializer):
    after = serializers.IntegerField(min_value=0, default=0, help_text="Only events with a higher seq.")
    limit = serializers.IntegerField(min_value=1, max_value=EVENTS_MAX_LIMIT, default=EVENTS_DEFAULT_LIMIT)


class TaskEventSerializer(strict.ClassCachedFieldsMixin, serializers.ModelSerializer):
    content = serializers.JSONField(read_only=True, allow_null=True)

    class Meta:
        model = TaskEvent
        fields = ["seq", "type", "source", "content", "created_at"]
        read_only_fields = fields


class TaskEventListSerializer(serializers.Serializer):
    results = TaskEventSerializer(many=True)


class ThreadSerializer(serializers.ModelSerializer):
    tasks = serializers.SerializerMethodField(help_text="Ids of the thread's tasks, oldest first.")

    class Meta:
        model = Thread
        fields = ["id", "agent", "team", "created_at", "tasks"]
        read_only_fields = fields

    def get_tasks(self, obj) -> list[int]:
        return [t.pk for t in sorted(obj.tasks.all(), key=lambda t: (t.created_at, t.pk))]


class TaskBatchSerializer(serializers.Serializer):
    """The answer of POST /api/tasks/batch/ (for the schema)."""
    results = TaskSerializer(many=True, help_text="The tasks created, in the order of the request's `tasks`.")
