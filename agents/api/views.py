"""Model configurations, agents (with versions and state actions) and the tools catalogue: thin views."""
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from accounts.api.mixins import CustomerScopedViewMixin, ServiceWriteMixin
from accounts.selectors import customer_for_user
from agents import selectors, services
from agents.components import agent_export, agents_import
from agents.models import Agent, ModelConfig
from runtime.tools import tool_catalog

from .filters import AgentFilter, ModelConfigFilter
from .component_serializers import ComponentImportResultSerializer, ComponentImportSerializer, ComponentSerializer
from .serializers import (
    AgentSerializer,
    AgentVersionSerializer,
    ModelConfigSerializer,
    ModelTestSerializer,
    ProcessSerializer,
    RollbackSerializer,
    ToolSerializer,
)

CONFLICT = OpenApiResponse(description="conflict: the name is taken, or the object is in use")


@extend_schema_view(
    create=extend_schema(summary="Create a model configuration", responses={201: ModelConfigSerializer, 409: CONFLICT}),
    destroy=extend_schema(summary="Delete a model configuration (409 conflict while agents or teams use it)",
                          responses={204: None, 409: CONFLICT}),
)
@extend_schema(tags=["models"])
class ModelConfigViewSet(CustomerScopedViewMixin, ServiceWriteMixin, viewsets.ModelViewSet):
    serializer_class = ModelConfigSerializer
    schema_model = ModelConfig
    filterset_class = ModelConfigFilter

    def scoped_queryset(self):
        return selectors.model_config_list_for_user(self.request.user)

    def get_scoped_object(self, pk):
        return selectors.model_config_get_for_user(self.request.user, pk)

    def service_create(self, data):
        return services.model_config_create(actor=self.request.user, customer=customer_for_user(self.request.user),
                                            request=self.request, **data)

    def service_update(self, instance, data):
        return services.model_config_update(actor=self.request.user, model_config=instance, data=data,
                                            request=self.request)

    def service_delete(self, instance):
        services.model_config_delete(actor=self.request.user, model_config=instance, request=self.request)

    @extend_schema(
        summary="Test the configuration: one real call to its endpoint, its latency and the exact error",
        description="Sends a one-message chat completion through the same client code and rules a task's model "
                    "calls use (no call to a private address where MODEL_ENDPOINTS_ALLOW_PRIVATE is off), bounded "
                    "by MODEL_CALL_TIMEOUT_SECONDS (at most 30 s). A failed call is still 200, with ok false. The "
                    "few tokens it uses are not counted.",
        request=None, responses=ModelTestSerializer,
    )
    @action(detail=True, methods=["post"], url_path="test")
    def test_connection(self, request, pk=None):
        return Response(services.model_config_test(actor=request.user, model_config=self.get_object(), request=request))


