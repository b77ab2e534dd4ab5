"""The sandbox's launcher: builds the layers around one task's child, then execs it. Stdlib only.

Run by Sandbox.spawn() as `python -I -S launcher.py CONFIG_FD STATUS_FD` with an empty
environment. It reads its config (marshal) from CONFIG_FD and reports a failure as one line on
STATUS_FD (close-on-exec, so the parent reads EOF once the child's program is running).

    P0 (this process, in the worker's namespaces; the pid the supervisor sees)
       joins the task's cgroups, opens the bind sources, unshares the namespaces, forks P1,
       waits for it and exits the way it did (same code, or killed by the same signal).
    P1 (pid 1 of the new pid namespace, later the child itself)
       builds the mount view in a tmpfs, pivots into it, brings up loopback, sets the
       hostname, applies rlimits, drops to the task's uid, sets no_new_privs, installs the
       seccomp filter and execs the child's argv with the child's environment.

With mode "off" (no namespaces on this host) P0 stays a child subreaper, forks the child
and, when the child ends, kills whatever it left behind.

Warm start (zygote.py), mode "root": no P0. The zygote clones P1 straight into its namespaces and
run_direct() does the rest of P0's work in P1 (the cgroups joined, then the cgroup namespace) and P1's
own; the zygote reaps P1 and reports its end. Mode "user": the same run() in a fork of the zygote
instead of a fresh interpreter. P0 is then the zygote's child, not the worker's: it watches the worker's
pid through a pidfd (PR_SET_PDEATHSIG would follow the zygote) and reports the child's end on EXIT_FD.
Either way P1, once every layer is built, calls the agent's entry point in-process instead of exec'ing
an interpreter.
"""
import _signal as signal  # the C module: `signal` would import enum, 10+ ms of every task's start
import ctypes
import errno
import fcntl
import marshal
import os
import resource
import select
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]  # -I left our own directory out; runtime/ holds agentchild
import coderunner  # noqa: E402 - stdlib only; imported now, before the mount view hides this directory
from agentchild.linux import (  # noqa: E402 - constants only
    PR_SET_CHILD_SUBREAPER, PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS, PR_SET_PDEATHSIG, PR_SET_SECCOMP,
)

del sys.path[:2]

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NEWTIME = 0x00000080
NAMESPACE_FLAGS = CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWTIME

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MS_NOATIME, MS_NODIRATIME, MS_RELATIME = 1024, 2048, 1 << 21
MNT_DETACH = 2

SECCOMP_MODE_FILTER = 2

libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
libc.unshare.argtypes = [ctypes.c_int]
libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]

status_fd = -1


class Failure(Exception):
    """A layer could not be built: reported to the parent, which raises SandboxError."""


def fail(message: str) -> None:
    line = (message.replace("\n", " ") + "\n").encode()
    try:
        os.write(status_fd, line)
    except OSError:  # the child already runs: say it on stderr
        os.write(2, b"sandbox launcher: " + line)
    finally:
        os._exit(127)


def check(ret: int, what: str) -> None:
    if ret != 0:
        code = ctypes.get_errno()
        raise Failure(f"{what}: {os.strerror(code)}")


def prctl(option: int, arg: int = 0, arg3: int = 0) -> None:
    check(libc.prctl(option, arg, arg3, 0, 0), f"prctl({option})")


def mount(source, target: str, fstype, flags: int, data=None) -> None:
    enc = lambda value: value.encode() if isinstance(value, str) else value  # noqa: E731
    check(libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)), f"mount {target}")


# --- P0 -------------------------------------------------------------------------------------


def join_cgroups(procs_files: list[str]) -> None:
    for path in procs_files:
        try:
            with open(path, "w") as f:
                f.write(str(os.getpid()))
        except OSError as exc:
            raise Failure(f"joining cgroup {os.path.dirname(path)}: {exc.strerror}") from None


def drop_to(uid: int, gid: int) -> None:
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    prctl(PR_SET_DUMPABLE, 1)  # the uid change made /proc/self root's; we still write our maps


def enter_user_namespace(flags: int) -> None:
    """Unprivileged: the new user namespace maps our own uid and gid to themselves, nothing else."""
    uid, gid = os.geteuid(), os.getegid()
    check(libc.unshare(flags | CLONE_NEWUSER), "unshare (user namespace)")
    for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1\n"), ("gid_map", f"{gid} {gid} 1\n")):
        with open(f"/proc/self/{name}", "w") as f:
            f.write(text)


