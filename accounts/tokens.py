"""JWT lifecycle of both planes: issue, refresh with rotation, log out, revoke every token of a user.

simplejwt's own machinery does the work: the token_blacklist app records every refresh token issued
(OutstandingToken) and every one refused from then on (BlacklistedToken); ROTATE_REFRESH_TOKENS with
BLACKLIST_AFTER_ROTATION makes each refresh token single-use; CHECK_REVOKE_TOKEN puts a hash of the password hash in
every token, so access and refresh tokens issued before a password change no longer match the user.

A password change or a deactivation also blacklists every outstanding refresh token of the user (the receiver at
the end): Django changes passwords in several places this project does not own (the admin's user form,
`manage.py changepassword`, `set_password` anywhere), so the rule is attached to the user row itself.
"""
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models.signals import pre_save
from django.dispatch import receiver
from django.utils import timezone
from rest_framework import exceptions
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken
from rest_framework_simplejwt.tokens import RefreshToken
from rest_framework_simplejwt.utils import get_md5_hash_password


def token_pair(user, scope: str) -> dict:
    """{"access", "refresh"} for a user, both carrying `scope`; the refresh token is recorded as outstanding."""
    refresh = RefreshToken.for_user(user)
    refresh["scope"] = scope
    return {"access": str(refresh.access_token), "refresh": str(refresh)}


def refresh_token_parse(raw: str, scope: str) -> RefreshToken:
    """A valid, unexpired, not blacklisted refresh token of `scope`, or 401 token_invalid."""
    try:
        refresh = RefreshToken(raw)
    except TokenError as exc:
        raise exceptions.AuthenticationFailed(str(exc), "token_invalid") from exc
    if refresh.get("scope") != scope:
        raise exceptions.AuthenticationFailed("Token is not valid for this API", "token_invalid")
    return refresh


def refresh_token_user(refresh: RefreshToken):
    """The token's user if it is active and the password has not changed since the token was issued, else None."""
    user_id = refresh.get(jwt_settings.USER_ID_CLAIM)
    user = get_user_model().objects.filter(**{jwt_settings.USER_ID_FIELD: user_id}).first()
    if user is None or not user.is_active:
        return None
    if refresh.get(jwt_settings.REVOKE_TOKEN_CLAIM) != get_md5_hash_password(user.password):
        return None
    return user


@transaction.atomic
def refresh_token_rotate(refresh: RefreshToken) -> dict:
    """{"access", "refresh"}: the given refresh token is blacklisted and a new one (same claims) takes its place.

    Blacklisting comes first and only one caller can create a token's blacklist row, so two concurrent refreshes
    with one token give one new pair.
    """
    _, created = refresh.blacklist()  # (row, created): unique per token, so only one caller creates it
    if not created:
        raise exceptions.AuthenticationFailed("Token is blacklisted", "token_invalid")
    access = str(refresh.access_token)
    refresh.set_jti()
    refresh.set_exp()
    refresh.set_iat()
    refresh.outstand()
    return {"access": access, "refresh": str(refresh)}


def user_tokens_revoke(user) -> int:
    """Blacklist every refresh token of the user that is still outstanding; returns how many."""
    pending = OutstandingToken.objects.filter(user=user, expires_at__gt=timezone.now(), blacklistedtoken__isnull=True)
    tokens = list(pending)
    BlacklistedToken.objects.bulk_create([BlacklistedToken(token=t) for t in tokens], ignore_conflicts=True)
    return len(tokens)


@receiver(pre_save, sender=get_user_model(), dispatch_uid="accounts.tokens.revoke_on_credentials_change")
def _revoke_on_credentials_change(sender, instance, update_fields=None, raw=False, **kwargs):
    if raw or instance.pk is None:
        return
    if update_fields is not None and not {"password", "is_active"} & set(update_fields):
        return  # e.g. last_login: nothing that ends sessions
    before = sender.objects.filter(pk=instance.pk).values("password", "is_active").first()
    if before is None:
        return
    if before["password"] != instance.password or (before["is_active"] and not instance.is_active):
        user_tokens_revoke(instance)
