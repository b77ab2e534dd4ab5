"""WebSocket streams under load: many clients following running tasks on /ws/tasks/{id}/.

The bench creates a customer and TASKS running tasks, starts a daphne on a free port (or uses --url),
connects CLIENTS WebSocket clients spread over the tasks (each sends {"after": 0}), then appends
EVENTS message events to every task through tasks.services.task_events_append, the way workers do,
at RATE events per second in total, and finishes the tasks. Every client must receive every seq of
its task exactly once, in order, then the final status and a normal close. Latency is from the
event's write (a timestamp in its content, taken just before the transaction) to its arrival.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench REDIS_URL=redis://127.0.0.1:6379/5 \
        .venv/bin/python bench/bench_ws.py --clients 200 --tasks 20 --events 50 --rate 400

With no DATABASE_URL / REDIS_URL it uses the embedded defaults (SQLite under var/, embedded Redis).
"""
import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "autogen_platform.settings.dev")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402

FINISHED = {"succeeded", "failed", "cancelled", "timed_out"}


def percentile(values, p):
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


def setup_rows(tasks: int):
    """A bench customer with `tasks` running tasks; returns (customer, token, [task ids])."""
    from accounts.models import Customer, Membership
    from agents.models import Agent, ModelConfig
    from django.contrib.auth import get_user_model
    from rest_framework_simplejwt.tokens import RefreshToken

    from tasks.models import Task, Thread
    from tasks.services import task_events_append

    name = f"bench-ws-{os.getpid()}-{int(time.time())}"
    customer = Customer.objects.create(name=name, max_concurrent_tasks=tasks + 10)
    user = get_user_model().objects.create_user(username=name, password=None)
    Membership.objects.create(user=user, customer=customer, role="owner")
    model = ModelConfig.objects.create(customer=customer, name="replay", provider="replay", responses=["."])
    agent = Agent.objects.create(customer=customer, name="bench", model=model)
    ids = []
    for _ in range(tasks):
        thread = Thread.objects.create(customer=customer, agent=agent)
        task = Task.objects.create(customer=customer, agent=agent, thread=thread, input="bench", status="running")
        task_events_append(task_id=task.pk, events=[{"type": "status", "content": {"status": "running"}}])
        ids.append(task.pk)
    refresh = RefreshToken.for_user(user)
    refresh["scope"] = "customer"
    return customer, str(refresh.access_token), ids


def cleanup(customer):
    from agents.models import Agent
    from django.contrib.auth import get_user_model

    from tasks.models import Task

    users = list(customer.memberships.values_list("user_id", flat=True))
    Task.objects.filter(customer=customer).delete()
    Agent.objects.filter(customer=customer).delete()
    customer.delete()
    get_user_model().objects.filter(pk__in=users).delete()


def write_events(task_ids, events_per_task, interval, errors):
    """One writer thread: for each round, one message event per task, then `interval` of sleep."""
    from tasks.services import task_events_append

    try:
        for i in range(events_per_task):
            started = time.monotonic()
            for task_id in task_ids:
                task_events_append(
                    task_id=task_id,
                    events=[{"type": "message", "source": "bench", "content": {"text": f"event {i}", "t": time.time()}}],
                )
            time.sleep(max(0.0, interval - (time.monotonic() - started)))
    except Exception as exc:  # noqa: BLE001 - reported in the summary
        errors.append(repr(exc))
    finally:
        connection.close()


def writer_process(task_ids, events_per_task, interval):
    """A forked writer: the fork happened on a thread that runs an event loop, so write from a fresh one."""
    errors = []
    thread = threading.Thread(target=write_events, args=(task_ids, events_per_task, interval, errors))
    thread.start()
    thread.join()
    os._exit(1 if errors else 0)


