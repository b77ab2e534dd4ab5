"""RQ entry points of the `webhooks` queue (performed by `manage.py runwebhooks`, never by task workers)."""
from .services import delivery_attempt


def deliver(delivery_id: int) -> None:
    """One attempt at one webhook delivery; a delivery already done or held elsewhere is left alone."""
    delivery_attempt(delivery_id=delivery_id)
