"""Admin API routes, mounted at /api/admin/."""
from django.urls import path

from . import views

urlpatterns = [
    path("auth/token/", views.AdminTokenObtainView.as_view(), name="admin-auth-token"),
    path("auth/token/refresh/", views.AdminTokenRefreshView.as_view(), name="admin-auth-token-refresh"),
    path("auth/logout/", views.AdminLogoutView.as_view(), name="admin-auth-logout"),
    path("stats/", views.StatsView.as_view(), name="admin-stats"),
    path("customers/", views.CustomerListView.as_view(), name="admin-customers"),
    path("customers/<int:pk>/", views.CustomerDetailView.as_view(), name="admin-customer"),
    path("agents/", views.AgentListView.as_view(), name="admin-agents"),
    path("agents/<int:pk>/stop/", views.AgentStopView.as_view(), name="admin-agent-stop"),
    path("broadcast/", views.BroadcastView.as_view(), name="admin-broadcast"),
    path("killswitch/", views.KillswitchView.as_view(), name="admin-killswitch"),
    path("audit/", views.AuditListView.as_view(), name="admin-audit"),
    path("runtime/", views.RuntimeView.as_view(), name="admin-runtime"),
]