async def follow(url, results, ready, index):
    """One client, as the console behaves: send {"after": last seq}; on an abnormal close reconnect and
    resume from the last seq it has; stop at the server's normal close after the final status."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed, InvalidHandshake

    record = {"seqs": [], "latencies": [], "status": None, "close_code": None, "error": None, "reconnects": 0}
    results[index] = record
    announced = False
    for attempt in range(20):
        try:
            async with connect(url, open_timeout=30, max_queue=None, ping_interval=None) as ws:
                await ws.send(json.dumps({"after": record["seqs"][-1] if record["seqs"] else 0}))
                async for raw in ws:
                    now = time.time()
                    frame = json.loads(raw)
                    if frame["type"] == "event":
                        event = frame["event"]
                        record["seqs"].append(event["seq"])
                        sent_at = (event.get("content") or {}).get("t")
                        if sent_at:
                            record["latencies"].append(now - sent_at)
                    elif frame["type"] == "status":
                        record["status"] = frame["status"]
                        if not announced:
                            announced = True
                            ready.release()
                record["close_code"] = ws.close_code
            if record["close_code"] == 1000:
                break
        except (ConnectionClosed, InvalidHandshake, OSError, asyncio.TimeoutError) as exc:
            record["error"] = repr(exc)
            if os.environ.get("BENCH_DEBUG"):
                print(f"{time.strftime('%H:%M:%S')} client {index} attempt {attempt}: {exc!r}", file=sys.stderr)
        record["reconnects"] += 1
        await asyncio.sleep(min(2.0, 0.1 * 2**attempt))
    else:
        if not announced:
            ready.release()
        return
    record["error"] = None  # it got there in the end


async def run(args, token, task_ids, base_ws):
    from tasks.models import TaskEvent
    from tasks.services import task_finish

    results = [None] * args.clients
    ready = asyncio.Semaphore(0)
    connect_started = time.monotonic()
    clients = []
    for i in range(args.clients):
        task_id = task_ids[i % len(task_ids)]
        url = f"{base_ws}/ws/tasks/{task_id}/?token={token}"
        clients.append(asyncio.create_task(follow(url, results, ready, i)))
        await asyncio.sleep(1.0 / args.ramp)
    for _ in range(args.clients):
        await asyncio.wait_for(ready.acquire(), 120)
    connect_seconds = time.monotonic() - connect_started

    # Write: writer threads share the tasks; together they produce about `rate` events per second.
    # Writers are processes of their own, as workers are: they do not share this process's GIL with
    # the clients, whose receive times are the measurement.
    writers = min(args.writers, len(task_ids))
    slices = [task_ids[i::writers] for i in range(writers)]
    interval = len(task_ids) / args.rate
    write_started = time.monotonic()
    fork = multiprocessing.get_context("fork")
    processes = [fork.Process(target=writer_process, args=(chunk, args.events, interval)) for chunk in slices]
    for process in processes:
        process.start()
    await asyncio.get_running_loop().run_in_executor(None, lambda: [p.join() for p in processes])
    write_seconds = time.monotonic() - write_started
    errors = [p.exitcode for p in processes if p.exitcode != 0]

    def finish_all():
        try:
            for task_id in task_ids:
                task_finish(task_id=task_id, status="succeeded", result={"text": "bench"})
            return {
                task_id: list(TaskEvent.objects.filter(task_id=task_id).order_by("seq").values_list("seq", flat=True))
                for task_id in task_ids
            }
        finally:
            connection.close()

    stored = await asyncio.get_running_loop().run_in_executor(None, finish_all)
    await asyncio.wait_for(asyncio.gather(*clients), 120)

    expected = delivered = lost = duplicated = out_of_order = bad_close = failed = reconnects = 0
    latencies = []
    for i, record in enumerate(results):
        want = stored[task_ids[i % len(task_ids)]]
        got = record["seqs"]
        expected += len(want)
        delivered += len(got)
        lost += len(set(want) - set(got))
        duplicated += len(got) - len(set(got))
        out_of_order += int(got != sorted(got))
        bad_close += int(record["close_code"] != 1000 or record["status"] != "succeeded")
        failed += int(record["error"] is not None)
        reconnects += record["reconnects"]
        latencies.extend(record["latencies"])
    sample_errors = sorted({r["error"] for r in results if r["error"]})[:3]
    for error in sample_errors:
        print("client error:", error, file=sys.stderr)
    return {
        "clients": args.clients,
        "tasks": len(task_ids),
        "events written": args.events * len(task_ids),
        "write rate (ev/s)": round(args.events * len(task_ids) / write_seconds, 1),
        "connect all (s)": round(connect_seconds, 2),
        "deliveries expected": expected,
        "deliveries": delivered,
        "lost": lost,
        "duplicated": duplicated,
        "out of order clients": out_of_order,
        "clients without final status/1000": bad_close,
        "clients that never finished": failed,
        "reconnects (resumed with after)": reconnects,
        "writer errors": len(errors),
        "latency p50 (ms)": round(percentile(latencies, 50) * 1000, 1),
        "latency p95 (ms)": round(percentile(latencies, 95) * 1000, 1),
        "latency p99 (ms)": round(percentile(latencies, 99) * 1000, 1),
        "latency max (ms)": round(max(latencies) * 1000, 1) if latencies else float("nan"),
        "latency mean (ms)": round(statistics.fmean(latencies) * 1000, 1) if latencies else float("nan"),
        "live deliveries/s": round(len(latencies) / write_seconds, 1),
    }


def print_table(rows: dict):
    width = max(len(k) for k in rows)
    print(f"{'metric'.ljust(width)} | value")
    print(f"{'-' * width}-|-------")
    for key, value in rows.items():
        print(f"{key.ljust(width)} | {value}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--events", type=int, default=50, help="message events per task")
    parser.add_argument("--rate", type=float, default=400.0, help="events written per second, all tasks together")
    parser.add_argument("--writers", type=int, default=4, help="writer threads (each its own DB connection)")
    parser.add_argument("--ramp", type=float, default=50.0, help="new client connections per second")
    parser.add_argument("--url", default=None, help="ws://HOST:PORT of a running server (default: start daphne)")
    parser.add_argument("--keep", action="store_true", help="keep the bench customer's rows")
    args = parser.parse_args()

    redis_proc = None
    if settings.REDIS_EMBEDDED:
        from runtime import embedded_redis

        redis_proc = embedded_redis.start(settings.EMBEDDED_REDIS_SOCKET)
    call_command("migrate", verbosity=0)
    customer, token, task_ids = setup_rows(args.tasks)
    connection.close()

    server = None
    try:
        if args.url:
            base_ws = args.url.rstrip("/")
        else:
            from tests.live_server import Daphne

            log_path = Path(settings.VAR_DIR) / "bench-daphne.log"
            log_path.unlink(missing_ok=True)
            server = Daphne(
                log_path=log_path,
                env={"DJANGO_SETTINGS_MODULE": os.environ["DJANGO_SETTINGS_MODULE"], "DATABASE_URL": settings.DATABASE_URL},
            ).start()
            base_ws = server.ws_url
        results = asyncio.run(run(args, token, task_ids, base_ws))
    finally:
        if server is not None:
            server.stop()
        if not args.keep:
            cleanup(customer)
        if redis_proc is not None:
            from runtime import embedded_redis

            embedded_redis.stop(redis_proc)
    print_table(results)
    ok = results["lost"] == 0 and results["duplicated"] == 0 and results["clients that never finished"] == 0
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
