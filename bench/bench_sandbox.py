"""What each sandbox layer adds to a task process's start, measured on this host.

For each configuration, RUNS times (round-robin, so load changes hit every row alike): spawn() (the launcher builds the layers; it returns once the
child's program is exec'd), then the child's exit and cleanup(). The child is a bare interpreter
(`python -I -S -c pass`) and, with --agentchat, one that imports AutoGen AgentChat as every task
does. Prints medians in ms and the cost over a plain subprocess.Popen of the same program.

    .venv/bin/python bench/bench_sandbox.py [--runs 20] [--agentchat]
    .venv/bin/python bench/bench_sandbox.py --warm [--runs 20]

--warm: a task's real start, `python -m agentchild` forked from a zygote in the full configuration,
with and without the code runner (Sandbox(code_runner=...)): spawn() until the agent runs, then its
end (the test closes the channel) and cleanup(), and the tree's peak memory.

No Django, database or Redis needed. Rows the host cannot run (no root, no cgroup write access,
no user namespaces) say so instead of a number.
"""
import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runtime.sandbox import AGENTCHILD_DIR, Sandbox, SandboxError, SandboxLimits, probe_capabilities, zygote  # noqa: E402

CONFIGS = [
    # label, Sandbox options
    ("launcher + process + rlimits", dict(namespaces="off", cgroups=False, seccomp=False)),
    ("+ no_new_privs + seccomp", dict(namespaces="off", cgroups=False, seccomp=True)),
    ("+ cgroups (memory, pids, cpu)", dict(namespaces="off", cgroups=True, seccomp=True)),
    ("+ namespaces + fs view, root mode (full)", dict(namespaces="root", cgroups=True, seccomp=True)),
    ("+ code runner (full, a task with code)", dict(namespaces="root", cgroups=True, seccomp=True, code_runner=True)),
    ("namespaces + fs view only, root mode", dict(namespaces="root", cgroups=False, seccomp=False)),
    ("namespaces + fs view, user-ns mode", dict(namespaces="user", cgroups=False, seccomp=True)),
]


def program(agentchat: bool) -> list[str]:
    if agentchat:
        return [sys.executable, "-c", "import autogen_agentchat.agents, autogen_ext.models.replay"]
    return [sys.executable, "-I", "-S", "-c", "pass"]


def env(workdir: Path) -> dict:
    return {"PATH": "/usr/bin:/bin", "HOME": str(workdir), "LANG": "C.UTF-8", "PYTHONPATH": str(AGENTCHILD_DIR.parent)}


def popen_once(argv: list[str], root: Path) -> tuple[float, float]:
    started = time.perf_counter()
    subprocess.run(argv, env=env(root), cwd=root, check=True, stdin=subprocess.DEVNULL)
    return 0.0, time.perf_counter() - started


def sandbox_once(argv: list[str], root: Path, options: dict, task_id: int) -> tuple[float, float]:
    options = {"code_runner": False, **options}
    box = Sandbox(task_id=task_id, limits=SandboxLimits(memory_mb=512, cpu_seconds=30, max_processes=64), root=root, **options)
    started = time.perf_counter()
    try:
        box.spawn(argv, env=env(box.workdir))
        spawned = time.perf_counter()
        code = box.wait(60)
    finally:
        box.cleanup()
    if code != 0:
        raise SandboxError(f"the child exited {code}")
    return spawned - started, time.perf_counter() - started


def warm_once(root: Path, code_runner: bool, task_id: int) -> tuple[float, float, float]:
    box = Sandbox(task_id=task_id, limits=SandboxLimits(memory_mb=512, cpu_seconds=30, max_processes=64), root=root,
                  code_runner=code_runner)
    ours, theirs = socket.socketpair()
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(AGENTCHILD_DIR.parent), "AGENTCHILD_FD": str(theirs.fileno())}
    started = time.perf_counter()
    try:
        box.spawn([sys.executable, "-m", "agentchild"], env=env, pass_fds=(theirs.fileno(),), warm=True)
        spawned = time.perf_counter()
        if not box.warm:
            raise SandboxError("the zygote did not fork it (cold start)")
        theirs.close()
        ours.close()  # the agent reads EOF on its channel and ends its tree
        box.wait(30)
        peak = box.stats()["peak_memory_mb"]
    finally:
        theirs.close()
        ours.close()
        box.cleanup()
    return spawned - started, time.perf_counter() - started, peak


