"""The cost of observability: a /metrics scrape as the tasks table grows, and the recording calls a task makes.

Prints, for each size of the tasks table (finished tasks, plus a few queued and running):
- a scrape of /metrics through the Django app: median wall ms, median CPU ms of this process (the
  shared machine's load inflates the first, hardly the second; the database server's own time is in
  neither but in the wall time and the EXPLAIN ANALYZE plans printed at the end) and database queries;
- for comparison, the queries the previous collector ran on every scrape (aggregates over the whole
  tasks table: counts by status, the duration histogram, token and kill sums): median ms.
- the admin statistics (`adminpanel.selectors.platform_stats`, what GET /api/admin/stats/ answers: the
  unfinished tasks counted on their index, the finished ones summed from the usage counters) and, for
  comparison, the whole-table count by status they ran before: median ms.
Then the same scrape and statistics with --customers customers that used tokens (usage rows for each day of
this month and the 60 days before: the token-budget figure and the statistics read the usage counters, their
cost follows the customers and days).
Then the recording functions' cost per call (what every task pays: started, finished, events),
in a single process and in multiprocess mode (PROMETHEUS_MULTIPROC_DIR, as runplatform runs).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench .venv/bin/python bench/bench_metrics.py [--sizes 10,100000]

The bench migrates the database, creates its own customer and deletes it (and its tasks) at the end.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "autogen_platform.settings.dev")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection, reset_queries  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.utils import timezone  # noqa: E402

RECORDING = """
import os, sys, time
sys.path.insert(0, {root!r})
from autogen_platform import metrics
n = {n}
start, cpu = time.perf_counter(), time.process_time()
for _ in range(n):
    metrics.task_started(queue_wait=0.5)
    metrics.events_written(4)
    metrics.task_finished("succeeded", None, 1.5)
