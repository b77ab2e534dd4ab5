"""Django admin for teams with their ordered members (view-only: teams change through teams.services)."""
from django.contrib import admin

from autogen_platform.admin_helpers import ViewOnlyAdminMixin

from .models import Team, TeamMember, TeamVersion


class TeamMemberInline(ViewOnlyAdminMixin, admin.TabularInline):
    model = TeamMember
    extra = 0
    fields = ["position", "agent", "role"]
    readonly_fields = fields
    ordering = ["position"]

    @admin.display(description="role")
    def role(self, obj):
        """What the member is in AgentChat: a person answers for a human_input member (a UserProxyAgent)."""
        agent = obj.agent
        if agent.human_input:
            return "a person answers (user proxy)"
        parts = ["agent"] + (["runs code"] if agent.code_execution else []) + \
            ([f"tools: {', '.join(agent.tools)}"] if agent.tools else [])
        return ", ".join(parts)


class TeamVersionInline(ViewOnlyAdminMixin, admin.TabularInline):
    model = TeamVersion
    extra = 0
    fields = ["version", "created_by", "created_at", "snapshot"]
    readonly_fields = fields
    ordering = ["-version"]


@admin.register(Team)
class TeamAdmin(ViewOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["name", "customer", "mode", "member_count", "version", "selector_model", "orchestrator_model",
                    "updated_at"]
    list_filter = ["mode", "customer"]
    search_fields = ["name", "customer__name", "agents__name"]
    fields = ["name", "customer", "mode", "selector_model", "orchestrator_model", "termination", "graph", "version",
              "created_at", "updated_at"]
    readonly_fields = fields
    inlines = [TeamMemberInline, TeamVersionInline]

    @admin.display(description="members")
    def member_count(self, obj):
        return obj.members.count()


@admin.register(TeamVersion)
class TeamVersionAdmin(ViewOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["team", "version", "created_by", "created_at"]
    list_filter = ["team__customer"]
    search_fields = ["team__name", "created_by"]
    fields = ["team", "version", "snapshot", "created_by", "created_at"]
    readonly_fields = fields
