"""Warm start: a per-worker zygote that has imported AgentChat once and forks one child per task.

Cold, every task's child is a fresh interpreter importing AutoGen (~0.5 s of CPU). The zygote is
started by the worker (start(), before RQ forks any work-horse) as `python -I zygote.py CONTROL_FD`
with an empty environment and no descriptor but its control socket. It imports launcher.py and
agentchild (with what agentchild imports) and nothing else: it holds no secret, no tenant data,
no thread, no event loop, no socket but the control one, and it never runs a task itself (it runs
one canned turn of an agent on a replay model at start, _warm_up(), and closes that loop).

For each task, Sandbox.spawn() sends one request (a datagram carrying the child's stdio, the
config, status, exit and reply pipes and pass_fds). In mode "root" the zygote clones P1 itself into
new mount, pid, net, ipc and uts namespaces (_clone) and writes its pid on the reply pipe; P1 puts
the descriptors in place, closes every other one and runs the launcher's run_direct(): it joins the
task's cgroups, enters its cgroup namespace and builds the same layers as a cold start (mount view,
uid, rlimits, no_new_privs, seccomp, exactly the given environment), then calls agentchild's main
in-process instead of exec'ing an interpreter. In mode "user" (the user namespace must be made after
the uid is dropped) the zygote forks P0, which runs the launcher's run() and forks P1, as a cold
start's launcher does. Children are single-use: one per task, never reused.

The zygote reaps its children (a pidfd of each in its poll set) and writes a direct child's return code
on that child's exit pipe (P0 writes its own child's). It dies with the worker (PR_SET_PDEATHSIG), and
a direct child dies with the zygote (the same): a worker that dies takes every sandbox with it. If the
zygote is gone or does not answer, spawn() falls back to a cold start.
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

    def fork(self, fds: list[int], pass_fds: list[int], *, direct: bool = False, cpu_limit: float = 0) -> tuple[int, int]:
        """Ask for one child: P0 (the launcher's run(), which forks P1), or with `direct` P1 itself, cloned
        into its namespaces by the zygote (launcher.run_direct). fds: stdin, stdout, stderr, config_r,
        status_w, exit_w (sent, then closed by the caller). cpu_limit: RLIMIT_CPU's soft limit, for the
        zygote to tell a SIGKILL of that limit (SIGXCPU) from another. Returns (pid, pidfd); raises
        ZygoteUnavailable."""
        reply_r, reply_w = os.pipe()
        try:
            try:
                header = f"{'D' if direct else 'P'};{float(cpu_limit or 0)!r};{','.join(str(fd) for fd in pass_fds)}".encode()
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

# A pidfd of the zygote on itself, inherited by its direct children: one that finds it readable (the zygote
# is gone) right after setting PR_SET_PDEATHSIG exits, as P0 checks the worker's pid.
_self_pidfd = -1


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


# clone(2) flags of a direct child: every namespace of the sandbox but the cgroup one, which P1 enters itself
# once it has joined its task's cgroups (so that its cgroup namespace is rooted there).
CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWPID, CLONE_NEWNET = 0x00020000, 0x04000000, 0x08000000, 0x20000000, 0x40000000
DIRECT_FLAGS = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWPID | CLONE_NEWNET
SYS_CLONE = {"x86_64": 56, "aarch64": 220}
SIGCHLD = 17
_libc = None


def _clone(flags: int) -> int:
    """fork(), into new namespaces: clone(2) with `flags` | SIGCHLD and no new stack, between CPython's own
    before- and after-fork hooks (what os.fork() runs around fork(2)). Python 3.11 has no os.clone(); a pid
    namespace cannot be entered by unshare(2) (only the caller's later children are in it), so without this the
    zygote's child (P0) must fork once more to have P1 in its namespaces: a second copy of the zygote's address
    space, built and torn down for every task (perf: 8% of the machine's CPU in a burst). The zygote has one
    thread, so nothing of libc's own fork bookkeeping (other threads' locks) is missing here."""
    import ctypes

    global _libc
    if _libc is None:  # once per zygote, not per task
        _libc = ctypes.CDLL(None, use_errno=True)
    libc, api = _libc, ctypes.pythonapi
    api.PyOS_BeforeFork()
    pid = libc.syscall(SYS_CLONE[os.uname().machine], ctypes.c_ulong(flags | SIGCHLD), 0, 0, 0, 0)
    if pid == 0:
        api.PyOS_AfterFork_Child()
        return 0
    api.PyOS_AfterFork_Parent()
    if pid < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return pid


class _Children:
    """The zygote's children until they end: each one's pidfd in the poll set; at its end the zygote reaps
    it and, for a direct child (P1), writes its return code (Popen's convention) on its exit pipe, as P0 does
    for its P1."""

    def __init__(self, poller):
        self.poller = poller
        self.by_pidfd: dict[int, tuple[int, int, float]] = {}  # pidfd -> (pid, exit_w or -1, cpu_limit)

    def add(self, pid: int, exit_w: int, cpu_limit: float) -> None:
        import select

        pidfd = os.pidfd_open(pid)  # not reaped before we wait for it: the pid cannot be reused meanwhile
        self.by_pidfd[pidfd] = (pid, exit_w, cpu_limit)
        self.poller.register(pidfd, select.POLLIN)

    def ended(self, pidfd: int) -> None:
        import launcher

        pid, exit_w, cpu_limit = self.by_pidfd.pop(pidfd)
        self.poller.unregister(pidfd)
        os.close(pidfd)
        try:
            status = launcher.wait_for(pid, reap_all=False, cpu_limit=cpu_limit)
        except OSError:
            status = 9  # as killed
        if exit_w >= 0:
            try:
                os.write(exit_w, str(os.waitstatus_to_exitcode(status)).encode())
            except (OSError, ValueError):
                pass
            os.close(exit_w)


def _serve(sock: socket.socket) -> None:
    import select

    # Everything imported so far is shared with every child, page for page, until written. The cyclic
    # garbage collector writes to each object it visits: frozen, they stay out of its passes, so a
    # child's collections do not copy the whole imported heap (Instagram's gc.freeze() for pre-fork).
    import gc

    gc.collect()
    gc.freeze()
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    children = _Children(poller)
    sock.send(b"ready")
    while True:
        try:
            events = poller.poll()
        except InterruptedError:
            continue
        for fd, _event in events:
            if fd != sock.fileno():
                children.ended(fd)
                continue
            try:
                msg, fds, _flags, _addr = socket.recv_fds(sock, 256, MAX_FDS)
            except InterruptedError:
                continue
            if not msg:
                os._exit(0)  # the worker is gone
            _fork_one(sock, msg, fds, children)


def _fork_one(sock: socket.socket, msg: bytes, fds: list[int], children: _Children) -> None:
    try:
        kind, cpu, listed = msg.split(b";", 2)
        pass_fds = [int(fd) for fd in listed.split(b",")] if listed else []
        if kind not in (b"D", b"P") or len(fds) != REPLY + 1 + len(pass_fds):
            raise ValueError("bad request")
        direct, cpu_limit = kind == b"D", float(cpu)
        pid = _clone(DIRECT_FLAGS) if direct else os.fork()
    except (ValueError, OSError):
        for fd in fds:
            os.close(fd)
        return
    if pid == 0:
        sock.close()
        _child(fds, pass_fds, direct)  # never returns
    try:
        os.write(fds[REPLY], str(pid).encode())
    except OSError:
        pass
    exit_w = fds[EXIT] if direct else -1  # P0 writes its own; for P1 the zygote does, when it ends
    for i, fd in enumerate(fds):
        if i != EXIT or not direct:
            os.close(fd)
    try:
        children.add(pid, exit_w, cpu_limit)
    except OSError:  # no pidfd: it ended and cannot be told; its exit pipe says so by closing
        if exit_w >= 0:
            os.close(exit_w)


def _close_all_but(keep: set) -> None:
    for fd in [int(f) for f in os.listdir("/proc/self/fd")]:
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def _adopt_fds(fds: list[int], pass_fds: list[int], keep_exit: bool, also_keep: tuple = ()) -> tuple[int, int, int, list]:
    """In the fork: stdio and pass_fds to their numbers, every other descriptor closed. Returns the config,
    status and exit descriptors (exit -1 when not kept) and the new numbers of `also_keep` (moved, like the
    others, above every target number first: a pass_fd may take the number one of them had)."""
    import fcntl

    base = max([2, *pass_fds]) + 1
    moved = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, base) for fd in fds]
    extra = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, base) for fd in also_keep]
    for i in (STDIN, STDOUT, STDERR):
        os.dup2(moved[i], i)
    for target, i in zip(pass_fds, range(REPLY + 1, len(fds))):
        os.dup2(moved[i], target, inheritable=False)
    _close_all_but({0, 1, 2, *pass_fds, moved[CONFIG], moved[STATUS], *([moved[EXIT]] if keep_exit else []), *extra})
    return moved[CONFIG], moved[STATUS], moved[EXIT] if keep_exit else -1, extra


def _child(fds: list[int], pass_fds: list[int], direct: bool) -> None:
    """In the fork (P0) or the clone (a direct child, P1 already): put the descriptors in place, close all
    others, read the config, run the launcher: run_direct() in a direct child, run() in P0 (which forks P1)."""
    import marshal
    import signal

    import launcher

    try:
        os.setsid()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # P0 waits for P1, P1 for what it starts
        config_fd, status_fd, exit_fd, kept = _adopt_fds(fds, pass_fds, keep_exit=not direct,
                                                         also_keep=(_self_pidfd,) if direct else ())
        launcher.status_fd = status_fd
        with os.fdopen(config_fd, "rb") as f:
            config = marshal.loads(f.read())
    except Exception:  # noqa: BLE001 - the worker sees EOF on the status pipe without a code
        os._exit(127)
    try:
        if direct:
            launcher.run_direct(config, entry=_run_agentchild, zygote_fd=kept[0])
        else:
            launcher.run(config, entry=_run_agentchild, exit_fd=exit_fd)
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
        _close_all_but({0, 1, 2, *config.get("pass_fds", [])})
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
    global _self_pidfd
    _self_pidfd = os.pidfd_open(os.getpid())
    _preload()
    _serve(sock)


if __name__ == "__main__":
    main()
