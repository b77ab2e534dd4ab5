"""Django admin for model configurations, agents and their versions, and customer tools (view-only; stop and
start actions).

Agents change through agents.services, which makes versions and audit rows: the admin inspects them
and offers the stop and start actions, which call those services.
"""
from django.contrib import admin, messages

from autogen_platform.admin_helpers import ViewOnlyAdminMixin

from . import services
from .models import Agent, AgentVersion, ModelConfig, Tool
from .tools import agents_using


@admin.register(ModelConfig)
class ModelConfigAdmin(ViewOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["name", "customer", "provider", "model", "base_url", "has_api_key", "updated_at"]
    list_filter = ["provider", "customer"]
    search_fields = ["name", "model", "base_url", "customer__name"]
    # The encrypted provider key is never shown: has_api_key says whether there is one.
    fields = ["name", "customer", "provider", "model", "base_url", "has_api_key", "model_info", "responses",
              "price_prompt_per_million", "price_completion_per_million", "created_at", "updated_at"]
    readonly_fields = fields

    @admin.display(boolean=True, description="API key")
    def has_api_key(self, obj):
        return obj.has_api_key


class AgentVersionInline(ViewOnlyAdminMixin, admin.TabularInline):
    model = AgentVersion
    extra = 0
    fields = ["version", "created_by", "created_at", "snapshot"]
    readonly_fields = fields
    ordering = ["-version"]


@admin.register(Agent)
class AgentAdmin(ViewOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["name", "customer", "model", "status", "version", "code_execution", "human_input", "updated_at"]
    list_filter = ["status", "code_execution", "human_input", "customer"]
    search_fields = ["name", "description", "system_message", "customer__name"]
    fields = ["name", "customer", "description", "system_message", "model", "tools", "code_execution", "limits",
              "human_input", "approval",
              "status", "version", "created_at", "updated_at"]
    readonly_fields = fields
    inlines = [AgentVersionInline]
    actions = ["stop_selected", "start_selected"]

    @admin.action(description="Stop the selected agents (cancel queued tasks, stop running ones)",
                  permissions=["view"])
    def stop_selected(self, request, queryset):
        for agent in queryset:
            services.agent_stop(actor=request.user, agent=agent, request=request)
        self.message_user(request, f"{queryset.count()} agent(s) stopped", messages.WARNING)

    @admin.action(description="Start the selected agents", permissions=["view"])
    def start_selected(self, request, queryset):
        for agent in queryset:
            services.agent_start(actor=request.user, agent=agent, request=request)
        self.message_user(request, f"{queryset.count()} agent(s) started", messages.SUCCESS)


@admin.register(AgentVersion)
class AgentVersionAdmin(ViewOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["agent", "version", "created_by", "created_at"]
    list_filter = ["agent__customer"]
    search_fields = ["agent__name", "created_by"]
    fields = ["agent", "version", "snapshot", "created_by", "created_at"]
    readonly_fields = fields


@admin.register(Tool)
class ToolAdmin(ViewOnlyAdminMixin, admin.ModelAdmin):
    """Customers' own tools. View only: a change goes through agents.tools (versions of the agents using it)."""

    list_display = ["name", "customer", "kind", "version", "timeout_seconds", "used_by", "updated_at"]
    list_filter = ["kind", "customer"]
    search_fields = ["name", "description", "source", "url", "customer__name"]
    # An http tool's secret headers by name only: their values are never shown.
    fields = ["name", "customer", "kind", "description", "parameters", "source", "method", "url", "arguments_in",
              "headers", "secret_header_names", "timeout_seconds", "version", "used_by", "created_at", "updated_at"]
    readonly_fields = fields

    @admin.display(description="Used by agents")
    def used_by(self, obj):
        return ", ".join(agent.name for agent in agents_using(obj)) or "-"
