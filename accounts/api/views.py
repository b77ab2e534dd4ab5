"""Auth tokens, the caller's identity, API keys and notifications: thin views over selectors and services."""
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView
from rest_framework_simplejwt.views import TokenViewBase

from accounts import selectors, services, signin
from accounts.authentication import CUSTOMER_SCOPE
from accounts.models import ApiKey, Notification
from accounts.permissions import IsCustomerOwner

from . import schema  # noqa: F401 - registers the security schemes with drf-spectacular
from .mixins import CustomerScopedViewMixin
from .serializers import (
    ApiKeyCreatedSerializer,
    ApiKeySerializer,
    CustomerTokenObtainSerializer,
    CustomerTokenRefreshSerializer,
    LogoutSerializer,
    MeSerializer,
    CustomerNotificationSerializer,
)


class LoginRateThrottle(ScopedRateThrottle):
    """The `login` scope, with its rate read at request time (so a settings override applies)."""

    def get_rate(self):
        return api_settings.DEFAULT_THROTTLE_RATES[self.scope]


class _TokenView(signin.LockoutAnswerMixin, TokenViewBase):
    # A request rate per client on top of the sign-in lockout (accounts.signin), which counts failures.
    throttle_classes = [LoginRateThrottle]
    throttle_scope = "login"


@extend_schema(tags=["auth"], summary="Log in: username and password to an access and a refresh token",
               description="After LOGIN_FAILURE_LIMIT failed passwords for one username from one client address (or "
                           "LOGIN_CLIENT_FAILURE_LIMIT from one address), sign-ins from there answer 429 "
                           "`rate_limited` for LOGIN_LOCKOUT_MINUTES, the right password included.",
               responses={200: CustomerTokenObtainSerializer, 401: OpenApiResponse(description="Wrong credentials"),
                          429: OpenApiResponse(description="Locked out or throttled; see Retry-After")})
class TokenObtainView(_TokenView):
    serializer_class = CustomerTokenObtainSerializer


@extend_schema(tags=["auth"], summary="Rotate a refresh token: a new access token and a new refresh token",
               description="The refresh token sent is used up (blacklisted): keep the new one. Tokens issued before "
                           "the user's password changed, or the user was deactivated, are refused.")
class TokenRefreshView(_TokenView):
    serializer_class = CustomerTokenRefreshSerializer


@extend_schema(tags=["auth"], summary="Log out: the refresh token is refused from then on", request=LogoutSerializer,
               responses={205: OpenApiResponse(description="Logged out")})
class LogoutView(APIView):
    """No access token needed: holding the refresh token is what ends it (a client whose access token expired
    can still log out)."""

    authentication_classes = []
    permission_classes = [AllowAny]
    throttle_classes = [LoginRateThrottle]
    throttle_scope = "login"
    scope = CUSTOMER_SCOPE

    def get_authenticate_header(self, request):
        return 'Bearer realm="api"'  # a refused refresh token is a 401, as on the refresh endpoint

    def post(self, request):
        data = LogoutSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.token_logout(raw_refresh=data.validated_data["refresh"], scope=self.scope, request=request)
        return Response(status=status.HTTP_205_RESET_CONTENT)


@extend_schema(tags=["auth"], summary="The caller: user, role and customer with its quotas", responses=MeSerializer)
class MeView(APIView):
    def get(self, request):
        return Response(MeSerializer(selectors.membership_for_user(request.user)).data)


@extend_schema_view(
    list=extend_schema(summary="The customer's API keys (never the keys themselves)"),
    retrieve=extend_schema(summary="One API key"),
    create=extend_schema(summary="Create an API key: the response holds the key, shown only this once",
                         responses={201: ApiKeyCreatedSerializer}),
    destroy=extend_schema(summary="Revoke an API key (it stays listed with revoked_at set)",
                          responses={204: OpenApiResponse(description="Revoked")}),
)
@extend_schema(tags=["api keys"])
class ApiKeyViewSet(CustomerScopedViewMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin,
                    mixins.CreateModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet):
    """Every member sees the customer's keys (never the keys themselves); only owners create and revoke them."""

    permission_classes = [IsCustomerOwner]
    serializer_class = ApiKeySerializer
    schema_model = ApiKey

    def scoped_queryset(self):
        return selectors.api_key_list_for_user(self.request.user)

    def get_scoped_object(self, pk):
        return selectors.api_key_get_for_user(self.request.user, pk)

    def create(self, request, *args, **kwargs):
        serializer = ApiKeySerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        key, raw = services.api_key_create(actor=request.user, request=request, **serializer.validated_data)
        key.key = raw
        return Response(ApiKeyCreatedSerializer(key).data, status=status.HTTP_201_CREATED)

    def destroy(self, request, *args, **kwargs):
        services.api_key_revoke(actor=request.user, key=self.get_object(), request=request)
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema(tags=["notifications"], summary="Notifications for the customer and platform broadcasts, newest first")
class NotificationViewSet(CustomerScopedViewMixin, mixins.ListModelMixin, viewsets.GenericViewSet):
    serializer_class = CustomerNotificationSerializer
    schema_model = Notification

    def scoped_queryset(self):
        return selectors.notification_list_for_user(self.request.user)
