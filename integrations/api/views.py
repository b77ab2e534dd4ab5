"""Webhooks (with their deliveries) and schedules: thin views over integrations.selectors and services."""
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from accounts.api.mixins import CustomerScopedViewMixin, ServiceWriteMixin
from accounts.selectors import customer_for_user
from integrations import selectors, services
from integrations.models import Schedule, Webhook

from .serializers import (
    DeliveryListQuerySerializer,
    DeliverySerializer,
    ScheduleSerializer,
    WebhookCreatedSerializer,
    WebhookSecretSerializer,
    WebhookSerializer,
)

CONFLICT = OpenApiResponse(description="conflict")
QUOTA = OpenApiResponse(description="quota_exceeded: WEBHOOKS_MAX_PER_CUSTOMER / SCHEDULES_MAX_PER_CUSTOMER")


@extend_schema_view(
    list=extend_schema(summary="The customer's webhook endpoints"),
    retrieve=extend_schema(summary="One webhook endpoint (its secret is never shown again)"),
    create=extend_schema(summary="Register an endpoint; the response holds its signing secret, shown only now",
                         responses={201: WebhookCreatedSerializer, 429: QUOTA}),
    update=extend_schema(summary="Change an endpoint"),
    partial_update=extend_schema(summary="Change some fields of an endpoint"),
    destroy=extend_schema(summary="Delete an endpoint and its delivery history"),
)
@extend_schema(tags=["webhooks"])
class WebhookViewSet(CustomerScopedViewMixin, ServiceWriteMixin, viewsets.ModelViewSet):
    """Endpoints told when the customer's tasks end. Each delivery is a POST of
    `{"type": EVENT, "timestamp", "data": TASK}` signed as Standard Webhooks says (headers `webhook-id`,
    `webhook-timestamp`, `webhook-signature`), sent by a delivery worker, retried with exponential backoff."""

    serializer_class = WebhookSerializer
    schema_model = Webhook

    def scoped_queryset(self):
        return selectors.webhook_list_for_user(self.request.user)

    def get_scoped_object(self, pk):
        return selectors.webhook_get_for_user(self.request.user, pk)

    def create(self, request, *args, **kwargs):
        serializer = WebhookSerializer(data=request.data, context=self.get_serializer_context())
        serializer.is_valid(raise_exception=True)
        webhook, secret = services.webhook_create(
            actor=request.user, customer=customer_for_user(request.user), request=request, **serializer.validated_data
        )
        return Response(WebhookCreatedSerializer(webhook, context={"secret": secret}).data, status=status.HTTP_201_CREATED)

    def service_update(self, instance, data):
        return services.webhook_update(actor=self.request.user, webhook=instance, data=data, request=self.request)

    def service_delete(self, instance):
        services.webhook_delete(actor=self.request.user, webhook=instance, request=self.request)

    @extend_schema(summary="A new signing secret, shown only now", request=None,
                   responses={200: WebhookSecretSerializer})
    @action(detail=True, methods=["post"], url_path="rotate-secret")
    def rotate_secret(self, request, pk=None):
        secret = services.webhook_rotate_secret(actor=request.user, webhook=self.get_object(), request=request)
        return Response({"secret": secret})

    @extend_schema(summary="The endpoint's deliveries, newest first: status code, latency, attempts, next try",
                   parameters=[DeliveryListQuerySerializer], responses=DeliverySerializer(many=True))
    @action(detail=True, methods=["get"])
    def deliveries(self, request, pk=None):
        webhook = self.get_object()
        # any other parameter than the filters and the page's is refused, naming it (as on every list)
        query = DeliveryListQuerySerializer(data={k: v for k, v in request.query_params.items()
                                                  if v != "" and k not in ("page", "page_size")})
        query.is_valid(raise_exception=True)
        page = self.paginate_queryset(selectors.delivery_list(webhook, **query.validated_data))
        return self.get_paginated_response(DeliverySerializer(page, many=True).data)

    @extend_schema(summary="One delivery", responses=DeliverySerializer)
    @action(detail=True, methods=["get"], url_path=r"deliveries/(?P<delivery_id>[0-9]+)")
    def delivery(self, request, pk=None, delivery_id=None):
        return Response(DeliverySerializer(selectors.delivery_get(self.get_object(), delivery_id)).data)

    @extend_schema(summary="Send a delivery again: a new delivery with the same message id and body",
                   request=None, responses={202: DeliverySerializer, 409: CONFLICT})
    @action(detail=True, methods=["post"], url_path=r"deliveries/(?P<delivery_id>[0-9]+)/resend")
    def resend(self, request, pk=None, delivery_id=None):
        delivery = selectors.delivery_get(self.get_object(), delivery_id)
        again = services.delivery_resend(actor=request.user, delivery=delivery, request=request)
        return Response(DeliverySerializer(again).data, status=status.HTTP_202_ACCEPTED)


@extend_schema_view(
    list=extend_schema(summary="The customer's schedules"),
    retrieve=extend_schema(summary="One schedule with its next firing times"),
    create=extend_schema(summary="Create a schedule", responses={201: ScheduleSerializer, 409: CONFLICT, 429: QUOTA}),
    update=extend_schema(summary="Change a schedule"),
    partial_update=extend_schema(summary="Change some fields of a schedule"),
    destroy=extend_schema(summary="Delete a schedule (the tasks it started stay)"),
)
@extend_schema(tags=["schedules"])
class ScheduleViewSet(CustomerScopedViewMixin, ServiceWriteMixin, viewsets.ModelViewSet):
    """Tasks started on a cron expression in a time zone, or every N seconds. Each firing creates an ordinary
    task (killswitch, quotas and audit apply) carrying `schedule`, exactly once across every node. A firing
    missed while the platform was down is made up once, then the schedule goes on at its next future time."""

    serializer_class = ScheduleSerializer
    schema_model = Schedule

    def scoped_queryset(self):
        return selectors.schedule_list_for_user(self.request.user)

    def get_scoped_object(self, pk):
        return selectors.schedule_get_for_user(self.request.user, pk)

    def service_create(self, data):
        return services.schedule_create(actor=self.request.user, customer=customer_for_user(self.request.user),
                                        request=self.request, **data)

    def service_update(self, instance, data):
        return services.schedule_update(actor=self.request.user, schedule=instance, data=data, request=self.request)

    def service_delete(self, instance):
        services.schedule_delete(actor=self.request.user, schedule=instance, request=self.request)

    @extend_schema(summary="Pause: no firing until resumed", request=None, responses=ScheduleSerializer)
    @action(detail=True, methods=["post"])
    def pause(self, request, pk=None):
        schedule = services.schedule_update(actor=request.user, schedule=self.get_object(), data={"enabled": False},
                                            request=request)
        return Response(ScheduleSerializer(schedule).data)

    @extend_schema(summary="Resume: the next firing is the next time from now (paused firings are not made up)",
                   request=None, responses=ScheduleSerializer)
    @action(detail=True, methods=["post"])
    def resume(self, request, pk=None):
        schedule = services.schedule_update(actor=request.user, schedule=self.get_object(), data={"enabled": True},
                                            request=request)
        return Response(ScheduleSerializer(schedule).data)
