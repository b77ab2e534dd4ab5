"""Teams CRUD: thin views over teams.selectors and teams.services."""
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from accounts.api.mixins import CustomerScopedViewMixin, ServiceWriteMixin
from accounts.selectors import customer_for_user
from agents.api.component_serializers import (
    ComponentImportResultSerializer,
    ComponentImportSerializer,
    ComponentSerializer,
)
from teams import selectors, services
from teams.components import team_export, teams_import
from teams.models import Team

from .filters import TeamFilter
from agents.api.serializers import RollbackSerializer

from .serializers import TeamSerializer, TeamVersionSerializer

CONFLICT = OpenApiResponse(description="conflict: the name is taken, or the team has active tasks")


@extend_schema_view(
    create=extend_schema(summary="Create a team (version 1)", responses={201: TeamSerializer, 409: CONFLICT}),
    update=extend_schema(summary="Replace a team; a behaviour change makes a new version"),
    partial_update=extend_schema(summary="Change a team; a behaviour change makes a new version"),
    destroy=extend_schema(summary="Delete a team (409 conflict while it has queued or running tasks)",
                          responses={204: None, 409: CONFLICT}),
)
@extend_schema(tags=["teams"])
class TeamViewSet(CustomerScopedViewMixin, ServiceWriteMixin, viewsets.ModelViewSet):
    """Teams of the customer's agents. Members are ordered; a team without termination conditions
    gets {"max_messages": 10}. Changing anything but the name makes a new immutable version."""

    serializer_class = TeamSerializer
    schema_model = Team
    filterset_class = TeamFilter

    def scoped_queryset(self):
        return selectors.team_list_for_user(self.request.user)

    def get_scoped_object(self, pk):
        return selectors.team_get_for_user(self.request.user, pk)

    def service_create(self, data):
        return services.team_create(actor=self.request.user, customer=customer_for_user(self.request.user),
                                    request=self.request, **data)

    def service_update(self, instance, data):
        return services.team_update(actor=self.request.user, team=instance, data=data, request=self.request)

    def service_delete(self, instance):
        services.team_delete(actor=self.request.user, team=instance, request=self.request)

    @extend_schema(summary="The team's versions, newest first", responses=TeamVersionSerializer(many=True))
    @action(detail=True, methods=["get"], filterset_class=None)
    def versions(self, request, pk=None):
        page = self.paginate_queryset(self.filter_queryset(selectors.team_version_list(self.get_object())))
        return self.get_paginated_response(TeamVersionSerializer(page, many=True).data)

    @extend_schema(
        summary="Roll back: apply an earlier version's behaviour as a NEW version",
        description="History is never rewritten: rolling back to version 2 of a team at version 5 creates version 6 "
                    "with the snapshot of version 2. 409 conflict when an agent or model configuration it names no "
                    "longer exists.",
        request=RollbackSerializer, responses={200: TeamSerializer, 409: CONFLICT},
    )
    @action(detail=True, methods=["post"])
    def rollback(self, request, pk=None):
        serializer = RollbackSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        team = services.team_rollback(actor=request.user, team=self.get_object(),
                                      version=serializer.validated_data["version"], request=request)
        return Response(TeamSerializer(selectors.team_get_for_user(request.user, team.pk),
                                       context=self.get_serializer_context()).data)

    @extend_schema(
        summary="The team as AutoGen AgentChat component JSON (load it with load_component)",
        description="AgentChat's team class of the mode (RoundRobinGroupChat, SelectorGroupChat, Swarm, GraphFlow, "
                    "MagenticOneGroupChat) with the members' pinned behaviour; model keys are never included.",
        responses=ComponentSerializer,
    )
    @action(detail=True, methods=["get"])
    def component(self, request, pk=None):
        return Response(team_export(self.get_object()))

    @extend_schema(
        summary="Create a team (with its agents and models) from AutoGen component JSON or a gallery file",
        description="The JSON is read as data (never loaded or imported): supported providers and fields only; "
                    "anything else is refused with validation_error, details naming its path.",
        request=ComponentImportSerializer,
        responses={201: ComponentImportResultSerializer, 429: OpenApiResponse(description="quota_exceeded")},
    )
    @action(detail=False, methods=["post"], url_path="import")
    def import_component(self, request):
        result = teams_import(actor=request.user, customer=customer_for_user(request.user), data=request.data,
                              request=request)
        return Response(result, status=201)
