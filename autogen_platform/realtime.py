"""Channels group names and the one way services and jobs push live frames to sockets."""
import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)

ALL_CUSTOMERS_GROUP = "customers.all"


def task_group(task_id: int) -> str:
    return f"task.{task_id}"


def customer_group(customer_id: int) -> str:
    return f"customer.{customer_id}"


def _send(group: str, message: dict) -> None:
    try:
        layer = get_channel_layer()
        if layer is not None:
            async_to_sync(layer.group_send)(group, message)
    except Exception:  # noqa: BLE001 - live delivery is best effort; the database is the record
        logger.warning("live delivery to %s failed", group, exc_info=True)


def send_task_event(task_id: int, event: dict) -> None:
    _send(task_group(task_id), {"type": "task.event", "event": event})


def send_task_token(task_id: int, source: str, text: str) -> None:
    _send(task_group(task_id), {"type": "task.token", "source": source, "text": text})


def send_task_status(task_id: int, status: str) -> None:
    _send(task_group(task_id), {"type": "task.status", "status": status})


def send_customer(customer_id: int | None, payload: dict) -> None:
    """A frame on a customer's events stream; customer None means every customer."""
    group = ALL_CUSTOMERS_GROUP if customer_id is None else customer_group(customer_id)
    _send(group, {"type": "customer.message", "payload": payload})
