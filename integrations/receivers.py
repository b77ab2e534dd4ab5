"""integrations' answers to what tasks announces (tasks.signals), connected in IntegrationsConfig.ready():
tasks sits below integrations and may not import it."""
from .scheduler import scheduler_start
from .services import deliveries_sweep, webhooks_task_event, webhooks_tasks_ended


def on_tasks_ended(sender, *, ends, customers, task_webhooks, **kwargs):
    webhooks_tasks_ended(ends, customers=customers, task_webhooks=task_webhooks)


def on_task_event(sender, *, task, event, **kwargs):
    webhooks_task_event(task=task, event=event)  # sent once this commits


def on_reaper_sweep(sender, **kwargs):
    deliveries_sweep()


def on_reaper_started(sender, *, stopping, **kwargs):
    return scheduler_start(stopping)  # schedules fire at their time, not at the reaper's next pass
