"""OpenAPI security scheme of the admin API (imported by adminpanel.api.views so drf-spectacular sees it)."""
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.plumbing import build_bearer_security_scheme_object


class AdminJWTScheme(OpenApiAuthenticationExtension):
    target_class = "adminpanel.authentication.AdminJWTAuthentication"
    name = "adminJWT"

    def get_security_definition(self, auto_schema):
        scheme = build_bearer_security_scheme_object(header_name="AUTHORIZATION", token_prefix="Bearer",
                                                     bearer_format="JWT")
        scheme["description"] = "Access token from POST /api/admin/auth/token/ (scope admin), plus X-Admin-Key."
        return scheme
