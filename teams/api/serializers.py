"""Shape of a team: ordered member ids, mode, the model its mode needs, termination conditions, graph."""
from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from accounts.api.fields import CustomerPrimaryKeyRelatedField
from agents.models import Agent, ModelConfig
from autogen_platform import serializers as strict
from teams.conditions import CONDITIONS
from teams.models import Team, TeamVersion

_POSITIVE = {"type": "integer", "minimum": 1}
_NAME = {"type": "string", "minLength": 1, "maxLength": 100}
_CONDITION_SCHEMAS = {
    "max_messages": _POSITIVE,
    "text_mention": {"type": "string", "minLength": 1, "maxLength": settings.MAX_TEXT_MENTION_CHARS},
    "timeout_seconds": _POSITIVE,
    "max_tokens": _POSITIVE,
    "handoff": _NAME,
    "source_match": {"type": "array", "items": _NAME, "minItems": 1},
    "stop_message": {"type": "boolean", "enum": [True]},
    "function_call": _NAME,
}
TERMINATION_SCHEMA = {
    "type": "object",
    "nullable": True,
    "description": (
        "Stop conditions, any of which ends the run: "
        + "; ".join(f"`{k}`: {v}" for k, v in CONDITIONS.items())
        + ". Or a combination standing alone: `{\"any\": [...]}` (the first to hold ends the run) or "
        "`{\"all\": [...]}` (all must hold), whose items are termination objects themselves (nested up to 4 deep). "
        "With none given the team gets {\"max_messages\": 10} so that it always ends. Errors name the path, "
        "e.g. `all[1].max_messages: must be a positive integer`."
    ),
    "properties": {
        **{k: {**v, "description": CONDITIONS[k]} for k, v in _CONDITION_SCHEMAS.items()},
        "any": {"type": "array", "items": {"type": "object", "additionalProperties": True}, "minItems": 1},
        "all": {"type": "array", "items": {"type": "object", "additionalProperties": True}, "minItems": 1},
    },
    "additionalProperties": False,
}
GRAPH_SCHEMA = {
    "type": "object",
    "nullable": True,
    "description": (
        "Graph mode only: who speaks after whom (AgentChat's GraphFlow). The entry is the first member; a node "
        "runs when its incoming edges fired (`activation` all, the default, or any, per target and "
        "`activation_group`). An edge with a `condition` is taken when the source's message contains that text; a "
        "member's outgoing edges are all conditional or none; every cycle needs a conditional edge; every member is "
        "reachable from the entry; the run ends when no node is ready (or a termination condition holds)."
    ),
    "properties": {
        "edges": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "source": {"type": "integer", "description": "Agent id of a member."},
                    "target": {"type": "integer", "description": "Agent id of a member."},
                    "condition": {"type": "string", "minLength": 1, "maxLength": settings.MAX_TEXT_MENTION_CHARS,
                                  "description": "Text the source's message must contain for this edge to fire."},
                    "activation": {"type": "string", "enum": ["all", "any"]},
                    "activation_group": {"type": "string", "minLength": 1, "maxLength": 100},
                },
                "required": ["source", "target"],
                "additionalProperties": False,
            },
        },
    },
    "additionalProperties": False,
}


@extend_schema_field(TERMINATION_SCHEMA)
class TerminationField(serializers.JSONField):
    """Checked by teams.services (every mistake with its path inside the object)."""


@extend_schema_field(GRAPH_SCHEMA)
class GraphField(serializers.JSONField):
    """Checked by teams.services against the team's members."""


class TeamSerializer(strict.ModelSerializer):
    members = CustomerPrimaryKeyRelatedField(
        many=True, queryset=Agent.objects.all(),
        help_text="Agent ids in speaking order (round robin); the first is where a swarm or a graph starts.",
    )
    mode = serializers.ChoiceField(choices=Team.Mode.choices, required=False, help_text=(
        "round_robin (RoundRobinGroupChat), selector (SelectorGroupChat: selector_model picks the speaker), "
        "swarm (Swarm: each member may hand off to any other), graph (GraphFlow over `graph`), magentic_one "
        "(MagenticOneGroupChat: orchestrator_model plans and picks)."))
    selector_model = CustomerPrimaryKeyRelatedField(
        queryset=ModelConfig.objects.all(), required=False, allow_null=True,
        help_text="Model configuration that picks the next speaker; selector mode only.",
    )
    orchestrator_model = CustomerPrimaryKeyRelatedField(
        queryset=ModelConfig.objects.all(), required=False, allow_null=True,
        help_text="Model configuration of the Magentic-One orchestrator; magentic_one mode only.",
    )
    termination = TerminationField(required=False, allow_null=True)
    graph = GraphField(required=False, allow_null=True)

    class Meta:
        model = Team
        fields = ["id", "name", "members", "mode", "selector_model", "orchestrator_model", "termination", "graph",
                  "version", "created_at", "updated_at"]
        read_only_fields = ["id", "version", "created_at", "updated_at"]
        extra_kwargs = {"version": {"help_text": "Current behaviour version (changed by anything but the name); "
                                                 "see the versions action."}}
        validators = []

    def to_representation(self, instance):
        data = super().to_representation(instance)
        data["members"] = [m.agent_id for m in sorted(instance.members.all(), key=lambda m: m.position)]
        data["graph"] = instance.graph or None
        return data


class TeamSnapshotSerializer(serializers.Serializer):
    """A version's behaviour, as stored (model and agent references are ids)."""

    members = serializers.ListField(child=serializers.IntegerField(), help_text="Agent ids in speaking order.")
    mode = serializers.ChoiceField(choices=Team.Mode.choices)
    selector_model = serializers.IntegerField(allow_null=True)
    orchestrator_model = serializers.IntegerField(allow_null=True)
    termination = TerminationField()
    graph = GraphField()

    def to_representation(self, instance):
        return dict(instance or {})


class TeamVersionSerializer(serializers.ModelSerializer):
    snapshot = TeamSnapshotSerializer(read_only=True)

    class Meta:
        model = TeamVersion
        fields = ["version", "snapshot", "created_at", "created_by"]
