"""The ASGI application daphne serves: HTTP (Django, plus the studio's and admin's static files) and WebSocket."""
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "autogen_platform.settings.dev")

import django  # noqa: E402

django.setup(set_prefix=False)  # what django.core.asgi.get_asgi_application does first

from autogen_platform.asgi_handler import PlatformASGIHandler  # noqa: E402

django_asgi_app = PlatformASGIHandler()

from autogen_platform import daphne_tweaks  # noqa: E402

daphne_tweaks.install()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

from tasks.routing import websocket_urlpatterns  # noqa: E402

# Static files come from the apps' static/ folders (no collectstatic, no extra server): the platform
# serves a handful of small files, the studio's (htmx vendored) and the Django admin's.
application = ProtocolTypeRouter(
    {
        "http": ASGIStaticFilesHandler(django_asgi_app),
        "websocket": URLRouter(websocket_urlpatterns),
    }
)

from autogen_platform import gc_tuning  # noqa: E402

gc_tuning.settle()
