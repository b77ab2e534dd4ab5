"""Production: refuses to start on development secrets or with DEBUG on."""
from django.core.exceptions import ImproperlyConfigured

from .base import *  # noqa: F401,F403
from .base import ADMIN_API_KEY, DEBUG, DEV_ADMIN_API_KEY, DEV_SECRET_KEY, FIELD_ENCRYPTION_KEY, SECRET_KEY, env

if DEBUG:
    raise ImproperlyConfigured("DJANGO_DEBUG must be 0 in production")
if SECRET_KEY == DEV_SECRET_KEY or len(SECRET_KEY) < 32:
    raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set to a random value of 32+ characters")
if ADMIN_API_KEY == DEV_ADMIN_API_KEY or len(ADMIN_API_KEY) < 24:
    raise ImproperlyConfigured("ADMIN_API_KEY must be set to a random value of 24+ characters")
if FIELD_ENCRYPTION_KEY == DEV_SECRET_KEY or len(FIELD_ENCRYPTION_KEY) < 32:
    raise ImproperlyConfigured("FIELD_ENCRYPTION_KEY must be a random value of 32+ characters (it defaults to"
                               " DJANGO_SECRET_KEY)")

SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SESSION_COOKIE_SECURE = env("SECURE_COOKIES", True, bool)
CSRF_COOKIE_SECURE = env("SECURE_COOKIES", True, bool)
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_SSL_REDIRECT = env("SECURE_SSL_REDIRECT", False, bool)
SECURE_HSTS_SECONDS = env("SECURE_HSTS_SECONDS", 0, int)
# Only behind a TLS-terminating proxy that sets the header: otherwise any client could claim https.
if env("TRUST_X_FORWARDED_PROTO", False, bool):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
CSRF_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
SECURE_HSTS_INCLUDE_SUBDOMAINS = env("SECURE_HSTS_INCLUDE_SUBDOMAINS", False, bool)

# Customers' model endpoints must be public addresses unless the operator says otherwise.
MODEL_ENDPOINTS_ALLOW_PRIVATE = env("MODEL_ENDPOINTS_ALLOW_PRIVATE", False, bool)
# Webhook deliveries likewise.
WEBHOOKS_ALLOW_PRIVATE = env("WEBHOOKS_ALLOW_PRIVATE", MODEL_ENDPOINTS_ALLOW_PRIVATE, bool)
# Customers' HTTP tools likewise.
HTTP_TOOLS_ALLOW_PRIVATE = env("HTTP_TOOLS_ALLOW_PRIVATE", MODEL_ENDPOINTS_ALLOW_PRIVATE, bool)
