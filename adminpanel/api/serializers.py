"""Shapes of the admin API."""
from rest_framework import exceptions, serializers
from rest_framework_simplejwt.serializers import TokenObtainSerializer

from accounts import signin
from accounts.api.serializers import TokenRefreshSerializer
from accounts.authentication import ADMIN_SCOPE
from accounts.models import Customer, Notification
from adminpanel.authentication import admin_token_pair
from agents.models import Agent
from autogen_platform.serializers import Serializer as StrictSerializer
from autogen_platform.serializers import RefuseUnknownFieldsMixin
from core.models import AuditLog


class AdminTokenObtainSerializer(RefuseUnknownFieldsMixin, TokenObtainSerializer):
    """Username and password of an active staff user -> an access and a refresh token scoped `admin`.

    Wrong passwords and lockouts are counted and audited by accounts.signin (authenticate() signals them)."""

    access = serializers.CharField(read_only=True)
    refresh = serializers.CharField(read_only=True)

    def validate(self, attrs):
        request = self.context.get("request")
        super().validate(attrs)
        if not self.user.is_staff:
            # Same answer as a wrong password: a customer's username is not confirmed to exist.
            signin.audit_failure(request, attrs.get(self.username_field, ""), "not_staff")
            raise exceptions.AuthenticationFailed("No active account found with the given credentials", "no_active_account")
        signin.signed_in(request, self.user)
        return admin_token_pair(self.user)


class AdminTokenRefreshSerializer(TokenRefreshSerializer):
    """An admin refresh token -> a new access token and a new refresh token (the one sent is used up)."""

    scope = ADMIN_SCOPE
    no_account = "No active staff account for this token"

    def account_allowed(self, user) -> bool:
        return user.is_staff


INT_MAX, BIGINT_MAX = 2**31 - 1, 2**63 - 1


class QuotasSerializer(StrictSerializer):
    # The columns' ranges: a larger number is a validation_error, not a database error.
    max_agents = serializers.IntegerField(min_value=0, max_value=INT_MAX, required=False)
    max_concurrent_tasks = serializers.IntegerField(min_value=0, max_value=INT_MAX, required=False)
    max_tasks_per_day = serializers.IntegerField(min_value=0, max_value=INT_MAX, required=False)
    monthly_token_budget = serializers.IntegerField(min_value=0, max_value=BIGINT_MAX, required=False)
    max_memory_mb = serializers.IntegerField(min_value=1, max_value=INT_MAX, required=False)
    max_cpu_seconds = serializers.IntegerField(min_value=1, max_value=INT_MAX, required=False)
    max_timeout_seconds = serializers.IntegerField(min_value=1, max_value=INT_MAX, required=False)


HTTP_TOOL_HOSTS_HELP = (
    "The hosts this customer's HTTP tools may call: \"api.example.com\", \"*.example.com\" (its subdomains) or an "
    "IP address. Empty: none (HTTP tools cannot be created). Checked when a tool is written and again at each "
    "call, so a host taken off the list is refused from the next call on.")


class CustomerSerializer(serializers.ModelSerializer):
    quotas = QuotasSerializer(read_only=True)
    http_tool_hosts = serializers.ListField(child=serializers.CharField(), read_only=True, help_text=HTTP_TOOL_HOSTS_HELP)

    class Meta:
        model = Customer
        fields = ["id", "name", "quotas", "http_tool_hosts", "created_at"]


class CustomerWriteSerializer(StrictSerializer):
    """POST needs `name`; PATCH may name any subset, and any subset of `quotas` (the rest keep their values)."""

    name = serializers.CharField(max_length=100)
    quotas = QuotasSerializer(required=False)
    http_tool_hosts = serializers.ListField(child=serializers.CharField(max_length=253), required=False,
                                            max_length=100, help_text=HTTP_TOOL_HOSTS_HELP)


class AdminAgentSerializer(serializers.ModelSerializer):
    customer_name = serializers.CharField(source="customer.name", read_only=True)

    class Meta:
        model = Agent
        fields = ["id", "customer", "customer_name", "name", "description", "system_message", "model", "tools",
                  "code_execution", "limits", "status", "version", "created_at", "updated_at"]
        read_only_fields = fields


class BroadcastSerializer(StrictSerializer):
    message = serializers.CharField(max_length=2000)
    level = serializers.ChoiceField(choices=Notification.Level.choices, default=Notification.Level.INFO)


class NotificationSerializer(serializers.ModelSerializer):
    class Meta:
        model = Notification
        fields = ["id", "message", "level", "created_by", "created_at"]


class KillswitchWriteSerializer(StrictSerializer):
    engaged = serializers.BooleanField()
    customer = serializers.IntegerField(required=False, allow_null=True, help_text="Omit or null: the global switch.")
    reason = serializers.CharField(max_length=1000, required=False, allow_blank=True, default="")

    def validate_customer(self, value):
        if value is not None and not Customer.objects.filter(pk=value).exists():
            raise serializers.ValidationError("No such customer")
        return value


class KillswitchStateSerializer(serializers.Serializer):
    engaged = serializers.BooleanField()
    customer = serializers.IntegerField(allow_null=True)
    reason = serializers.CharField()
    changed_by = serializers.CharField()
    changed_at = serializers.DateTimeField(allow_null=True)


class KillswitchOverviewSerializer(KillswitchStateSerializer):
    customers = KillswitchStateSerializer(many=True, required=False, help_text=(
        "Every engaged customer switch; absent when ?customer= asks for that customer's own switch."))


class AuditLogSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditLog
        fields = ["id", "actor", "action", "target", "ip", "at", "details", "customer"]


class WorkerSlotsSerializer(serializers.Serializer):
    total = serializers.IntegerField(help_text="Tasks the live workers can hold at once (-1: Redis unreachable)")
    busy = serializers.IntegerField(help_text="Tasks they hold now")


class StatsSerializer(serializers.Serializer):
    customers = serializers.IntegerField()
    agents = serializers.IntegerField()
    tasks_by_status = serializers.DictField(child=serializers.IntegerField())
    running_sandboxes = serializers.IntegerField()
    queue_depth = serializers.IntegerField()
    worker_slots = WorkerSlotsSerializer()
    tokens_today = serializers.IntegerField()
    killswitch = serializers.DictField()


class RuntimeSerializer(serializers.Serializer):
    hosts = serializers.ListField(child=serializers.DictField())
    sandboxes = serializers.ListField(child=serializers.DictField())
