"""The OpenAPI generator of every API view: drf-spectacular's, plus the error answers each operation
can give, all in the one envelope `{"error": {"code", "message", "details"}}` (autogen_platform.errors)."""
from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from rest_framework import serializers

ERRORS = {
    "400": "validation_error: details name each bad field (query parameters included), or a malformed body",
    "401": "not_authenticated (no credentials) or token_invalid",
    "403": "permission_denied: not allowed for this caller (role, scope, admin key)",
    "404": "not_found: no such object for this caller (another customer's reads the same), or no such page",
    "409": "conflict",
    "413": "payload_too_large: the body is over MAX_REQUEST_BODY_BYTES",
    "415": "unsupported_media_type: the body must be JSON",
    "423": "killswitch_engaged",
    "429": "rate_limited (with Retry-After) or quota_exceeded",
    "500": "internal_error: no stack trace; details.request_id identifies the request in the platform's logs",
}


class ErrorSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Stable, machine-readable: validation_error, not_found, conflict, ...")
    message = serializers.CharField(help_text="For people.")
    details = serializers.DictField(help_text="For programs: field -> messages for validation_error, the "
                                              "request_id for internal_error, else specifics or {}.")


class ErrorEnvelopeSerializer(serializers.Serializer):
    error = ErrorSerializer()


class AutoSchema(SpectacularAutoSchema):
    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        component = self.resolve_serializer(ErrorEnvelopeSerializer, direction)
        content = {"application/json": {"schema": component.ref}}
        for code in self._error_codes(responses):
            response = responses.setdefault(code, {"description": ERRORS[code]})
            response.setdefault("content", content)
        return responses

    def _error_codes(self, documented) -> list[str]:
        codes = {"401", "500"}
        has_body = self.method in ("POST", "PUT", "PATCH")
        view = self.view
        if getattr(view, "permission_classes", None):
            codes.add("403")
        if has_body:
            codes |= {"400", "413", "415"}
        if self._get_paginator() or self.get_filter_backends() or self._has_query_parameters():
            codes.add("400")
        if "{" in self.path or self._get_paginator():
            codes.add("404")
        if getattr(view, "throttle_classes", None):
            codes.add("429")
        # codes an operation documents itself (409, 423, 429...) get the envelope too
        codes |= {c for c in documented if c >= "400" and c in ERRORS}
        return sorted(codes)

    def _has_query_parameters(self) -> bool:
        return any(p.get("in") == "query" for p in self._get_parameters())


def refuse_unknown_properties(result, generator, request, public):
    """Postprocessing hook: request bodies say what the API does with a key they do not declare (it is
    refused: autogen_platform.serializers), with `additionalProperties: false` on every request object."""
    for name, component in (result.get("components") or {}).get("schemas", {}).items():
        if name.endswith("Request") and component.get("type") == "object" and "properties" in component:
            component.setdefault("additionalProperties", False)
    return result
