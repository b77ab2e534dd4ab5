"""tasks' answers to what the apps below it announce or ask (accounts.signals, agents.signals,
teams.signals), connected in TasksConfig.ready(): those apps sit below tasks and may not import it."""
from autogen_platform.errors import Conflict
from runtime.outcomes import StopReason

from .models import Task
from .selectors import agent_tasks_in_flight, team_tasks_in_flight
from .services import tasks_stop


def on_customer_deleted(sender, *, customer, **kwargs):
    """customer_delete: the customer's unfinished tasks stop (tasks_stop: queued and waiting ones end
    cancelled, running ones are killed when the deletion commits)."""
    tasks_stop(customer_id=customer.pk, reason=StopReason.CANCELLED, message="The customer was deleted")


def on_agent_tasks_stop(sender, *, agent, reason: str, message: str, **kwargs) -> dict:
    """agent_stop / agent_restart: tasks_stop for the agent's scope (its own tasks and its teams')."""
    return tasks_stop(agent=agent, reason=reason, message=message)


def on_agent_deleting(sender, *, agent, **kwargs):
    in_flight = list(agent_tasks_in_flight(agent).values_list("id", flat=True))
    if in_flight:
        raise Conflict(f"Agent {agent.name!r} has queued or running tasks; stop it first",
                       details={"tasks": in_flight})


def on_agent_running_tasks(sender, *, agent, **kwargs) -> list[int]:
    return list(agent_tasks_in_flight(agent).filter(status=Task.Status.RUNNING).values_list("id", flat=True))


def on_team_deleting(sender, *, team, **kwargs):
    in_flight = list(team_tasks_in_flight(team).values_list("id", flat=True))
    if in_flight:
        raise Conflict(f"Team {team.name!r} has queued or running tasks", details={"tasks": in_flight})
