"""Standard Webhooks signatures (https://www.standardwebhooks.com/): what receivers verify with that
scheme's libraries. Headers webhook-id, webhook-timestamp (Unix seconds) and
webhook-signature: "v1," + base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}")), where the secret is
"whsec_" + base64(key)."""
import base64
import hashlib
import hmac
import secrets

PREFIX = "whsec_"
KEY_BYTES = 32


def secret_generate() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()


def secret_errors(secret) -> list[str]:
    """A secret the customer brings (a spec's secret_env): whsec_ + base64 of 24 to 64 bytes."""
    if not isinstance(secret, str) or not secret.startswith(PREFIX):
        return [f"Must start with {PREFIX!r}, followed by the base64 of 24 to 64 random bytes"]
    try:
        key = base64.b64decode(secret[len(PREFIX):], validate=True)
    except (ValueError, TypeError):
        return ["The part after whsec_ is not valid base64"]
    if not 24 <= len(key) <= 64:
        return ["The key must be 24 to 64 bytes"]
    return []


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret[len(PREFIX):] if secret.startswith(PREFIX) else secret)
    mac = hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def headers(secret: str, message_id: str, timestamp: int, body: bytes) -> dict:
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, message_id, timestamp, body),
    }
