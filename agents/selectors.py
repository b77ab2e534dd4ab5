"""Reads of model configurations and agents, scoped to the caller's customer."""
from django.db.models import Q

from accounts.selectors import membership_for_user, scoped_get

from .models import Agent, AgentVersion, ModelConfig, Tool


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


def agent_tasks_in_flight(agent: Agent):
    """Unfinished tasks the agent takes part in (queued, running, waiting for input): its own, and those of
    teams it is a member of."""
    from tasks.models import Task

    return (
        Task.objects.filter(status__in=[Task.Status.QUEUED, Task.Status.RUNNING, Task.Status.INPUT_REQUIRED])
        .filter(Q(agent=agent) | Q(team__members__agent=agent))
        .distinct()
        .order_by("created_at", "id")
    )


def agent_processes(agent: Agent) -> list[dict]:
    """The sandboxes running for the agent now: [{task, pid, cpu_seconds, memory_mb, started_at}]."""
    from runtime.services import sandbox_processes
    from tasks.models import Task

    running = agent_tasks_in_flight(agent).filter(status=Task.Status.RUNNING)
    return sandbox_processes(list(running.values_list("id", flat=True)))


def tool_list_for_user(user):
    return Tool.objects.filter(customer_id=membership_for_user(user).customer_id)


def tool_get_for_user(user, pk) -> Tool:
    return scoped_get(Tool.objects.all(), user, pk, what="Tool")


def customer_tool_names(customer_id: int) -> set[str]:
    return set(Tool.objects.filter(customer_id=customer_id).values_list("name", flat=True))
