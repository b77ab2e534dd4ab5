"""Customer API routes of tasks (registered on the one /api/ router)."""
from . import views

routes = [
    ("tasks", views.TaskViewSet, "task"),
    ("threads", views.ThreadViewSet, "thread"),
]

urlpatterns = []
