"""The server-sent events view of a task's event stream.

`GET /api/tasks/{id}/stream/` has the WebSocket's semantics for clients without WebSocket: events with
seq > `Last-Event-ID` (or `?after=`), each as `id: <seq>` / `event: <type>` / `data: <event json>`, then
the live ones, and the response ends after the final status event. Authenticated like the REST API
(`Authorization: Bearer` or `Api-Key`; `?token=` too, since a browser's EventSource cannot set headers).
"""
import asyncio
import json
import logging

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.http import StreamingHttpResponse
from rest_framework import exceptions as drf_exceptions

from accounts.authentication import ApiKeyAuthentication, CustomerJWTAuthentication
from autogen_platform import metrics
from autogen_platform.errors import ApplicationError, error_response
from autogen_platform.realtime import task_group

from . import selectors
from .consumers import group_join, group_leave
from .models import Task

logger = logging.getLogger(__name__)

# Without a live wake-up the stream looks at the database this often anyway.
SSE_POLL_SECONDS = 2.0
# A comment line this often keeps proxies from closing an idle stream.
SSE_KEEPALIVE_SECONDS = 15.0
SSE_RETRY_MS = 2000


def _authenticate_request(request):
    """The request's customer user like the REST API authenticates it, or an ApplicationError to render."""
    try:
        for authenticator in (CustomerJWTAuthentication(), ApiKeyAuthentication()):
            result = authenticator.authenticate(request)
            if result is not None:
                return result[0]
        token = request.GET.get("token")
        if token:
            auth = CustomerJWTAuthentication()
            return auth.get_user(auth.get_validated_token(token.encode()))
    except drf_exceptions.AuthenticationFailed as exc:
        detail = exc.detail.get("detail", "Invalid token") if isinstance(exc.detail, dict) else exc.detail
        raise ApplicationError(str(detail), code="token_invalid", status=401) from None
    raise ApplicationError("Authentication credentials were not provided.", code="not_authenticated", status=401)


def _authorized_task_id(request, pk) -> int:
    user = _authenticate_request(request)
    if getattr(user, "membership", None) is None:
        raise ApplicationError("This account does not belong to a customer", code="permission_denied", status=403)
    return selectors.task_get_for_user(user=user, pk=pk).pk


def _sse(event: dict) -> bytes:
    data = json.dumps(event, separators=(",", ":"))
    return f"id: {event['seq']}\nevent: {event['type']}\ndata: {data}\n\n".encode()


def _parse_after(request) -> int | None:
    raw = request.headers.get("Last-Event-ID") or request.GET.get("after") or "0"
    try:
        after = int(raw)
    except ValueError:
        return None
    return after if after >= 0 else None


async def task_stream(request, pk):
    if request.method != "GET":
        return error_response("method_not_allowed", f'Method "{request.method}" not allowed.', 405)
    try:
        task_id = await database_sync_to_async(_authorized_task_id)(request, pk)
    except ApplicationError as exc:
        return error_response(exc.code, exc.message, exc.status, exc.details)
    after = _parse_after(request)
    if after is None:
        return error_response("validation_error", "Invalid input", 400, {"after": ["A non-negative integer seq."]})
    response = StreamingHttpResponse(_event_stream(task_id, after), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


async def _event_stream(task_id: int, after: int):
    """Stored events after `after`, then new ones as they are stored, until the final status event."""
    snapshot = database_sync_to_async(selectors.task_stream_snapshot, thread_sensitive=False)
    layer = get_channel_layer()
    # Joined before the first read: a live frame only wakes us up; the database says what to send.
    wakeups = await layer.new_channel()
    await group_join(layer, [task_group(task_id)], wakeups)
    woken = asyncio.Event()

    async def listen():
        while True:
            await layer.receive(wakeups)
            woken.set()

    listener = asyncio.create_task(listen())
    loop = asyncio.get_running_loop()
    last_write = loop.time()
    metrics.stream_opened("sse")
    try:
        yield f"retry: {SSE_RETRY_MS}\n\n".encode()
        while True:
            woken.clear()
            status, events = await snapshot(task_id=task_id, after=after)
            for event in events:
                yield _sse(event)
                after = event["seq"]
                last_write = loop.time()
            if status in Task.FINISHED or not status:
                return
            try:
                await asyncio.wait_for(woken.wait(), SSE_POLL_SECONDS)
            except asyncio.TimeoutError:
                pass
            if loop.time() - last_write >= SSE_KEEPALIVE_SECONDS:
                yield b": keepalive\n\n"
                last_write = loop.time()
    finally:
        metrics.stream_closed("sse")
        listener.cancel()
        await group_leave(layer, [task_group(task_id)], wakeups)
