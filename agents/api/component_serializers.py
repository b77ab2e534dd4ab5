"""Shapes of AutoGen component interop (GET .../component/, POST .../import/), for the OpenAPI schema."""
from rest_framework import serializers


class ComponentSerializer(serializers.Serializer):
    """AgentChat component JSON, as `dump_component()` writes it and `load_component()` reads it."""

    provider = serializers.CharField(help_text="The AgentChat class, e.g. autogen_agentchat.agents.AssistantAgent.")
    component_type = serializers.CharField(help_text="agent, team, model, tool, termination, ...")
    version = serializers.IntegerField()
    component_version = serializers.IntegerField()
    description = serializers.CharField(allow_blank=True)
    label = serializers.CharField()
    config = serializers.DictField(help_text="The class's configuration; model keys are never included.")


class ComponentImportSerializer(serializers.Serializer):
    component = serializers.DictField(required=False, help_text=(
        "An AgentChat component (dump_component JSON). Instead of {component}, the body may be an AutoGen Studio "
        "gallery file ({id, name, components: {agents, teams, models, tools, terminations}}): every agent "
        "(POST /api/agents/import/) or team (POST /api/teams/import/) in it is imported."))


class _Created(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()


class _Renamed(serializers.Serializer):
    kind = serializers.ChoiceField(choices=["model", "agent", "team"])  # tools are never renamed: their name is the function's
    wanted = serializers.CharField(allow_blank=True)
    name = serializers.CharField()


class _Ignored(serializers.Serializer):
    path = serializers.CharField(help_text="Where in the document, e.g. component.config.participants[0].config.max_tool_iterations")
    reason = serializers.CharField()


class ComponentImportResultSerializer(serializers.Serializer):
    models = _Created(many=True, help_text="Model configurations created (an identical existing one is reused).")
    agents = _Created(many=True)
    teams = _Created(many=True)
    tools = _Created(many=True, help_text=(
        "Customer tools created from the document's FunctionTools (their source runs only in the task's sandbox); "
        "a FunctionTool with the same function as an existing tool of the customer uses it, one with another "
        "function under that name is refused; one named like a built-in tool gets the built-in."))
    renamed = _Renamed(many=True, help_text="Names already in use got a numeric suffix.")
    ignored = _Ignored(many=True, help_text="Accepted fields the platform decides itself (never dropped silently).")
