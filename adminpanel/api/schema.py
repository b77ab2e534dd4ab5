"""OpenAPI security scheme of the admin API (imported by adminpanel.api.views so drf-spectacular sees it)."""
from accounts.api.schema import JWTScheme


class AdminJWTScheme(JWTScheme):
    target_class = "adminpanel.authentication.AdminJWTAuthentication"
    name = "adminJWT"
    description = "Access token from POST /api/admin/auth/token/ (scope admin), plus X-Admin-Key."
