"""The admin API: thin views over adminpanel's selectors and services.

Every view but the token ones needs an admin token (AdminJWTAuthentication) AND the X-Admin-Key header.
"""
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response
from rest_framework_simplejwt.views import TokenViewBase

from accounts import services as account_services
from accounts import signin
from accounts.api.views import LoginRateThrottle, LogoutView
from accounts.authentication import ADMIN_SCOPE
from autogen_platform.filters import refuse_unknown_query_parameters
from adminpanel import selectors, services
from adminpanel.authentication import AdminJWTAuthentication
from adminpanel.permissions import HasAdminKey, IsPlatformAdmin
from agents.services import agent_stop

from . import schema  # noqa: F401 - registers the admin security scheme with drf-spectacular
from .filters import AdminAgentFilter, AuditFilter, CustomerFilter
from .serializers import (
    AdminAgentSerializer,
    AdminTokenObtainSerializer,
    AdminTokenRefreshSerializer,
    AuditLogSerializer,
    BroadcastSerializer,
    CustomerSerializer,
    CustomerWriteSerializer,
    KillswitchOverviewSerializer,
    KillswitchStateSerializer,
    KillswitchWriteSerializer,
    NotificationSerializer,
    RuntimeSerializer,
    StatsSerializer,
)

ADMIN_KEY_HEADER = OpenApiParameter("X-Admin-Key", str, OpenApiParameter.HEADER, required=True,
                                    description="Must equal the platform's ADMIN_API_KEY.")


@extend_schema(parameters=[ADMIN_KEY_HEADER])
class _AdminTokenView(signin.LockoutAnswerMixin, TokenViewBase):
    # The customer login's throttle and scope: one allowance per client address for both.
    throttle_classes = [LoginRateThrottle]
    throttle_scope = "login"
    # The contract: every /api/admin/ call needs X-Admin-Key, logging in included.
    authentication_classes = []
    permission_classes = [HasAdminKey]


@extend_schema(tags=["admin"], summary="Admin log in: a staff account's username and password to admin-scoped tokens")
class AdminTokenObtainView(_AdminTokenView):
    serializer_class = AdminTokenObtainSerializer


@extend_schema(tags=["admin"], summary="Rotate an admin refresh token: a new access token and a new refresh token")
class AdminTokenRefreshView(_AdminTokenView):
    serializer_class = AdminTokenRefreshSerializer


@extend_schema(tags=["admin"], summary="Admin log out: the admin refresh token is refused from then on",
               parameters=[ADMIN_KEY_HEADER])
class AdminLogoutView(LogoutView):
    permission_classes = [HasAdminKey]
    scope = ADMIN_SCOPE


@extend_schema(tags=["admin"], parameters=[ADMIN_KEY_HEADER])
class AdminAPIView(GenericAPIView):
    authentication_classes = [AdminJWTAuthentication]
    permission_classes = [IsPlatformAdmin, HasAdminKey]


class StatsView(AdminAPIView):
    @extend_schema(summary="Platform statistics", responses=StatsSerializer)
    def get(self, request):
        return Response(selectors.platform_stats())


class CustomerListView(AdminAPIView):
    serializer_class = CustomerSerializer
    filterset_class = CustomerFilter

    def get_queryset(self):
        return selectors.customer_list()

    @extend_schema(summary="Every customer with its quotas", operation_id="admin_customers_list",
                   responses=CustomerSerializer(many=True))
    def get(self, request):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(CustomerSerializer(page, many=True).data)

    @extend_schema(summary="Create a customer (quotas not given take the defaults)", request=CustomerWriteSerializer,
                   responses={201: CustomerSerializer, 409: OpenApiResponse(description="conflict: the name is taken")})
    def post(self, request):
        data = CustomerWriteSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        customer = account_services.customer_create(
            actor=request.user, name=data.validated_data["name"], quotas=data.validated_data.get("quotas"),
            request=request,
        )
        return Response(CustomerSerializer(customer).data, status=status.HTTP_201_CREATED)


