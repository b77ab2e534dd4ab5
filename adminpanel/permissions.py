"""The admin API's second factor: the `X-Admin-Key` header must equal settings.ADMIN_API_KEY."""
import hmac

from django.conf import settings
from rest_framework import permissions


class HasAdminKey(permissions.BasePermission):
    message = "A valid X-Admin-Key header is required"

    def has_permission(self, request, view):
        given = request.headers.get("X-Admin-Key", "")
        return bool(given) and hmac.compare_digest(given.encode(), settings.ADMIN_API_KEY.encode())


class IsPlatformAdmin(permissions.BasePermission):
    """An active staff user authenticated by AdminJWTAuthentication."""

    message = "Platform administrators only"

    def has_permission(self, request, view):
        user = request.user
        return bool(user and user.is_authenticated and user.is_active and user.is_staff)
