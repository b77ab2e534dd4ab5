"""The sandbox a task's child process runs in: every isolation layer the host allows, in one object.

The supervisor (runtime/supervisor.py) uses only this interface:
    box = Sandbox(task_id=..., limits=SandboxLimits(...), root=settings.SANDBOX_ROOT, code_runner=bool)
    box.spawn(argv, env=minimal_env, pass_fds=(fd,))   # starts the child; box.pid, box.workdir
    box.poll() -> exit code or None;  box.wait(timeout)   (wait() runs check_limits() while it blocks)
    box.check_limits() -> "memory_limit" | "cpu_limit" | "timeout" | None   (kills the tree when over)
    box.kill()                                          # the whole tree, idempotent
    box.stats() -> {"cpu_seconds", "memory_mb", "peak_memory_mb"}   (also runs check_limits())
    box.end_reason() -> "memory_limit" | "cpu_limit" | "timeout" | None   (after exit)
    box.cleanup()                                       # kills what is left, removes the cgroups and work dir
    probe_capabilities() -> {"level", "mode", "config", "layers": {name: {"active": bool, "detail": str}}, ...}
    meets_min_level(report, settings.SANDBOX_MIN_LEVEL) -> bool
The probe runs only when called, once per process (cached): at the start of whatever builds sandboxes
(runworker, supervisor.Runtime.start()); a Sandbox takes the layers it chose and never probes itself.

The supervisor must call stats() or check_limits() about once a second while the child runs. That
is what ends, with the right reason: a tree paused at its v1 memory limit (memory_limit), a CPU
total over the limit however many processes share it (cpu_limit), memory over the limit where
there is no memory cgroup, and (2 s after the supervisor's own deadline, as a backstop) the wall
clock. spawn() raises SandboxError when a layer it was asked for cannot be built: the task ends
sandbox_error and the worker carries on.

Layers (docs/security.md, "Sandbox", says what each stops and what an operator must grant):
    process      exactly the env given, no fd but pass_fds, own session, a fresh work dir as cwd
    cgroups      memory (swap off; OOM ends the whole task), pids, CPU quota, CPU-time accounting
    namespaces   pid, net (loopback only), mount, ipc, uts, cgroup; the child is pid 1
    identity     root worker: a per-task unprivileged uid with no capabilities;
                 unprivileged worker: a user namespace mapping only its own uid
    filesystem   a read-only tmpfs root with /usr, /lib.., a few /etc files, the Python runtime,
                 the venv and runtime/agentchild; writable only the work dir and /tmp (capped tmpfs)
    rlimits      CORE 0, NOFILE, FSIZE, CPU, NPROC (per-task uid), AS (only without a memory cgroup)
    seccomp      no_new_privs and a deny-list filter (mount, unshare, ptrace, pidfd_getfd, bpf, io_uring, keyctl..)
    code_identity  (code_runner=True) the code runner (coderunner.py), forked before the uid drop: the
                 code the agent runs gets a second uid (task uid + CODE_UID_OFFSET) and a process holding
                 no broker channel; the agent is not dumpable. Its socket is AGENTCHILD_RUNNER_FD.
The package's modules:
    box.py        Sandbox, SandboxLimits, SandboxError: build, start, watch, kill and clean up one task's tree
    mountview.py  the filesystem the child sees (the ordered mounts of its view)
    processes.py  process helpers: the warm child's handle, waiting on descriptors, SIGKILL, work dir removal
    probe.py      the capability probe: which layers work here, the level, meets_min_level()
    cgroups.py    per-task cgroups (v2 or v1); zygote.py the warm start; coderunner.py the code runner
launcher.py applies them in a fresh interpreter (never a fork of the worker), then execs the child;
with warm=True (argv `python -m agentchild` only) it applies the same layers in a fork of the
worker's zygote (zygote.py), which already imported AgentChat, and falls back to cold on any failure.
"""
from .box import Sandbox, SandboxError, SandboxLimits
from .mountview import AGENTCHILD_DIR
from .probe import LEVELS, meets_min_level, probe_capabilities

__all__ = ["AGENTCHILD_DIR", "LEVELS", "Sandbox", "SandboxError", "SandboxLimits", "meets_min_level", "probe_capabilities"]
