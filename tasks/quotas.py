"""The customer's quotas on starting tasks (tasks a day, tokens a month) and the tokens left to a running
task. They read the per-day usage counters (accounts.CustomerUsage, kept by every write of a task's existence
or tokens_used: accounts.services.customer_usage_add), never the tasks table, so each check costs the same
however many tasks the customer ever had. They live in tasks, the layer that creates and runs tasks; accounts,
below, holds the quotas' values on Customer and the counters."""
from datetime import timedelta

from django.db import connections
from django.db.models import BigIntegerField, OuterRef, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from accounts.models import Customer, CustomerUsage
from autogen_platform.errors import QuotaExceeded
from autogen_platform.sql import Names


def quota_check_task_create(customer: Customer) -> None:
    """Daily task count and monthly token budget. Called inside task_create's transaction, which then counts
    the task it creates (customer_usage_add): one query here, whatever the customer's history."""
    now = timezone.now()
    today, month_start = now.date(), now.date().replace(day=1)
    # Serialize concurrent creations of one customer so the last slot is given once.
    # The locked row's quotas are the current ones (an admin may have just changed them).
    # FOR NO KEY UPDATE, not FOR UPDATE: on PostgreSQL a FOR UPDATE lock on the customer also blocks every
    # foreign-key check of a row naming it (FOR KEY SHARE: a stream notice, a usage counter's first row of
    # the day) that another transaction makes while it holds the customer's stream or usage row, and the two
    # wait on each other (a deadlock seen in the suite). These locks only serialize each other, which NO KEY
    # UPDATE still does; the customer's key never changes.
    row = _locked_quotas(customer.pk, today, month_start)
    if row is None:  # the customer is gone: what the caller holds is all there is
        per_day, budget, today_tasks, tokens = customer.max_tasks_per_day, customer.monthly_token_budget, 0, 0
    else:
        per_day, budget, today_tasks, tokens = row
    if (today_tasks or 0) >= per_day:
        day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        retry = int((day_start + timedelta(days=1) - now).total_seconds()) + 1
        raise QuotaExceeded(
            f"Daily task limit of {per_day} reached",
            details={"quota": "max_tasks_per_day", "limit": per_day},
            headers={"Retry-After": str(retry)},
        )
    tokens = int(tokens or 0)
    if tokens >= budget:
        raise QuotaExceeded(
            f"Monthly token budget of {budget} used up",
            details={"quota": "monthly_token_budget", "limit": budget, "used": tokens},
            headers={"Retry-After": str(int((_next_month_start(now) - now).total_seconds()) + 1)},
        )


def _locked_quotas(customer_id: int, today, month_start):
    """(max_tasks_per_day, monthly_token_budget, tasks today, tokens this month) with the customer's row locked,
    or None. Written out: it runs at every task's creation, and the ORM spent longer building the locked read and
    the filtered aggregate than the database took to answer them. Two statements, not one: on PostgreSQL a
    statement that waited for the lock still reads with the snapshot it started with, and would miss the
    counts of the creation it waited for."""
    connection = connections[Customer.objects.db]
    n = Names(connection)
    col = n.col
    lock = " FOR NO KEY UPDATE" if connection.features.has_select_for_no_key_update else ""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {col(Customer, 'max_tasks_per_day')}, {col(Customer, 'monthly_token_budget')} "
            f"FROM {n.table(Customer)} WHERE {col(Customer, 'id')} = %s{lock}",
            [customer_id],
        )
        quotas = cursor.fetchone()
        if quotas is None:
            return None
        day, tasks, tokens = col(CustomerUsage, "day"), col(CustomerUsage, "tasks"), col(CustomerUsage, "tokens")
        cursor.execute(
            f"SELECT SUM(CASE WHEN {day} = %s THEN {tasks} END), SUM({tokens}) FROM {n.table(CustomerUsage)} "
            f"WHERE {col(CustomerUsage, 'customer')} = %s AND {day} >= %s",
            [connection.ops.adapt_datefield_value(today), customer_id, connection.ops.adapt_datefield_value(month_start)],
        )
        return (*quotas, *cursor.fetchone())


def _next_month_start(now):
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return (month_start + timedelta(days=32)).replace(day=1)


def customer_tokens_this_month(customer: Customer) -> int:
    month_start = timezone.now().date().replace(day=1)
    used = CustomerUsage.objects.filter(customer=customer, day__gte=month_start).aggregate(n=Sum("tokens"))["n"]
    return int(used or 0)


def customer_month_tokens(customer):
    """The tokens the customer used this month, as an expression (customer: its id, or an OuterRef to it)."""
    month_start = timezone.now().date().replace(day=1)
    used = (CustomerUsage.objects.filter(customer_id=customer, day__gte=month_start).order_by()
            .values("customer_id").annotate(n=Sum("tokens")).values("n"))
    return Coalesce(Subquery(used), Value(0), output_field=BigIntegerField())


def customer_tokens_left(customer_id: int) -> int:
    """What is left of the customer's monthly token budget (0 when it is gone): one query."""
    row = (Customer.objects.filter(pk=customer_id).annotate(used=customer_month_tokens(OuterRef("pk")))
           .values_list("monthly_token_budget", "used").first())
    return row[0] - row[1] if row else 0
