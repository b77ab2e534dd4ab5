"""Process helpers of the sandbox: the handle of a warm child, waiting on descriptors, signalling a
tree's processes, and removing work dirs (box.py uses them; nothing here knows the layers)."""
import os
import select
import shutil
import signal
import subprocess
import time
from pathlib import Path


class ForkedProcess:
    """The Popen-like handle of a warm start's process (the zygote's child: P1 itself in mode "root", else
    P0): pid, poll(), wait(), returncode.

    Its end is its exit pipe's: the zygote (for P1, once it reaped it) or P0 (for its child, just before it
    exits) writes the return code there and closes it; nothing written means it was killed (as by
    cgroup.kill), so -SIGKILL. Not the pidfd's: a direct child's pidfd is readable as soon as it dies, before
    the zygote has reaped it and written its code, and a reader waiting for that code would block (the
    supervisor's event loop, once per task of a killswitch). The pidfd is for signals and identity."""

    def __init__(self, pid: int, pidfd: int, exit_fd: int):
        self.pid, self.pidfd, self.exit_fd = pid, pidfd, exit_fd
        self.args = ["zygote", str(pid)]
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None and readable(self.exit_fd, 0):
            # the code and the close come together (a write, then close, by one process): at most a moment
            data = read_until_eof(self.exit_fd, 1.0) or ""
            os.close(self.pidfd)
            self.returncode = int(data) if data.strip().lstrip("-").isdigit() else -signal.SIGKILL
        return self.returncode

    def wait(self, timeout=None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise subprocess.TimeoutExpired(self.args, timeout)
            readable(self.exit_fd, left)
        return self.returncode


def readable(fd: int, timeout: float | None) -> bool:
    """Wait up to timeout (None: for ever) for fd to be readable. poll(), not select(): a worker holding
    hundreds of sandboxes has descriptors above select()'s limit of 1024."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(None if timeout is None else max(0, int(timeout * 1000))))


def read_until_eof(fd: int, timeout: float) -> str | None:
    """Everything written to fd until every writer closed it; None on timeout."""
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not readable(fd, left):
                return None
            data = os.read(fd, 4096)
            if not data:
                return b"".join(chunks).decode(errors="replace")
            chunks.append(data)
    finally:
        os.close(fd)


def children(pid: int) -> list[int]:
    found = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                found += [int(p) for p in f.read().split()]
    except OSError:
        pass
    return found


def sigkill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


# root -> when this process last looked (monotonic seconds)
_last_reaped: dict = {}
REAP_EVERY_SECONDS = 60.0


def reap_stale_workdirs(root: Path, every: float = REAP_EVERY_SECONDS) -> None:
    """Remove work dirs whose creator (pid in the name: task-<id>-<pid>-<random>) died uncleanly.

    At most once every `every` seconds per root and process: a look lists every work dir (one per task in
    flight on the host), so doing it at each spawn made a burst's spawns cost O(tasks running) each."""
    now = time.monotonic()
    if now - _last_reaped.get(root, -every) < every:
        return
    _last_reaped[root] = now
    try:
        entries = list(root.iterdir())
    except OSError:
        return
    for path in entries:
        parts = path.name.split("-")
        if len(parts) == 4 and parts[0] == "task" and parts[2].isdigit() and not os.path.exists(f"/proc/{parts[2]}"):
            rmtree(path)


def rmtree(path: Path) -> None:
    def make_writable(func, target, _exc):
        try:
            os.chmod(os.path.dirname(target), 0o700)
            os.chmod(target, 0o700)
            func(target)
        except OSError:
            pass

    if os.path.lexists(path):
        shutil.rmtree(path, onerror=make_writable)
