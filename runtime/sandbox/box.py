"""The sandbox itself: one object per task that builds every isolation layer the host allows,
starts the child in it, watches its limits and kills and removes its tree (see __init__.py for the
interface, mountview.py for the filesystem it sees, probe.py for which layers this host allows).
"""
import functools
import logging
import marshal
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from ..outcomes import ErrorCode

from . import cgroups
from . import zygote as zygotes
from .mountview import mount_view
from .processes import ForkedProcess, children, read_until_eof, readable, reap_stale_workdirs, rmtree, sigkill

logger = logging.getLogger("runtime.sandbox")

LAUNCHER = Path(__file__).with_name("launcher.py")
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



@functools.lru_cache(maxsize=8)
def _resolved(root: str) -> Path:
    """The sandboxes' root with every symlink resolved: one lookup per root and process, not one walk of the
    path (an lstat per component) at every task's start. The root is the platform's own directory."""
    return Path(root).resolve()


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
    # Its share of a busy CPU (cgroup v2 cpu.weight, 1-10000; a thread outside any task group weighs 100): only
    # matters while the cores are all busy; idle CPU is the tree's up to cpu_cores whatever its weight.
    cpu_weight: int = 100


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
        probe_capabilities() found works here (host_config(): the probe must have run in this process,
        it never runs from here). die_with_parent: the tree is killed if the thread that called spawn()
        dies. ro_paths: more host paths the child may read (bound read-only).
        code_runner: start the code runner (coderunner.py) beside the child, under the code uid,
        its socket in AGENTCHILD_RUNNER_FD; False when the task runs no code (it costs a fork)."""
        self.task_id = task_id
        self.limits = limits
        self.root = _resolved(str(root))  # the path is the same inside the view: no symlink in it
        self.workdir = self.root / f"task-{task_id}-{os.getpid()}-{os.urandom(3).hex()}"
        self.proc: subprocess.Popen | None = None
        self.die_with_parent = die_with_parent
        self.ro_paths = tuple(str(p) for p in ro_paths)
        if namespaces is None or cgroups is None or seccomp is None:
            chosen = host_config()
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
        """The zygote's child: P1 itself, cloned into its namespaces (mode "root"), or P0, which forks P1
        (mode "user": its user namespace is made by P0 after it dropped its uid). Its exit code comes back on
        a pipe (it is not our child): the zygote writes P1's, P0 writes its child's."""
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
            pid, pidfd = zygote.fork([null, out, err, cfg_r, st_w, ex_w], list(config["pass_fds"]),
                                     direct=self.mode == "root", cpu_limit=config["rlimits"]["CPU"][0])
        except zygotes.ZygoteUnavailable:
            for fd in (cfg_w, st_r, ex_r):
                os.close(fd)
            raise
        finally:
            for fd in (null, cfg_r, st_w, ex_w):
                os.close(fd)
        self.proc = ForkedProcess(pid, pidfd, ex_r)
        self.warm = True
        self._started = time.monotonic()
        self._send_config(cfg_w, config, st_r)

    def _send_config(self, cfg_w: int, config: dict, st_r: int) -> None:
        try:
            with os.fdopen(cfg_w, "wb") as f:
                f.write(marshal.dumps(config))
        except BrokenPipeError:
            pass
        message = read_until_eof(st_r, SPAWN_TIMEOUT)
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
        reap_stale_workdirs(self.root)
        (self.root / ".mnt").mkdir(exist_ok=True, mode=0o755)
        self.workdir.mkdir(mode=0o700)
        if os.geteuid() == 0 and (self.mode in ("root", "user") or self.code_uid is not None):
            os.chown(self.workdir, self.workdir_uid, self.workdir_gid)
        if self.use_cgroups:
            h = cgroups.hierarchies()
            self.cgroup = cgroups.TaskCgroup(h, self.task_id)
            missing = [r for r in ("memory", "pids", "cpu") if not self.cgroup.uses[r]]
            if missing:
                raise cgroups.CgroupError(f"no writable cgroup for {', '.join(missing)}")
            self.cgroup.create(
                memory_mb=self.limits.memory_mb,
                max_pids=self.limits.max_processes + 2,
                cpu_cores=self.limits.cpu_cores,
                cpu_weight=self.limits.cpu_weight,
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
            "mounts": mount_view(self) if self.mode != "off" else [],
            "cwd": str(self.workdir),
            "argv": argv,
            "env": env,
            "pass_fds": list(pass_fds),
            "rlimits": rlimits,
            "no_new_privs": bool(self.use_seccomp),
            "seccomp": bool(self.use_seccomp),
        }

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
        """A descriptor that becomes readable when the launcher exits (a pidfd; for a warm start a copy of its
        exit pipe), owned by the sandbox and closed by cleanup(), for an event loop to wait on; None where
        the kernel has no pidfds."""
        if not self.proc:
            return None
        if self._pidfd is None:
            try:
                # a warm start's end is its exit pipe's (ForkedProcess), a cold one's its pidfd's
                self._pidfd = os.dup(self.proc.exit_fd) if isinstance(self.proc, ForkedProcess) else os.pidfd_open(self.proc.pid)
            except (AttributeError, OSError):
                self._pidfd = -1
        return self._pidfd if self._pidfd >= 0 else None

    def _sleep_until_exit(self, seconds: float) -> None:
        """Sleep up to `seconds`, waking as soon as the launcher exits (a pidfd where there is one)."""
        if self.exit_fd() is not None:
            readable(self._pidfd, seconds)
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
            reason = ErrorCode.MEMORY_LIMIT
        elif not memory_cgroup and self._memory()[0] > self.limits.memory_mb << 20:
            reason = ErrorCode.MEMORY_LIMIT
        elif self._cpu_seconds() >= self.limits.cpu_seconds:
            reason = ErrorCode.CPU_LIMIT
        elif self.limits.timeout_seconds and time.monotonic() - self._started > self.limits.timeout_seconds + TIMEOUT_GRACE_SECONDS:
            reason = ErrorCode.TIMEOUT
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
            if not self.killed_for_good:  # a tree killed for good runs nothing more: no limit to check
                self.check_limits()
        self._peak = max(self._peak, current, peak or 0)
        return {"cpu_seconds": round(cpu, 3), "memory_mb": round(current / 2**20, 1), "peak_memory_mb": round(self._peak / 2**20, 1)}

    @property
    def counted_after_exit(self) -> bool:
        """Whether the tree's CPU and peak memory can still be read once it has exited (its cgroups count
        them): then a sample taken just before the end adds nothing to the one taken after the exit."""
        cgroup = self.cgroup
        return bool(cgroup and cgroup.created and cgroup.uses["cpuacct"] and cgroup.uses["memory"])

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
                peak = self.cgroup.memory_peak()
                final["peak"] = peak if peak is not None else self._memory()[1]
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
            for pid in children(self.proc.pid):
                sigkill(pid)  # pid 1 of the namespace: the kernel kills everything in it
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
            return ErrorCode.MEMORY_LIMIT
        if code == -signal.SIGXCPU or (code == -signal.SIGKILL and final.get("cpu", 0) >= self.limits.cpu_seconds - 0.05):
            return ErrorCode.CPU_LIMIT
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
        rmtree(self.workdir)


# What the capability probe (probe.py) chose for this host: {"namespaces", "cgroups", "seccomp"}. Set once
# per process by probe_capabilities(), which whatever builds sandboxes calls at start; never probed here.
_host_config: dict | None = None


def use_host_config(config: dict) -> None:
    """Record the layers a Sandbox uses by default (the probe's choice)."""
    global _host_config
    _host_config = dict(config)


def host_config() -> dict:
    """The probe's choice of layers for this host; SandboxError if no probe ran in this process."""
    if _host_config is None:
        raise SandboxError("the sandbox layers of this host are not known: call probe_capabilities() at start-up")
    return dict(_host_config)
