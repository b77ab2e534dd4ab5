"""/studio/: the web studio for customers' users."""
from django.urls import path

from . import views

app_name = "studio"

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", views.logout_view, name="logout"),
    path("token/", views.ws_token, name="token"),
    path("runs/", views.runs, name="runs"),
    path("runs/new/", views.run_create, name="run-create"),
    path("runs/<int:pk>/", views.run_detail, name="run"),
    path("runs/<int:pk>/live/", views.run_live, name="run-live"),
    path("runs/<int:pk>/cancel/", views.run_cancel, name="run-cancel"),
    path("runs/<int:pk>/input/", views.run_input, name="run-input"),
    path("runs/<int:pk>/continue/", views.run_continue, name="run-continue"),
    path("models/", views.models_list, name="models"),
    path("models/new/", views.model_new, name="model-new"),
    path("models/<int:pk>/", views.model_edit, name="model"),
    path("agents/", views.agents_list, name="agents"),
    path("agents/new/", views.agent_new, name="agent-new"),
    path("agents/<int:pk>/", views.agent_edit, name="agent"),
    path("agents/<int:pk>/diff/", views.agent_diff, name="agent-diff"),
    path("agents/<int:pk>/rollback/", views.agent_rollback, name="agent-rollback"),
    path("teams/", views.teams_list, name="teams"),
    path("teams/new/", views.team_new, name="team-new"),
    path("teams/<int:pk>/", views.team_edit, name="team"),
    path("teams/<int:pk>/diff/", views.team_diff, name="team-diff"),
    path("teams/<int:pk>/rollback/", views.team_rollback, name="team-rollback"),
    path("usage/", views.usage, name="usage"),
]
