from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from . import health

handler400 = "autogen_platform.middleware.handler400"
handler403 = "autogen_platform.middleware.handler403"
handler404 = "autogen_platform.middleware.handler404"
handler500 = "autogen_platform.middleware.handler500"

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("", include("django_prometheus.urls")),
    path("admin/rq/", include("django_rq.urls")),
    path("admin/", admin.site.urls),
    path("api-auth/", include("rest_framework.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/admin/", include("adminpanel.api.urls")),
    path("api/", include("accounts.api.urls")),
    path("api/", include("agents.api.urls")),
    path("api/", include("teams.api.urls")),
    path("api/", include("tasks.api.urls")),
]
