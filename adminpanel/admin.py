"""Django admin for the admin plane. Killswitch changes always go through adminpanel.services.killswitch_set,
so the admin site kills, cancels, audits and announces exactly as the API and `manage.py killswitch` do."""
from django import forms
from django.contrib import admin, messages
from django.template.response import TemplateResponse

from . import services
from accounts.models import Notification
from core.models import AuditLog, Killswitch
from tasks.models import Task


def killswitch_reach(customer) -> dict:
    """What engaging the switch of `customer` (None: the global one) would stop now."""
    tasks = Task.objects.all() if customer is None else Task.objects.filter(customer=customer)
    return {
        "label": "global: every customer" if customer is None else f"customer {customer}",
        "running": tasks.filter(status=Task.Status.RUNNING).count(),
        "queued": tasks.filter(status=Task.Status.QUEUED).count(),
    }


class KillswitchForm(forms.ModelForm):
    confirm = forms.BooleanField(
        required=False, label="I understand what engaging stops",
        help_text="Engaging kills every running sandbox in scope within a second, cancels the queued tasks and "
                  "refuses new ones until released. Saving without this box ticked shows how many tasks it would stop.")

    class Meta:
        model = Killswitch
        fields = ["customer", "engaged", "reason"]
        help_texts = {
            "customer": "Leave empty for the GLOBAL switch: it stops every customer's tasks.",
            "reason": "Shown to the customers whose tasks it stops.",
        }

    def clean(self):
        data = super().clean()
        if data.get("engaged") and not data.get("confirm"):
            reach = killswitch_reach(data.get("customer") if self.instance.pk is None else self.instance.customer)
            raise forms.ValidationError(
                f"Engaging the killswitch ({reach['label']}) stops {reach['running']} running task(s) now and "
                f"cancels {reach['queued']} queued task(s). Tick \"I understand what engaging stops\" and save again.")
        return data


@admin.register(Killswitch)
class KillswitchAdmin(admin.ModelAdmin):
    form = KillswitchForm
    list_display = ["scope_label", "engaged", "reason", "changed_by", "changed_at"]
    list_filter = ["engaged"]
    fields = ["customer", "engaged", "reason", "confirm"]
    actions = ["engage_selected", "release_selected"]

    @admin.display(description="scope", ordering="scope")
    def scope_label(self, obj):
        return "global (every customer)" if obj.customer_id is None else f"customer {obj.customer}"

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

    @admin.action(description="Engage the selected killswitches (kill running sandboxes in scope): asks first")
    def engage_selected(self, request, queryset):
        if request.POST.get("post") == "yes":
            self._set(request, queryset, True)
            return None
        rows = [killswitch_reach(switch.customer) for switch in queryset.select_related("customer")]
        context = {**self.admin_site.each_context(request), "title": "Engage the killswitch?", "rows": rows,
                   "queryset": queryset, "opts": self.model._meta}
        return TemplateResponse(request, "admin/adminpanel/killswitch/engage_confirmation.html", context)

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
