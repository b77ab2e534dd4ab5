"""Reads of model configurations and agents, scoped to the caller's customer."""
from accounts.selectors import membership_for_user, scoped_get
from runtime.services import sandbox_processes

from . import signals
from .models import Agent, AgentVersion, ModelConfig


def model_config_list_for_user(user):
    return ModelConfig.objects.filter(customer_id=membership_for_user(user).customer_id)


def model_config_get_for_user(user, pk) -> ModelConfig:
    return scoped_get(ModelConfig.objects.all(), user, pk, what="Model configuration")


def agent_list_for_user(user):
    return Agent.objects.filter(customer_id=membership_for_user(user).customer_id)


def agent_get_for_user(user, pk) -> Agent:
    return scoped_get(Agent.objects.all(), user, pk, what="Agent")


def agent_version_list(agent: Agent):
    return AgentVersion.objects.filter(agent=agent).order_by("-version")


def agent_processes(agent: Agent) -> list[dict]:
    """The sandboxes running for the agent now: [{task, pid, cpu_seconds, memory_mb, started_at}]."""
    running = [task_id for _, ids in signals.agent_running_tasks.send(sender=Agent, agent=agent) for task_id in ids]
    return sandbox_processes(running)
