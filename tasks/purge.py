"""The purge of deleted customers: what they still hold (tasks with their events, threads, teams, agents,
model configurations, users) and then the customer row. It lives in tasks, the lowest app that sees all of
these; accounts.services.customer_delete only marks the customer deleted."""
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from accounts.models import Customer, CustomerUsage
from accounts.services import customer_usage_add
from agents.models import Agent, ModelConfig
from core.services import audit_record
from teams.models import Team

from .models import Task, TaskEvent, Thread
from .services import task_usage_change


def customer_purge_deleted(*, batch: int = 500) -> int:
    """Hard-delete what customers deleted more than CUSTOMER_RETENTION_DAYS ago still hold, `batch`
    tasks (with their events) per call, and each customer once it holds no task. Returns the tasks
    deleted. The reaper calls it on every sweep, so a large customer goes in many short transactions."""
    cutoff = timezone.now() - timedelta(days=settings.CUSTOMER_RETENTION_DAYS)
    deleted = 0
    for customer_id, name in Customer.objects.filter(deleted_at__lt=cutoff).values_list("pk", "name"):
        with transaction.atomic():
            doomed = list(Task.objects.filter(customer_id=customer_id).order_by("pk")
                          .only("pk", "customer_id", "created_at", "status", "tokens_used")[:batch])
            ids = [task.pk for task in doomed]
            if ids:
                TaskEvent.objects.filter(task_id__in=ids).delete()
                Task.objects.filter(pk__in=ids).delete()
                # the usage counters stay the sums over the tasks (the admin statistics read them)
                usage: dict = {}
                for task in doomed:
                    task_usage_change(usage, task, tasks=-1, tokens=-task.tokens_used,
                                      **({task.status: -1} if task.status in CustomerUsage.ENDED else {}))
                customer_usage_add(usage)
                deleted += len(ids)
                if len(ids) == batch:
                    return deleted
            # Dependents first, in the order their PROTECT foreign keys (team member -> agent -> model) need.
            Thread.objects.filter(customer_id=customer_id).delete()
            Team.objects.filter(customer_id=customer_id).delete()
            Agent.objects.filter(customer_id=customer_id).delete()
            ModelConfig.objects.filter(customer_id=customer_id).delete()
            get_user_model().objects.filter(membership__customer_id=customer_id, is_staff=False).delete()
            Customer.objects.filter(pk=customer_id).delete()
            audit_record(actor="system", action="customer.purge", target=f"customer:{customer_id}",
                         details={"name": name, "retention_days": settings.CUSTOMER_RETENTION_DAYS})
    return deleted
