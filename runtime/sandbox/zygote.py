"""Warm start: a per-worker zygote that has imported AgentChat once and forks one child per task.

Cold, every task's child is a fresh interpreter importing AutoGen (~0.5 s of CPU). The zygote is
started by the worker (start(), before RQ forks any work-horse) as `python -I zygote.py CONTROL_FD`
with an empty environment and no descriptor but its control socket. It imports launcher.py and
agentchild (with what agentchild imports) and nothing else: it holds no secret, no tenant data,
no thread, no event loop, no socket but the control one, and it never runs a task itself (it runs
one canned turn of an agent on a replay model at start, _warm_up(), and closes that loop).

For each task, Sandbox.spawn() sends one request (a datagram carrying the child's stdio, the
config, status, exit and reply pipes and pass_fds). The zygote forks P0 and writes P0's pid on
the reply pipe; P0 puts the descriptors in place, closes every other one, and runs the launcher's
run(): the same layers as a cold start (cgroups, namespaces, uid, mount view, rlimits,
no_new_privs, seccomp, exactly the given environment), but P1 calls agentchild's main in-process
instead of exec'ing an interpreter. Children are single-use: one fork per task, never reused.

The zygote reaps its children automatically (SIGCHLD ignored) and dies with the worker
(PR_SET_PDEATHSIG). If it is gone or does not answer, spawn() falls back to a cold start.
"""
import os
import socket
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# runtime/: the directory that holds the agentchild package, the only platform code a child can import (defined
# here, the stdlib-only script that needs it first; the sandbox and the supervisor import it from here)
AGENTCHILD_PARENT = HERE.parent
AGENTCHILD_DIR = AGENTCHILD_PARENT / "agentchild"
REPLY_TIMEOUT = 2.0
READY_TIMEOUT = 60.0
MAX_FDS = 32
# Received descriptors, in this order, then pass_fds.
STDIN, STDOUT, STDERR, CONFIG, STATUS, EXIT, REPLY = range(7)


# -- client side (the worker and its work-horses) -----------------------------------------------

_current: "Zygote | None" = None


class ZygoteUnavailable(Exception):
    """The zygote is gone or did not answer: the caller starts the child cold."""


class Zygote:
    def __init__(self, proc, sock: socket.socket):
        self.proc = proc
        self.sock = sock
        self.pidfd = os.pidfd_open(proc.pid)  # work-horses inherit it: they cannot waitpid our child

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.pidfd >= 0 and not _readable(self.pidfd, 0)

    def fork(self, fds: list[int], pass_fds: list[int]) -> tuple[int, int]:
        """Ask for one P0. fds: stdin, stdout, stderr, config_r, status_w, exit_w (sent, then
        closed by the caller). Returns (pid, pidfd); raises ZygoteUnavailable."""
        reply_r, reply_w = os.pipe()
        try:
            try:
                header = ",".join(str(fd) for fd in pass_fds).encode() or b"-"
                socket.send_fds(self.sock, [header], [*fds, reply_w, *pass_fds])
            except OSError as exc:
                raise ZygoteUnavailable(f"the zygote does not take requests: {exc}") from None
            finally:
                os.close(reply_w)
            data = _read_all(reply_r, REPLY_TIMEOUT)
            if not data:
                raise ZygoteUnavailable("the zygote did not fork")
            pid = int(data)
            try:
                return pid, os.pidfd_open(pid)
            except OSError as exc:
                raise ZygoteUnavailable(f"P0 {pid} is gone: {exc}") from None
        finally:
            os.close(reply_r)

    def stop(self) -> None:
        try:
            self.sock.close()
            os.close(self.pidfd)
            self.pidfd = -1
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()


def current() -> "Zygote | None":
    """This process's zygote (a work-horse inherits the worker's), if one runs."""
    return _current if _current is not None and _current.alive() else None


def start() -> Zygote:
    """Start this worker's zygote and wait until it has imported everything; raises OSError."""
    import subprocess

    global _current
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-I", str(Path(__file__).resolve()), str(theirs.fileno()), str(os.getpid())],
            env={},
            cwd="/",
            pass_fds=(theirs.fileno(),),
            close_fds=True,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    finally:
        theirs.close()
    ours.settimeout(READY_TIMEOUT)
    try:
        ready = ours.recv(16)
    except OSError:
        ready = b""
    ours.settimeout(None)
    if ready != b"ready":
        proc.kill()
        proc.wait()
        ours.close()
        raise OSError("the zygote did not start")
    ours.set_inheritable(False)  # work-horses are forks, not execs: they still inherit it
    _current = Zygote(proc, ours)
    return _current


def stop() -> None:
    global _current
    if _current is not None:
        _current.stop()
        _current = None


def ensure() -> "Zygote | None":
    """Restart the zygote if it died (the worker calls this between jobs); None if it cannot start."""
    if _current is not None and _current.alive():
        return _current
    stop()
    try:
        return start()
    except OSError:
        return None


def _readable(fd: int, timeout: float) -> bool:
    """poll(), not select(): the worker's descriptors may be numbered above 1024."""
    import select

    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(max(0, int(timeout * 1000))))


def _read_all(fd: int, timeout: float) -> bytes:
    chunks, deadline = [], time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not _readable(fd, left):
            return b""
        data = os.read(fd, 64)
        if not data:
            return b"".join(chunks)
        chunks.append(data)


# -- the zygote itself --------------------------------------------------------------------------


