"""What tasks announces to the apps above it (integrations: webhooks and schedules), so that tasks never
imports them (docs/architecture.md, "Layers"). Django signals are sent synchronously: a receiver runs
inside the sender's transaction, its writes commit or roll back with it, and its exceptions reach the sender.
"""
from django.dispatch import Signal

# A batch of tasks ended (task_finish_many: every way a task ends). Keyword arguments: ends, a list of
# (task_id, customer_id, event) with event "task.<status>"; customers, the customers' ids; task_webhooks,
# {task_id: the task's own webhook id or None}. integrations writes the webhook deliveries.
tasks_ended = Signal()

# A task reached a state webhooks are told of, other than its end. Keyword arguments: task, event
# ("task.input_required").
task_event = Signal()

# One reaper pass is under way, after the tasks' own sweeps. Receivers run their own sweeps (integrations:
# deliveries due for a retry) and may raise: the reaper logs the failure and goes on.
reaper_sweep = Signal()

# A reaper process starts (not with --once). Keyword argument: stopping, a threading.Event set when it
# stops. Receivers may start a loop of their own that must not wait for the reaper's passes (integrations:
# the scheduler, which fires schedules at their time) in a thread, and return the thread: the reaper
# waits for it on exit.
reaper_started = Signal()
