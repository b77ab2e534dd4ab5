"""Customer API routes of integrations (registered on the one /api/ router)."""
from . import views

routes = [
    ("webhooks", views.WebhookViewSet, "webhook"),
    ("schedules", views.ScheduleViewSet, "schedule"),
]

urlpatterns = []
