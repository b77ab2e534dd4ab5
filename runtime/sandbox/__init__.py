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
launcher.py applies them in a fresh interpreter (never a fork of the worker), then execs the child;
with warm=True (argv `python -m agentchild` only) it applies the same layers in a fork of the
worker's zygote (zygote.py), which already imported AgentChat, and falls back to cold on any failure.
"""
import json
import logging
import marshal
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from . import cgroups
from . import zygote as zygotes

logger = logging.getLogger("runtime.sandbox")

LAUNCHER = Path(__file__).with_name("launcher.py")
AGENTCHILD_DIR = zygotes.AGENTCHILD_DIR
# Per-task uids for a root worker: UID_BASE + task_id % UID_RANGE (outside any system range).
UID_BASE = int(os.environ.get("SANDBOX_UID_BASE", "200000"))
UID_RANGE = 100000
# The code an agent runs (the code runner) takes a second uid: the task's uid + CODE_UID_OFFSET.
CODE_UID_OFFSET = UID_RANGE
SPAWN_TIMEOUT = 30.0
# The supervisor enforces the exact wall clock; check_limits() kills this much later, as a backstop.
TIMEOUT_GRACE_SECONDS = 2.0
# Where the cgroup counts the tree's CPU time exactly, RLIMIT_CPU (per process) is only a backstop.
CPU_RLIMIT_SLACK_SECONDS = 5
# /etc entries the child may read (passwd, group, hosts and hostname are generated instead).
ETC_ENTRIES = (
    "alternatives", "ca-certificates", "ca-certificates.conf", "debian_version", "gai.conf", "host.conf",
    "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "magic", "mime.types", "nsswitch.conf",
    "os-release", "protocols", "python3", "python3.11", "services", "ssl", "timezone",
)
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
DEVICES = ("null", "zero", "full", "random", "urandom")

LEVELS = ("none", "process", "rlimits", "namespaces", "cgroups", "full")
LEVEL_LAYERS = {
    "process": ("environment", "process_group", "workdir"),
    "rlimits": ("rlimits",),
    "namespaces": ("identity", "pid_namespace", "net_namespace", "mount_namespace", "ipc_namespace", "uts_namespace", "filesystem"),
    "cgroups": ("cgroup_memory", "cgroup_pids", "cgroup_cpu"),
    "full": ("no_new_privs", "seccomp", "code_identity"),
}


class SandboxError(Exception):
    """The sandbox could not be built for this task (the task ends sandbox_error)."""


@dataclass
class SandboxLimits:
    memory_mb: int = 512
    cpu_seconds: int = 60
    timeout_seconds: int = 300
    max_processes: int = 64  # processes and threads of the task (pids.max; RLIMIT_NPROC for a per-task uid)
    max_open_files: int = 256
    max_file_mb: int = 64
    tmp_mb: int = 64  # size of the task's /tmp and /dev/shm (tmpfs, counted in its memory)
    workdir_mb: int = 256  # size of the work dir, a tmpfs in the mount view (counted in its memory)
    cpu_cores: float = 1.0  # CPU quota: the tree gets at most this many cores' worth of time


class Sandbox:
    def __init__(
        self,
        *,
        task_id: int,
        limits: SandboxLimits,
        root: Path,
        namespaces: str | None = None,
        cgroups: bool | None = None,
        seccomp: bool | None = None,
        die_with_parent: bool = True,
        ro_paths: tuple = (),
        code_runner: bool = True,
    ):
        """namespaces: "root" | "user" | "off"; cgroups, seccomp: True | False; None means what
        probe_capabilities() found works here. die_with_parent: the tree is killed if the thread
        that called spawn() dies. ro_paths: more host paths the child may read (bound read-only).
        code_runner: start the code runner (coderunner.py) beside the child, under the code uid,
        its socket in AGENTCHILD_RUNNER_FD; False when the task runs no code (it costs a fork)."""
        self.task_id = task_id
        self.limits = limits
        self.root = Path(root).resolve()  # the path is the same inside the view: no symlink in it
        self.workdir = self.root / f"task-{task_id}-{os.getpid()}-{os.urandom(3).hex()}"
        self.proc: subprocess.Popen | None = None
        self.die_with_parent = die_with_parent
        self.ro_paths = tuple(str(p) for p in ro_paths)
        if namespaces is None or cgroups is None or seccomp is None:
            chosen = probe_capabilities().get("config", {})
            namespaces = chosen.get("namespaces", "off") if namespaces is None else namespaces
            cgroups = chosen.get("cgroups", False) if cgroups is None else cgroups
            seccomp = chosen.get("seccomp", False) if seccomp is None else seccomp
        if namespaces not in ("root", "user", "off"):
            raise ValueError(f"namespaces must be root, user or off, not {namespaces!r}")
        self.mode = namespaces
        self.use_cgroups = cgroups
        self.use_seccomp = seccomp
        self.uid = self.gid = UID_BASE + task_id % UID_RANGE if os.geteuid() == 0 else os.geteuid()
        if os.geteuid() != 0:
            self.gid = os.getegid()
        self.code_runner = bool(code_runner)
        # A second uid only where we may choose one: a root worker outside a user namespace (there, the
        # namespace maps only the worker's uid and the code runs as the agent's, non-dumpable still).
        self.code_uid = self.uid + CODE_UID_OFFSET if self.code_runner and os.geteuid() == 0 and namespaces != "user" else None
        self.code_gid = self.gid + CODE_UID_OFFSET if self.code_uid is not None else None
        # The work dir belongs to whoever writes it: the code.
        self.workdir_uid = self.code_uid if self.code_uid is not None else self.uid
        self.workdir_gid = self.code_gid if self.code_gid is not None else self.gid
        self.cgroup: cgroups.TaskCgroup | None = None
        self._started = 0.0
        self._limit_reason: str | None = None
        self._final: dict | None = None
        self._peak = 0
        self._last_cpu = 0.0
        self._rlimit_as = False
        self._pidfd: int | None = None
        # True once kill() reached the tree through its cgroup in a way the kernel makes final (no process
        # of it runs user code again); its exit may still be a few ms away (the kernel frees the memory).
        self.killed_for_good = False
        self.warm = False  # True once spawn() started the child from the zygote
        self._lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    # -- start -------------------------------------------------------------------------------

    def spawn(self, argv: list[str], *, env: dict, pass_fds=(), stdout=None, stderr=None, warm: bool = False) -> None:
        """Start argv in the sandbox with exactly env. Raises SandboxError if a layer fails.

        warm: argv must be `python -m agentchild`; run it in a fork of this worker's zygote when one
        runs (same layers), else (or if the zygote fails) cold."""
        if self.proc is not None:
            raise SandboxError("this sandbox already ran a process")
        try:
            self._prepare()
            config = self._config(list(argv), dict(env), tuple(pass_fds))
        except (OSError, cgroups.CgroupError) as exc:
            self.cleanup()
            raise SandboxError(f"could not prepare the sandbox: {exc}") from None
        self.warm = False
        zygote = zygotes.current() if warm and self.mode != "off" and list(argv)[1:] == ["-m", "agentchild"] else None
        if zygote is not None:
            try:
                self._spawn_warm(zygote, config, stdout, stderr)
                return
            except zygotes.ZygoteUnavailable as exc:
                logger.warning("task %s: warm start failed, starting cold: %s", self.task_id, exc)
        cfg_r, cfg_w = os.pipe()
        st_r, st_w = os.pipe()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-I", "-S", str(LAUNCHER), str(cfg_r), str(st_w)],
                env={},
                cwd="/",
                pass_fds=(*pass_fds, cfg_r, st_w),
                close_fds=True,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                start_new_session=True,
            )
        except OSError as exc:
            for fd in (cfg_r, cfg_w, st_r, st_w):
                os.close(fd)
            self.cleanup()
            raise SandboxError(f"could not start the sandbox launcher: {exc}") from None
        self._started = time.monotonic()
        os.close(cfg_r)
        os.close(st_w)
        self._send_config(cfg_w, config, st_r)

    def _spawn_warm(self, zygote: "zygotes.Zygote", config: dict, stdout, stderr) -> None:
        """P0 is a fork of the zygote; its exit code comes back on a pipe (it is not our child)."""
        null = os.open(os.devnull, os.O_RDWR)

        def fileno(stream, default):
            if stream is None:
                return default
            if stream == subprocess.DEVNULL:
                return null
            if stream == subprocess.STDOUT:
                return out
            return stream if isinstance(stream, int) else stream.fileno()

        out = fileno(stdout, 1)
        err = fileno(stderr, 2)
        cfg_r, cfg_w = os.pipe()
        st_r, st_w = os.pipe()
        ex_r, ex_w = os.pipe()
        try:
            pid, pidfd = zygote.fork([null, out, err, cfg_r, st_w, ex_w], list(config["pass_fds"]))
        except zygotes.ZygoteUnavailable:
            for fd in (cfg_w, st_r, ex_r):
                os.close(fd)
            raise
        finally:
            for fd in (null, cfg_r, st_w, ex_w):
                os.close(fd)
        self.proc = _ForkedProcess(pid, pidfd, ex_r)
        self.warm = True
        self._started = time.monotonic()
        self._send_config(cfg_w, config, st_r)

    def _send_config(self, cfg_w: int, config: dict, st_r: int) -> None:
        try:
            with os.fdopen(cfg_w, "wb") as f:
                f.write(marshal.dumps(config))
        except BrokenPipeError:
            pass
        message = _read_until_eof(st_r, SPAWN_TIMEOUT)
        if message is None:
            self.kill()
            self.proc.wait()
            self.cleanup()
            raise SandboxError(f"the sandbox did not start within {SPAWN_TIMEOUT:.0f} s")
        if message:
            self.proc.wait()
            self.cleanup()
            raise SandboxError(f"the sandbox could not be built: {message.strip()}")

    def _prepare(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o711)
        _reap_stale_workdirs(self.root)
        (self.root / ".mnt").mkdir(exist_ok=True, mode=0o755)
        self.workdir.mkdir(mode=0o700)
        if os.geteuid() == 0 and (self.mode in ("root", "user") or self.code_uid is not None):
            os.chown(self.workdir, self.workdir_uid, self.workdir_gid)
        if self.use_cgroups:
            h = _hierarchies()
            self.cgroup = cgroups.TaskCgroup(h, self.task_id)
            missing = [r for r in ("memory", "pids", "cpu") if not self.cgroup.uses[r]]
            if missing:
                raise cgroups.CgroupError(f"no writable cgroup for {', '.join(missing)}")
            self.cgroup.create(
                memory_mb=self.limits.memory_mb,
                max_pids=self.limits.max_processes + 2,
                cpu_cores=self.limits.cpu_cores,
            )

    def _config(self, argv: list[str], env: dict, pass_fds: tuple) -> dict:
        limits = self.limits
        rlimits = {
            "CORE": (0, 0),
            "NOFILE": (limits.max_open_files, limits.max_open_files),
            "FSIZE": (limits.max_file_mb << 20, limits.max_file_mb << 20),
        }
        cpu = int(limits.cpu_seconds + 0.999)
        if self.cgroup and self.cgroup.uses["cpuacct"]:
            cpu += CPU_RLIMIT_SLACK_SECONDS
        rlimits["CPU"] = (cpu, cpu + 1)
        if self.mode == "root":
            rlimits["NPROC"] = (limits.max_processes, limits.max_processes)
        memory_cgroup = bool(self.cgroup and self.cgroup.uses["memory"])
        if not memory_cgroup:
            # Without a memory cgroup, address space is the only hard cap. Python reserves far more
            # virtual memory than it touches (thread stacks, arenas), hence the head room.
            size = (2 * limits.memory_mb + 256) << 20
            rlimits["AS"] = (size, size)
            self._rlimit_as = True
        return {
            "mode": self.mode,
            "parent_pid": os.getpid(),
            "die_with_parent": self.die_with_parent,
            "cgroup_procs": self.cgroup.procs_files() if self.cgroup else [],
            "uid": self.uid,
            "gid": self.gid,
            "code_runner": self.code_runner,
            "code_uid": self.code_uid,
            "code_gid": self.code_gid,
            "hostname": "sandbox",
            "new_root": str((self.root / ".mnt").resolve()),
            "mounts": self._mounts() if self.mode != "off" else [],
            "cwd": str(self.workdir),
            "argv": argv,
            "env": env,
            "pass_fds": list(pass_fds),
            "rlimits": rlimits,
            "no_new_privs": bool(self.use_seccomp),
            "seccomp": bool(self.use_seccomp),
        }

    def _mounts(self) -> list[dict]:
        """The child's whole filesystem: parents before children (the launcher mounts in order)."""
        mounts: dict[str, dict] = {}

        def add(dst: str, **spec):
            mounts.setdefault(dst, {"dst": dst, **spec})

        ro_binds: list[str] = []

        def bind_ro(path: str):
            real = os.path.realpath(path)
            if not os.path.exists(real):
                return
            if not any(real == b or real.startswith(b + "/") for b in ro_binds):
                ro_binds.append(real)
                add(real, kind="bind", src=real, optional=True)
            link = os.path.abspath(path)
            if link != real and not any(link == b or link.startswith(b + "/") for b in ro_binds):
                add(link, kind="symlink", target=real)

        for top in SYSTEM_DIRS:
            if os.path.islink(top):
                add(top, kind="symlink", target=os.readlink(top))
            elif os.path.isdir(top):
                bind_ro(top)
        for name in ETC_ENTRIES:
            path = f"/etc/{name}"
            if os.path.islink(path):
                add(path, kind="symlink", target=os.readlink(path))
            elif os.path.exists(path):
                add(path, kind="bind", src=path)
        workdir = str(self.workdir.resolve())
        add("/etc/passwd", kind="file", content=(
            "root:x:0:0:root:/root:/usr/sbin/nologin\n"
            f"sandbox:x:{self.uid}:{self.gid}:sandbox:{workdir}:/bin/sh\n"
            + (f"code:x:{self.code_uid}:{self.code_gid}:code:{workdir}:/bin/sh\n" if self.code_uid is not None else "")
            +             "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"))
        add("/etc/group", kind="file", content=f"root:x:0:\nsandbox:x:{self.gid}:\n"
            + (f"code:x:{self.code_gid}:\n" if self.code_gid is not None else "") + "nogroup:x:65534:\n")
        add("/etc/hosts", kind="file", content="127.0.0.1 localhost sandbox\n::1 localhost\n")
        add("/etc/hostname", kind="file", content="sandbox\n")
        add("/etc/mtab", kind="symlink", target="../proc/self/mounts")
        for path in (sys.base_prefix, sys.prefix, os.path.dirname(os.path.dirname(os.path.realpath(sys.executable)))):
            bind_ro(path)
        bind_ro(sys.executable)
        bind_ro(str(AGENTCHILD_DIR))
        for path in self.ro_paths:
            bind_ro(path)
        add("/dev", kind="tmpfs", size_kb=64, mode="0755", noexec=True)
        for name in DEVICES:
            add(f"/dev/{name}", kind="bind", src=f"/dev/{name}", rw=True, dev=True)
        for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
            add(f"/dev/{name}", kind="symlink", target=target)
        add("/dev/shm", kind="tmpfs", size_kb=self.limits.tmp_mb << 10, mode="1777")
        add("/proc", kind="proc")
        add("/tmp", kind="tmpfs", size_kb=self.limits.tmp_mb << 10, mode="1777")
        add("/var/tmp", kind="symlink", target="/tmp")
        # The work dir is a tmpfs too: nothing the task writes reaches the host's disk, and what it
        # writes counts in its memory (the host directory stays the empty mount point).
        add(workdir, kind="tmpfs", size_kb=self.limits.workdir_mb << 10, mode="0700", uid=self.workdir_uid, gid=self.workdir_gid)
        return [mounts[k] for k in sorted(mounts, key=lambda p: p.split("/"))]

    # -- watch ---------------------------------------------------------------------------------

    def poll(self):
        if not self.proc:
            return None
        code = self.proc.poll()
        if code is not None:
            self._on_exit()
        return code

    def wait(self, timeout=None):
        """Like Popen.wait (raises subprocess.TimeoutExpired), checking the limits while it waits."""
        if not self.proc:
            return None
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            code = self.poll()
            if code is not None:
                return code
            self.check_limits()
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise subprocess.TimeoutExpired(self.proc.args, timeout)
            self._sleep_until_exit(min(0.2, left) if left is not None else 0.2)

    def exit_fd(self) -> int | None:
        """A descriptor that becomes readable when the launcher exits (a pidfd, owned by the sandbox and
        closed by cleanup()), for an event loop to wait on; None where the kernel has no pidfds."""
        if not self.proc:
            return None
        if self._pidfd is None:
            try:
                self._pidfd = os.dup(self.proc.pidfd) if isinstance(self.proc, _ForkedProcess) else os.pidfd_open(self.proc.pid)
            except (AttributeError, OSError):
                self._pidfd = -1
        return self._pidfd if self._pidfd >= 0 else None

    def _sleep_until_exit(self, seconds: float) -> None:
        """Sleep up to `seconds`, waking as soon as the launcher exits (a pidfd where there is one)."""
        if self.exit_fd() is not None:
            _readable(self._pidfd, seconds)
        else:
            try:
                self.proc.wait(seconds)
            except subprocess.TimeoutExpired:
                pass

    def check_limits(self) -> str | None:
        """Kill the tree if it went over a limit the kernel does not enforce by itself; say which."""
        if not self.proc or self._limit_reason:
            return self._limit_reason
        if self.proc.poll() is not None:
            self._on_exit()
            return self._limit_reason
        reason = None
        memory_cgroup = bool(self.cgroup and self.cgroup.created and self.cgroup.uses["memory"])
        if memory_cgroup and self.cgroup.under_oom():
            reason = "memory_limit"
        elif not memory_cgroup and self._memory()[0] > self.limits.memory_mb << 20:
            reason = "memory_limit"
        elif self._cpu_seconds() >= self.limits.cpu_seconds:
            reason = "cpu_limit"
        elif self.limits.timeout_seconds and time.monotonic() - self._started > self.limits.timeout_seconds + TIMEOUT_GRACE_SECONDS:
            reason = "timeout"
        if reason:
            self._limit_reason = reason
            logger.info("task %s: sandbox over its %s, killing it", self.task_id, reason)
            self.kill()
        return reason

    def stats(self) -> dict:
        """CPU seconds, current and peak memory of the whole tree (cgroup counters when present)."""
        if self._final is not None:
            cpu, current, peak = self._final["cpu"], 0, self._final["peak"]
        else:
            cpu = self._cpu_seconds()
            current, peak = self._memory()
            self.check_limits()
        self._peak = max(self._peak, current, peak or 0)
        return {"cpu_seconds": round(cpu, 3), "memory_mb": round(current / 2**20, 1), "peak_memory_mb": round(self._peak / 2**20, 1)}

    def _cpu_seconds(self) -> float:
        if self.cgroup and self.cgroup.created:
            value = self.cgroup.cpu_seconds()
            if value is not None:
                return value
        total = 0.0
        for p in self._tree():
            try:
                t = p.cpu_times()
                total += t.user + t.system + t.children_user + t.children_system
            except psutil.Error:
                pass
        self._last_cpu = max(self._last_cpu, total)
        return self._last_cpu

    def _memory(self) -> tuple[int, int]:
        if self.cgroup and self.cgroup.created:
            value = self.cgroup.memory()
            if value is not None:
                return value[0], value[1] or 0
        rss = 0
        for p in self._tree():
            try:
                rss += p.memory_info().rss
            except psutil.Error:
                pass
        return rss, 0

    def _tree(self) -> list[psutil.Process]:
        if not self.proc or self.proc.returncode is not None:
            return []
        try:
            root = psutil.Process(self.proc.pid)
            return [root] + root.children(recursive=True)
        except psutil.Error:
            return []

    def _on_exit(self) -> None:
        """Once, when the child has exited: read the counters, then kill anything it left."""
        with self._lock:
            if self._final is not None:
                return
            final = {"cpu": self._cpu_seconds(), "peak": 0, "oom": 0}
            if self.cgroup and self.cgroup.created:
                final["peak"] = self._memory()[1]
                final["oom"] = self.cgroup.oom_kills() or 0
                if self.cgroup.pids():
                    self.cgroup.kill()
            self._peak = max(self._peak, final["peak"])
            self._final = final

    # -- end -----------------------------------------------------------------------------------

    def kill(self) -> None:
        """SIGKILL the whole tree: the cgroup, the pid namespace's init, every descendant, the group."""
        if not self.proc:
            return
        # With a cgroup, killing it reaches every process of the tree; the walk of the host's process
        # table (psutil, cost growing with every process on the host) is only for hosts without one.
        tree = [] if self.cgroup and self.cgroup.created else self._tree()
        if self.cgroup and self.cgroup.created:
            self.killed_for_good = self.cgroup.kill() or self.killed_for_good
        if self.mode != "off" and self.proc.returncode is None:
            for pid in _children(self.proc.pid):
                _sigkill(pid)  # pid 1 of the namespace: the kernel kills everything in it
        for p in tree:
            try:
                p.kill()
            except psutil.Error:
                pass
        if self.proc.returncode is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                pass

    def end_reason(self) -> str | None:
        """Why the child ended, when a limit ended it: "memory_limit", "cpu_limit", "timeout" or None."""
        if not self.proc or self.poll() is None:
            return None
        if self._limit_reason:
            return self._limit_reason
        code = self.proc.returncode
        if code == 0:
            return None
        final = self._final or {}
        if final.get("oom"):
            return "memory_limit"
        if code == -signal.SIGXCPU or (code == -signal.SIGKILL and final.get("cpu", 0) >= self.limits.cpu_seconds - 0.05):
            return "cpu_limit"
        return None

    def cleanup(self) -> None:
        """Kill what is left, record the counters, remove the cgroups and the work dir. Idempotent."""
        if self.proc and self.proc.poll() is None:
            self.kill()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                logger.warning("task %s: sandbox launcher %s survived SIGKILL", self.task_id, self.proc.pid)
        if self.proc:
            self._on_exit()
        if self._pidfd is not None and self._pidfd >= 0:
            os.close(self._pidfd)
            self._pidfd = -1
        if self.cgroup:
            try:
                self.cgroup.remove()
            except cgroups.CgroupError as exc:
                logger.warning("task %s: %s", self.task_id, exc)
        _rmtree(self.workdir)


