"""What accounts announces to the apps above it, so that accounts never imports them (docs/architecture.md,
"Layers"). Sent synchronously inside the sender's transaction: a receiver's writes commit or roll back with it.
"""
from django.dispatch import Signal

# customer_delete marked a customer deleted (inside its transaction, row locked). Keyword argument: customer.
# tasks ends the customer's queued and waiting tasks and asks its running ones to stop.
customer_deleted = Signal()
