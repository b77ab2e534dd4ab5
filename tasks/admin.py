"""Django admin for threads, tasks and task events: a task reads as its transcript, usage and outcome (not JSON
blobs); a cancel action through task_cancel."""
import json

from django.contrib import admin, messages
from django.db.models import TextField
from django.db.models.fields.json import KeyTransform
from django.db.models.functions import Cast, Length
from django.template.loader import render_to_string
from django.utils.html import format_html, format_html_join

from autogen_platform.admin_helpers import ViewOnlyAdminMixin
from autogen_platform.errors import Conflict

from . import services
from .transcript import ERROR_EXPLANATIONS, build_transcript
from .models import Task, TaskEvent, Thread


def _pre(value):
    return format_html('<pre style="white-space: pre-wrap; margin: 0">{}</pre>',
                       json.dumps(value, indent=2, sort_keys=True, default=str))


# The parts of a suspension kept to resume the run, by size only (the work dir is a base64 archive).
SUSPENSION_KEPT = {"state": "AgentChat state", "pending": "pending events", "broker": "model broker state",
                   "workdir": "work dir (packed, base64)"}


def _size(chars: int) -> str:
    return f"{chars / 1024 / 1024:.1f} MB" if chars >= 1024 * 1024 else f"{chars / 1024:.1f} KB" \
        if chars >= 1024 else f"{chars} bytes"


class ErrorCodeFilter(admin.SimpleListFilter):
    title = "error code"
    parameter_name = "error_code"

    def lookups(self, request, model_admin):
        return [(code, code) for code in Task.ERROR_CODES]

    def queryset(self, request, queryset):
        return queryset.filter(error__code=self.value()) if self.value() else queryset