def _preload() -> None:
    """Import what a task's child imports (nothing runs: no loop, no thread, no socket)."""
    sys.path.insert(0, str(HERE))
    import asyncio  # noqa: F401
    import warnings  # noqa: F401

    import launcher  # noqa: F401
    import agentchild.__main__  # noqa: F401
    import agentchild.build  # noqa: F401
    import agentchild.coderun  # noqa: F401
    import agentchild.events  # noqa: F401
    sys.path.remove(str(HERE))
    _warm_up()


def _warm_up() -> None:
    """One canned turn of an AgentChat agent on a replay model (no tenant data, no socket, the loop closed
    after), before the fork point: what AgentChat fills in on its first run (ABCMeta's instance and
    subclass caches, typing's protocol checks, pydantic's and AgentChat's lazily built tables) is then
    filled in once here, shared with every child, instead of being computed, and its pages copied, in
    each task's child."""
    import asyncio

    from autogen_agentchat.agents import AssistantAgent
    from autogen_core.models import CreateResult, RequestUsage
    from autogen_ext.models.replay import ReplayChatCompletionClient

    async def turn() -> None:
        reply = CreateResult(finish_reason="stop", content="ok", usage=RequestUsage(prompt_tokens=1, completion_tokens=1),
                             cached=False)
        agent = AssistantAgent("warm_up", model_client=ReplayChatCompletionClient([reply]), model_client_stream=False)
        async for _ in agent.run_stream(task="warm up"):
            pass
        await agent.save_state()

    try:
        asyncio.run(turn())
    except Exception:  # noqa: BLE001 - only an optimization: the children then fill their caches themselves
        pass
    asyncio.set_event_loop_policy(None)


def _serve(sock: socket.socket) -> None:
    import signal

    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps our P0s
    # Everything imported so far is shared with every child, page for page, until written. The cyclic
    # garbage collector writes to each object it visits: frozen, they stay out of its passes, so a
    # child's collections do not copy the whole imported heap (Instagram's gc.freeze() for pre-fork).
    import gc

    gc.collect()
    gc.freeze()
    sock.send(b"ready")
    while True:
        try:
            msg, fds, _flags, _addr = socket.recv_fds(sock, 256, MAX_FDS)
        except InterruptedError:
            continue
        if not msg:
            os._exit(0)  # the worker is gone
        try:
            pass_fds = [] if msg == b"-" else [int(fd) for fd in msg.split(b",")]
            if len(fds) != REPLY + 1 + len(pass_fds):
                raise ValueError("bad request")
            pid = os.fork()
        except (ValueError, OSError):
            for fd in fds:
                os.close(fd)
            continue
        if pid == 0:
            sock.close()
            _p0(fds, pass_fds)  # never returns
        try:
            os.write(fds[REPLY], str(pid).encode())
        except OSError:
            pass
        for fd in fds:
            os.close(fd)


def _p0(fds: list[int], pass_fds: list[int]) -> None:
    """In the fork: put the descriptors in place, close all others, run the launcher."""
    import fcntl
    import marshal
    import signal

    import launcher

    try:
        os.setsid()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # P0 waits for P1
        # Move what we keep above every target number, then into place.
        base = max([2, *pass_fds]) + 1
        moved = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, base) for fd in fds]
        for i in (STDIN, STDOUT, STDERR):
            os.dup2(moved[i], i)
        for target, i in zip(pass_fds, range(REPLY + 1, len(fds))):
            os.dup2(moved[i], target, inheritable=False)
        keep = {0, 1, 2, *pass_fds, moved[CONFIG], moved[STATUS], moved[EXIT]}
        for fd in [int(f) for f in os.listdir("/proc/self/fd")]:
            if fd not in keep:
                try:
                    os.close(fd)
                except OSError:
                    pass
        launcher.status_fd = moved[STATUS]
        with os.fdopen(moved[CONFIG], "rb") as f:
            config = marshal.loads(f.read())
    except Exception:  # noqa: BLE001 - the worker sees EOF on the status pipe without a code
        os._exit(127)
    try:
        launcher.run(config, entry=_run_agentchild, exit_fd=moved[EXIT])
    except launcher.Failure as exc:
        launcher.fail(str(exc))
    except Exception as exc:  # noqa: BLE001 - never run half-built
        launcher.fail(f"{type(exc).__name__}: {exc}")
    os._exit(127)


def _run_agentchild(config: dict) -> None:
    """P1, every layer built: become what `python -m agentchild` would be, then run it."""
    import asyncio
    import signal
    import traceback
    import warnings

    code = 1
    try:
        keep = {0, 1, 2, *config.get("pass_fds", [])}
        for fd in [int(f) for f in os.listdir("/proc/self/fd")]:
            if fd not in keep:
                try:
                    os.close(fd)
                except OSError:
                    pass
        os.environ.clear()
        os.environ.update(config["env"])
        sys.argv = [str(AGENTCHILD_DIR / "__main__.py")]
        sys.dont_write_bytecode = True
        # The signal dispositions a fresh interpreter sets up.
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.reconfigure(line_buffering=True, write_through=True)
        entry = sys.modules["agentchild.__main__"]
        entry._die_with_parent()
        warnings.simplefilter("ignore")
        asyncio.run(entry.main())
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 - like an interpreter: print it, exit 1
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001
                pass
        os._exit(code)


def main() -> None:
    import ctypes
    import signal

    sys.path.insert(0, str(AGENTCHILD_PARENT))  # the agentchild package: what a task's child imports (_preload)
    from agentchild.linux import PR_SET_PDEATHSIG

    control_fd, worker_pid = int(sys.argv[1]), int(sys.argv[2])
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # die with the worker
    if os.getppid() != worker_pid:
        os._exit(0)
    sock = socket.socket(fileno=control_fd)
    _preload()
    _serve(sock)


if __name__ == "__main__":
    main()
