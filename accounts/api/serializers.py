"""Shapes of the auth, `me`, API key and notification endpoints."""
from django.contrib.auth import get_user_model
from django.contrib.auth.models import update_last_login
from rest_framework import exceptions, serializers
from rest_framework_simplejwt.serializers import TokenObtainPairSerializer, TokenObtainSerializer, TokenRefreshSerializer
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.tokens import RefreshToken

from accounts.authentication import CUSTOMER_SCOPE
from accounts.models import ApiKey, Customer
from adminpanel.models import Notification
from adminpanel.services import audit_record


class CustomerTokenObtainSerializer(TokenObtainPairSerializer):
    """Username and password of a customer's user -> an access and a refresh token scoped `customer`."""

    access = serializers.CharField(read_only=True)
    refresh = serializers.CharField(read_only=True)

    @classmethod
    def get_token(cls, user):
        token = super().get_token(user)
        token["scope"] = CUSTOMER_SCOPE
        return token

    def validate(self, attrs):
        request = self.context.get("request")
        username = attrs.get(self.username_field, "")
        try:
            TokenObtainSerializer.validate(self, attrs)
        except exceptions.AuthenticationFailed:
            self._audit_failure(request, username, "invalid_credentials")
            raise
        if getattr(self.user, "membership", None) is None:
            self._audit_failure(request, username, "no_customer")
            raise exceptions.AuthenticationFailed("This account has no access to the customer API", "no_customer")
        refresh = self.get_token(self.user)
        if jwt_settings.UPDATE_LAST_LOGIN:
            update_last_login(None, self.user)
        return {"access": str(refresh.access_token), "refresh": str(refresh)}

    @staticmethod
    def _audit_failure(request, username, reason):
        audit_record(actor="anonymous", action="auth.login_failed", target=f"user:{username}"[:200], request=request,
                     details={"username": username[:150], "reason": reason})


class CustomerTokenRefreshSerializer(TokenRefreshSerializer):
    """A customer refresh token -> a new access token with the same scope."""

    refresh = serializers.CharField(write_only=True)

    def validate(self, attrs):
        refresh = RefreshToken(attrs["refresh"])
        if refresh.get("scope") != CUSTOMER_SCOPE:
            raise exceptions.AuthenticationFailed("Token is not valid for this API", "token_invalid")
        user_id = refresh.get(jwt_settings.USER_ID_CLAIM)
        user = get_user_model().objects.filter(**{jwt_settings.USER_ID_FIELD: user_id}).first()
        if user is None or not user.is_active or getattr(user, "membership", None) is None:
            raise exceptions.AuthenticationFailed("No active customer account for this token", "no_active_account")
        return {"access": str(refresh.access_token)}


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


class ApiKeySerializer(serializers.ModelSerializer):
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
