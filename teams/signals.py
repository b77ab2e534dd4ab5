"""What teams asks of the apps above it, so that teams never imports them (docs/architecture.md, "Layers").
Sent synchronously inside the sender's transaction.
"""
from django.dispatch import Signal

# team_delete, before the row goes. Keyword argument: team. tasks raises Conflict while the team has
# unfinished tasks.
team_deleting = Signal()
