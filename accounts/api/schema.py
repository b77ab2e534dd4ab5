"""OpenAPI security schemes of the customer API (imported by accounts.api.views so drf-spectacular sees them)."""
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.plumbing import build_bearer_security_scheme_object


class JWTScheme(OpenApiAuthenticationExtension):
    """A bearer JWT access token (the customer and the admin API's schemes differ only in name and description).
    With no target_class it matches no authentication class itself."""

    description = ""

    def get_security_definition(self, auto_schema):
        scheme = build_bearer_security_scheme_object(header_name="AUTHORIZATION", token_prefix="Bearer",
                                                     bearer_format="JWT")
        scheme["description"] = self.description
        return scheme


class CustomerJWTScheme(JWTScheme):
    target_class = "accounts.authentication.CustomerJWTAuthentication"
    name = "customerJWT"
    description = "Access token from POST /api/auth/token/ (scope customer)."


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.authentication.ApiKeyAuthentication"
    name = "customerApiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Api-Key <key>` with a key from POST /api/api-keys/.",
        }
