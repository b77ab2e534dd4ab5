"""Kill orders over Redis pub/sub. The database records the intent; this only carries the news fast."""
import json
import logging

from django.conf import settings

from autogen_platform.redis_clients import web_redis

logger = logging.getLogger(__name__)



def control_channel() -> str:
    return f"{settings.REDIS_NAMESPACE}:control"


def redis_connection():
    """Bounded timeouts, no retries: a kill order or a stats read never hangs a request on a hung Redis."""
    return web_redis()


def publish(message: dict) -> None:
    """message: {"kind": "kill", "task": id, "reason": r} or {"kind": "kill_scope", "customer": id|None, "reason": r}."""
    try:
        redis_connection().publish(control_channel(), json.dumps(message))
    except Exception:  # noqa: BLE001 - the supervisor's database poll is the backstop
        logger.warning("control publish failed: %s", message, exc_info=True)
