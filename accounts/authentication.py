"""Customer authentication: JWT access tokens scoped `customer`, and `Api-Key` keys.

Admin tokens carry the scope `admin` and are refused here; adminpanel has its own class.
"""
import hashlib

from django.utils import timezone
from rest_framework import authentication, exceptions
from rest_framework_simplejwt.authentication import JWTAuthentication

from .models import ApiKey

CUSTOMER_SCOPE = "customer"
ADMIN_SCOPE = "admin"


class _UsersWithMembership:
    """The user model as simplejwt's get_user reads it, with the user's membership and customer joined: the
    permission check and the view read both, which were two more queries per request."""

    def __init__(self, model):
        self.objects = model.objects.select_related("membership__customer")
        self.DoesNotExist = model.DoesNotExist


class CustomerJWTAuthentication(JWTAuthentication):
    scope = CUSTOMER_SCOPE

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.user_model = _UsersWithMembership(self.user_model)  # simplejwt's checks stay its own

    def get_validated_token(self, raw_token):
        token = super().get_validated_token(raw_token)
        if token.get("scope") != self.scope:
            raise exceptions.AuthenticationFailed("Token is not valid for this API", code="token_invalid")
        return token


def hash_api_key(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Api-Key"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode(errors="replace")
        if not header.startswith(self.keyword + " "):
            return None
        raw_key = header[len(self.keyword) + 1 :].strip()
        if not raw_key:
            raise exceptions.AuthenticationFailed("Empty API key")
        key = ApiKey.objects.select_related("user__membership__customer", "customer").filter(key_hash=hash_api_key(raw_key)).first()
        if key is None or not key.is_active or not key.user.is_active:
            raise exceptions.AuthenticationFailed("Invalid or revoked API key")
        now = timezone.now()
        if key.last_used_at is None or (now - key.last_used_at).total_seconds() > 60:
            ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        request.api_key = key
        return (key.user, key)

    def authenticate_header(self, request):
        return self.keyword
