"""Query filters and ordering of the model configuration and agent lists (django-filter)."""
import django_filters

from agents.models import Agent, ModelConfig
from autogen_platform.filters import IdFilter, ordering


class ModelConfigFilter(django_filters.FilterSet):
    provider = django_filters.ChoiceFilter(choices=ModelConfig.Provider.choices)
    name = django_filters.CharFilter(lookup_expr="icontains", help_text="Names containing this text.")
    ordering = ordering("name", "created_at", "updated_at")

    class Meta:
        model = ModelConfig
        fields = ["provider", "name"]


class AgentFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=Agent.Status.choices)
    model = IdFilter(field_name="model_id", help_text="Agents on this model configuration.")
    name = django_filters.CharFilter(lookup_expr="icontains", help_text="Names containing this text.")
    ordering = ordering("name", "created_at", "updated_at", "version")

    class Meta:
        model = Agent
        fields = ["status", "model", "name"]
