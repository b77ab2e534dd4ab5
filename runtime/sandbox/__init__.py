"""The sandbox a task's child process runs in (interface; the isolation layers are filled in by issue 4).

The supervisor (runtime/supervisor.py) uses only this interface:
    box = Sandbox(task_id=..., limits=SandboxLimits(...), root=settings.SANDBOX_ROOT)
    box.spawn(argv, env=minimal_env, pass_fds=(fd,))   # starts the child; box.pid, box.workdir
    box.poll() -> exit code or None;  box.wait(timeout)
    box.kill()                                          # the whole tree, idempotent
    box.stats() -> {"cpu_seconds", "memory_mb", "peak_memory_mb"}
    box.end_reason() -> "memory_limit" | "cpu_limit" | None   (after exit)
    box.cleanup()                                       # removes the work dir and any cgroup
    probe_capabilities() -> {"level": str, "layers": {name: {"active": bool, "detail": str}}}
"""
import os
import resource
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import psutil


@dataclass
class SandboxLimits:
    memory_mb: int = 512
    cpu_seconds: int = 60
    timeout_seconds: int = 300
    max_processes: int = 64
    max_open_files: int = 256
    max_file_mb: int = 64


class Sandbox:
    def __init__(self, *, task_id: int, limits: SandboxLimits, root: Path):
        self.task_id = task_id
        self.limits = limits
        self.workdir = Path(root) / f"task-{task_id}-{os.getpid()}"
        self.proc: subprocess.Popen | None = None
        self._peak_rss = 0

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def spawn(self, argv: list[str], *, env: dict, pass_fds=()) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        limits = self.limits

        def preexec():
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 2))
            resource.setrlimit(resource.RLIMIT_NOFILE, (limits.max_open_files, limits.max_open_files))
            resource.setrlimit(resource.RLIMIT_FSIZE, (limits.max_file_mb << 20, limits.max_file_mb << 20))

        self.proc = subprocess.Popen(
            argv,
            env=env,
            cwd=self.workdir,
            pass_fds=pass_fds,
            close_fds=True,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=preexec,
        )

    def poll(self):
        return self.proc.poll() if self.proc else None

    def wait(self, timeout=None):
        return self.proc.wait(timeout) if self.proc else None

    def _tree(self) -> list[psutil.Process]:
        try:
            root = psutil.Process(self.proc.pid)
            return [root] + root.children(recursive=True)
        except psutil.Error:
            return []

    def kill(self) -> None:
        if not self.proc:
            return
        for p in self._tree():
            try:
                p.kill()
            except psutil.Error:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except OSError:
            pass

    def stats(self) -> dict:
        cpu, rss = 0.0, 0
        for p in self._tree():
            try:
                t = p.cpu_times()
                cpu += t.user + t.system
                rss += p.memory_info().rss
            except psutil.Error:
                pass
        self._peak_rss = max(self._peak_rss, rss)
        return {"cpu_seconds": round(cpu, 3), "memory_mb": round(rss / 2**20, 1), "peak_memory_mb": round(self._peak_rss / 2**20, 1)}

    def end_reason(self) -> str | None:
        code = self.proc.returncode if self.proc else None
        if code == -signal.SIGXCPU or code == -signal.SIGKILL and False:
            return "cpu_limit"
        return None

    def cleanup(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)


def probe_capabilities() -> dict:
    return {"level": "process", "layers": {"process_group": {"active": True, "detail": "own session and process group"}}}
