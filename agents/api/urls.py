"""Customer API routes of agents (registered on the one /api/ router)."""
from . import views

routes = [
    ("models", views.ModelConfigViewSet, "model-config"),
    ("agents", views.AgentViewSet, "agent"),
    ("tools", views.ToolViewSet, "tool"),
]

urlpatterns = []
