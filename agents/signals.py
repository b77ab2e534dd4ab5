"""What agents asks of the apps above it, so that agents never imports them (docs/architecture.md, "Layers").
Sent synchronously inside the sender's transaction; receivers are connected in their apps' ready(), in
INSTALLED_APPS order (teams before tasks).
"""
from django.dispatch import Signal

# agent_stop / agent_restart: stop the agent's tasks with reason "cancelled" or "restart". Keyword arguments:
# agent, reason. tasks answers {"cancelled": [ids], "requeued": [ids], "stopping": [ids]}.
agent_tasks_stop = Signal()

# agent_delete, before the row goes. Keyword argument: agent. A receiver raises Conflict when the agent may
# not go: teams while it is a member of a team, tasks while it has unfinished tasks.
agent_deleting = Signal()

# agent_processes: which of the agent's tasks run now. Keyword argument: agent. tasks answers [task ids].
agent_running_tasks = Signal()
