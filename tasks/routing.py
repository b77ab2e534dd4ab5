"""WebSocket routes (mounted by autogen_platform.asgi)."""
from django.urls import path, re_path

from . import consumers

websocket_urlpatterns = [
    path("ws/tasks/<int:task_id>/", consumers.TaskStreamConsumer.as_asgi()),
    path("ws/events/", consumers.CustomerStreamConsumer.as_asgi()),
    re_path(r"", consumers.UnknownPathConsumer.as_asgi()),
]
