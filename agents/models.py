"""Model configurations and agents, with an immutable snapshot for every behaviour version."""
from django.db import models
from django.db.models import Q

from accounts.models import Customer


class ModelConfig(models.Model):
    class Provider(models.TextChoices):
        OPENAI = "openai"
        REPLAY = "replay"

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="model_configs")
    name = models.CharField(max_length=100)
    provider = models.CharField(max_length=20, choices=Provider.choices)
    model = models.CharField(max_length=200, blank=True, default="")
    base_url = models.CharField(max_length=500, blank=True, default="")
    # Fernet token of the provider key (see accounts.crypto); never returned by the API.
    api_key_encrypted = models.TextField(blank=True, default="")
    model_info = models.JSONField(default=dict, blank=True)
    responses = models.JSONField(default=list, blank=True)
    # Optional prices per million tokens (the studio's cost figures); null: no cost shown.
    price_prompt_per_million = models.DecimalField(max_digits=12, decimal_places=4, null=True, blank=True)
    price_completion_per_million = models.DecimalField(max_digits=12, decimal_places=4, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["customer", "name"], name="modelconfig_name_unique_per_customer"),
            models.CheckConstraint(condition=Q(provider__in=["openai", "replay"]), name="modelconfig_provider_valid"),
        ]

    def __str__(self):
        return f"{self.name} ({self.provider})"

    @property
    def has_api_key(self) -> bool:
        return bool(self.api_key_encrypted)

    @property
    def has_prices(self) -> bool:
        return self.price_prompt_per_million is not None or self.price_completion_per_million is not None

    def cost(self, prompt_tokens: int, completion_tokens: int):
        """The price of these tokens (Decimal), or None when the configuration has no prices."""
        if not self.has_prices:
            return None
        from decimal import Decimal

        prompt = self.price_prompt_per_million or Decimal(0)
        completion = self.price_completion_per_million or Decimal(0)
        return (prompt * prompt_tokens + completion * completion_tokens) / Decimal(1_000_000)


class Agent(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active"
        STOPPED = "stopped"

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="agents")
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True, default="")
    system_message = models.TextField(blank=True, default="")
    model = models.ForeignKey(ModelConfig, on_delete=models.PROTECT, related_name="agents")
    tools = models.JSONField(default=list, blank=True)
    code_execution = models.BooleanField(default=False)
    limits = models.JSONField(default=dict, blank=True)
    # A person answers for this agent (a user proxy in a team; beside a single agent, asked after each reply).
    human_input = models.BooleanField(default=False)
    # Tool names (and "code_execution") that run only after a person approved the call.
    approval = models.JSONField(default=list, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["customer", "name"], name="agent_name_unique_per_customer"),
            models.CheckConstraint(condition=Q(status__in=["active", "stopped"]), name="agent_status_valid"),
            models.CheckConstraint(condition=Q(version__gte=1), name="agent_version_positive"),
        ]

    def __str__(self):
        return self.name

    def behaviour(self) -> dict:
        """The snapshot stored in AgentVersion: everything a task needs to rebuild this agent. A change to it makes
        a new version (agents.services.agent_update); name, description and status do not."""
        return {
            "system_message": self.system_message,
            "model": self.model_id,
            "tools": list(self.tools),
            "code_execution": self.code_execution,
            "limits": dict(self.limits),
            "human_input": self.human_input,
            "approval": list(self.approval or []),
        }


class AgentVersion(models.Model):
    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField()
    snapshot = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.CharField(max_length=150, blank=True, default="")

    class Meta:
        ordering = ["-version"]
        constraints = [
            models.UniqueConstraint(fields=["agent", "version"], name="agentversion_unique"),
            models.CheckConstraint(condition=Q(version__gte=1), name="agentversion_positive"),
        ]

    def __str__(self):
        return f"{self.agent} v{self.version}"