print((time.perf_counter() - start) / n * 1e6, (time.process_time() - cpu) / n * 1e6)
"""


def median_ms(fn, runs: int) -> float:
    return median_wall_cpu_ms(fn, runs)[0]


def median_wall_cpu_ms(fn, runs: int) -> tuple[float, float]:
    walls, cpus = [], []
    for _ in range(runs):
        start, cpu = time.perf_counter(), time.process_time()
        fn()
        walls.append((time.perf_counter() - start) * 1000)
        cpus.append((time.process_time() - cpu) * 1000)
    return statistics.median(walls), statistics.median(cpus)


def grow_customers(prefix: str, n: int) -> None:
    """n customers, each with usage rows for every day of this month so far and the 60 days before."""
    from datetime import timedelta

    from accounts.models import Customer, CustomerUsage

    today = timezone.now().date()
    days = [today - timedelta(days=i) for i in range((today - today.replace(day=1)).days + 61)]
    customers = Customer.objects.bulk_create([Customer(name=f"{prefix}-{i}", monthly_token_budget=1_000_000)
                                              for i in range(n)])
    CustomerUsage.objects.bulk_create([CustomerUsage(customer=c, day=d, tasks=1, tokens=1000 + i)
                                       for i, c in enumerate(customers) for d in days], batch_size=5000)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("ANALYZE accounts_customerusage")
            cursor.execute("ANALYZE accounts_customer")


def scrape_row(client, label, runs: int) -> list[str]:
    client.get("/metrics")  # warm
    reset_queries()  # a request empties the query log (request_started): start the capture from an empty one
    with CaptureQueriesContext(connection) as queries:
        client.get("/metrics")
    wall, cpu = median_wall_cpu_ms(lambda: client.get("/metrics"), runs)
    print(f"{label:>24} | {wall:>12.2f} | {cpu:>11.2f} | {len(queries.captured_queries):>7}", end="")
    return [q["sql"] for q in queries.captured_queries]  # now: DEBUG's query log rotates


def old_collector_queries() -> None:
    """What tasks/metrics.py ran on every scrape before: aggregates over the whole table."""
    from datetime import timedelta

    from django.db.models import Count, DurationField, ExpressionWrapper, F, Q, Sum

    from tasks.models import Task

    list(Task.objects.values_list("status").annotate(n=Count("id")))
    finished = Task.objects.filter(status__in=Task.FINISHED, started_at__isnull=False, finished_at__isnull=False)
    d = ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField())
    buckets = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
    finished.annotate(d=d).aggregate(
        total=Count("id"), s=Sum("d"), **{f"b{i}": Count("id", filter=Q(d__lte=timedelta(seconds=b))) for i, b in enumerate(buckets)}
    )
    Task.objects.aggregate(n=Sum("tokens_used"))
    list(Task.objects.filter(error__code__in=["timeout", "cancelled"]).values_list("error__code").annotate(n=Count("id")))


def grow(customer, agent, thread, total: int) -> None:
    from accounts.services import customer_usage_add
    from tasks.models import Task
    from tasks.services import task_usage_change

    missing = total - Task.objects.filter(customer=customer).count()
    now = timezone.now()
    while missing > 0:
        batch = min(missing, 5000)
        created = Task.objects.bulk_create([
            Task(customer=customer, agent=agent, thread=thread, input="x", status="succeeded",
                 started_at=now - timezone.timedelta(seconds=3), finished_at=now, tokens_used=10)
            for _ in range(batch)
        ])
        usage: dict = {}
        for task in created:  # the usage counters follow, as every write of a task keeps them
            task_usage_change(usage, task, tasks=1, tokens=10, succeeded=1)
        customer_usage_add(usage)
        missing -= batch
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("ANALYZE tasks_task")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10,1000,100000")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--customers", type=int, default=1000)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    call_command("migrate", verbosity=0)
    from django.conf import settings

    from django.db.models import Count

    from accounts.models import Customer
    from adminpanel.selectors import platform_stats
    from agents.models import Agent, ModelConfig
    from runtime import embedded_redis
    from tasks.models import Task, Thread
    from tests.api_support import make_agent

    redis_proc = embedded_redis.start(settings.EMBEDDED_REDIS_SOCKET) if settings.REDIS_EMBEDDED else None
    prefix = f"bench-metrics-{os.getpid()}"
    customer = Customer.objects.create(name=prefix)
    try:
        agent = make_agent(customer)
        thread = Thread.objects.create(customer=customer, agent=agent)
        client = Client()
        print(f"database: {connection.vendor}; {args.runs} scrapes per size; "
              f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
        print(f"{'':>24} | {'scrape wall ms':>12} | {'scrape CPU ms':>11} | {'queries':>7} | old collector queries ms"
              " | admin stats ms | whole-table status count ms")
        for size in sizes:
            grow(customer, agent, thread, size)
            scrape_sql = scrape_row(client, f"{size} finished tasks", args.runs)
            old = median_ms(old_collector_queries, max(3, args.runs // 4))
            stats = median_ms(platform_stats, args.runs)
            whole = median_ms(lambda: list(Task.objects.order_by().values_list("status").annotate(n=Count("id"))),
                              max(3, args.runs // 4))
            print(f" | {old:.2f} | {stats:.2f} | {whole:.2f}")
        if args.customers:
            grow_customers(prefix, args.customers)
            scrape_sql = scrape_row(client, f"+ {args.customers} customers", args.runs)
            print(f" | {'':>24} | {median_ms(platform_stats, args.runs):.2f}")
        if connection.vendor == "postgresql":
            for what, table in (("task count", '"tasks_task"'), ("webhook deliveries", '"integrations_webhookdelivery"'),
                                ("token budgets", '"accounts_customerusage"')):
                sql = next((q for q in scrape_sql if table in q), None)
                if sql is None:
                    continue
                with connection.cursor() as cursor:
                    cursor.execute("EXPLAIN ANALYZE " + sql)
                    print(f"\nplan of the scrape's {what} at the largest size:")
                    for (line,) in cursor.fetchall():
                        print("  " + line)
    finally:
        Task.objects.filter(customer=customer).delete()
        Agent.objects.filter(customer=customer).delete()
        ModelConfig.objects.filter(customer=customer).delete()
        customer.delete()
        Customer.objects.filter(name__startswith=prefix + "-").delete()
        embedded_redis.stop(redis_proc)

    n = 20000
    print(f"\nrecording a task's metrics (started, 4 events, finished), {n} times:")
    for label, extra in (("single process", {}), ("multiprocess", {"PROMETHEUS_MULTIPROC_DIR": tempfile.mkdtemp()})):
        env = {k: v for k, v in os.environ.items() if k not in ("PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir")}
        env.update(extra)
        out = subprocess.run([sys.executable, "-c", RECORDING.format(root=str(ROOT), n=n)], env=env,
                             capture_output=True, text=True, check=True)
        wall, cpu = (float(x) for x in out.stdout.split())
        print(f"  {label:<15} {wall:.1f} us per task (wall), {cpu:.1f} us CPU")


if __name__ == "__main__":
    main()
