"""Per-task cgroups: cgroup v2 where a controller is delegated to us, else the v1 hierarchies.

Each task gets one group per hierarchy it uses, created under the worker's own cgroup in that
hierarchy and named autogen-sandbox-<worker pid>-<task id>-<random>. The launcher (P0) writes its
own pid into every group's cgroup.procs before it unshares anything, so the whole tree is inside.

Resources and where they come from, in order of preference:
    memory   v2 memory.max + memory.swap.max=0   | v1 memory.limit_in_bytes + memsw (swap off)
    pids     v2 pids.max                           | v1 pids.max
    cpu      v2 cpu.max                            | v1 cpu.cfs_quota_us (throttle to N cores)
    weight   v2 cpu.weight                         | v1 cpu.shares (its share of a busy CPU)
    cpu time v2 cpu.stat usage_usec (any v2 group) | v1 cpuacct.usage
    kill     v2 cgroup.kill                        | freeze (v2 cgroup.freeze or v1 freezer), SIGKILL, thaw
A v2 group is created whenever the unified hierarchy is writable, even with no controller:
it still tracks the tree, counts its CPU time and kills it in one write.
"""
import errno
import os
import secrets
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

PREFIX = "autogen-sandbox-"
V1_CONTROLLERS = ("memory", "pids", "cpu", "cpuacct", "freezer")


class CgroupError(Exception):
    pass


@dataclass
class Hierarchies:
    """The worker's own cgroup directories that it may create task groups under."""

    v1: dict = field(default_factory=dict)  # controller -> Path of our own group in that hierarchy
    v2: Path | None = None  # our own group in the unified hierarchy (writable), if any
    v2_controllers: set = field(default_factory=set)  # controllers v2 children get
    notes: dict = field(default_factory=dict)  # controller -> why it is missing
    v2_kill: bool = False  # the kernel has cgroup.kill (Linux 5.14+)

    def source(self, resource: str) -> str | None:
        """"v2", "v1" or None for memory, pids, cpu, cpuacct, freezer, kill."""
        if resource == "kill":
            return "v2" if self.v2 and self.v2_kill else None
        if resource == "cpuacct" and self.v2 and (self.v2 / "cpu.stat").exists():
            return "v2"
        if resource == "freezer" and self.v2_kill:
            return None  # cgroup.kill needs no freezing (and joining one hierarchy less saves time)
        if resource == "freezer" and "freezer" not in self.v1 and self.v2:
            return "v2"  # cgroup.freeze exists in every non-root v2 group since Linux 5.2
        if resource in self.v2_controllers:
            return "v2"
        if resource in self.v1:
            return "v1"
        return None


def _mounts() -> list[tuple[str, str, set]]:
    """(mount point, fstype, super options) of the cgroup mounts, from /proc/self/mountinfo."""
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields, rfields = left.split(), right.split()
            if len(rfields) >= 3 and rfields[0] in ("cgroup", "cgroup2"):
                found.append((fields[4], rfields[0], set(rfields[2].split(","))))
    return found


def _own_paths() -> tuple[dict, str | None]:
    v1, v2 = {}, None
    with open("/proc/self/cgroup") as f:
        for line in f:
            hid, controllers, path = line.rstrip("\n").split(":", 2)
            if hid == "0" and controllers == "":
                v2 = path
            for c in controllers.split(","):
                if c:
                    v1[c] = path
    return v1, v2


def _writable(base: Path, files: tuple = ()) -> tuple[str | None, set]:
    """(None if we can create and remove a group under base, else why not; which of files it had)."""
    probe = base / f"{PREFIX}probe-{os.getpid()}-{secrets.token_hex(3)}"
    try:
        probe.mkdir()
    except OSError as exc:
        return f"cannot create a group under {base}: {exc.strerror}", set()
    present = {name for name in files if (probe / name).exists()}
    try:
        probe.rmdir()
    except OSError:
        pass
    return None, present


def detect() -> Hierarchies:
    h = Hierarchies()
    try:
        mounts = _mounts()
        own_v1, own_v2 = _own_paths()
    except OSError as exc:
        h.notes["all"] = f"cannot read the cgroup mounts: {exc.strerror}"
        return h
    for point, fstype, options in mounts:
        if fstype == "cgroup2" and own_v2 is not None and h.v2 is None:
            base = Path(point + own_v2.rstrip("/")) if own_v2 != "/" else Path(point)
            why, present = _writable(base, ("cgroup.kill",)) if base.is_dir() else (f"{base} is not visible", set())
            if why:
                h.notes["v2"] = why
                continue
            h.v2, h.v2_kill = base, "cgroup.kill" in present
            available = set(_read(base / "cgroup.controllers", "").split())
            enabled = set(_read(base / "cgroup.subtree_control", "").split())
            for c in ("memory", "pids", "cpu"):
                if c in available and c not in enabled:
                    try:
                        _write(base / "cgroup.subtree_control", f"+{c}")
                        enabled.add(c)
                    except OSError as exc:
                        h.notes[c] = f"v2 {c} not delegated to {base}: {exc.strerror}"
            h.v2_controllers = enabled & {"memory", "pids", "cpu"}
        elif fstype == "cgroup":
            for c in V1_CONTROLLERS:
                if c in options and c not in h.v1 and c in own_v1:
                    base = Path(point + own_v1[c].rstrip("/")) if own_v1[c] != "/" else Path(point)
                    why = _writable(base)[0] if base.is_dir() else f"{base} is not visible"
                    if why:
                        h.notes[c] = why
                    else:
                        h.v1[c] = base
    return h



