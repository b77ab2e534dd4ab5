"""Django admin for threads, tasks (with their events) and task events; a cancel action through task_cancel."""
from django.contrib import admin, messages

from autogen_platform.admin_helpers import ViewOnlyAdminMixin
from autogen_platform.errors import Conflict

from . import services
from .models import Task, TaskEvent, Thread


class TaskEventInline(ViewOnlyAdminMixin, admin.TabularInline):
    model = TaskEvent
    extra = 0
    fields = ["seq", "type", "source", "content", "created_at"]
    readonly_fields = fields
    ordering = ["seq"]
    classes = ["collapse"]


@admin.register(Task)
class TaskAdmin(ViewOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["id", "customer", "agent", "team", "status", "agent_version", "tokens_used", "attempts",
                    "created_at", "finished_at"]
    list_filter = ["status", "customer"]
    search_fields = ["=id", "input", "customer__name", "agent__name", "team__name", "idempotency_key"]
    date_hierarchy = "created_at"
    fields = ["customer", "created_by", "agent", "agent_version", "team", "thread", "status", "input", "result",
              "error", "usage", "tokens_used", "idempotency_key", "cancel_requested", "attempts", "waiting_since", "requeues",
              "input_deadline", "worker", "pid", "heartbeat_at", "created_at", "started_at", "finished_at", "spec",
              "suspension"]
    readonly_fields = fields
    inlines = [TaskEventInline]
    actions = ["cancel_selected"]

    @admin.action(description="Cancel the selected tasks", permissions=["view"])
    def cancel_selected(self, request, queryset):
        cancelled = 0
        for task in queryset:
            try:
                services.task_cancel(actor=request.user, task=task, request=request)
                cancelled += 1
            except Conflict:
                pass  # already finished
        self.message_user(request, f"{cancelled} task(s) cancelled or being stopped", messages.WARNING)


@admin.register(TaskEvent)
class TaskEventAdmin(ViewOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["task", "seq", "type", "source", "created_at"]
    list_filter = ["type"]
    search_fields = ["=task__id", "source"]
    fields = ["task", "seq", "type", "source", "content", "created_at"]
    readonly_fields = fields


@admin.register(Thread)
class ThreadAdmin(ViewOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["id", "customer", "agent", "team", "created_at", "updated_at"]
    list_filter = ["customer"]
    search_fields = ["=id", "customer__name", "agent__name", "team__name"]
    fields = ["customer", "agent", "team", "state", "created_at", "updated_at"]
    readonly_fields = fields
