"""Django admin for customers, memberships and API keys.

Writes with rules (versions, quotas, kills, audit rows) go through the services, so models whose
changes have side effects are view-only here and offer service-backed actions instead.
"""
from django import forms
from django.contrib import admin, messages

from autogen_platform.admin_helpers import ViewOnlyAdminMixin
from autogen_platform.errors import ValidationFailed

from . import services
from .models import ApiKey, Customer, Membership


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    raw_id_fields = ["user"]
    fields = ["user", "role", "created_at"]
    readonly_fields = ["created_at"]


class CustomerForm(forms.ModelForm):
    class Meta:
        model = Customer
        fields = "__all__"
        help_texts = {"http_tool_hosts": 'The hosts its HTTP tools may call, e.g. ["api.example.com", "*.example.org"]; '
                                         "[]: none. Checked at each write of a tool and at each call."}

    def clean_http_tool_hosts(self):
        try:
            return services.http_tool_hosts_checked(self.cleaned_data.get("http_tool_hosts") or [])
        except ValidationFailed as exc:
            raise forms.ValidationError("; ".join(f"{k}: {m}" for k, v in exc.details.items() for m in v)) from None


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    form = CustomerForm
    list_display = ["name", "max_agents", "max_concurrent_tasks", "max_tasks_per_day", "monthly_token_budget",
                    "max_memory_mb", "created_at"]
    search_fields = ["name"]
    date_hierarchy = "created_at"
    readonly_fields = ["created_at"]
    fieldsets = [
        (None, {"fields": ["name", "created_at"]}),
        ("Quotas", {"fields": list(Customer.QUOTA_FIELDS)}),
        ("HTTP tools", {"fields": ["http_tool_hosts"]}),
    ]
    inlines = [MembershipInline]

    def delete_model(self, request, obj):
        # The service removes dependents in PROTECT order, kills the customer's sandboxes and audits.
        services.customer_delete(actor=request.user, customer=obj, request=request)

    def delete_queryset(self, request, queryset):
        for customer in queryset:
            self.delete_model(request, customer)


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "customer", "role", "created_at"]
    list_filter = ["role", "customer"]
    search_fields = ["user__username", "customer__name"]
    raw_id_fields = ["user"]
    readonly_fields = ["created_at"]


class RevokedFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("active", "active"), ("revoked", "revoked")]

    def queryset(self, request, queryset):
        if self.value() == "active":
            return queryset.filter(revoked_at__isnull=True)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


@admin.register(ApiKey)
class ApiKeyAdmin(ViewOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["name", "prefix", "customer", "user", "created_at", "last_used_at", "revoked_at"]
    list_filter = [RevokedFilter, "customer"]
    search_fields = ["name", "prefix", "customer__name", "user__username"]
    # Never the hash: the key itself is shown once, at creation through the API.
    fields = ["name", "prefix", "customer", "user", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = fields
    actions = ["revoke_selected"]

    @admin.action(description="Revoke the selected API keys", permissions=["view"])
    def revoke_selected(self, request, queryset):
        keys = list(queryset.filter(revoked_at__isnull=True))
        for key in keys:
            services.api_key_revoke(actor=request.user, key=key, request=request)
        self.message_user(request, f"{len(keys)} API key(s) revoked", messages.SUCCESS)
