"""tasks' answers to what the apps below it announce or ask (accounts.signals, agents.signals,
teams.signals), connected in TasksConfig.ready(): those apps sit below tasks and may not import it."""
from autogen_platform.errors import Conflict

from .models import Task
from .selectors import agent_tasks_in_flight, team_tasks_in_flight
from .services import task_finish_many, task_request_stop, task_requeue


def on_customer_deleted(sender, *, customer, **kwargs):
    """customer_delete: queued and waiting tasks end cancelled, running ones are asked to stop (their
    sandboxes are killed when the deletion commits: accounts.services.customer_delete)."""
    error = {"code": "cancelled", "message": "The customer was deleted"}
    unstarted = []
    for task in Task.objects.filter(customer=customer, status__in=(Task.Status.QUEUED, Task.Status.RUNNING,
                                                                   Task.Status.INPUT_REQUIRED)):
        if task.status == Task.Status.RUNNING:
            task_request_stop(task=task, reason="cancelled")
        else:
            unstarted.append((task.pk, {"status": Task.Status.CANCELLED, "error": error}))
    task_finish_many(unstarted)


def on_agent_tasks_stop(sender, *, agent, reason: str, **kwargs) -> dict:
    """Asks the workers of the agent's running tasks to stop them with `reason`. Queued tasks are
    cancelled on a stop, and moved to the agent's current version on a restart."""
    cancelled, requeued, stopping = [], [], []
    for task_id in list(agent_tasks_in_flight(agent).values_list("id", flat=True)):
        # The row lock keeps a worker from taking a queued task between our look and our write.
        task = Task.objects.select_for_update().filter(pk=task_id).first()
        if task is None or task.is_finished:
            continue
        if task.status == Task.Status.INPUT_REQUIRED and reason == "restart":
            continue  # it holds nothing; answered, it runs the version it started on
        if task.status == Task.Status.RUNNING:
            task_request_stop(task=task, reason=reason)
            stopping.append(task.pk)
        elif reason == "restart":
            task_requeue(task_id=task.pk)  # still queued, now with the current version's spec
            requeued.append(task.pk)
        else:
            cancelled.append(task.pk)
    # the queued (and waiting) ones end together: one transaction's writes, not six queries each
    ended = task_finish_many([(task_id, {"status": Task.Status.CANCELLED,
                                         "error": {"code": "cancelled", "message": "agent stopped"}})
                              for task_id in cancelled])
    cancelled = [task_id for task_id, done in zip(cancelled, ended) if done]
    return {"cancelled": cancelled, "requeued": requeued, "stopping": stopping}


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
