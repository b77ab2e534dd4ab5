"""integrations' answers to what tasks announces (tasks.signals), connected in IntegrationsConfig.ready():
tasks sits below integrations and may not import it."""
import logging

from .services import deliveries_sweep, schedules_fire_due, webhooks_task_event, webhooks_tasks_ended

reaper_logger = logging.getLogger("tasks.reaper")


def on_tasks_ended(sender, *, ends, customers, task_webhooks, **kwargs):
    webhooks_tasks_ended(ends, customers=customers, task_webhooks=task_webhooks)


def on_task_event(sender, *, task, event, **kwargs):
    webhooks_task_event(task=task, event=event)  # sent once this commits


def on_reaper_sweep(sender, **kwargs):
    fired = schedules_fire_due()
    if fired:
        reaper_logger.info("scheduler: started task(s) %s", fired)
    deliveries_sweep()