@extend_schema_view(
    create=extend_schema(summary="Create an agent (version 1)", responses={
        201: AgentSerializer, 409: CONFLICT, 429: OpenApiResponse(description="quota_exceeded")}),
    update=extend_schema(summary="Replace an agent; a behaviour change makes a new version"),
    partial_update=extend_schema(summary="Change an agent; a behaviour change makes a new version"),
    destroy=extend_schema(summary="Delete an agent (409 conflict while it is a team member or has active tasks)",
                          responses={204: None, 409: CONFLICT}),
)
@extend_schema(tags=["agents"])
class AgentViewSet(CustomerScopedViewMixin, ServiceWriteMixin, viewsets.ModelViewSet):
    """Agents. Changing system_message, model, tools, code_execution or limits makes a new immutable
    version; name and description do not."""

    serializer_class = AgentSerializer
    schema_model = Agent
    filterset_class = AgentFilter

    def scoped_queryset(self):
        return selectors.agent_list_for_user(self.request.user)

    def get_scoped_object(self, pk):
        return selectors.agent_get_for_user(self.request.user, pk)

    def service_create(self, data):
        return services.agent_create(actor=self.request.user, customer=customer_for_user(self.request.user),
                                     request=self.request, **data)

    def service_update(self, instance, data):
        return services.agent_update(actor=self.request.user, agent=instance, data=data, request=self.request)

    def service_delete(self, instance):
        services.agent_delete(actor=self.request.user, agent=instance, request=self.request)

    @extend_schema(summary="The agent's versions, newest first", responses=AgentVersionSerializer(many=True))
    @action(detail=True, methods=["get"], filterset_class=None)
    def versions(self, request, pk=None):
        page = self.paginate_queryset(self.filter_queryset(selectors.agent_version_list(self.get_object())))
        return self.get_paginated_response(AgentVersionSerializer(page, many=True).data)

    @extend_schema(
        summary="Roll back: apply an earlier version's behaviour as a NEW version",
        description="History is never rewritten: rolling back to version 2 of an agent at version 5 "
                    "creates version 6 with the snapshot of version 2.",
        request=RollbackSerializer, responses=AgentSerializer,
    )
    @action(detail=True, methods=["post"])
    def rollback(self, request, pk=None):
        serializer = RollbackSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        agent = services.agent_rollback(actor=request.user, agent=self.get_object(),
                                        version=serializer.validated_data["version"], request=request)
        return Response(AgentSerializer(agent, context=self.get_serializer_context()).data)

    @extend_schema(summary="Stop: no new tasks start, queued ones are cancelled, running ones stopped",
                   request=None, responses=AgentSerializer)
    @action(detail=True, methods=["post"])
    def stop(self, request, pk=None):
        agent = services.agent_stop(actor=request.user, agent=self.get_object(), request=request)
        return Response(AgentSerializer(agent, context=self.get_serializer_context()).data)

    @extend_schema(summary="Start: the agent accepts tasks again", request=None, responses=AgentSerializer)
    @action(detail=True, methods=["post"])
    def start(self, request, pk=None):
        agent = services.agent_start(actor=request.user, agent=self.get_object(), request=request)
        return Response(AgentSerializer(agent, context=self.get_serializer_context()).data)

    @extend_schema(
        summary="Restart: running tasks are stopped and re-queued on the current version",
        description="Queued tasks move to the current version too, and a stopped agent becomes active.",
        request=None, responses=AgentSerializer,
    )
    @action(detail=True, methods=["post"])
    def restart(self, request, pk=None):
        agent = services.agent_restart(actor=request.user, agent=self.get_object(), request=request)
        return Response(AgentSerializer(agent, context=self.get_serializer_context()).data)

    @extend_schema(
        summary="The agent as AutoGen AgentChat component JSON (load it with load_component)",
        description="An AssistantAgent (an agent with code_execution: a RoundRobinGroupChat of it and a "
                    "CodeExecutorAgent, as the platform runs it); model keys are never included.",
        responses=ComponentSerializer,
    )
    @action(detail=True, methods=["get"])
    def component(self, request, pk=None):
        return Response(agent_export(self.get_object()))

    @extend_schema(
        summary="Create agents from AutoGen component JSON or an AutoGen Studio gallery file",
        description="The JSON is read as data (never loaded or imported): supported providers and fields only; "
                    "anything else is refused with validation_error, details naming its path.",
        request=ComponentImportSerializer,
        responses={201: ComponentImportResultSerializer, 429: OpenApiResponse(description="quota_exceeded")},
    )
    @action(detail=False, methods=["post"], url_path="import")
    def import_component(self, request):
        result = agents_import(actor=request.user, customer=customer_for_user(request.user), data=request.data,
                               request=request)
        return Response(result, status=201)

    @extend_schema(summary="The sandboxes running for the agent now", responses=ProcessSerializer(many=True))
    @action(detail=True, methods=["get"], pagination_class=None, filter_backends=[])
    def processes(self, request, pk=None):
        return Response(selectors.agent_processes(self.get_object()))


@extend_schema(tags=["tools"], summary="The platform's tool registry: names to use in an agent's tools",
               responses=ToolSerializer(many=True))
class ToolViewSet(viewsets.ViewSet):
    def list(self, request):
        return Response(tool_catalog())
