"""What one API request costs the web processes: CPU and wall time per request kind, one client, one at a time.

Boots `manage.py runplatform` on a fresh var dir with `make run`'s defaults (the same way bench_scale.py does:
embedded SQLite and Redis unless --postgres/--redis), signs in as a fresh customer and, for each request kind,
sends --warm-up requests, then --requests more one after another, and prints a table: the daphne processes'
CPU (user + system, psutil) per request, and the client's wall time per request.

    .venv/bin/python bench/bench_web.py                    # embedded defaults
    .venv/bin/python bench/bench_web.py --requests 500 --json /tmp/web.json

The kinds: GET /healthz (no auth, no database: the ASGI server's own cost), GET /api/tasks/ (a page of one task,
the JWT, the filters, the count), GET /api/tasks/?status= (what bench_scale polls), POST /api/tasks/ (a task on a
replay agent: what every submission costs; the workers run these tasks meanwhile, as in a burst, so the POSTs
share the cores with them).
"""
import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_scale as bs  # noqa: E402 - the platform and API helpers of the scale bench


def measure(platform, name, call, warm_up: int, count: int) -> dict:
    for _ in range(warm_up):
        call()
    cpu0 = bs.cpu_seconds(platform.web())
    walls = []
    for _ in range(count):
        started = time.perf_counter()
        call()
        walls.append(time.perf_counter() - started)
    cpu = bs.cpu_seconds(platform.web()) - cpu0
    row = {"request": name, "requests": count, "web_cpu_ms": round(1000 * cpu / count, 2),
           "wall_p50_ms": round(1000 * statistics.median(walls), 2), "wall_mean_ms": round(1000 * statistics.fmean(walls), 2)}
    bs.log(json.dumps(row))
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200, help="measured requests per kind")
    parser.add_argument("--warm-up", type=int, default=20)
    parser.add_argument("--postgres", metavar="URL")
    parser.add_argument("--redis", metavar="URL")
    parser.add_argument("--workers", type=int)
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()
    args.keep_var_dir = False
    reference = bs.reference_loop_ms()
    platform = bs.Platform(args)
    rows = []
    try:
        platform.start()
        bench = bs.Bench(argparse.Namespace(**vars(args), submit_parallel=1, poll_interval=0.25), platform)
        agent = bench.agent()
        session = bench.api.session()
        kinds = [
            ("GET /healthz", lambda: session.get(platform.base + "/healthz", timeout=30).raise_for_status()),
            ("GET /api/tasks/?agent=&page_size=1", lambda: bench.api.call("GET", f"/api/tasks/?agent={agent}&page_size=1")),
            ("GET /api/tasks/?agent=&status=queued (a count)", lambda: bench.api.count(agent, "queued")),
            ("POST /api/tasks/ (replay agent)", lambda: bench.api.submit(agent)),
        ]
        for name, call in kinds:
            rows.append(measure(platform, name, call, args.warm_up, args.requests))
        bench.close()
    finally:
        platform.stop()
    print(f"one core: the reference loop took {reference} ms; platform: {platform.database}, redis {platform.redis}; "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print()
    print("| request | web CPU per request | wall per request, p50 / mean (one client) |")
    print("| --- | --- | --- |")
    for row in rows:
        print(f"| {row['request']} | {row['web_cpu_ms']} ms | {row['wall_p50_ms']} / {row['wall_mean_ms']} ms |")
    if args.json:
        Path(args.json).write_text(json.dumps({"reference_loop_ms": reference, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
