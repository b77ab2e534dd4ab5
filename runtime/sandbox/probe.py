"""The capability probe: which isolation layers work on this host, measured by running a small
program in real sandboxes (strongest configuration first, stepping down until one runs).

It runs only when called: probe_capabilities() once per process (cached) at the start of whatever
builds sandboxes (`manage.py runworker`, supervisor.Runtime.start(), tests, benches). It records the
configuration it chose with box.use_host_config(); a Sandbox built with a layer left as None takes it
from there, and never probes.
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from runtime.agentchild.linux import PR_SET_DUMPABLE

from . import box as boxes
from . import cgroups
from .box import CODE_UID_OFFSET, CPU_RLIMIT_SLACK_SECONDS, UID_BASE, UID_RANGE, Sandbox, SandboxError, SandboxLimits

LEVELS = ("none", "process", "rlimits", "namespaces", "cgroups", "full")
LEVEL_LAYERS = {
    "process": ("environment", "process_group", "workdir"),
    "rlimits": ("rlimits",),
    "namespaces": ("identity", "pid_namespace", "net_namespace", "mount_namespace", "ipc_namespace", "uts_namespace", "filesystem"),
    "cgroups": ("cgroup_memory", "cgroup_pids", "cgroup_cpu"),
    "full": ("no_new_privs", "seccomp", "code_identity"),
}


_probe_cache: dict | None = None


PROBE_PROGRAM = r"""
import json, os, resource, socket, sys
facts = {"pid": os.getpid(), "uid": os.getuid(), "cwd": os.getcwd(), "hostname": socket.gethostname(),
         "env": sorted(os.environ), "fds": sorted(int(f) for f in os.listdir("/proc/self/fd"))}
status = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines() if ":" in l)
facts["no_new_privs"] = status.get("NoNewPrivs", "").strip() == "1"
facts["seccomp"] = status.get("Seccomp", "").strip() == "2"
facts["cap_eff"] = status.get("CapEff", "").strip()
facts["ns"] = {n: os.readlink("/proc/self/ns/" + n) for n in ("pid", "net", "mnt", "ipc", "uts", "user")}
facts["marker_visible"] = os.path.exists(sys.argv[1])
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[2])), 1).close()
    facts["net"] = "reached the worker's port"
except OSError as exc:
    facts["net"] = exc.strerror
try:
    open("/usr/.sandbox-probe", "w")
    facts["system_writable"] = True
except OSError:
    facts["system_writable"] = False
facts["rlimits"] = {n: resource.getrlimit(getattr(resource, "RLIMIT_" + n))[0] for n in ("CORE", "NOFILE", "FSIZE", "CPU")}
if os.environ.get("AGENTCHILD_RUNNER_FD"):
    # Play the agent: not dumpable (agentchild's first act), holding a channel; ask the code runner to
    # reach into us the way the escape did (its uid, /proc/PID/mem, pidfd_getfd of our fd 0).
    import ctypes
    ctypes.CDLL(None).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    code = CODE_PROBE.replace("AGENT_PID", str(os.getpid()))
    runner = socket.socket(fileno=int(os.environ["AGENTCHILD_RUNNER_FD"]))
    runner.sendall(json.dumps({"op": "run", "blocks": [{"language": "python", "code": code}], "timeout": 10}).encode() + b"\n")
    reply = b""
    while not reply.endswith(b"\n"):
        chunk = runner.recv(65536)
        if not chunk:
            break
        reply += chunk
    try:
        facts["code"] = json.loads(json.loads(reply)["output"].strip().splitlines()[-1])
    except (ValueError, KeyError, IndexError):
        facts["code"] = {"error": reply.decode(errors="replace")[-300:]}
print(json.dumps(facts))
"""
CODE_PROBE = r"""
import ctypes, json, os
libc = ctypes.CDLL(None, use_errno=True)
status = dict(l.split(":", 1) for l in open("/proc/AGENT_PID/status").read().splitlines() if ":" in l)
found = {"uid": os.getuid(), "agent_uid": int(status["Uid"].split()[0])}
try:
    open("/proc/AGENT_PID/mem", "rb").close()
    found["mem"] = "opened"
except OSError as exc:
    found["mem"] = exc.strerror