class CustomerDetailView(AdminAPIView):
    serializer_class = CustomerSerializer

    @extend_schema(summary="One customer")
    def get(self, request, pk):
        return Response(CustomerSerializer(selectors.customer_get(pk)).data)

    def _update(self, request, pk, partial):
        customer = selectors.customer_get(pk)
        data = CustomerWriteSerializer(data=request.data, partial=partial)
        data.is_valid(raise_exception=True)
        customer = account_services.customer_update(
            actor=request.user, customer=customer, name=data.validated_data.get("name"),
            quotas=data.validated_data.get("quotas"), http_tool_hosts=data.validated_data.get("http_tool_hosts"),
            request=request,
        )
        return Response(CustomerSerializer(customer).data)

    @extend_schema(summary="Change a customer's name, some of its quotas and/or its HTTP tool hosts", request=CustomerWriteSerializer,
                   responses={200: CustomerSerializer, 409: OpenApiResponse(description="conflict: the name is taken")})
    def patch(self, request, pk):
        return self._update(request, pk, partial=True)

    @extend_schema(summary="Replace a customer's name (and the quotas given)", request=CustomerWriteSerializer,
                   responses={200: CustomerSerializer, 409: OpenApiResponse(description="conflict: the name is taken")})
    def put(self, request, pk):
        return self._update(request, pk, partial=False)

    @extend_schema(summary="Delete a customer: access ends and its work stops now; its data is purged "
                           "CUSTOMER_RETENTION_DAYS later",
                   description="A soft delete: the customer's users are deactivated, its API keys revoked, its "
                               "queued tasks cancelled and its running sandboxes killed. It is gone from every admin "
                               "endpoint at once; its rows stay for CUSTOMER_RETENTION_DAYS (default 30) and are "
                               "then purged by the reaper. Its name stays taken until then.",
                   responses={204: OpenApiResponse(description="Deleted")})
    def delete(self, request, pk):
        account_services.customer_delete(actor=request.user, customer=selectors.customer_get(pk), request=request)
        return Response(status=status.HTTP_204_NO_CONTENT)


class AgentListView(AdminAPIView):
    serializer_class = AdminAgentSerializer
    filterset_class = AdminAgentFilter

    def get_queryset(self):
        return selectors.agent_list()

    @extend_schema(summary="Agents of every customer", responses=AdminAgentSerializer(many=True))
    def get(self, request):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(AdminAgentSerializer(page, many=True).data)


class AgentStopView(AdminAPIView):
    serializer_class = AdminAgentSerializer

    @extend_schema(summary="Stop an agent: no new tasks start and its running tasks are stopped", request=None)
    def post(self, request, pk):
        agent = agent_stop(actor=request.user, agent=selectors.agent_get(pk), request=request)
        return Response(AdminAgentSerializer(agent).data)


class BroadcastView(AdminAPIView):
    serializer_class = BroadcastSerializer

    @extend_schema(summary="Send a notice to every customer, live and kept in their notifications",
                   responses={201: NotificationSerializer})
    def post(self, request):
        data = BroadcastSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        notification = services.broadcast_send(actor=request.user, request=request, **data.validated_data)
        return Response(NotificationSerializer(notification).data, status=status.HTTP_201_CREATED)


class KillswitchView(AdminAPIView):
    serializer_class = KillswitchWriteSerializer

    @extend_schema(
        summary="The killswitch: the global switch and every engaged customer switch, or one customer's",
        parameters=[OpenApiParameter("customer", int, description="This customer's own switch")],
        responses=KillswitchOverviewSerializer,
    )
    def get(self, request):
        refuse_unknown_query_parameters(request, {"customer", "format"})  # ?custmer=3 would show the overview
        customer = request.query_params.get("customer")
        if customer:
            return Response(selectors.killswitch_state(selectors.customer_get(customer).pk))
        return Response(selectors.killswitch_overview())

    @extend_schema(
        summary="Engage or release the killswitch, globally or for one customer",
        description="Engaging kills every running sandbox in scope within a second, ends queued tasks in scope "
        "`cancelled` with error `killswitch`, and refuses new tasks with 423 `killswitch_engaged` until released.",
        responses=KillswitchStateSerializer,
    )
    def post(self, request):
        data = KillswitchWriteSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        customer_id = data.validated_data.get("customer")
        customer = selectors.customer_get(customer_id) if customer_id is not None else None
        services.killswitch_set(actor=request.user, engaged=data.validated_data["engaged"], customer=customer,
                                reason=data.validated_data["reason"], request=request)
        return Response(selectors.killswitch_state(customer_id))


class AuditListView(AdminAPIView):
    serializer_class = AuditLogSerializer
    filterset_class = AuditFilter

    def get_queryset(self):
        return selectors.audit_list()

    @extend_schema(summary="The audit log, newest first", responses=AuditLogSerializer(many=True))
    def get(self, request):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(AuditLogSerializer(page, many=True).data)


class RuntimeView(AdminAPIView):
    @extend_schema(summary="Each worker host's sandbox layers (active, missing and why) and the live sandboxes",
                   responses=RuntimeSerializer)
    def get(self, request):
        return Response(selectors.runtime_overview())