@admin.register(Task)
class TaskAdmin(ViewOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["id", "customer", "target", "status", "error_code", "tokens_used", "duration", "created_at"]
    list_filter = ["status", ErrorCodeFilter, "customer"]
    list_select_related = ["customer", "agent", "team"]
    search_fields = ["=id", "input", "customer__name", "agent__name", "team__name", "idempotency_key"]
    date_hierarchy = "created_at"
    fieldsets = [
        (None, {"fields": ["customer", "created_by", "agent", "agent_version", "team", "team_version", "thread", "status", "input"]}),
        ("Outcome", {"fields": ["outcome", "result_text", "usage_table"]}),
        ("Transcript", {"fields": ["transcript"]}),
        ("Times", {"fields": ["created_at", "started_at", "finished_at", "waiting_since", "heartbeat_at"]}),
        ("Internals", {"classes": ["collapse"], "fields": [
            "idempotency_key", "stop_requested", "attempts", "requeues", "worker", "pid", "tokens_used",
            "input_deadline", "suspension_summary", "spec_pretty"]}),
    ]
    readonly_fields = ["customer", "created_by", "agent", "agent_version", "team", "team_version", "thread", "status", "input",
                       "outcome", "result_text", "usage_table", "transcript", "created_at", "started_at",
                       "finished_at", "waiting_since", "heartbeat_at", "idempotency_key", "stop_requested",
                       "attempts", "requeues", "worker", "pid", "tokens_used", "input_deadline", "suspension_summary",
                       "spec_pretty"]
    actions = ["cancel_selected"]

    def get_queryset(self, request):
        # The suspension holds the saved state and the packed work dir (base64, up to ~2.8 MB): never loaded
        # whole here; the change page reads its small parts and the sizes of the rest (suspension_summary).
        return super().get_queryset(request).defer("suspension")

    @admin.display(description="suspension (what a waiting task keeps)")
    def suspension_summary(self, obj):
        parts = {key: KeyTransform(key, "suspension") for key in ("request", "answer")}
        sizes = {f"{key}_chars": Length(Cast(KeyTransform(key, "suspension"), TextField()))
                 for key in SUSPENSION_KEPT}
        row = Task.objects.filter(pk=obj.pk, suspension__isnull=False).values(**parts, **sizes).first()
        if row is None:
            return "—"
        kept = format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", (
            (label, _size(row[f"{key}_chars"]) if row[f"{key}_chars"] else "none")
            for key, label in SUSPENSION_KEPT.items()))
        return format_html("<div><strong>asked</strong></div>{}<div><strong>answer</strong></div>{}"
                           "<div><strong>kept to resume</strong> (sizes as stored)</div><table>{}</table>",
                           _pre(row["request"]), _pre(row["answer"]) if row["answer"] else "none yet", kept)

    @admin.display(description="agent or team")
    def target(self, obj):
        return obj.agent or (f"team {obj.team}" if obj.team else "(deleted)")

    @admin.display(description="error")
    def error_code(self, obj):
        return (obj.error or {}).get("code", "") if isinstance(obj.error, dict) else ""

    @admin.display(description="duration")
    def duration(self, obj):
        if obj.started_at and obj.finished_at:
            return f"{(obj.finished_at - obj.started_at).total_seconds():.1f} s"
        return "—"

    @admin.display(description="outcome")
    def outcome(self, obj):
        error = obj.error if isinstance(obj.error, dict) else None
        stop = (obj.result or {}).get("stop_reason") if isinstance(obj.result, dict) else None
        parts = [format_html("<strong>{}</strong>", obj.status)]
        if stop:
            parts.append(format_html("stop reason: {}", stop))
        if error:
            parts.append(format_html("error <strong>{}</strong>: {}", error.get("code", ""), error.get("message", "")))
            if ERROR_EXPLANATIONS.get(error.get("code")):
                parts.append(format_html("<em>{}</em>", ERROR_EXPLANATIONS[error["code"]]))
        return format_html_join("", "<div>{}</div>", ((p,) for p in parts))

    @admin.display(description="result")
    def result_text(self, obj):
        if isinstance(obj.result, dict) and isinstance(obj.result.get("text"), str):
            return format_html('<div style="white-space: pre-wrap">{}</div>', obj.result["text"])
        return _pre(obj.result) if obj.result is not None else "—"

    @admin.display(description="usage")
    def usage_table(self, obj):
        rows = format_html_join("", "<tr><th>{}</th><td>{}</td></tr>",
                                ((k.replace("_", " "), v) for k, v in (obj.usage or {}).items()))
        return format_html("<table>{}</table>", rows) if obj.usage else "—"

    @admin.display(description="transcript")
    def transcript(self, obj):
        events = obj.events.order_by("seq")[:2000]
        turns = build_transcript(list(events), started_at=obj.started_at or obj.created_at)
        return render_to_string("admin/tasks/transcript.html", {"turns": turns})

    @admin.display(description="spec (what the task runs)")
    def spec_pretty(self, obj):
        return _pre(obj.spec)

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
    fields = ["task", "seq", "type", "source", "content_pretty", "created_at"]
    readonly_fields = fields

    @admin.display(description="content")
    def content_pretty(self, obj):
        return _pre(obj.content)


@admin.register(Thread)
class ThreadAdmin(ViewOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["id", "customer", "agent", "team", "task_count", "created_at", "updated_at"]
    list_filter = ["customer"]
    list_select_related = ["customer", "agent", "team"]
    search_fields = ["=id", "customer__name", "agent__name", "team__name"]
    fields = ["customer", "agent", "team", "runs", "has_state", "created_at", "updated_at"]
    readonly_fields = fields

    @admin.display(description="tasks")
    def task_count(self, obj):
        return obj.tasks.count()

    @admin.display(description="tasks, oldest first")
    def runs(self, obj):
        return format_html_join(", ", '<a href="../../../task/{}/change/">{}</a>',
                                ((t.pk, t) for t in obj.tasks.order_by("created_at", "id")))

    @admin.display(boolean=True, description="conversation state kept")
    def has_state(self, obj):
        return obj.state is not None
