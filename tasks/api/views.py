"""Tasks (create, list, detail, events, cancel, input) and threads: thin views over tasks.selectors and tasks.services."""
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from accounts.api.mixins import CustomerScopedViewMixin
from accounts.selectors import customer_for_user
from autogen_platform.errors import ValidationFailed
from autogen_platform.filters import refuse_unknown_query_parameters
from tasks import selectors, services
from tasks.models import Task, Thread

from .filters import TaskFilter, ThreadFilter
from .serializers import (
    EventsQuerySerializer,
    TaskBatchCreateSerializer,
    TaskBatchSerializer,
    TaskCreateSerializer,
    TaskEventListSerializer,
    TaskEventSerializer,
    TaskInputSerializer,
    TaskSerializer,
    ThreadSerializer,
)

IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key", OpenApiTypes.STR, OpenApiParameter.HEADER, required=False,
    description="A retry with the same key returns the first task (201, header Idempotent-Replayed: true).",
)


@extend_schema_view(
    list=extend_schema(summary="The customer's tasks, newest first (filters and ordering below)"),
    retrieve=extend_schema(summary="One task"),
)
@extend_schema(tags=["tasks"])
class TaskViewSet(CustomerScopedViewMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = TaskSerializer
    schema_model = Task
    filterset_class = TaskFilter

    def get_serializer_class(self):
        if self.action == "create":
            return TaskCreateSerializer
        return TaskSerializer

    def scoped_queryset(self):
        return selectors.task_list_for_user(self.request.user)

    def get_scoped_object(self, pk):
        return selectors.task_get_for_user(user=self.request.user, pk=pk)

    @extend_schema(
        summary="Submit a task to an agent or a team",
        parameters=[IDEMPOTENCY_HEADER],
        request=TaskCreateSerializer,
        responses={201: TaskSerializer, 409: OpenApiResponse(description="conflict: the agent is stopped"),
                   423: OpenApiResponse(description="killswitch_engaged"),
                   429: OpenApiResponse(description="quota_exceeded")},
    )
    def create(self, request, *args, **kwargs):
        key = request.headers.get("Idempotency-Key") or None
        if key is not None and len(key) > 200:
            raise ValidationFailed(details={"Idempotency-Key": ["At most 200 characters"]})
        serializer = TaskCreateSerializer(data=request.data, context=self.get_serializer_context())
        serializer.is_valid(raise_exception=True)
        task, created = services.task_create(
            actor=request.user, customer=customer_for_user(request.user), idempotency_key=key, request=request,
            **serializer.validated_data,
        )
        request._request.log_task = task.pk  # the access line names the task it created
        headers = {} if created else {"Idempotent-Replayed": "true"}
        return Response(TaskSerializer(task).data, status=status.HTTP_201_CREATED, headers=headers)

    @extend_schema(
        summary="Submit several tasks in one request: all created in one transaction, or none",
        parameters=[IDEMPOTENCY_HEADER],
        request=TaskBatchCreateSerializer,
        responses={201: TaskBatchSerializer,
                   409: OpenApiResponse(description="conflict: an item's agent is stopped (details.task: which)"),
                   423: OpenApiResponse(description="killswitch_engaged"),
                   429: OpenApiResponse(description="quota_exceeded: the batch goes past a quota (details.task: the "
                                                    "first item past it)")},
    )
    @action(detail=False, methods=["post"], url_path="batch", pagination_class=None, filter_backends=[])
    def batch(self, request):
        key = request.headers.get("Idempotency-Key") or None
        if key is not None and len(key) > 190:  # item i's key is KEY#i: within the 200 a task's key may have
            raise ValidationFailed(details={"Idempotency-Key": ["At most 190 characters on a batch"]})
        serializer = TaskBatchCreateSerializer(data=request.data, context=self.get_serializer_context())
        serializer.is_valid(raise_exception=True)
        tasks, created = services.task_create_many(
            actor=request.user, customer=customer_for_user(request.user), items=serializer.validated_data["tasks"],
            idempotency_key=key, request=request,
        )
        headers = {} if created else {"Idempotent-Replayed": "true"}
        return Response({"results": TaskSerializer(tasks, many=True).data}, status=status.HTTP_201_CREATED,
                        headers=headers)

    @extend_schema(summary="The task's events with seq > after, ascending", parameters=[EventsQuerySerializer],
                   responses=TaskEventListSerializer)
    @action(detail=True, methods=["get"], pagination_class=None, filter_backends=[])
    def events(self, request, pk=None):
        task = self.get_object()
        refuse_unknown_query_parameters(request, {*EventsQuerySerializer().fields, "format"})  # ?afer=3: not all
        query = EventsQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        events = selectors.task_events_page(task, **query.validated_data)
        return Response({"results": TaskEventSerializer(events, many=True).data})

    @extend_schema(summary="Cancel: a queued task ends now, a running one is stopped (409 if already finished)",
                   request=None, responses={200: TaskSerializer, 409: OpenApiResponse(description="conflict")})
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        task = services.task_cancel(actor=request.user, task=self.get_object(), request=request)
        return Response(TaskSerializer(task).data)

    @extend_schema(
        summary="Answer a task waiting in input_required: {text} for an input request, {approve} for an approval",
        request=TaskInputSerializer,
        responses={200: TaskSerializer, 409: OpenApiResponse(description="conflict: the task is not waiting for input"),
                   423: OpenApiResponse(description="killswitch_engaged")},
    )
    @action(detail=True, methods=["post"], url_path="input")
    def input(self, request, pk=None):
        task = self.get_object()
        serializer = TaskInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        task = services.task_answer(actor=request.user, task=task, request=request, **serializer.validated_data)
        return Response(TaskSerializer(task).data)


@extend_schema_view(
    list=extend_schema(summary="The customer's threads (conversations), newest first"),
    retrieve=extend_schema(summary="One thread with its task ids"),
)
@extend_schema(tags=["tasks"])
class ThreadViewSet(CustomerScopedViewMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin,
                    viewsets.GenericViewSet):
    serializer_class = ThreadSerializer
    schema_model = Thread
    filterset_class = ThreadFilter

    def scoped_queryset(self):
        return selectors.thread_list_for_user(self.request.user).prefetch_related("tasks")

    def get_scoped_object(self, pk):
        return selectors.thread_get_for_user(user=self.request.user, pk=pk)