pidfd = libc.syscall(434, AGENT_PID, 0)
got = libc.syscall(438, pidfd, 0, 0) if pidfd >= 0 else -1
found["getfd"] = "took a descriptor" if got >= 0 else os.strerror(ctypes.get_errno())
print(json.dumps(found))
"""
PROBE_PROGRAM = PROBE_PROGRAM.replace("CODE_PROBE", repr(CODE_PROBE)).replace(
    "PR_SET_DUMPABLE", str(PR_SET_DUMPABLE))  # the program runs alone in the sandbox: the constant goes in as text


def _attempt(root: Path, mode: str, use_cgroups: bool, use_seccomp: bool, marker: str, port: int) -> dict:
    box = Sandbox(
        task_id=0,
        limits=SandboxLimits(memory_mb=128, cpu_seconds=10, timeout_seconds=20, max_processes=16),
        root=root,
        namespaces=mode,
        cgroups=use_cgroups,
        seccomp=use_seccomp,
    )
    out = tempfile.TemporaryFile()
    try:
        box.spawn([sys.executable, "-I", "-S", "-c", PROBE_PROGRAM, marker, str(port)], env={"PATH": "/usr/bin:/bin"}, stdout=out, stderr=subprocess.STDOUT)
        code = box.wait(20)
        cgroup_uses = dict(box.cgroup.uses) if box.cgroup else {}
        out.seek(0)
        text = out.read().decode(errors="replace")
        if code != 0:
            raise SandboxError(f"probe program exited {code}: {text.strip()[-300:]}")
        return {"ok": True, "facts": json.loads(text.strip().splitlines()[-1]), "cgroup_uses": cgroup_uses}
    except (SandboxError, subprocess.TimeoutExpired, ValueError, IndexError) as exc:
        return {"ok": False, "error": str(exc)}
    finally:
        box.cleanup()
        out.close()


def probe_capabilities(refresh: bool = False) -> dict:
    """Which layers work on this host, measured by running a small program in a real sandbox.

    Tries the strongest configuration first and steps down (seccomp, then cgroups, then the
    namespace mode) until one runs. Cached per process; the worker calls it once at start.
    """
    global _probe_cache
    if _probe_cache is not None and not refresh:
        return json.loads(json.dumps(_probe_cache))
    h = cgroups.hierarchies()
    cgroups.reap_stale(h)
    root = Path(tempfile.mkdtemp(prefix="autogen-sandbox-probe-"))
    os.chmod(root, 0o711)
    marker = root / "marker-outside-the-workdir"
    marker.write_text("not for the sandbox")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    modes = (["root"] if os.geteuid() == 0 else []) + ["user", "off"]
    errors: dict[str, str] = {}
    result, chosen = None, None
    try:
        for mode in modes:
            for use_cgroups, use_seccomp in ((True, True), (True, False), (False, True), (False, False)):
                attempt = _attempt(root, mode, use_cgroups, use_seccomp, str(marker), listener.getsockname()[1])
                if attempt["ok"]:
                    result, chosen = attempt, {"namespaces": mode, "cgroups": use_cgroups, "seccomp": use_seccomp}
                    break
                key = f"{mode}" + ("+cgroups" if use_cgroups else "") + ("+seccomp" if use_seccomp else "")
                errors[key] = attempt["error"]
            if result:
                break
    finally:
        listener.close()
        shutil.rmtree(root, ignore_errors=True)
    report = _report(h, result, chosen or {"namespaces": "off", "cgroups": False, "seccomp": False}, errors)
    _probe_cache = report
    boxes.use_host_config(report["config"])
    return json.loads(json.dumps(report))


def _report(h: cgroups.Hierarchies, result: dict | None, chosen: dict, errors: dict) -> dict:
    facts = (result or {}).get("facts", {})
    host_ns = {n: os.readlink(f"/proc/self/ns/{n}") for n in ("pid", "net", "mnt", "ipc", "uts", "user")}
    mode = chosen["namespaces"]
    first_error = next(iter(errors.values()), "")
    layers: dict[str, dict] = {}

    def layer(name: str, active: bool, detail: str):
        layers[name] = {"active": bool(active), "detail": detail}

    ran = result is not None
    layer("environment", ran and set(facts.get("env", ["?"])) <= {"PATH", "LC_CTYPE", "AGENTCHILD_RUNNER_FD"}, "the child gets only the environment the supervisor passes (never os.environ)")
    layer("process_group", ran, "own session and process group; file descriptors closed except the broker channel")
    layer("workdir", ran, "a fresh per-task work directory is the cwd, removed by cleanup()")
    rl = facts.get("rlimits", {})
    layer("rlimits", ran and rl.get("CORE") == 0 and 10 <= rl.get("CPU", -1) <= 10 + CPU_RLIMIT_SLACK_SECONDS, "CORE=0, NOFILE, FSIZE, CPU; NPROC for a per-task uid; AS only without a memory cgroup")
    why_no_ns = "" if mode != "off" else f"no namespaces: {errors.get('user', errors.get('user+cgroups+seccomp', first_error))}"
    for ns in ("pid", "net", "mnt", "ipc", "uts"):
        name = {"mnt": "mount"}.get(ns, ns) + "_namespace"
        active = ran and mode != "off" and facts.get("ns", {}).get(ns) != host_ns[ns]
        detail = {
            "pid": "the child is pid 1 of its own pid namespace; it sees no other process",
            "net": f"loopback only; connecting to the worker's 127.0.0.1 port: {facts.get('net')}",
            "mnt": "own mount namespace, pivoted into a tmpfs root",
            "ipc": "own System V IPC and POSIX message queues",
            "uts": f"own hostname ({facts.get('hostname')})",
        }[ns]
        layer(name, active, detail if active else why_no_ns or "not isolated")
    if mode == "root":
        layer("identity", ran and facts.get("uid", 0) != 0 and facts.get("cap_eff", "1").strip("0") == "",
              f"root worker: the child runs as per-task uid {UID_BASE}+task%{UID_RANGE} with no capabilities (no user namespace needed)")
    elif mode == "user":
        layer("identity", ran and facts.get("ns", {}).get("user") != host_ns["user"],
              "unprivileged worker: a user namespace maps only the worker's own uid; no capability survives exec")
    else:
        layer("identity", False, why_no_ns)
    layer("filesystem", ran and mode != "off" and not facts.get("marker_visible") and not facts.get("system_writable"),
          "read-only system, Python runtime, venv and agentchild; writable only the work dir and a size-capped /tmp; the platform's files, var/ and other tasks' dirs are absent"
          if mode != "off" else why_no_ns)
    uses = (result or {}).get("cgroup_uses", {})
    cg_error = next((e for k, e in errors.items() if k.startswith(mode + "+cgroups")), "")
    for res in ("memory", "pids", "cpu"):
        src = uses.get(res)
        if chosen["cgroups"] and src:
            detail = {"memory": "memory limit with swap off; OOM kills counted for memory_limit",
                      "pids": "processes and threads capped (fork bombs stop)",
                      "cpu": "CPU quota (cores) and CPU-seconds accounting for cpu_limit"}[res]
            layer(f"cgroup_{res}", True, f"cgroup {src}: {detail}")
        else:
            layer(f"cgroup_{res}", False, h.notes.get(res) or h.notes.get("all") or cg_error or f"no writable {res} cgroup")
    kill_src = uses.get("kill") or (uses.get("freezer") and f"freeze ({uses.get('freezer')}) + SIGKILL")
    layer("cgroup_kill", bool(chosen["cgroups"] and uses), f"tree killed via cgroup {kill_src or 'procs SIGKILL loop'}; CPU time from {uses.get('cpuacct')}"
          if chosen["cgroups"] and uses else h.notes.get("v2", "no writable cgroup"))
    layer("no_new_privs", ran and facts.get("no_new_privs"), "set before exec: setuid binaries and file capabilities grant nothing")
    sc_error = next((e for k, e in errors.items() if k.endswith("+seccomp")), "")
    layer("seccomp", ran and facts.get("seccomp"), "deny-list filter: mount, unshare, setns, namespace clone flags, ptrace, bpf, io_uring, keyctl, kexec, modules, perf..."
          if facts.get("seccomp") else (sc_error or "filter not installed"))
    code = facts.get("code") or {}
    code_ok = (ran and code.get("uid") not in (None, 0) and code.get("uid") != code.get("agent_uid")
               and code.get("mem") not in (None, "opened") and code.get("getfd") not in (None, "took a descriptor"))
    if code_ok:
        code_detail = (f"code the agent runs is a second principal: its own uid (task uid + {CODE_UID_OFFSET}) in a runner holding "
                       f"no broker channel; the agent is not dumpable (/proc/PID/mem: {code.get('mem')}; pidfd_getfd: {code.get('getfd')})")
    elif not ran or not code:
        code_detail = f"the code runner did not answer the probe: {code.get('error') or first_error or 'no sandbox ran'}"
    elif code.get("uid") == code.get("agent_uid"):
        code_detail = ("one uid only (a user namespace maps just the worker's): the code runs as the agent's uid, which is "
                       f"still not dumpable and seccomp-guarded (/proc/PID/mem: {code.get('mem')}; pidfd_getfd: {code.get('getfd')})")
    else:
        code_detail = f"the code reached the agent (/proc/PID/mem: {code.get('mem')}; pidfd_getfd: {code.get('getfd')})"
    layer("code_identity", code_ok, code_detail)
    layer("landlock", False, "not used: the mount namespace already hides everything outside the view")
    level = "none"
    for candidate in LEVELS[1:]:
        if all(layers[name]["active"] for name in LEVEL_LAYERS[candidate]):
            level = candidate
        else:
            break
    return {"level": level, "levels": list(LEVELS), "mode": mode, "config": chosen, "layers": layers, "errors": errors}


def meets_min_level(report: dict, min_level: str) -> bool:
    """True if the host's sandbox level is at least min_level (one of LEVELS)."""
    if min_level not in LEVELS:
        raise ValueError(f"unknown sandbox level {min_level!r}; expected one of {', '.join(LEVELS)}")
    level = report.get("level", "none")
    return LEVELS.index(level if level in LEVELS else "none") >= LEVELS.index(min_level)
