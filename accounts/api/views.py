"""Auth tokens, the caller's identity, API keys and notifications: thin views over selectors and services."""
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView
from rest_framework_simplejwt.views import TokenViewBase

from accounts import selectors, services
from accounts.models import ApiKey
from accounts.permissions import IsCustomerOwner
from adminpanel.models import Notification

from . import schema  # noqa: F401 - registers the security schemes with drf-spectacular
from .mixins import CustomerScopedViewMixin
from .serializers import (
    ApiKeyCreatedSerializer,
    ApiKeySerializer,
    CustomerTokenObtainSerializer,
    CustomerTokenRefreshSerializer,
    MeSerializer,
    CustomerNotificationSerializer,
)


class LoginRateThrottle(ScopedRateThrottle):
    """The `login` scope, with its rate read at request time (so a settings override applies)."""

    def get_rate(self):
        return api_settings.DEFAULT_THROTTLE_RATES[self.scope]


class _TokenView(TokenViewBase):
    throttle_classes = [LoginRateThrottle]
    throttle_scope = "login"


@extend_schema(tags=["auth"], summary="Log in: username and password to an access and a refresh token")
class TokenObtainView(_TokenView):
    serializer_class = CustomerTokenObtainSerializer


@extend_schema(tags=["auth"], summary="A new access token from a refresh token")
class TokenRefreshView(_TokenView):
    serializer_class = CustomerTokenRefreshSerializer


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
