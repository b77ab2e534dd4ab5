"""The customer's quotas on starting tasks: tasks a day and tokens a month. They count tasks, so they live
in tasks (accounts, below, holds the quotas' values on Customer)."""
from datetime import timedelta

from django.db.models import Sum
from django.utils import timezone

from accounts.models import Customer
from autogen_platform.errors import QuotaExceeded

from .models import Task


def quota_check_task_create(customer: Customer) -> None:
    """Daily task count and monthly token budget. Called inside task_create's transaction."""
    # Serialize concurrent creations of one customer so the last slot is given once.
    # The locked row's quotas are the current ones (an admin may have just changed them).
    customer = Customer.objects.select_for_update().filter(pk=customer.pk).first() or customer
    now = timezone.now()
    day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    today = Task.objects.filter(customer=customer, created_at__gte=day_start).count()
    if today >= customer.max_tasks_per_day:
        retry = int((day_start + timedelta(days=1) - now).total_seconds()) + 1
        raise QuotaExceeded(
            f"Daily task limit of {customer.max_tasks_per_day} reached",
            details={"quota": "max_tasks_per_day", "limit": customer.max_tasks_per_day},
            headers={"Retry-After": str(retry)},
        )
    used = customer_tokens_this_month(customer)
    if used >= customer.monthly_token_budget:
        raise QuotaExceeded(
            f"Monthly token budget of {customer.monthly_token_budget} used up",
            details={"quota": "monthly_token_budget", "limit": customer.monthly_token_budget, "used": used},
            headers={"Retry-After": str(int((_next_month_start(now) - now).total_seconds()) + 1)},
        )


def _next_month_start(now):
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return (month_start + timedelta(days=32)).replace(day=1)


def customer_tokens_this_month(customer: Customer) -> int:
    month_start = timezone.now().replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    used = Task.objects.filter(customer=customer, created_at__gte=month_start).aggregate(n=Sum("tokens_used"))["n"]
    return int(used or 0)
