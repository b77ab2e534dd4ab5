"""Customer API routes of teams (registered on the one /api/ router)."""
from . import views

routes = [("teams", views.TeamViewSet, "team")]

urlpatterns = []
