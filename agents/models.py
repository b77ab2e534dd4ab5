"""Model configurations and agents, with an immutable snapshot for every behaviour version."""
from django.db import models
from django.db.models import Q

from accounts.models import Customer
from runtime.tools import tool_names


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
            **self._tool_definitions(),
        }

    def _tool_definitions(self) -> dict:
        """{"tool_definitions": [...]} for the customer tools among `tools` (their definitions, in `tools`
        order); {} when the agent uses only built-in tools, so its snapshot is as it always was."""
        custom = [name for name in self.tools or [] if name not in tool_names()]
        if not custom or self.customer_id is None:
            return {}
        by_name = {t.name: t for t in Tool.objects.filter(customer_id=self.customer_id, name__in=custom)}
        return {"tool_definitions": [by_name[name].definition() for name in custom if name in by_name]}


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


class Tool(models.Model):
    """A customer's own tool the model may call. kind python: a Python function whose source runs only in a
    task's sandbox (the code runner, under the task's second uid); the platform parses it with `ast` and never
    runs it. kind http: an HTTP endpoint the worker (the broker side of the task's channel) calls, never the
    sandbox, on a host of the customer's allow-list (Customer.http_tool_hosts); its secret headers are stored
    encrypted and never leave the worker (runtime/httptools.py).

    Agents name it in `tools`; an agent's version snapshot holds the tool's definition (definition()), so
    editing the tool makes a new version of every agent that uses it, and a submitted task keeps the
    definition it was submitted with (agents.tools)."""

    class Kind(models.TextChoices):
        PYTHON = "python"
        HTTP = "http"

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="tools")
    name = models.CharField(max_length=64)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.PYTHON)
    description = models.TextField(blank=True, default="")
    # A JSON Schema of type object: the arguments the model passes (validated again in the sandbox per call).
    parameters = models.JSONField(default=dict, blank=True)
    source = models.TextField(blank=True, default="")  # python tools
    # http tools: the request. url may hold {placeholders} of arguments in its path and query (not its host);
    # the other arguments go as a JSON body ("body") or as query parameters ("query").
    method = models.CharField(max_length=10, blank=True, default="")
    url = models.CharField(max_length=2000, blank=True, default="")
    arguments_in = models.CharField(max_length=10, blank=True, default="")
    headers = models.JSONField(default=dict, blank=True)  # name -> value, shown
    # name -> Fernet token (accounts.crypto): write-only, never returned, read by the worker at each call only.
    secret_headers_encrypted = models.JSONField(default=dict, blank=True)
    # Wall-clock seconds one call may take in the sandbox; over it the call is killed and fails alone.
    timeout_seconds = models.PositiveIntegerField(default=30)
    # Bumped by every change of the definition (not by a rename alone).
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    # A change of definition() but its name changes what a task runs: every agent using the tool gets a new
    # version (agents.tools.tool_update).

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["customer", "name"], name="tool_name_unique_per_customer"),
            models.CheckConstraint(condition=Q(kind__in=["python", "http"]), name="tool_kind_valid"),
            models.CheckConstraint(condition=Q(version__gte=1), name="tool_version_positive"),
            models.CheckConstraint(condition=Q(timeout_seconds__gte=1), name="tool_timeout_positive"),
        ]

    def __str__(self):
        return self.name

    @property
    def secret_header_names(self) -> list[str]:
        return sorted(self.secret_headers_encrypted or {})

    def definition(self) -> dict:
        """What an agent's version (and so a task's frozen spec) holds of this tool: never a secret's value
        (an http tool's secret headers by name only; the worker reads their values at each call)."""
        if self.kind == self.Kind.HTTP:
            return {
                "name": self.name,
                "kind": self.kind,
                "description": self.description,
                "parameters": self.parameters,
                "method": self.method,
                "url": self.url,
                "arguments_in": self.arguments_in,
                "headers": dict(self.headers or {}),
                "secret_headers": self.secret_header_names,
                "timeout_seconds": self.timeout_seconds,
                "version": self.version,
            }
        return {
            "name": self.name,
            "kind": self.kind,
            "description": self.description,
            "parameters": self.parameters,
            "source": self.source,
            "timeout_seconds": self.timeout_seconds,
            "version": self.version,
        }
