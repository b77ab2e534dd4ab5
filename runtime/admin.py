"""Django admin for the worker hosts and the sandbox layers they reported (view-only)."""
from django.contrib import admin

from autogen_platform.admin_helpers import ViewOnlyAdminMixin

from .models import WorkerHost


@admin.register(WorkerHost)
class WorkerHostAdmin(ViewOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["hostname", "isolation_level", "started_at", "last_seen"]
    search_fields = ["hostname"]
    fields = ["hostname", "capabilities", "started_at", "last_seen"]
    readonly_fields = fields

    @admin.display(description="isolation")
    def isolation_level(self, obj):
        return (obj.capabilities or {}).get("level", "")
