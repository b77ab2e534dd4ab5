"""Declarative specs over HTTP: `POST /api/apply/` (JSON or YAML body) and `GET /api/export/` (YAML or JSON)."""
from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.parsers import BaseParser
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import OWNER
from accounts.selectors import customer_for_user
from autogen_platform.errors import PermissionDeniedError, ValidationFailed
from autogen_platform.filters import refuse_unknown_query_parameters
from autogen_platform.parsers import JSONParser

from .apply import spec_apply
from .export import spec_dump_yaml, spec_export
from .reader import spec_load

TRUE_WORDS, FALSE_WORDS = ("true", "1", "yes", "on"), ("false", "0", "no", "off", "")


class YAMLParser(BaseParser):
    media_type = "application/yaml"

    def parse(self, stream, media_type=None, parser_context=None):
        return spec_load(stream.read() if stream is not None else b"")


class TextYAMLParser(YAMLParser):
    media_type = "text/yaml"


class XYAMLParser(YAMLParser):
    media_type = "application/x-yaml"


class YAMLRenderer(BaseRenderer):
    media_type = "application/yaml"
    format = "yaml"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return spec_dump_yaml(data).encode("utf-8")


def _flag(request, name: str) -> bool:
    value = request.query_params.get(name, "").strip().lower()
    if value in TRUE_WORDS:
        return True
    if value in FALSE_WORDS:
        return False
    raise ValidationFailed(f"{name}: must be true or false", details={name: ["Must be true or false"]})


class PlanItemSerializer(serializers.Serializer):
    action = serializers.ChoiceField(choices=["create", "update", "unchanged", "delete"])
    kind = serializers.ChoiceField(choices=["model", "agent", "team"])
    name = serializers.CharField()
    fields = serializers.ListField(child=serializers.CharField(), help_text="The changed fields of an update.")


class PlanSummarySerializer(serializers.Serializer):
    create = serializers.IntegerField()
    update = serializers.IntegerField()
    unchanged = serializers.IntegerField()
    delete = serializers.IntegerField()


class ApplyResultSerializer(serializers.Serializer):
    plan = PlanItemSerializer(many=True)
    summary = PlanSummarySerializer()
    applied = serializers.BooleanField(help_text="False for a dry run: nothing was written.")
    warnings = serializers.ListField(child=serializers.CharField())


SPEC_EXAMPLE = {
    "models": [{"name": "demo", "provider": "replay", "responses": ["Hello. TERMINATE"]}],
    "agents": [{"name": "writer", "model": "demo", "system_message": "You write short, clear answers.",
                "tools": ["calculator"], "limits": {"memory_mb": 256, "timeout_seconds": 120}}],
    "teams": [{"name": "duo", "mode": "round_robin", "members": ["writer"],
               "termination": {"max_messages": 6, "text_mention": "TERMINATE"}}],
}


class SpecApplyView(APIView):
    parser_classes = [JSONParser, YAMLParser, TextYAMLParser, XYAMLParser]

    @extend_schema(
        tags=["specs"],
        summary="Apply a declarative spec of the customer's models, agents and teams",
        description=(
            "The body is the spec as JSON, or YAML with Content-Type application/yaml or text/yaml (see "
            "docs/specs.md). Objects are matched by name; references are names. The whole plan is carried "
            "out in one transaction: a spec that fails anywhere changes nothing. A `customer` key must name "
            "the caller's customer. `api_key_env` is not read from the server's environment through the "
            "API: stored keys are kept (set them with PATCH /api/models/{id}/)."
        ),
        parameters=[
            OpenApiParameter("dry_run", OpenApiTypes.BOOL, description="Plan and check only; write nothing."),
            OpenApiParameter("prune", OpenApiTypes.BOOL,
                             description="Also delete the customer's objects the spec does not name."),
        ],
        request={"application/json": OpenApiTypes.OBJECT, "application/yaml": OpenApiTypes.STR},
        examples=[OpenApiExample("spec", value=SPEC_EXAMPLE, request_only=True)],
        responses={
            200: ApplyResultSerializer,
            400: OpenApiResponse(description="validation_error: details name the path, e.g. agents[1].model"),
            403: OpenApiResponse(description="permission_denied: viewers may not apply; only owners may prune"),
            409: OpenApiResponse(description="conflict: e.g. prune of an agent with running tasks"),
            429: OpenApiResponse(description="quota_exceeded"),
        },
    )
    def post(self, request):
        refuse_unknown_query_parameters(request, {"dry_run", "prune", "format"})  # ?dryrun=true must not apply
        dry_run, prune = _flag(request, "dry_run"), _flag(request, "prune")
        if prune and not dry_run and request.user.membership.role != OWNER:
            raise PermissionDeniedError("Only a customer's owners may delete: prune deletes what the spec omits")
        result = spec_apply(actor=request.user, customer=customer_for_user(request.user), spec=request.data,
                                  dry_run=dry_run, prune=prune, environ=None, request=request)
        return Response(result.as_dict())


class SpecExportView(APIView):
    renderer_classes = [YAMLRenderer, JSONRenderer]

    @extend_schema(
        tags=["specs"],
        summary="Export the customer's models, agents and teams as a spec (YAML; ?format=json for JSON)",
        description="Provider keys are never exported: where a key is stored, `api_key_env` names a "
                    "placeholder variable. Applying the export back is `no changes`.",
        parameters=[OpenApiParameter("format", OpenApiTypes.STR, enum=["yaml", "json"],
                                     description="yaml (default) or json")],
        responses={(200, "application/yaml"): OpenApiTypes.OBJECT, (200, "application/json"): OpenApiTypes.OBJECT},
    )
    def get(self, request):
        refuse_unknown_query_parameters(request, {"format"})
        return Response(spec_export(customer_for_user(request.user)))

    def perform_content_negotiation(self, request, force=False):
        try:
            return super().perform_content_negotiation(request, force)
        except Http404:  # DRF's answer to an unknown ?format=: a bad parameter, not a missing page
            if force:
                raise
            raise ValidationFailed("format: yaml or json", details={"format": ["Must be yaml or json"]}) from None

    def handle_exception(self, exc):
        # Errors keep the JSON envelope whatever format the export was asked in.
        response = super().handle_exception(exc)
        self.request.accepted_renderer, self.request.accepted_media_type = JSONRenderer(), "application/json"
        return response
