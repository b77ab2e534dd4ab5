"""Teams of agents: ordered members, a group-chat mode (AgentChat's team classes) and termination conditions."""
from django.db import models
from django.db.models import Q

from accounts.models import Customer
from agents.models import Agent, ModelConfig


class Team(models.Model):
    class Mode(models.TextChoices):
        ROUND_ROBIN = "round_robin"
        SELECTOR = "selector"
        SWARM = "swarm"
        GRAPH = "graph"
        MAGENTIC_ONE = "magentic_one"

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="teams")
    name = models.CharField(max_length=100)
    mode = models.CharField(max_length=20, choices=Mode.choices, default=Mode.ROUND_ROBIN)
    selector_model = models.ForeignKey(
        ModelConfig, null=True, blank=True, on_delete=models.PROTECT, related_name="selector_teams"
    )
    orchestrator_model = models.ForeignKey(
        ModelConfig, null=True, blank=True, on_delete=models.PROTECT, related_name="orchestrator_teams"
    )
    # Conditions (any of which ends the run), or {"any": [...]} / {"all": [...]}: see teams.conditions.
    termination = models.JSONField(default=dict, blank=True)
    # Graph mode: {"edges": [{"source": agent id, "target": agent id, "condition": text, "activation": all|any}]}.
    graph = models.JSONField(default=dict, blank=True)
    agents = models.ManyToManyField(Agent, through="TeamMember", related_name="teams")
    # Every change to the behaviour (all but the name) makes a new immutable TeamVersion, as agents do.
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["customer", "name"], name="team_name_unique_per_customer"),
            models.CheckConstraint(
                condition=Q(mode__in=["round_robin", "selector", "swarm", "graph", "magentic_one"]), name="team_mode_valid"
            ),
            models.CheckConstraint(
                condition=~Q(mode="selector") | Q(selector_model__isnull=False), name="team_selector_has_model"
            ),
            models.CheckConstraint(
                condition=~Q(mode="magentic_one") | Q(orchestrator_model__isnull=False),
                name="team_magentic_one_has_model",
            ),
            models.CheckConstraint(condition=Q(version__gte=1), name="team_version_positive"),
        ]

    def __str__(self):
        return self.name

    def member_ids(self) -> list[int]:
        return list(self.members.order_by("position").values_list("agent_id", flat=True))

    def behaviour(self) -> dict:
        """The snapshot stored in TeamVersion: members (agent ids, in order), mode, its models, termination, graph."""
        return {
            "members": self.member_ids(),
            "mode": self.mode,
            "selector_model": self.selector_model_id,
            "orchestrator_model": self.orchestrator_model_id,
            "termination": dict(self.termination or {}),
            "graph": dict(self.graph or {}),
        }


class TeamVersion(models.Model):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField()
    snapshot = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.CharField(max_length=150, blank=True, default="")

    class Meta:
        ordering = ["-version"]
        constraints = [
            models.UniqueConstraint(fields=["team", "version"], name="teamversion_unique"),
            models.CheckConstraint(condition=Q(version__gte=1), name="teamversion_positive"),
        ]

    def __str__(self):
        return f"{self.team} v{self.version}"


class TeamMember(models.Model):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="members")
    agent = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="memberships")
    position = models.PositiveIntegerField()

    class Meta:
        ordering = ["position"]
        constraints = [
            models.UniqueConstraint(fields=["team", "position"], name="teammember_position_unique"),
            models.UniqueConstraint(fields=["team", "agent"], name="teammember_agent_unique"),
        ]

    def __str__(self):
        return f"{self.team} #{self.position + 1}: {self.agent}"
