"""Shapes of model configurations, agents, versions, processes, the tools catalogue and customer tools."""
from django.conf import settings
from rest_framework import serializers

from accounts.api.fields import CustomerPrimaryKeyRelatedField, StrictSerializer, StringField
from agents.models import Agent, AgentVersion, ModelConfig, Tool
from autogen_platform import serializers as strict


class PassThroughMixin:
    """Output the stored JSON object as it is (the declared fields document it and validate input)."""

    def to_representation(self, instance):
        return dict(instance or {})


class ModelInfoSerializer(PassThroughMixin, StrictSerializer):
    vision = serializers.BooleanField()
    function_calling = serializers.BooleanField()
    json_output = serializers.BooleanField()
    family = StringField(help_text="AutoGen model family, e.g. gpt-4o, llama3.1, unknown")
    structured_output = serializers.BooleanField(required=False)
    multiple_system_messages = serializers.BooleanField(required=False)

    def to_internal_value(self, data):
        if data == {}:
            return {}
        return super().to_internal_value(data)

    def to_representation(self, instance):
        # None stored is `{}`; it reads as null, as the schema says (an object with its keys, or null).
        return dict(instance) if instance else None


class ModelConfigSerializer(strict.ModelSerializer):
    api_key = serializers.CharField(
        write_only=True, required=False, allow_blank=True, allow_null=True, max_length=2000, trim_whitespace=True,
        style={"input_type": "password"},
        help_text="Provider API key: stored encrypted, never returned. Empty or null removes it; omit to keep it.",
    )
    has_api_key = serializers.BooleanField(read_only=True, help_text="Whether a provider API key is stored.")
    model_info = ModelInfoSerializer(
        required=False, allow_null=True,
        help_text="AutoGen ModelInfo, needed for models AutoGen does not know (vision, function_calling, "
                  "json_output, family; structured_output optional).",
    )
    responses = serializers.ListField(
        child=StringField(trim_whitespace=False, max_length=settings.MAX_REPLAY_RESPONSE_CHARS), required=False,
        allow_null=True, max_length=settings.MAX_REPLAY_RESPONSES,
        help_text="Scripted replies of the replay provider, in order (ignored by openai); at most "
                  "MAX_REPLAY_RESPONSES of at most MAX_REPLAY_RESPONSE_CHARS characters each.",
    )

    class Meta:
        model = ModelConfig
        fields = ["id", "name", "provider", "model", "base_url", "api_key", "has_api_key", "model_info", "responses",
                  "price_prompt_per_million", "price_completion_per_million", "created_at", "updated_at"]
        read_only_fields = ["id", "created_at", "updated_at"]
        extra_kwargs = {
            "model": {"help_text": "Model name at the provider (required for openai)."},
            "base_url": {"help_text": "OpenAI-compatible endpoint, e.g. http://127.0.0.1:11434/v1 (empty: OpenAI)."},
            "price_prompt_per_million": {"min_value": 0, "help_text": (
                "Optional price of one million prompt tokens (the studio's cost figures); null: no cost shown.")},
            "price_completion_per_million": {"min_value": 0, "help_text": (
                "Optional price of one million completion tokens; null: no cost shown.")},
        }


class ModelTestErrorSerializer(serializers.Serializer):
    code = serializers.ChoiceField(
        choices=["connection_refused", "dns_error", "tls_error", "timeout", "http_error", "connection_error",
                 "configuration_error", "model_error"],
        help_text="The cause: connection_refused, dns_error, tls_error, timeout, http_error (the provider's "
                  "status and message), connection_error, configuration_error (e.g. a private address the "
                  "platform does not call, a key that cannot be decrypted), model_error (anything else).")
    message = serializers.CharField(help_text="Names the model configuration, the endpoint and the cause.")


class ModelTestSerializer(serializers.Serializer):
    ok = serializers.BooleanField(help_text="The endpoint answered a one-message chat completion.")
    latency_ms = serializers.FloatField(help_text="How long the call took, in milliseconds (failed ones too).")
    error = ModelTestErrorSerializer(allow_null=True, help_text="Why the call failed, or null.")


class LimitsSerializer(PassThroughMixin, StrictSerializer):
    memory_mb = serializers.IntegerField(min_value=1, required=False)
    cpu_seconds = serializers.IntegerField(min_value=1, required=False)
    timeout_seconds = serializers.IntegerField(min_value=1, required=False)
    max_tokens = serializers.IntegerField(min_value=1, required=False)


