"""Query filters and ordering of the team list (django-filter)."""
import django_filters

from autogen_platform.filters import ordering
from teams.models import Team


class TeamFilter(django_filters.FilterSet):
    mode = django_filters.ChoiceFilter(choices=Team.Mode.choices)
    name = django_filters.CharFilter(lookup_expr="icontains", help_text="Names containing this text.")
    ordering = ordering("name", "created_at", "updated_at")

    class Meta:
        model = Team
        fields = ["mode", "name"]