class _ForkedProcess:
    """The Popen-like handle of a warm P0 (the zygote's child): pid, poll(), wait(), returncode.

    The kernel says when it exited (pidfd); P0 wrote its child's return code on the exit pipe
    first (nothing there: it was killed, as by cgroup.kill, so -SIGKILL)."""

    def __init__(self, pid: int, pidfd: int, exit_fd: int):
        self.pid, self.pidfd, self.exit_fd = pid, pidfd, exit_fd
        self.args = ["zygote", str(pid)]
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None and _readable(self.pidfd, 0):
            data = _read_until_eof(self.exit_fd, 1.0) or ""
            os.close(self.pidfd)
            self.returncode = int(data) if data.strip().lstrip("-").isdigit() else -signal.SIGKILL
        return self.returncode

    def wait(self, timeout=None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise subprocess.TimeoutExpired(self.args, timeout)
            _readable(self.pidfd, left)
        return self.returncode


def _readable(fd: int, timeout: float | None) -> bool:
    """Wait up to timeout (None: for ever) for fd to be readable. poll(), not select(): a worker holding
    hundreds of sandboxes has descriptors above select()'s limit of 1024."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(None if timeout is None else max(0, int(timeout * 1000))))


def _read_until_eof(fd: int, timeout: float) -> str | None:
    """Everything written to fd until every writer closed it; None on timeout."""
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not _readable(fd, left):
                return None
            data = os.read(fd, 4096)
            if not data:
                return b"".join(chunks).decode(errors="replace")
            chunks.append(data)
    finally:
        os.close(fd)


def _children(pid: int) -> list[int]:
    found = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                found += [int(p) for p in f.read().split()]
    except OSError:
        pass
    return found


def _sigkill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


def _reap_stale_workdirs(root: Path) -> None:
    """Remove work dirs whose creator (pid in the name: task-<id>-<pid>-<random>) died uncleanly."""
    try:
        entries = list(root.iterdir())
    except OSError:
        return
    for path in entries:
        parts = path.name.split("-")
        if len(parts) == 4 and parts[0] == "task" and parts[2].isdigit() and not os.path.exists(f"/proc/{parts[2]}"):
            _rmtree(path)


def _rmtree(path: Path) -> None:
    def make_writable(func, target, _exc):
        try:
            os.chmod(os.path.dirname(target), 0o700)
            os.chmod(target, 0o700)
            func(target)
        except OSError:
            pass

    if os.path.lexists(path):
        shutil.rmtree(path, onerror=make_writable)


# -- capabilities ------------------------------------------------------------------------------

_hierarchies_cache: cgroups.Hierarchies | None = None
_probe_cache: dict | None = None


def _hierarchies() -> cgroups.Hierarchies:
    global _hierarchies_cache
    if _hierarchies_cache is None:
        _hierarchies_cache = cgroups.detect()
    return _hierarchies_cache


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
    ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)
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
PROBE_PROGRAM = PROBE_PROGRAM.replace("CODE_PROBE", repr(CODE_PROBE))


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
    h = _hierarchies()
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
