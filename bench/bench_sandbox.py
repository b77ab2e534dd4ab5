"""What each sandbox layer adds to a task process's start, measured on this host.

For each configuration, RUNS times: spawn() (the launcher builds the layers; it returns once the
child's program is exec'd), then the child's exit and cleanup(). The child is a bare interpreter
(`python -I -S -c pass`) and, with --agentchat, one that imports AutoGen AgentChat as every task
does. Prints medians in ms and the cost over a plain subprocess.Popen of the same program.

    .venv/bin/python bench/bench_sandbox.py [--runs 20] [--agentchat]

No Django, database or Redis needed. Rows the host cannot run (no root, no cgroup write access,
no user namespaces) say so instead of a number.
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

from runtime.sandbox import AGENTCHILD_DIR, Sandbox, SandboxError, SandboxLimits, probe_capabilities  # noqa: E402

CONFIGS = [
    # label, Sandbox options
    ("launcher + process + rlimits", dict(namespaces="off", cgroups=False, seccomp=False)),
    ("+ no_new_privs + seccomp", dict(namespaces="off", cgroups=False, seccomp=True)),
    ("+ cgroups (memory, pids, cpu)", dict(namespaces="off", cgroups=True, seccomp=True)),
    ("+ namespaces + fs view, root mode (full)", dict(namespaces="root", cgroups=True, seccomp=True)),
    ("namespaces + fs view only, root mode", dict(namespaces="root", cgroups=False, seccomp=False)),
    ("namespaces + fs view, user-ns mode", dict(namespaces="user", cgroups=False, seccomp=True)),
]


def program(agentchat: bool) -> list[str]:
    if agentchat:
        return [sys.executable, "-c", "import autogen_agentchat.agents, autogen_ext.models.replay"]
    return [sys.executable, "-I", "-S", "-c", "pass"]


def env(workdir: Path) -> dict:
    return {"PATH": "/usr/bin:/bin", "HOME": str(workdir), "LANG": "C.UTF-8", "PYTHONPATH": str(AGENTCHILD_DIR.parent)}


def bench_popen(argv: list[str], runs: int, root: Path) -> tuple[float, float]:
    totals = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, env=env(root), cwd=root, check=True, stdin=subprocess.DEVNULL)
        totals.append(time.perf_counter() - started)
    return 0.0, statistics.median(totals)


def bench_sandbox(argv: list[str], runs: int, root: Path, options: dict) -> tuple[float, float]:
    spawns, totals = [], []
    for i in range(runs):
        box = Sandbox(task_id=i, limits=SandboxLimits(memory_mb=512, cpu_seconds=30, max_processes=64), root=root, **options)
        started = time.perf_counter()
        try:
            box.spawn(argv, env=env(box.workdir))
            spawned = time.perf_counter()
            code = box.wait(60)
            box.cleanup()
        finally:
            box.cleanup()
        if code != 0:
            raise SandboxError(f"the child exited {code}")
        spawns.append(spawned - started)
        totals.append(time.perf_counter() - started)
    return statistics.median(spawns), statistics.median(totals)


def world_readable(path: str) -> bool:
    real = Path(os.path.realpath(path))
    return all(os.stat(p).st_mode & 0o005 == 0o005 for p in [real, *real.parents])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--agentchat", action="store_true", help="the child imports AutoGen AgentChat")
    args = parser.parse_args()
    report = probe_capabilities()
    print(f"host: {os.uname().release}, {os.cpu_count()} CPUs, euid {os.geteuid()}, sandbox level {report['level']} "
          f"(mode {report['mode']}), {args.runs} runs, child: {' '.join(program(args.agentchat)[1:])[:60]}")
    root = Path(tempfile.mkdtemp(prefix="bench-sandbox-"))
    os.chmod(root, 0o711)
    argv = program(args.agentchat)
    rows = []
    try:
        _, base = bench_popen(argv, args.runs, root)
        rows.append(("plain subprocess.Popen (baseline)", "-", f"{base * 1000:.1f}", "-"))
        for label, options in CONFIGS:
            if options["namespaces"] == "user" and os.geteuid() == 0 and not world_readable(sys.executable):
                rows.append((label, "n/a", "n/a", "root host: this Python is not readable by an unprivileged uid"))
                continue
            try:
                spawn, total = bench_sandbox(argv, args.runs, root, options)
                rows.append((label, f"{spawn * 1000:.1f}", f"{total * 1000:.1f}", f"+{(total - base) * 1000:.1f}"))
            except SandboxError as exc:
                rows.append((label, "n/a", "n/a", f"unavailable here: {str(exc)[:60]}"))
    finally:
        subprocess.run(["rm", "-rf", str(root)], check=False)
    widths = [max(len(r[i]) for r in rows + [("configuration", "spawn ms", "start+exit ms", "over baseline ms")]) for i in range(4)]
    header = ("configuration", "spawn ms", "start+exit ms", "over baseline ms")
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row)))


if __name__ == "__main__":
    main()
