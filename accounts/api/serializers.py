"""Shapes of the auth, `me`, API key and notification endpoints."""
from rest_framework import exceptions, serializers
from rest_framework_simplejwt.serializers import TokenObtainSerializer

from accounts import signin, tokens
from accounts.authentication import CUSTOMER_SCOPE
from accounts.models import ApiKey, Customer, Notification
from autogen_platform import serializers as strict
from autogen_platform.serializers import RefuseUnknownFieldsMixin


class CustomerTokenObtainSerializer(RefuseUnknownFieldsMixin, TokenObtainSerializer):
    """Username and password of a customer's user -> an access and a refresh token scoped `customer`.

    Wrong passwords and lockouts are counted and audited by accounts.signin (authenticate() signals them)."""

    access = serializers.CharField(read_only=True)
    refresh = serializers.CharField(read_only=True)

    def validate(self, attrs):
        request = self.context.get("request")
        super().validate(attrs)
        if getattr(self.user, "membership", None) is None:
            signin.audit_failure(request, attrs.get(self.username_field, ""), "no_customer")
            raise exceptions.AuthenticationFailed("This account has no access to the customer API", "no_customer")
        signin.signed_in(request, self.user)
        return tokens.token_pair(self.user, CUSTOMER_SCOPE)


class TokenRefreshSerializer(strict.Serializer):
    """A refresh token of `scope` -> a new access token and a new refresh token (the one sent is used up).

    The customer and the admin API subclass it: the scope, and who may still hold a token of it."""

    scope = ""
    no_account = ""  # the 401's message when the token's user may no longer hold one

    refresh = serializers.CharField()
    access = serializers.CharField(read_only=True)

    def account_allowed(self, user) -> bool:
        raise NotImplementedError

    def validate(self, attrs):
        refresh = tokens.refresh_token_parse(attrs["refresh"], self.scope)
        user = tokens.refresh_token_user(refresh)
        if user is None or not self.account_allowed(user):
            raise exceptions.AuthenticationFailed(self.no_account, "no_active_account")
        return tokens.refresh_token_rotate(refresh)


class CustomerTokenRefreshSerializer(TokenRefreshSerializer):
    """A customer refresh token -> a new access token and a new refresh token (the one sent is used up)."""

    scope = CUSTOMER_SCOPE
    no_account = "No active customer account for this token"

    def account_allowed(self, user) -> bool:
        return getattr(user, "membership", None) is not None


class LogoutSerializer(strict.Serializer):
    refresh = serializers.CharField(write_only=True, help_text="The refresh token to end; refused from then on.")


class CustomerQuotasSerializer(serializers.Serializer):
    max_agents = serializers.IntegerField()
    max_concurrent_tasks = serializers.IntegerField()
    max_tasks_per_day = serializers.IntegerField()
    monthly_token_budget = serializers.IntegerField()
    max_memory_mb = serializers.IntegerField()
    max_cpu_seconds = serializers.IntegerField()
    max_timeout_seconds = serializers.IntegerField()


class MeCustomerSerializer(serializers.ModelSerializer):
    quotas = CustomerQuotasSerializer(read_only=True)

    class Meta:
        model = Customer
        fields = ["id", "name", "quotas"]


class MeSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="user.id")
    username = serializers.CharField(source="user.username")
    role = serializers.ChoiceField(choices=["owner", "member", "viewer"])
    customer = MeCustomerSerializer()


class ApiKeySerializer(strict.ModelSerializer):
    class Meta:
        model = ApiKey
        fields = ["id", "name", "prefix", "created_at", "last_used_at", "revoked_at"]
        read_only_fields = ["id", "prefix", "created_at", "last_used_at", "revoked_at"]


class ApiKeyCreatedSerializer(ApiKeySerializer):
    key = serializers.CharField(read_only=True, help_text="The key itself: shown only in this response, never again.")

    class Meta(ApiKeySerializer.Meta):
        fields = ApiKeySerializer.Meta.fields + ["key"]


class CustomerNotificationSerializer(serializers.ModelSerializer):
    broadcast = serializers.SerializerMethodField(help_text="True for a message sent to every customer.")

    class Meta:
        model = Notification
        fields = ["id", "message", "level", "broadcast", "created_by", "created_at"]

    def get_broadcast(self, obj) -> bool:
        return obj.customer_id is None
