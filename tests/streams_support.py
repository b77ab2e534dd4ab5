"""Helpers for the live-stream tests: a task row to follow, and events written the way workers write them."""
import itertools

_names = itertools.count(1)


def make_task(customer, user=None, status="running"):
    """A task of a replay agent, in `status`, with the `status` events a real run would have stored."""
    from agents.models import Agent, ModelConfig
    from tasks.models import Task, Thread
    from tasks.services import task_events_append

    n = next(_names)
    model = ModelConfig.objects.create(customer=customer, name=f"replay-{n}", provider="replay", responses=["Hi"])
    agent = Agent.objects.create(customer=customer, name=f"agent-{n}", model=model)
    thread = Thread.objects.create(customer=customer, agent=agent)
    task = Task.objects.create(customer=customer, created_by=user, agent=agent, thread=thread, input="hello")
    task_events_append(task_id=task.pk, events=[{"type": "status", "content": {"status": "queued"}}])
    if status != "queued":
        Task.objects.filter(pk=task.pk).update(status="running")
        task_events_append(task_id=task.pk, events=[{"type": "status", "content": {"status": "running"}}])
    if status not in ("queued", "running"):
        from tasks.services import task_finish

        task_finish(task_id=task.pk, status=status, result={"text": "done"})
    task.refresh_from_db()
    return task


def append_messages(task_id, count, start=1, source="assistant"):
    """Append `count` message events one transaction each, as a worker does; returns their seqs."""
    from tasks.services import task_event_append

    return [
        task_event_append(task_id=task_id, type="message", source=source, content={"text": f"m{start + i}"})["seq"]
        for i in range(count)
    ]
