"""Customer API routes of accounts: `routes` go on the one /api/ router, `urlpatterns` are the rest."""
from django.urls import path

from . import views

routes = [
    ("api-keys", views.ApiKeyViewSet, "api-key"),
    ("notifications", views.NotificationViewSet, "notification"),
]

urlpatterns = [
    path("auth/token/", views.TokenObtainView.as_view(), name="auth-token"),
    path("auth/token/refresh/", views.TokenRefreshView.as_view(), name="auth-token-refresh"),
    path("auth/logout/", views.LogoutView.as_view(), name="auth-logout"),
    path("me/", views.MeView.as_view(), name="me"),
]
