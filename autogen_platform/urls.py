"""Every URL: health and metrics, the Django admin, the schema and docs, the admin API, and one router for /api/."""
from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from accounts.api import urls as accounts_urls
from agents.api import urls as agents_urls
from integrations.api import urls as integrations_urls
from runtime import health
from specs import views as spec_views
from studio import views as studio_views
from tasks import streams
from tasks.api import urls as tasks_urls
from teams.api import urls as teams_urls

from . import metrics

handler400 = "autogen_platform.middleware.handler400"
handler403 = "autogen_platform.middleware.handler403"
handler404 = "autogen_platform.middleware.handler404"
handler500 = "autogen_platform.middleware.handler500"

API_APPS = (accounts_urls, agents_urls, teams_urls, tasks_urls, integrations_urls)


class ApiRouter(DefaultRouter):
    """The browsable API root at /api/ lists every resource, `me` and the login endpoint included."""

    include_format_suffixes = False
    extra_root_links = {"me": "me", "auth/token": "auth-token"}

    def get_api_root_view(self, api_urls=None):
        view = super().get_api_root_view(api_urls)
        view.initkwargs["api_root_dict"].update(self.extra_root_links)
        return view


router = ApiRouter()
for app in API_APPS:
    for prefix, viewset, basename in app.routes:
        router.register(prefix, viewset, basename=basename)

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics.metrics_view, name="prometheus-django-metrics"),
    path("admin/rq/", include("django_rq.urls")),
    path("admin/", admin.site.urls),
    path("api-auth/", include("rest_framework.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema", template_name="api_docs/redoc.html"), name="redoc"),
    path("", RedirectView.as_view(url="/studio/"), name="root"),  # a person opening the bare address
    path("studio/", include("studio.urls")),
    path("console/", studio_views.console_redirect, name="console"),
    path("api/tasks/<int:pk>/stream/", streams.task_stream, name="task-stream"),
    path("api/admin/", include("adminpanel.api.urls")),
    *[path("api/", include(app.urlpatterns)) for app in API_APPS if app.urlpatterns],
    path("api/apply/", spec_views.SpecApplyView.as_view(), name="spec-apply"),
    path("api/export/", spec_views.SpecExportView.as_view(), name="spec-export"),
    path("api/", include(router.urls)),
]