def warm_main(runs: int) -> None:
    report = probe_capabilities()
    print(f"host: {os.uname().release}, {os.cpu_count()} CPUs, sandbox level {report['level']} (mode {report['mode']}), "
          f"{runs} runs, warm `python -m agentchild`")
    zygote.start()
    root = Path(tempfile.mkdtemp(prefix="bench-sandbox-"))
    os.chmod(root, 0o711)
    samples = {True: [], False: []}
    try:
        for run in range(runs):
            for code_runner in (False, True):
                samples[code_runner].append(warm_once(root, code_runner, run))
    finally:
        zygote.stop()
        subprocess.run(["rm", "-rf", str(root)], check=False)
    print(f"{'configuration':<34} {'spawn ms':>9} {'start+exit ms':>14} {'peak MB':>8}")
    for code_runner in (False, True):
        rows = samples[code_runner]
        label = "full, code runner" if code_runner else "full, no code runner"
        print(f"{label:<34} {statistics.median(r[0] for r in rows) * 1000:>9.1f} "
              f"{statistics.median(r[1] for r in rows) * 1000:>14.1f} {statistics.median(r[2] for r in rows):>8.1f}")


def world_readable(path: str) -> bool:
    real = Path(os.path.realpath(path))
    return all(os.stat(p).st_mode & 0o005 == 0o005 for p in [real, *real.parents])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--agentchat", action="store_true", help="the child imports AutoGen AgentChat")
    parser.add_argument("--warm", action="store_true", help="warm agentchild starts, with and without the code runner")
    args = parser.parse_args()
    if args.warm:
        warm_main(args.runs)
        return
    report = probe_capabilities()
    print(f"host: {os.uname().release}, {os.cpu_count()} CPUs, euid {os.geteuid()}, sandbox level {report['level']} "
          f"(mode {report['mode']}), {args.runs} runs, child: {' '.join(program(args.agentchat)[1:])[:60]}")
    root = Path(tempfile.mkdtemp(prefix="bench-sandbox-"))
    os.chmod(root, 0o711)
    argv = program(args.agentchat)
    configs = [("plain subprocess.Popen (baseline)", None)]
    rows, skipped = [], {}
    for label, options in CONFIGS:
        if options["namespaces"] == "user" and os.geteuid() == 0 and not world_readable(sys.executable):
            skipped[label] = "root host: this Python is not readable by an unprivileged uid"
        else:
            configs.append((label, options))
    samples = {label: [] for label, _ in configs}
    try:
        # Round-robin over the configurations, so that a change in the host's load hits all alike.
        for run in range(args.runs):
            for label, options in configs:
                if label in skipped:
                    continue
                try:
                    samples[label].append(popen_once(argv, root) if options is None else sandbox_once(argv, root, options, run))
                except SandboxError as exc:
                    skipped[label] = f"unavailable here: {str(exc)[:60]}"
    finally:
        subprocess.run(["rm", "-rf", str(root)], check=False)
    base = statistics.median(total for _, total in samples[configs[0][0]])
    for label, _ in configs + [(label, None) for label, _ in CONFIGS if label not in samples]:
        if label in skipped:
            rows.append((label, "n/a", "n/a", skipped[label]))
            continue
        spawn = statistics.median(s for s, _ in samples[label])
        total = statistics.median(t for _, t in samples[label])
        over = "-" if label == configs[0][0] else f"{(total - base) * 1000:+.1f}"
        rows.append((label, "-" if label == configs[0][0] else f"{spawn * 1000:.1f}", f"{total * 1000:.1f}", over))
    header = ("configuration", "spawn ms", "start+exit ms", "over baseline ms")
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(4)]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row)))


if __name__ == "__main__":
    main()
