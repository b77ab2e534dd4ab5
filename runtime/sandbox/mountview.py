"""The mount view: the whole filesystem a sandboxed child sees (namespaces mode), as the ordered
list of mounts the launcher makes in a fresh tmpfs root.

Read-only: the system dirs, a few /etc files, the Python runtime, the venv and runtime/agentchild
(and a box's ro_paths); generated: /etc/passwd, group, hosts, hostname; writable only the work dir
and /tmp, /dev/shm (size-capped tmpfs, counted in the task's memory); /proc of its own pid namespace.
"""
import os
import sys

from . import zygote

# The code a task's child runs: bound read-only into every view (its path defined once, in the zygote).
AGENTCHILD_DIR = zygote.AGENTCHILD_DIR
# /etc entries the child may read (passwd, group, hosts and hostname are generated instead).
ETC_ENTRIES = (
    "alternatives", "ca-certificates", "ca-certificates.conf", "debian_version", "gai.conf", "host.conf",
    "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "magic", "mime.types", "nsswitch.conf",
    "os-release", "protocols", "python3", "python3.11", "services", "ssl", "timezone",
)
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
DEVICES = ("null", "zero", "full", "random", "urandom")


def mount_view(box) -> list[dict]:
    """The whole filesystem of box (a Sandbox) for its child: parents before children (the launcher mounts in order)."""
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
    workdir = str(box.workdir.resolve())
    add("/etc/passwd", kind="file", content=(
        "root:x:0:0:root:/root:/usr/sbin/nologin\n"
        f"sandbox:x:{box.uid}:{box.gid}:sandbox:{workdir}:/bin/sh\n"
        + (f"code:x:{box.code_uid}:{box.code_gid}:code:{workdir}:/bin/sh\n" if box.code_uid is not None else "")
        +             "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"))
    add("/etc/group", kind="file", content=f"root:x:0:\nsandbox:x:{box.gid}:\n"
        + (f"code:x:{box.code_gid}:\n" if box.code_gid is not None else "") + "nogroup:x:65534:\n")
    add("/etc/hosts", kind="file", content="127.0.0.1 localhost sandbox\n::1 localhost\n")
    add("/etc/hostname", kind="file", content="sandbox\n")
    add("/etc/mtab", kind="symlink", target="../proc/self/mounts")
    for path in (sys.base_prefix, sys.prefix, os.path.dirname(os.path.dirname(os.path.realpath(sys.executable)))):
        bind_ro(path)
    bind_ro(sys.executable)
    bind_ro(str(AGENTCHILD_DIR))
    for path in box.ro_paths:
        bind_ro(path)
    add("/dev", kind="tmpfs", size_kb=64, mode="0755", noexec=True)
    for name in DEVICES:
        add(f"/dev/{name}", kind="bind", src=f"/dev/{name}", rw=True, dev=True)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        add(f"/dev/{name}", kind="symlink", target=target)
    add("/dev/shm", kind="tmpfs", size_kb=box.limits.tmp_mb << 10, mode="1777")
    add("/proc", kind="proc")
    add("/tmp", kind="tmpfs", size_kb=box.limits.tmp_mb << 10, mode="1777")
    add("/var/tmp", kind="symlink", target="/tmp")
    # The work dir is a tmpfs too: nothing the task writes reaches the host's disk, and what it
    # writes counts in its memory (the host directory stays the empty mount point).
    add(workdir, kind="tmpfs", size_kb=box.limits.workdir_mb << 10, mode="0700", uid=box.workdir_uid, gid=box.workdir_gid)
    return [mounts[k] for k in sorted(mounts, key=lambda p: p.split("/"))]