_hierarchies_cache: Hierarchies | None = None


def hierarchies() -> Hierarchies:
    """detect(), once per process."""
    global _hierarchies_cache
    if _hierarchies_cache is None:
        _hierarchies_cache = detect()
    return _hierarchies_cache


def _read(path: Path, default=None):
    # A counter file is read at every sample of every running tree: raw reads, not Path.read_text (its
    # io layers cost 39 us a read against 10 us, measured on a cgroup's cpu.stat).
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return default
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks).decode()
    except OSError:
        return default
    finally:
        os.close(fd)


def _write(path: Path, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _stat_value(text: str | None, key: str) -> int | None:
    for line in (text or "").splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            return int(value)
    return None


class TaskCgroup:
    """The groups of one task. create() before spawning; remove() after the tree is gone."""

    def __init__(self, h: Hierarchies, task_id: int, *, memory: bool = True, pids: bool = True, cpu: bool = True):
        self.h = h
        self.name = f"{PREFIX}{os.getpid()}-{task_id}-{secrets.token_hex(3)}"
        self.uses = {r: h.source(r) for r in ("memory", "pids", "cpu", "cpuacct", "freezer", "kill")}
        if not memory:
            self.uses["memory"] = None
        if not pids:
            self.uses["pids"] = None
        if not cpu:
            self.uses["cpu"] = None
        self.dirs: dict[str, Path] = {}  # "v2" or a v1 controller -> our group dir
        if h.v2:
            self.dirs["v2"] = h.v2 / self.name
        for r, src in self.uses.items():
            if src == "v1":
                self.dirs[r] = h.v1[r] / self.name
        self.created: list[Path] = []

    # -- set up ----------------------------------------------------------------------------

    def create(self, *, memory_mb: int, max_pids: int, cpu_cores: float, cpu_weight: int = 100) -> None:
        try:
            for path in dict.fromkeys(self.dirs.values()):
                path.mkdir()
                self.created.append(path)
            if self.uses["memory"] == "v2":
                _write(self.dirs["v2"] / "memory.max", str(memory_mb << 20))
                if (self.dirs["v2"] / "memory.swap.max").exists():
                    _write(self.dirs["v2"] / "memory.swap.max", "0")
                _write(self.dirs["v2"] / "memory.oom.group", "1")  # an OOM kills the whole task
            elif self.uses["memory"] == "v1":
                d = self.dirs["memory"]
                _write(d / "memory.limit_in_bytes", str(memory_mb << 20))
                if (d / "memory.memsw.limit_in_bytes").exists():
                    _write(d / "memory.memsw.limit_in_bytes", str(memory_mb << 20))
                try:
                    _write(d / "memory.swappiness", "0")
                except OSError:
                    pass
                # v1 has no oom.group: instead of killing one process (the agent would carry on), the
                # kernel pauses the tree at the limit and check_limits() ends the task memory_limit.
                _write(d / "memory.oom_control", "1")
            if self.uses["pids"]:
                _write(self._dir("pids") / "pids.max", str(max_pids))
            weight = min(10000, max(1, int(cpu_weight)))
            if self.uses["cpu"] == "v2":
                _write(self.dirs["v2"] / "cpu.max", f"{max(1000, int(cpu_cores * 100000))} 100000")
                if weight != 100:
                    _write(self.dirs["v2"] / "cpu.weight", str(weight))
            elif self.uses["cpu"] == "v1":
                _write(self.dirs["cpu"] / "cpu.cfs_period_us", "100000")
                _write(self.dirs["cpu"] / "cpu.cfs_quota_us", str(max(1000, int(cpu_cores * 100000))))
                if weight != 100:
                    _write(self.dirs["cpu"] / "cpu.shares", str(max(2, weight * 1024 // 100)))  # v1: 1024 = weight 100
        except OSError as exc:
            self.remove()
            raise CgroupError(f"cgroup setup failed at {exc.filename or ''}: {exc.strerror}") from None

    def procs_files(self) -> list[str]:
        return [str(p / "cgroup.procs") for p in self.created]

    def _dir(self, resource: str) -> Path:
        return self.dirs["v2"] if self.uses[resource] == "v2" else self.dirs[resource]

    # -- counters --------------------------------------------------------------------------

    def cpu_seconds(self) -> float | None:
        if self.uses["cpuacct"] == "v2":
            usec = _stat_value(_read(self.dirs["v2"] / "cpu.stat"), "usage_usec")
            return usec / 1e6 if usec is not None else None
        if self.uses["cpuacct"] == "v1":
            text = _read(self.dirs["cpuacct"] / "cpuacct.usage")
            return int(text) / 1e9 if text else None
        return None

    def memory(self) -> tuple[int, int | None] | None:
        """(current bytes without reclaimable page cache, peak bytes as the kernel counts them)."""
        if self.uses["memory"] == "v2":
            d = self.dirs["v2"]
            current = _read(d / "memory.current")
            if current is None:
                return None
            inactive = _stat_value(_read(d / "memory.stat"), "inactive_file") or 0
            return max(0, int(current) - inactive), self.memory_peak()
        if self.uses["memory"] == "v1":
            d = self.dirs["memory"]
            usage = _read(d / "memory.usage_in_bytes")
            if usage is None:
                return None
            inactive = _stat_value(_read(d / "memory.stat"), "total_inactive_file") or 0
            return max(0, int(usage) - inactive), self.memory_peak()
        return None

    def memory_peak(self) -> int | None:
        """The peak bytes as the kernel counts them (what a tree's exit keeps; memory() reads it too)."""
        if self.uses["memory"] in ("v2", "v1"):
            name = "memory.peak" if self.uses["memory"] == "v2" else "memory.max_usage_in_bytes"
            peak = _read(self._dir("memory") / name)
            return int(peak) if peak else None
        return None

    def oom_kills(self) -> int | None:
        if self.uses["memory"] == "v2":
            return _stat_value(_read(self.dirs["v2"] / "memory.events"), "oom_kill")
        if self.uses["memory"] == "v1":
            return _stat_value(_read(self.dirs["memory"] / "memory.oom_control"), "oom_kill")
        return None

    def under_oom(self) -> bool:
        """v1 with the OOM killer disabled: the tree is paused at its memory limit."""
        if self.uses["memory"] == "v1":
            return bool(_stat_value(_read(self.dirs["memory"] / "memory.oom_control"), "under_oom"))
        return False

    def pids(self) -> list[int]:
        found = set()
        for path in self.created:
            text = _read(path / "cgroup.procs", "")
            found.update(int(p) for p in text.split())
        return sorted(found)

    # -- kill and remove -------------------------------------------------------------------

    def kill(self) -> bool:
        """SIGKILL every process in the groups, including any that forked or setsid()'d meanwhile.

        True when the kernel guarantees none of them runs again (cgroup.kill, or SIGKILL sent while the
        group was frozen): they are dying, if not yet reaped."""
        if not self.created:
            return False
        if self.uses["kill"] == "v2" and self.dirs["v2"] in self.created:
            try:
                _write(self.dirs["v2"] / "cgroup.kill", "1")
                return True
            except OSError:
                pass
        frozen = self._freeze(True)
        try:
            for _ in range(100):
                pids = self.pids()
                if not pids:
                    break
                for pid in pids:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                if frozen:
                    break
                time.sleep(0.005)
        finally:
            if frozen:
                self._freeze(False)
        return frozen

    def _freeze(self, on: bool) -> bool:
        try:
            if self.uses["freezer"] == "v2":
                _write(self.dirs["v2"] / "cgroup.freeze", "1" if on else "0")
            elif self.uses["freezer"] == "v1":
                _write(self.dirs["freezer"] / "freezer.state", "FROZEN" if on else "THAWED")
                if on:
                    for _ in range(200):
                        if _read(self.dirs["freezer"] / "freezer.state", "").strip() == "FROZEN":
                            break
                        time.sleep(0.001)
            else:
                return False
            return True
        except OSError:
            return False

    def remove(self, wait_seconds: float = 2.0) -> None:
        """rmdir every group; a group that still holds processes is killed first."""
        deadline = time.monotonic() + wait_seconds
        for path in reversed(self.created[:]):
            while True:
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:
                    if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                        raise CgroupError(f"cannot remove {path}: {exc.strerror}") from None
                    self.kill()
                    time.sleep(0.01)
            self.created.remove(path)


def reap_stale(h: Hierarchies) -> int:
    """Remove task groups left by workers that died (their pid, in the group's name, is gone)."""
    removed = 0
    bases = set(h.v1.values()) | ({h.v2} if h.v2 else set())
    for base in bases:
        try:
            entries = list(base.iterdir())
        except OSError:
            continue
        for path in entries:
            if not path.name.startswith(PREFIX) or not path.is_dir():
                continue
            worker = path.name[len(PREFIX):].split("-", 1)[0]
            if not worker.isdigit() or os.path.exists(f"/proc/{worker}"):
                continue
            for pid in (_read(path / "cgroup.procs", "") or "").split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except OSError:
                    pass
            for _ in range(50):
                try:
                    path.rmdir()
                    removed += 1
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.01)
    return removed
