"""Admin authentication: JWT access tokens with the claim `scope: "admin"`, of active staff users only.

Customer tokens (scope `customer`) are refused here, and accounts.authentication refuses admin tokens:
the two APIs never accept each other's credentials.
"""
from rest_framework import exceptions
from rest_framework_simplejwt.authentication import JWTAuthentication

from accounts.authentication import ADMIN_SCOPE
from accounts.tokens import token_pair


def admin_token_pair(user) -> dict:
    """{"access", "refresh"} for a staff user; both carry the admin scope."""
    return token_pair(user, ADMIN_SCOPE)


class AdminJWTAuthentication(JWTAuthentication):
    def get_validated_token(self, raw_token):
        token = super().get_validated_token(raw_token)
        if token.get("scope") != ADMIN_SCOPE:
            raise exceptions.AuthenticationFailed("Token is not valid for the admin API", code="token_invalid")
        return token

    def get_user(self, validated_token):
        user = super().get_user(validated_token)  # refuses unknown and inactive users
        if not user.is_staff:
            raise exceptions.AuthenticationFailed("Only platform staff may use the admin API", code="token_invalid")
        return user
