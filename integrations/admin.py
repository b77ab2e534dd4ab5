"""Django admin for webhooks, their deliveries and schedules (view only: writes go through the API's services)."""
from django.contrib import admin

from autogen_platform.admin_helpers import ViewOnlyAdminMixin

from .models import Schedule, Webhook, WebhookDelivery


@admin.register(Webhook)
class WebhookAdmin(ViewOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["id", "customer", "url", "enabled", "created_at"]
    list_filter = ["enabled", "customer"]
    search_fields = ["=id", "url", "customer__name"]
    fields = ["customer", "url", "description", "events", "enabled", "created_at", "updated_at"]
    readonly_fields = fields


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ViewOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["id", "customer", "webhook", "event", "task", "status", "attempts", "response_status",
                    "latency_ms", "next_attempt_at", "created_at"]
    list_filter = ["status", "event", "customer"]
    search_fields = ["=id", "message_id", "=task__id"]
    date_hierarchy = "created_at"
    fields = ["customer", "webhook", "task", "event", "message_id", "status", "attempts", "response_status",
              "latency_ms", "error", "next_attempt_at", "queued_at", "lease_until", "resent_from", "created_at",
              "last_attempt_at", "delivered_at", "payload"]
    readonly_fields = fields


@admin.register(Schedule)
class ScheduleAdmin(ViewOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["id", "customer", "name", "cron", "interval_seconds", "timezone", "enabled", "next_run_at",
                    "last_run_at"]
    list_filter = ["enabled", "customer"]
    search_fields = ["=id", "name", "customer__name"]
    fields = ["customer", "created_by", "name", "cron", "interval_seconds", "timezone", "agent", "team", "input",
              "thread", "enabled", "next_run_at", "last_run_at", "last_task", "last_error", "created_at", "updated_at"]
    readonly_fields = fields
