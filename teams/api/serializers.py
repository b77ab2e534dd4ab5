"""Shape of a team: ordered member ids, mode, selector model, termination conditions."""
from django.conf import settings
from rest_framework import serializers

from accounts.api.fields import CustomerPrimaryKeyRelatedField, StrictSerializer, StringField
from agents.api.serializers import PassThroughMixin
from agents.models import Agent, ModelConfig
from autogen_platform import serializers as strict
from teams.models import Team


class TerminationSerializer(PassThroughMixin, StrictSerializer):
    max_messages = serializers.IntegerField(min_value=1, required=False)
    text_mention = StringField(required=False, max_length=settings.MAX_TEXT_MENTION_CHARS,
                               help_text="The team stops when a message contains it.")
    timeout_seconds = serializers.IntegerField(min_value=1, required=False)
    max_tokens = serializers.IntegerField(min_value=1, required=False)


class TeamSerializer(strict.ModelSerializer):
    members = CustomerPrimaryKeyRelatedField(
        many=True, queryset=Agent.objects.all(), help_text="Agent ids in speaking order (round robin)."
    )
    selector_model = CustomerPrimaryKeyRelatedField(
        queryset=ModelConfig.objects.all(), required=False, allow_null=True,
        help_text="Model configuration that picks the next speaker; selector mode only.",
    )
    termination = TerminationSerializer(required=False, allow_null=True, help_text=(
        "Stop conditions, any of which ends the run. With none given the team gets {\"max_messages\": 10} "
        "so that it always ends."))

    class Meta:
        model = Team
        fields = ["id", "name", "members", "mode", "selector_model", "termination", "created_at", "updated_at"]
        read_only_fields = ["id", "created_at", "updated_at"]
        validators = []

    def to_representation(self, instance):
        data = super().to_representation(instance)
        data["members"] = [m.agent_id for m in sorted(instance.members.all(), key=lambda m: m.position)]
        return data
