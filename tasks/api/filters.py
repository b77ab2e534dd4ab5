"""Query filters and ordering of the task and thread lists (django-filter; see autogen_platform.filters)."""
import django_filters

from autogen_platform.filters import IdFilter, MomentFilter, ordering
from tasks.models import Task, Thread


class TaskFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=Task.Status.choices, help_text="Only tasks in this status.")
    agent = IdFilter(field_name="agent_id", help_text="Only this agent's tasks.")
    team = IdFilter(field_name="team_id", help_text="Only this team's tasks.")
    thread = IdFilter(field_name="thread_id", help_text="Only this thread's tasks.")
    created_after = MomentFilter(field_name="created_at", lookup_expr="gte",
                                                     help_text="Created at or after (ISO 8601).")
    created_before = MomentFilter(field_name="created_at", lookup_expr="lt",
                                                      help_text="Created before (ISO 8601).")
    ordering = ordering("created_at", "started_at", "finished_at", "status",
                        help_text="Sort by created_at (default: newest first), started_at, finished_at or status; "
                                  "prefix with - for descending.")

    class Meta:
        model = Task
        fields = ["status", "agent", "team", "thread", "created_after", "created_before"]


class ThreadFilter(django_filters.FilterSet):
    agent = IdFilter(field_name="agent_id", help_text="Only this agent's threads.")
    team = IdFilter(field_name="team_id", help_text="Only this team's threads.")
    ordering = ordering("created_at")

    class Meta:
        model = Thread
        fields = ["agent", "team"]