class AgentSerializer(strict.ModelSerializer):
    model = CustomerPrimaryKeyRelatedField(queryset=ModelConfig.objects.all(),
                                           help_text="Id of one of the customer's model configurations.")
    tools = serializers.ListField(child=StringField(max_length=64), required=False,
                                  help_text="Tool names from GET /api/tools/: built-in tools and the customer's own.")
    limits = LimitsSerializer(required=False, help_text=(
        "Per-task limits; a missing key uses the platform default. Values above the customer's quota "
        "(max_memory_mb, max_cpu_seconds, max_timeout_seconds) are refused with quota_exceeded."))
    human_input = serializers.BooleanField(required=False, help_text=(
        "A person answers for this agent: in a team it is a user proxy (its turn makes the task wait in "
        "input_required for POST /api/tasks/{id}/input/ {text}); alone, a person is asked after each of its replies."))
    approval = serializers.ListField(child=StringField(max_length=100), required=False, help_text=(
        "Tool names (of this agent's tools) and \"code_execution\" whose calls wait for a person's approval "
        "(input_required, answered with {approve: true|false}); a denied call does not run and the agent is told."))

    class Meta:
        model = Agent
        fields = ["id", "name", "description", "system_message", "model", "tools", "code_execution", "limits",
                  "human_input", "approval", "status", "version", "created_at", "updated_at"]
        read_only_fields = ["id", "status", "version", "created_at", "updated_at"]
        extra_kwargs = {
            "system_message": {"max_length": settings.MAX_SYSTEM_MESSAGE_CHARS},
            "description": {"max_length": settings.MAX_DESCRIPTION_CHARS},
            "status": {"help_text": "active or stopped; changed with the stop and start actions."},
            "version": {"help_text": "Current behaviour version; see the versions action."},
        }
        # Name uniqueness is a service rule answered with 409 conflict, not a serializer 400.
        validators = []


class AgentSnapshotSerializer(PassThroughMixin, serializers.Serializer):
    system_message = serializers.CharField()
    model = serializers.IntegerField()
    tools = serializers.ListField(child=serializers.CharField())
    code_execution = serializers.BooleanField()
    limits = LimitsSerializer()
    human_input = serializers.BooleanField(required=False)
    approval = serializers.ListField(child=serializers.CharField(), required=False)
    tool_definitions = serializers.ListField(child=serializers.JSONField(), required=False, help_text=(
        "The definitions of the customer tools among tools, as this version runs them ({name, kind, description, "
        "parameters, source, timeout_seconds, version}); absent when the agent uses only built-in tools."))


class AgentVersionSerializer(serializers.ModelSerializer):
    snapshot = AgentSnapshotSerializer(read_only=True)

    class Meta:
        model = AgentVersion
        fields = ["version", "snapshot", "created_at", "created_by"]


class RollbackSerializer(strict.Serializer):
    version = serializers.IntegerField(min_value=1, help_text="The version whose behaviour to apply again.")


class ProcessSerializer(serializers.Serializer):
    task = serializers.IntegerField()
    pid = serializers.IntegerField()
    cpu_seconds = serializers.FloatField()
    memory_mb = serializers.FloatField()
    started_at = serializers.DateTimeField()


class ToolSerializer(serializers.Serializer):
    """One entry of GET /api/tools/: a built-in tool, or one of the customer's own (with its id and the rest)."""

    name = serializers.CharField()
    kind = serializers.ChoiceField(choices=["builtin", "python", "http"], help_text=(
        "builtin: the platform's registry; python and http: a customer tool (it has id, timeout_seconds, version, "
        "and source (python) or method, url, arguments_in, headers, secret_header_names (http))."))
    description = serializers.CharField()
    parameters = serializers.JSONField(help_text=(
        "builtin: parameter name -> JSON type; python and http: the tool's JSON Schema (type object)."))
    id = serializers.IntegerField(required=False, help_text="customer tools only.")
    source = serializers.CharField(required=False, help_text="python tools only.")
    method = serializers.CharField(required=False, help_text="http tools only.")
    url = serializers.CharField(required=False, help_text="http tools only.")
    arguments_in = serializers.CharField(required=False, help_text="http tools only.")
    headers = serializers.DictField(child=serializers.CharField(), required=False, help_text="http tools only.")
    secret_header_names = serializers.ListField(child=serializers.CharField(), required=False,
                                                help_text="http tools only: names, never values.")
    timeout_seconds = serializers.IntegerField(required=False, help_text="customer tools only.")
    version = serializers.IntegerField(required=False, help_text="customer tools only.")
    created_at = serializers.DateTimeField(required=False, help_text="customer tools only.")
    updated_at = serializers.DateTimeField(required=False, help_text="customer tools only.")


