"""The purge of deleted customers: what they still hold (tasks with their events, threads, teams, agents,
model configurations, users) and then the customer row. It lives in tasks, the lowest app that sees all of
these; accounts.services.customer_delete only marks the customer deleted."""
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from accounts.models import Customer
from agents.models import Agent, ModelConfig
from core.services import audit_record
from teams.models import Team

from .models import Task, TaskEvent, Thread


def customer_purge_deleted(*, batch: int = 500) -> int:
    """Hard-delete what customers deleted more than CUSTOMER_RETENTION_DAYS ago still hold, `batch`
    tasks (with their events) per call, and each customer once it holds no task. Returns the tasks
    deleted. The reaper calls it on every sweep, so a large customer goes in many short transactions."""
    cutoff = timezone.now() - timedelta(days=settings.CUSTOMER_RETENTION_DAYS)
    deleted = 0
    for customer_id, name in Customer.objects.filter(deleted_at__lt=cutoff).values_list("pk", "name"):
        with transaction.atomic():
            ids = list(Task.objects.filter(customer_id=customer_id).order_by("pk").values_list("pk", flat=True)[:batch])
            if ids:
                TaskEvent.objects.filter(task_id__in=ids).delete()
                Task.objects.filter(pk__in=ids).delete()
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
