from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class AdminpanelConfig(AppConfig):
    default = True
    name = "adminpanel"
    verbose_name = "Platform administration"


class PlatformAdminConfig(admin_apps.AdminConfig):
    """django.contrib.admin with the platform's site (staff password + TOTP) as `admin.site`."""

    default = False  # adminpanel's own config stays the default of this module
    default_site = "adminpanel.site.PlatformAdminSite"