class CustomToolSerializer(strict.ModelSerializer):
    """A customer's own tool: a Python function run in the task's sandbox, or an HTTP endpoint the platform's
    worker calls (never the sandbox)."""

    kind = serializers.ChoiceField(choices=["python", "http"], required=False, help_text=(
        "python (default): a function run in the task's sandbox; http: an endpoint the worker calls, on a host of "
        "the customer's allow-list (http_tool_hosts, set by the platform's admins). Cannot change after creation."))
    parameters = serializers.JSONField(required=False, help_text=(
        "JSON Schema (type object) of the arguments; property names are Python identifiers (python: passed as "
        "keyword arguments; http: fill the URL's {placeholders}, the rest go as body or query). Default: none."))
    source = StringField(trim_whitespace=False, required=False, allow_blank=True, help_text=(
        "python tools (required): source defining, at the top level, a function named like the tool "
        "(def NAME(...):); it may import modules and define helpers. Checked by parsing only; it runs in the "
        "task's sandbox, never in the platform. The return value is the tool's result (a string as it is, "
        "anything else as JSON)."))
    method = StringField(required=False, allow_blank=True, help_text=(
        "http tools: GET, POST (default), PUT, PATCH or DELETE."))
    url = StringField(required=False, allow_blank=True, max_length=2000, help_text=(
        "http tools (required): an http(s) URL whose path and query may hold {placeholders} named after required "
        "properties, e.g. https://api.example.com/v1/orders/{order_id}. Its host must be on the customer's "
        "allow-list and, where HTTP_TOOLS_ALLOW_PRIVATE is off, resolve to public addresses (checked on write "
        "and at each call). Redirects are not followed."))
    arguments_in = StringField(required=False, allow_blank=True, allow_null=True, help_text=(
        "http tools: where the arguments not used in the URL go: body (a JSON object; the default for POST, PUT, "
        "PATCH) or query (query parameters; the default for GET and DELETE)."))
    headers = serializers.DictField(child=serializers.CharField(trim_whitespace=False), required=False,
                                    allow_null=True, help_text=(
        "http tools: headers sent with each call, shown as given (use secret_headers for credentials)."))
    secret_headers = serializers.DictField(
        child=serializers.CharField(trim_whitespace=False, allow_null=True), required=False, write_only=True,
        style={"input_type": "password"}, help_text=(
            "http tools: headers whose values are secrets, e.g. {\"Authorization\": \"Bearer ...\"}: stored "
            "encrypted, never returned, never sent into the sandbox (the worker adds them to each call). On a "
            "change, the names given are set (null removes one); the others keep their values."))
    secret_header_names = serializers.ListField(child=serializers.CharField(), read_only=True, help_text=(
        "http tools: the names of the secret headers stored (never their values)."))
    timeout_seconds = serializers.IntegerField(required=False, allow_null=True, help_text=(
        "Wall-clock seconds one call may take (default TOOL_CALL_TIMEOUT_SECONDS, at most "
        "TOOL_CALL_MAX_TIMEOUT_SECONDS); over it the call is stopped and fails alone."))

    class Meta:
        model = Tool
        fields = ["id", "name", "kind", "description", "parameters", "source", "method", "url", "arguments_in",
                  "headers", "secret_headers", "secret_header_names", "timeout_seconds", "version",
                  "created_at", "updated_at"]
        read_only_fields = ["id", "version", "created_at", "updated_at"]
        extra_kwargs = {
            "name": {"help_text": "A Python identifier (the function's name), unique per customer, not a built-in "
                                  "tool's name; agents name the tool in their tools."},
            "description": {"max_length": settings.MAX_DESCRIPTION_CHARS,
                            "help_text": "What the tool does: the model reads it to decide when to call it."},
            "version": {"help_text": "Bumped by every change of what a task runs (description, parameters, source, "
                                     "timeout_seconds, method, url, arguments_in, headers, the secret headers' "
                                     "names); each makes a new version of the agents using the tool."},
        }
        validators = []

    def to_representation(self, instance):
        data = super().to_representation(instance)
        # each kind shows its own fields only
        dropped = ("method", "url", "arguments_in", "headers", "secret_header_names") if instance.kind == Tool.Kind.PYTHON \
            else ("source",)
        for field in dropped:
            data.pop(field, None)
        return data