def mirror_exit(status: int) -> None:
    """Exit the way the child did: the supervisor's Popen sees the child's code or signal."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig not in (signal.SIGKILL, signal.SIGSTOP):
            signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
        os._exit(128 + sig)
    os._exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 1)


def forward_signals(pid_holder: list) -> None:
    def forward(sig, _frame):
        if pid_holder:
            try:
                os.kill(pid_holder[0], sig)
            except ProcessLookupError:
                pass

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(sig, forward)


def kill_descendants() -> None:
    """Mode "off": SIGKILL every process left below us (orphans were reparented to us, the subreaper)."""
    for _ in range(50):
        children = []
        try:
            for tid in os.listdir("/proc/self/task"):
                with open(f"/proc/self/task/{tid}/children") as f:
                    children += [int(p) for p in f.read().split()]
        except OSError:
            return
        if not children:
            return
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        while True:
            try:
                if os.waitpid(-1, os.WNOHANG)[0] == 0:
                    break
            except ChildProcessError:
                break


def wait_for(pid: int, reap_all: bool, cpu_limit: float) -> int:
    """The child's wait status; a SIGKILL that RLIMIT_CPU's hard limit sent reads as SIGXCPU.

    (The child is pid 1 of its namespace, which ignores SIGXCPU, so the soft limit never shows.)"""
    while True:
        try:
            got, status, usage = os.wait4(-1 if reap_all else pid, 0)
        except ChildProcessError:
            return 0
        if got == pid:
            if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL and cpu_limit and usage.ru_utime + usage.ru_stime >= cpu_limit - 0.01:
                return signal.SIGXCPU
            return status


def main() -> None:
    global status_fd
    config_fd, status_fd = int(sys.argv[1]), int(sys.argv[2])
    os.set_inheritable(status_fd, False)
    with os.fdopen(config_fd, "rb") as f:
        config = marshal.loads(f.read())
    try:
        run(config)
    except Failure as exc:
        fail(str(exc))
    except Exception as exc:  # noqa: BLE001 - any failure to build the sandbox is reported, never run half-built
        fail(f"{type(exc).__name__}: {exc}")


def run(config: dict, entry=None, exit_fd: int = -1) -> None:
    """Build the layers and run the child. entry (warm start): called in P1 instead of exec; P0
    then writes the child's return code (Popen's convention) on exit_fd before it exits alike."""
    parent_fd = -1
    if entry is not None:
        if config["mode"] == "off":
            raise Failure("a warm start needs namespaces")
        try:  # our parent is the zygote: watch the worker that asked for us instead
            parent_fd = os.pidfd_open(config["parent_pid"]) if config.get("die_with_parent") else -1
        except OSError:
            os._exit(127)
    elif config.get("die_with_parent"):
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != config["parent_pid"]:
            os._exit(127)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    os.umask(0o022)
    join_cgroups(config.get("cgroup_procs", []))
    mode = config["mode"]
    cpu_limit = config.get("rlimits", {}).get("CPU", (0, 0))[0]
    mounts = config.get("mounts", [])
    child_holder: list[int] = []
    forward_signals(child_holder)

    if mode == "off":
        prctl(PR_SET_CHILD_SUBREAPER, 1)
        pid = os.fork()
        if pid == 0:
            child(config, entry)
        child_holder.append(pid)
        os.close(status_fd)
        status = wait_for(pid, reap_all=True, cpu_limit=cpu_limit)
        kill_descendants()
        mirror_exit(status)

    flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP
    if mode == "user":
        if os.geteuid() == 0:
            drop_to(config["uid"], config["gid"])
            if config.get("die_with_parent") and entry is None:
                prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        enter_user_namespace(flags)
    else:
        check(libc.unshare(flags), "unshare (namespaces)")
    pid = os.fork()
    if pid == 0:
        if config.get("die_with_parent"):
            prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if exit_fd >= 0:
            os.close(exit_fd)
        if parent_fd >= 0:
            os.close(parent_fd)
        build_view(config)
        child(config, entry)
    child_holder.append(pid)
    os.close(status_fd)
    if entry is None:
        mirror_exit(wait_for(pid, reap_all=False, cpu_limit=cpu_limit))
    if parent_fd >= 0:
        wait_for_exit_or_parent(pid, parent_fd)
    status = wait_for(pid, reap_all=False, cpu_limit=cpu_limit)
    try:
        os.write(exit_fd, str(os.waitstatus_to_exitcode(status)).encode())
    except OSError:
        pass
    mirror_exit(status)


def run_direct(config: dict, entry, zygote_fd: int) -> None:
    """Warm start without P0 (mode "root"): we are P1 already, cloned by the zygote into new mount, pid, net,
    ipc and uts namespaces; the zygote reaps us and reports our end. What P0 did before forking P1 happens
    here, in the same order: die with the zygote (which dies with the worker), the cgroups joined, then the
    cgroup namespace (rooted at the task's cgroup), then P1's own work, as in run()."""
    if config["mode"] != "root":
        raise Failure("a direct start needs the root mode")
    if config.get("die_with_parent"):
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        alive = select.poll()  # poll(), not select(): the descriptor's number may be above 1024
        alive.register(zygote_fd, select.POLLIN)
        if alive.poll(0):
            os._exit(127)  # the zygote ended before the line above: nobody would kill us
    os.close(zygote_fd)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    os.umask(0o022)
    join_cgroups(config.get("cgroup_procs", []))  # our pid in our namespace (1): the kernel reads it there
    check(libc.unshare(CLONE_NEWCGROUP), "unshare (cgroup namespace)")
    build_view(config)
    child(config, entry)


def wait_for_exit_or_parent(pid: int, parent_fd: int) -> None:
    """Warm start: block until the child exits; SIGKILL it (pid 1: its whole namespace) if the worker dies first."""
    child_fd = os.pidfd_open(pid)
    if parent_fd in select.select([child_fd, parent_fd], [], [])[0]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


# --- P1: the mount view ------------------------------------------------------------------------

RO_FLAGS = MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV


def locked_flags(path: str) -> int:
    """Flags a remount must keep (a user namespace may not clear what the source mount set)."""
    f = os.statvfs(path).f_flag
    flags = 0
    for st_bit, ms_bit in ((os.ST_NODEV, MS_NODEV), (os.ST_NOEXEC, MS_NOEXEC), (os.ST_NOATIME, MS_NOATIME), (os.ST_NODIRATIME, MS_NODIRATIME), (os.ST_RELATIME, MS_RELATIME)):
        if f & st_bit:
            flags |= ms_bit
    return flags


def make_mountpoint(path: str, is_dir: bool) -> None:
    if is_dir:
        os.makedirs(path, mode=0o755, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        if not os.path.exists(path):
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o644))


def build_view(config: dict) -> None:
    new_root = config["new_root"]
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    mount("tmpfs", new_root, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755")
    for spec in config["mounts"]:
        target = new_root + spec["dst"]
        kind = spec["kind"]
        if kind == "bind":
            source = spec["src"]
            try:
                os.stat(source)
                is_dir = os.path.isdir(source)
            except (PermissionError, FileNotFoundError):
                if spec.get("optional"):
                    continue  # what we cannot read, the child could not read either
                raise Failure(f"bind source {source} is not readable") from None
            make_mountpoint(target, is_dir)
            mount(source, target, None, MS_BIND)
            extra = 0 if spec.get("dev") else MS_NODEV
            flags = MS_REMOUNT | MS_BIND | MS_NOSUID | extra | locked_flags(target)
            mount(None, target, None, flags | (0 if spec.get("rw") else MS_RDONLY))
        elif kind == "tmpfs":
            make_mountpoint(target, True)
            options = f"size={spec['size_kb']}k,mode={spec.get('mode', '1777')}"
            if "uid" in spec:
                options += f",uid={spec['uid']},gid={spec['gid']}"
            mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV | (MS_NOEXEC if spec.get("noexec") else 0), options)
        elif kind == "dir":
            make_mountpoint(target, True)
        elif kind == "symlink":
            os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
            os.symlink(spec["target"], target)
        elif kind == "file":
            make_mountpoint(target, False)
            with open(target, "w") as f:
                f.write(spec["content"])
        elif kind == "proc":
            make_mountpoint(target, True)
            mount("proc", target, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    mount(None, new_root, None, RO_FLAGS)
    os.chdir(new_root)
    check(libc.syscall(PIVOT_ROOT.get(os.uname().machine, -1), b".", b"."), "pivot_root")
    check(libc.umount2(b".", MNT_DETACH), "detaching the old root")
    os.chdir("/")
    hostname = config.get("hostname", "sandbox").encode()
    check(libc.sethostname(hostname, len(hostname)), "sethostname")
    loopback_up()


PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}


def loopback_up() -> None:
    SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP, AF_INET, SOCK_DGRAM = 0x8913, 0x8914, 0x1, 2, 2
    fd = libc.socket(AF_INET, SOCK_DGRAM, 0)
    if fd < 0:
        check(-1, "socket")
    try:
        flags = struct.unpack("16sH22x", fcntl.ioctl(fd, SIOCGIFFLAGS, struct.pack("16sH22x", b"lo", 0)))[1]
        fcntl.ioctl(fd, SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", flags | IFF_UP))
    finally:
        os.close(fd)


# --- the child's own process, just before exec ------------------------------------------------


def child(config: dict, entry=None) -> None:
    try:
        os.chdir(config["cwd"])
        for name, (soft, hard) in config.get("rlimits", {}).items():
            resource.setrlimit(getattr(resource, f"RLIMIT_{name}"), (soft, hard))
        if config.get("code_runner"):
            start_code_runner(config)
        if config["mode"] == "root":
            drop_to(config["uid"], config["gid"])
        # Not dumpable: no same-uid process (the code, if it ever ran as this uid) may open its
        # /proc/PID/mem, ptrace it or pidfd_getfd its descriptors. An exec resets it: agentchild
        # sets it again first thing (a warm child never execs).
        prctl(PR_SET_DUMPABLE, 0)
        if config.get("die_with_parent"):
            prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # a change of credentials cleared it
        if config.get("no_new_privs"):
            prctl(PR_SET_NO_NEW_PRIVS, 1)
        if config.get("seccomp"):
            install_seccomp()
        for fd in config.get("pass_fds", []):
            os.set_inheritable(fd, True)
        for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2):
            signal.signal(sig, signal.SIG_DFL)
        argv, env = config["argv"], config["env"]
        if entry is None:
            os.execvpe(argv[0], argv, env)
    except Failure as exc:
        fail(str(exc))
    except Exception as exc:  # noqa: BLE001
        fail(f"starting {config['argv'][0]}: {type(exc).__name__}: {exc}")
    os.close(status_fd)  # what exec's close-on-exec does: the parent reads EOF, the child runs
    entry(config)  # never returns


# --- the code runner: the second principal ----------------------------------------------------


def start_code_runner(config: dict) -> None:
    """Fork the code runner (coderunner.py) while we still may change uid; hand its socket to the child.

    The runner keeps only stdio and its end of a socketpair, takes the code uid where there is one
    (a root worker), is not dumpable, dies with the agent, and gets no_new_privs and the same
    seccomp filter. The child finds its end in AGENTCHILD_RUNNER_FD."""
    import _socket

    ours, theirs = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM, 0)
    ours_fd, theirs_fd = ours.detach(), theirs.detach()
    agent = os.getpid()
    pid = os.fork()
    if pid == 0:
        code = 127
        try:
            os.close(ours_fd)
            for fd in [int(f) for f in os.listdir("/proc/self/fd")]:
                if fd not in (0, 1, 2, theirs_fd):
                    try:
                        os.close(fd)
                    except OSError:
                        pass
            global status_fd
            status_fd = -1
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2):
                signal.signal(sig, signal.SIG_DFL)
            for sig in (signal.SIGPIPE, signal.SIGXFSZ):  # errors, not deaths (as in any interpreter)
                signal.signal(sig, signal.SIG_IGN)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            uid = config.get("code_uid")
            if uid is not None and os.geteuid() == 0:
                drop_to(uid, config.get("code_gid", uid))
            prctl(PR_SET_DUMPABLE, 0)
            prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
            if os.getppid() != agent:
                os._exit(70)  # the agent is already gone
            if config.get("no_new_privs"):
                prctl(PR_SET_NO_NEW_PRIVS, 1)
            if config.get("seccomp"):
                install_seccomp()
            os.umask(0o077)
            coderunner.serve(theirs_fd, config)
            code = 0
        except BaseException:  # noqa: BLE001 - the agent sees the runner's end close
            code = 127
        finally:
            os._exit(code)
    os.close(theirs_fd)
    config["pass_fds"] = [*config.get("pass_fds", []), ours_fd]
    config["env"] = {**config["env"], "AGENTCHILD_RUNNER_FD": str(ours_fd)}


# --- seccomp: a deny-list filter ----------------------------------------------------------------

AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
# name: (x86_64, aarch64). Calls a task never needs and that widen the kernel's attack surface.
DENIED = {
    "ptrace": (101, 117), "process_vm_readv": (310, 270), "process_vm_writev": (311, 271),
    # Reaching into another process of the task (the agent, from its code): descriptors, memory.
    "pidfd_getfd": (438, 438), "kcmp": (312, 272), "process_madvise": (440, 440),
    "mount": (165, 40), "umount2": (166, 39), "pivot_root": (155, 41), "chroot": (161, 51),
    "open_tree": (428, 428), "move_mount": (429, 429), "fsopen": (430, 430), "fsconfig": (431, 431),
    "fsmount": (432, 432), "fspick": (433, 433), "mount_setattr": (442, 442),
    "unshare": (272, 97), "setns": (308, 268),
    "swapon": (167, 224), "swapoff": (168, 225), "reboot": (169, 142), "acct": (163, 89),
    "kexec_load": (246, 104), "kexec_file_load": (320, 294),
    "init_module": (175, 105), "finit_module": (313, 273), "delete_module": (176, 106),
    "keyctl": (250, 219), "add_key": (248, 217), "request_key": (249, 218),
    "bpf": (321, 280), "perf_event_open": (298, 241), "userfaultfd": (323, 282),
    "io_uring_setup": (425, 425), "io_uring_enter": (426, 426), "io_uring_register": (427, 427),
    "open_by_handle_at": (304, 265), "syslog": (103, 116), "quotactl": (179, 60),
}
CLONE = {"x86_64": 56, "aarch64": 220}
CLONE3 = 435

BPF_LD_W_ABS, BPF_JEQ_K, BPF_JGE_K, BPF_JSET_K, BPF_RET_K = 0x20, 0x15, 0x35, 0x45, 0x06
SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO, SECCOMP_RET_KILL_PROCESS = 0x7FFF0000, 0x00050000, 0x80000000


def seccomp_program(machine: str) -> bytes:
    """Wrong arch -> kill; x32 -> EPERM; denied calls -> EPERM; clone with namespace flags -> EPERM;
    clone3 -> ENOSYS (libc falls back to clone, whose flags the filter can see); else allow."""
    if machine not in AUDIT_ARCH:
        raise Failure(f"seccomp: no syscall table for {machine}")
    index = 0 if machine == "x86_64" else 1
    eperm, enosys = SECCOMP_RET_ERRNO | errno.EPERM, SECCOMP_RET_ERRNO | errno.ENOSYS
    prog = [(BPF_LD_W_ABS, 0, 0, 4), (BPF_JEQ_K, 1, 0, AUDIT_ARCH[machine]), (BPF_RET_K, 0, 0, SECCOMP_RET_KILL_PROCESS)]
    prog.append((BPF_LD_W_ABS, 0, 0, 0))
    if machine == "x86_64":
        prog += [(BPF_JGE_K, 0, 1, 0x40000000), (BPF_RET_K, 0, 0, eperm)]
    for numbers in DENIED.values():
        prog += [(BPF_JEQ_K, 0, 1, numbers[index]), (BPF_RET_K, 0, 0, eperm)]
    prog += [(BPF_JEQ_K, 0, 1, CLONE3), (BPF_RET_K, 0, 0, enosys)]
    # clone: load the low word of args[0] (flags) and refuse any namespace flag.
    prog += [
        (BPF_JEQ_K, 0, 3, CLONE[machine]),
        (BPF_LD_W_ABS, 0, 0, 16),
        (BPF_JSET_K, 0, 1, NAMESPACE_FLAGS),
        (BPF_RET_K, 0, 0, eperm),
        (BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),
    ]
    return b"".join(struct.pack("HBBI", *ins) for ins in prog)


def install_seccomp() -> None:
    program = seccomp_program(os.uname().machine)
    buf = ctypes.create_string_buffer(program)
    fprog = struct.pack("HxxxxxxQ", len(program) // 8, ctypes.addressof(buf))
    fprog_buf = ctypes.create_string_buffer(fprog)
    check(libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(fprog_buf), 0, 0), "seccomp filter")


if __name__ == "__main__":
    main()
