"""Django admin for the admin plane. Killswitch changes always go through adminpanel.services.killswitch_set,
so the admin site kills, cancels, audits and announces exactly as the API and `manage.py killswitch` do."""
from django.contrib import admin, messages

from . import services
from .models import AuditLog, Killswitch, Notification


@admin.register(Killswitch)
class KillswitchAdmin(admin.ModelAdmin):
    list_display = ["scope", "engaged", "reason", "changed_by", "changed_at"]
    list_filter = ["engaged"]
    fields = ["customer", "engaged", "reason"]
    actions = ["engage_selected", "release_selected"]

    def get_readonly_fields(self, request, obj=None):
        return ["customer"] if obj is not None else []

    def save_model(self, request, obj, form, change):
        switch = services.killswitch_set(actor=request.user, engaged=obj.engaged, customer=obj.customer,
                                         reason=obj.reason, request=request)
        obj.pk, obj.scope = switch.pk, switch.scope

    def has_delete_permission(self, request, obj=None):
        return False  # released, never deleted: the row is the record

    def _set(self, request, queryset, engaged):
        for switch in queryset.select_related("customer"):
            services.killswitch_set(actor=request.user, engaged=engaged, customer=switch.customer,
                                    reason=switch.reason if engaged else "", request=request)
        self.message_user(request, f"{queryset.count()} killswitch(es) {'engaged' if engaged else 'released'}",
                          messages.WARNING if engaged else messages.SUCCESS)

    @admin.action(description="Engage the selected killswitches (kill running sandboxes in scope)")
    def engage_selected(self, request, queryset):
        self._set(request, queryset, True)

    @admin.action(description="Release the selected killswitches")
    def release_selected(self, request, queryset):
        self._set(request, queryset, False)


@admin.register(AuditLog)
class AuditLogAdmin(admin.ModelAdmin):
    list_display = ["at", "actor", "action", "target", "customer", "ip"]
    list_filter = ["action"]
    search_fields = ["actor", "action", "target"]
    date_hierarchy = "at"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    list_display = ["created_at", "customer", "level", "message", "created_by"]
    list_filter = ["level"]
    search_fields = ["message", "created_by", "customer__name"]
