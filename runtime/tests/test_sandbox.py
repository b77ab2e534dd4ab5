"""The sandbox, tried as an attacker would, at the Sandbox level: small Python programs run through
Sandbox with the same kind of argv and environment the task child gets, checked from inside and
from outside. A test skips only where this host lacks the layer it proves (and says which)."""
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest
from django.conf import settings

from conftest import host_lacks
from runtime.sandbox import (
    AGENTCHILD_DIR,
    LEVELS,
    Sandbox,
    SandboxError,
    SandboxLimits,
    meets_min_level,
    probe_capabilities,
)

REPORT = probe_capabilities()


def need(*layers):
    for name in layers:
        info = REPORT["layers"][name]
        if not info["active"]:
            host_lacks(f"the {name} layer: {info['detail']}")


@pytest.fixture
def root():
    """A sandbox root whose parents any uid can traverse (pytest's tmp_path is root-only)."""
    path = Path(tempfile.mkdtemp(prefix="sandbox-test-"))
    os.chmod(path, 0o711)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def marker():
    """A unique word put on the command line of processes a test starts; none may outlive the test."""
    word = f"sandbox-marker-{secrets.token_hex(4)}"
    yield word
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and _with_marker(word):
        time.sleep(0.05)
    assert not _with_marker(word), "a sandboxed process outlived its test"
    # The test process is healthy: it still starts processes and its own limits are untouched.
    assert subprocess.run([sys.executable, "-c", "print('ok')"], capture_output=True, text=True).stdout == "ok\n"


def _with_marker(word: str) -> list[int]:
    found = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if any(word in part for part in p.info["cmdline"] or []):
                found.append(p.pid)
        except psutil.Error:
            pass
    return found


def child_env(box: Sandbox) -> dict:
    """The same kind of environment the supervisor gives the agent child."""
    return {
        "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(box.workdir),
        "TMPDIR": str(box.workdir),
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(AGENTCHILD_DIR.parent),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
    }


def start(root, code: str, *args, limits=None, pass_fds=(), python=None, **options) -> tuple[Sandbox, "tempfile._TemporaryFileWrapper"]:
    # The programs here play the child that writes its work dir; the code runner's tests ask for one.
    options.setdefault("code_runner", False)
    box = Sandbox(task_id=secrets.randbelow(10**6), limits=limits or SandboxLimits(memory_mb=128, cpu_seconds=10, timeout_seconds=30), root=root, **options)
    out = tempfile.TemporaryFile()
    box.spawn([python or sys.executable, "-c", code, *args], env=child_env(box), pass_fds=pass_fds, stdout=out, stderr=subprocess.STDOUT)
    return box, out


def run(root, code: str, *args, timeout=20, **kwargs) -> tuple[Sandbox, int, str]:
    box, out = start(root, code, *args, **kwargs)
    try:
        code_ = box.wait(timeout)
        out.seek(0)
        return box, code_, out.read().decode(errors="replace")
    finally:
        box.cleanup()
        out.close()


def facts(output: str) -> dict:
    """The last line a probe program printed, as JSON."""
    lines = [line for line in output.splitlines() if line.startswith("{")]
    assert lines, output
    return json.loads(lines[-1])


# -- capability report -----------------------------------------------------------------------------


def test_probe_reports_every_layer_a_level_and_the_floor_check():
    assert REPORT["level"] in LEVELS
    for name in ("environment", "process_group", "workdir", "rlimits", "identity", "pid_namespace", "net_namespace",
                 "mount_namespace", "ipc_namespace", "uts_namespace", "filesystem", "cgroup_memory", "cgroup_pids",
                 "cgroup_cpu", "no_new_privs", "seccomp", "code_identity"):
        assert set(REPORT["layers"][name]) == {"active", "detail"}
        assert REPORT["layers"][name]["detail"]
    assert meets_min_level(REPORT, "none") and meets_min_level(REPORT, "process")
    assert meets_min_level({"level": "namespaces"}, "rlimits") and not meets_min_level({"level": "rlimits"}, "cgroups")
    with pytest.raises(ValueError):
        meets_min_level(REPORT, "fort-knox")
    if os.geteuid() == 0:
        # This machine (root, v1 cgroups writable, namespaces) is the CI host: every layer must be on.
        assert REPORT["level"] == "full", REPORT


# -- what the child can learn ----------------------------------------------------------------------

SNOOP = r"""
import json, os, subprocess, sys
found = {"self": open("/proc/self/environ", "rb").read().decode(errors="replace")}
found["grandchild"] = subprocess.run([sys.executable, "-c", "print(open('/proc/self/environ').read())"],
                                     env=dict(os.environ), capture_output=True, text=True).stdout
try:
    found["init"] = open("/proc/1/environ", "rb").read().decode(errors="replace")
except OSError as exc:
    found["init"] = "unreadable: " + exc.strerror
# Everything readable outside the (public) system and Python directories.
seen = []
for top in ("/etc", "/tmp", "/work", "/root", "/var", os.getcwd()):
    for base, dirs, files in os.walk(top):
        if "/.venv" in base or "/.pyenv" in base:
            continue
        for name in files:
            path = os.path.join(base, name)
            try:
                if not os.path.islink(path) and os.path.getsize(path) < 1 << 18:
                    seen.append(open(path, "rb").read().decode(errors="replace"))
            except OSError:
                pass
found["files"] = "\n".join(seen)
found["pids"] = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
print(json.dumps(found))
"""


def test_no_secret_reaches_the_child_or_its_children(root, monkeypatch, marker):
    secret = f"s3cret-{secrets.token_hex(8)}"
    monkeypatch.setenv("PLATFORM_FAKE_SECRET", secret)
    box, code, output = run(root, SNOOP, marker)
    assert code == 0, output
    found = facts(output)
    assert "PYTHONPATH=" in found["self"] and "PATH=" in found["self"]
    assert secret not in output
    assert "PLATFORM_FAKE_SECRET" not in output
    for value in (settings.SECRET_KEY, settings.ADMIN_API_KEY, settings.DATABASES["default"].get("PASSWORD") or secret):
        assert value not in found["files"] and value not in found["self"] and value not in found["init"]
    # Names of the platform's own settings never appear in the child's environment.
    for name in ("DJANGO_SECRET_KEY", "DATABASE_URL", "REDIS_URL", "ADMIN_API_KEY"):
        assert name not in found["self"] and name not in found["grandchild"] and name not in found["init"]
    if REPORT["layers"]["pid_namespace"]["active"]:
        assert found["pids"][0] == 1 and len(found["pids"]) <= 3, found["pids"]  # its own tree only


def test_only_the_passed_descriptor_is_open_and_it_works(root, marker):
    parent, child = socket.socketpair()
    stray = os.open("/dev/null", os.O_RDONLY)
    os.set_inheritable(stray, True)  # even an inheritable stray fd must not leak
    code = r"""
import os, socket, sys
fd = int(sys.argv[1])
fds = sorted(int(f) for f in os.listdir("/proc/self/fd"))
socket.socket(fileno=fd).sendall(("fds=" + ",".join(map(str, fds))).encode())
"""
    channel = child.fileno()
    try:
        box, status, output = run(root, code, str(channel), marker, pass_fds=(channel,))
        child.close()
        parent.settimeout(5)
        message = parent.recv(1000).decode()
    finally:
        parent.close()
        os.close(stray)
    assert status == 0, output
    fds = {int(f) for f in message.removeprefix("fds=").split(",")}
    # 0-2, the channel, and the directory listdir had open.
    assert stray not in fds
    assert len(fds - {0, 1, 2, channel}) == 1 and channel in fds, fds


def test_no_address_is_reachable(root, marker):
    need("net_namespace", "filesystem")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    unix_path = root / "host.sock"
    unix = socket.socket(socket.AF_UNIX)
    unix.bind(str(unix_path))
    unix.listen(5)
    abstract_name = f"sandbox-test-{secrets.token_hex(4)}"
    abstract = socket.socket(socket.AF_UNIX)
    abstract.bind("\0" + abstract_name)
    abstract.listen(5)
    targets = [("127.0.0.1", 5432), ("127.0.0.1", 6379), ("127.0.0.1", listener.getsockname()[1]), ("8.8.8.8", 53)]
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.1", 9))  # no packet is sent: just asks which local address routes out
            targets.append((s.getsockname()[0], 22))
    except OSError:
        pass
    code = r"""
import json, socket, sys
results = {}
for host, port in json.loads(sys.argv[1]):
    try:
        socket.create_connection((host, port), timeout=2).close()
        results[f"{host}:{port}"] = "CONNECTED"
    except OSError as exc:
        results[f"{host}:{port}"] = exc.strerror or str(exc)
for path in (sys.argv[2], "\0" + sys.argv[3]):
    try:
        s = socket.socket(socket.AF_UNIX); s.settimeout(2); s.connect(path)
        results[repr(path)] = "CONNECTED"
    except OSError as exc:
        results[repr(path)] = exc.strerror or str(exc)
print(json.dumps(results))
"""
    try:
        box, status, output = run(root, code, json.dumps(targets), str(unix_path), abstract_name, marker)
    finally:
        for s in (listener, unix, abstract):
            s.close()
    assert status == 0, output
    results = facts(output)
    assert len(results) == len(targets) + 2
    assert "CONNECTED" not in results.values(), results


def test_platform_files_and_other_tasks_are_absent_but_python_and_agentchild_work(root, marker):
    need("filesystem")
    other = Sandbox(task_id=424242, limits=SandboxLimits(), root=root)
    other_out = tempfile.TemporaryFile()
    other.spawn([sys.executable, "-c", "import time; open('notes.txt', 'w').write('private'); time.sleep(30)", marker],
                env=child_env(other), stdout=other_out, stderr=subprocess.STDOUT)
    base = settings.BASE_DIR
    hidden = [base / "manage.py", base / "autogen_platform" / "settings" / "base.py", base / ".env", base / "var",
              base / "runtime" / "supervisor.py", base / "runtime" / "sandbox", settings.VAR_DIR, settings.EMBEDDED_REDIS_SOCKET,
              other.workdir, other.workdir / "notes.txt", root / ".mnt", "/etc/shadow", "/sys/fs/cgroup", "/root/.bash_history"]
    code = r"""
import json, os, sys, time
t = time.monotonic()
import autogen_agentchat.agents, agentchild.tools
result = {"imports": round(time.monotonic() - t, 2), "visible": [p for p in sys.argv[1:] if os.path.lexists(p)],
          "cwd": os.getcwd(), "root": sorted(os.listdir("/")), "work_main": sorted(os.listdir("%s"))}
print(json.dumps(result))
""" % base
    try:
        box, status, output = run(root, code, *map(str, hidden), timeout=30)
    finally:
        other.kill()
        other.wait(5)
        other.cleanup()
        other_out.close()
    assert status == 0, output
    found = facts(output)
    assert found["visible"] == [], found
    assert found["cwd"] == str(box.workdir)
    assert found["work_main"] == sorted([".venv", "runtime"]), found
    assert not box.workdir.exists() and not other.workdir.exists()  # cleanup() removed both


def test_writes_outside_the_workdir_are_denied_and_tmp_is_capped(root, marker):
    need("filesystem")
    code = r"""
import json, os, sys
result = {}
for path in ["/x", "/etc/passwd", "/etc/x", "/usr/x", "/usr/bin/python3", sys.prefix + "/x", sys.base_prefix + "/x",
             "/work/main/runtime/agentchild/x", "/dev/x", "/proc/sys/kernel/hostname"]:
    try:
        with open(path, "a") as f:
            f.write("x")
        result[path] = "WROTE"
    except OSError as exc:
        result[path] = exc.strerror
open("in-workdir.txt", "w").write("mine")
result["workdir"] = open("in-workdir.txt").read()
try:
    with open("/tmp/big", "wb") as f:
        for _ in range(64):
            f.write(b"\0" * (1 << 20))
    result["tmp"] = "64 MB written"
except OSError as exc:
    result["tmp"] = exc.strerror
try:
    with open("too-big", "wb") as f:
        f.write(b"\0" * (20 << 20))
    result["fsize"] = "20 MB written"
except OSError as exc:
    result["fsize"] = exc.strerror
os.remove("too-big")
try:
    for i in range(10):  # many files, each under the file size limit: the work dir's size stops them
        with open(f"part{i}", "wb") as f:
            f.write(b"\0" * (10 << 20))
    result["workdir_full"] = "100 MB written"
except OSError as exc:
    result["workdir_full"] = exc.strerror
print(json.dumps(result))
"""
    limits = SandboxLimits(memory_mb=256, cpu_seconds=10, tmp_mb=8, max_file_mb=16, workdir_mb=32)
    box, status, output = run(root, code, marker, limits=limits)
    assert status == 0, output
    found = facts(output)
    assert found.pop("workdir") == "mine"
    assert found.pop("tmp") == "No space left on device"
    assert found.pop("fsize") == "File too large"
    assert found.pop("workdir_full") == "No space left on device"
    assert "WROTE" not in found.values(), found


def test_seccomp_and_no_new_privs_refuse_namespace_and_mount_calls(root, marker):
    need("seccomp", "no_new_privs")
    code = r"""
import ctypes, json, os
libc = ctypes.CDLL(None, use_errno=True)
status = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines() if ":" in l)
result = {"seccomp": status["Seccomp"].strip(), "nnp": status["NoNewPrivs"].strip(), "caps": status["CapEff"].strip()}
result["unshare_user"] = libc.unshare(0x10000000) == 0 or os.strerror(ctypes.get_errno())
result["mount"] = libc.mount(b"none", b"/tmp", b"tmpfs", 0, None) == 0 or os.strerror(ctypes.get_errno())
print(json.dumps(result))
"""
    box, status, output = run(root, code, marker)
    assert status == 0, output
    found = facts(output)
    assert found["seccomp"] == "2" and found["nnp"] == "1"
    assert int(found["caps"], 16) == 0
    assert found["unshare_user"] == "Operation not permitted" and found["mount"] == "Operation not permitted"


# -- two principals: the agent and the code it runs -----------------------------------------------

# Plays the agent: not dumpable (agentchild's first act), holding the broker channel (argv[1]); sends
# one code block to the code runner, prints the answer, then waits for the test to say "go".
AGENT_LIKE = r"""
import ctypes, json, os, socket, sys
ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)
channel = socket.socket(fileno=int(sys.argv[1]))
runner = socket.socket(fileno=int(os.environ["AGENTCHILD_RUNNER_FD"]))
runner.sendall(json.dumps({"op": "run", "blocks": [{"language": "python", "code": sys.argv[2]}], "timeout": 20}).encode() + b"\n")
reply = b""
while not reply.endswith(b"\n"):
    chunk = runner.recv(1 << 16)
    if not chunk:
        break
    reply += chunk
answer = json.loads(reply)
print(json.dumps({"agent_uid": os.getuid(), "exit_code": answer["exit_code"], "output": answer["output"]}), flush=True)
channel.sendall(b"answered\n")
channel.recv(10)
"""

# The code: everything the escape used to take the agent's broker channel, and a little more.
REACH = r"""
import ctypes, json, os, signal
libc = ctypes.CDLL(None, use_errno=True)
def err():
    return os.strerror(ctypes.get_errno())
runner = os.getppid()
agent = int(dict(l.split(":", 1) for l in open(f"/proc/{runner}/status").read().splitlines() if ":" in l)["PPid"])
found = {"uid": os.getuid(), "agent": agent, "fds": sorted(int(f) for f in os.listdir("/proc/self/fd"))}
for what in ("mem", "environ"):
    try:
        open(f"/proc/{agent}/{what}", "rb").read(1)
        found[what] = "READ"
    except OSError as exc:
        found[what] = exc.strerror
for what in ("fd", "fd_runner"):
    try:
        found[what] = os.listdir(f"/proc/{agent if what == 'fd' else runner}/fd")
    except OSError as exc:
        found[what] = exc.strerror
pidfd = libc.syscall(434, agent, 0)
found["pidfd_open"] = "opened" if pidfd >= 0 else err()
taken, refusal = [], "no pidfd"
for fd in range(64):
    if pidfd >= 0:
        if libc.syscall(438, pidfd, fd, 0) >= 0:
            taken.append(fd)
        else:
            refusal = err()
found["pidfd_getfd"] = taken or refusal
found["ptrace"] = "ATTACHED" if libc.ptrace(16, agent, None, None) == 0 else err()
buf = ctypes.create_string_buffer(8)
iov = (ctypes.c_void_p * 2)(ctypes.addressof(buf), 8)
remote = (ctypes.c_void_p * 2)(0x400000, 8)
found["process_vm_readv"] = "READ" if libc.syscall(310, agent, iov, 1, remote, 1, 0) >= 0 else err()
found["kcmp"] = "COMPARED" if libc.syscall(312, os.getpid(), agent, 0, 0, 0) >= 0 else err()
try:
    os.kill(agent, signal.SIGSTOP)
    found["kill"] = "STOPPED"
    os.kill(agent, signal.SIGCONT)
except OSError as exc:
    found["kill"] = exc.strerror
print("ESCAPE " + json.dumps(found))
"""


def status_of(pid: int) -> dict:
    return {k: v.strip() for k, v in (line.split(":", 1) for line in open(f"/proc/{pid}/status").read().splitlines() if ":" in line)}


def test_the_code_an_agent_runs_cannot_reach_the_agent_or_its_channel(root, marker):
    need("code_identity", "seccomp", "pid_namespace")
    parent, child = socket.socketpair()
    channel = child.fileno()
    channel_inode = os.fstat(channel).st_ino
    box, out = start(root, AGENT_LIKE, str(channel), REACH, marker, pass_fds=(channel,), code_runner=True)
    try:
        child.close()
        parent.settimeout(30)
        assert parent.recv(100) == b"answered\n"
        # From outside (root): the runner runs under the code uid and holds stdio and its own socket, not the channel.
        tree = psutil.Process(box.pid).children(recursive=True)
        runners = [p for p in tree if p.uids().real == box.code_uid]
        assert len(runners) == 1, [(p.pid, p.uids()) for p in tree]
        fds = {int(fd): os.readlink(f"/proc/{runners[0].pid}/fd/{fd}") for fd in os.listdir(f"/proc/{runners[0].pid}/fd")}
        assert sorted(fds)[:3] == [0, 1, 2] and len(fds) == 4 and fds[max(fds)].startswith("socket:"), fds
        assert f"socket:[{channel_inode}]" not in fds.values(), fds
        st = status_of(runners[0].pid)
        assert st["NoNewPrivs"] == "1" and st["Seccomp"] == "2" and int(st["CapEff"], 16) == 0, st
        parent.sendall(b"go")
        assert box.wait(20) == 0
    finally:
        parent.close()
        out.seek(0)
        output = out.read().decode(errors="replace")
        out.close()
        box.cleanup()
    agent = facts(output)
    assert agent["exit_code"] == 0, agent
    found = json.loads(agent["output"][agent["output"].index("ESCAPE ") + 7:])
    # A second identity; no descriptor but stdio (and the one listdir holds).
    assert found["uid"] == box.code_uid and found["uid"] != agent["agent_uid"] != 0, (found, agent)
    assert len(found["fds"]) == 4 and found["fds"][:3] == [0, 1, 2], found
    # Nothing of the agent: memory, environment, descriptors, tracing, signals.
    assert found["mem"] == found["environ"] == found["fd"] == "Permission denied", found
    assert found["fd_runner"] == "Permission denied", found  # the runner is not dumpable either
    assert found["pidfd_getfd"] == "Operation not permitted", found
    assert found["ptrace"] == found["process_vm_readv"] == found["kcmp"] == found["kill"] == "Operation not permitted", found


RUNS = r"""
import json, os, socket, time
runner = socket.socket(fileno=int(os.environ["AGENTCHILD_RUNNER_FD"]))
reader = runner.makefile("rb")
def ask(blocks, timeout=20, cancel_after=None):
    runner.sendall(json.dumps({"op": "run", "blocks": blocks, "timeout": timeout}).encode() + b"\n")
    if cancel_after:
        time.sleep(cancel_after)
        runner.sendall(b'{"op": "cancel"}\n')
    return json.loads(reader.readline())
py = lambda code: {"language": "python", "code": code}
answers = [
    ask([py("import os; print('cwd', os.getcwd(), 'files', os.listdir('.'))"), {"language": "sh", "code": "echo from sh >&2; exit 3"}, py("print('never')")]),
    ask([py("import time; print('slow', flush=True); time.sleep(30)")], timeout=1),
    ask([{"language": "cobol", "code": "DISPLAY 'x'."}]),
    ask([py("# filename: ../outside.py\nprint('x')")]),
    ask([py("# filename: kept.py\nopen('made-by-code', 'w').write('x'); print(__file__)")]),
    ask([py("import time; time.sleep(30)")], cancel_after=0.5),
    ask([py("import os; print(sorted(os.listdir('.')))")]),
]
print(json.dumps(answers))
"""


def test_the_code_runner_runs_blocks_like_autogens_local_executor(root, marker):
    """Same languages, file names, output order and exit codes as LocalCommandLineCodeExecutor (124 on
    timeout, 125 on cancel), in the work dir, its files removed after each run."""
    started = time.monotonic()
    box, status, output = run(root, RUNS, marker, code_runner=True, timeout=40)
    assert status == 0, output
    first, slow, cobol, outside, named, cancelled, left = (json.loads([l for l in output.splitlines() if l.startswith("[")][-1]))
    assert first["exit_code"] == 3 and first["output"].startswith("cwd " + str(box.workdir)), first
    assert first["output"].endswith("from sh\n") and "never" not in first["output"], first
    assert first["code_file"].startswith(str(box.workdir) + "/tmp_code_") and first["code_file"].endswith(".py"), first
    assert slow["exit_code"] == 124 and slow["output"] == "slow\n\nTimeout", slow
    assert cobol == {"exit_code": 1, "output": "\nunknown language cobol", "code_file": None}, cobol
    assert outside["exit_code"] == 1 and outside["output"] == "Filename is not in the workspace", outside
    assert named["exit_code"] == 0 and named["output"] == f"{box.workdir}/kept.py\n", named
    assert cancelled["exit_code"] == 125 and cancelled["output"].endswith("Cancelled"), cancelled
    # The earlier runs' code files were removed; what the code wrote stays (and the running file itself).
    assert left["output"].strip() == str(["made-by-code", os.path.basename(left["code_file"])]), left
    assert time.monotonic() - started < 20


def test_without_a_code_runner_the_child_gets_no_runner_and_no_second_uid(root, marker):
    code = "import json, os; print(json.dumps({'runner': os.environ.get('AGENTCHILD_RUNNER_FD'), 'pids': sorted(int(p) for p in os.listdir('/proc') if p.isdigit())}))"
    box, status, output = run(root, code, marker, code_runner=False)
    assert status == 0, output
    found = facts(output)
    assert found["runner"] is None and box.code_uid is None
    if REPORT["layers"]["pid_namespace"]["active"]:
        assert found["pids"] == [1], found


# -- limits ----------------------------------------------------------------------------------------

HOG = r"""
chunks = []
for _ in range(200):
    chunks.append(b"\1" * (10 << 20))  # touched pages: 2 GB in the end
print("survived with", len(chunks) * 10, "MB")
"""


def test_memory_past_the_limit_ends_memory_limit_and_a_neighbour_is_unaffected(root, marker):
    need("cgroup_memory")
    neighbour, neighbour_out = start(root, "import time; time.sleep(1.5); print('neighbour done')", marker)
    started = time.monotonic()
    box, status, output = run(root, HOG, marker, limits=SandboxLimits(memory_mb=64, cpu_seconds=20))
    assert time.monotonic() - started < 10
    assert "survived" not in output
    assert status == -signal.SIGKILL
    assert box.end_reason() == "memory_limit"
    assert 50 <= box.stats()["peak_memory_mb"] <= 80
    assert neighbour.wait(10) == 0 and neighbour.end_reason() is None
    neighbour_out.seek(0)
    assert neighbour_out.read() == b"neighbour done\n"
    neighbour.cleanup()
    neighbour_out.close()


def test_without_a_memory_cgroup_rlimit_as_still_caps_memory(root, marker):
    box, status, output = run(root, HOG, marker, limits=SandboxLimits(memory_mb=64, cpu_seconds=20), cgroups=False)
    assert "survived" not in output
    # Either the child hit RLIMIT_AS (MemoryError) or check_limits() saw its RSS over the limit first.
    assert ("MemoryError" in output and status == 1) or box.end_reason() == "memory_limit", (status, output)


def test_hundreds_of_processes_are_contained(root, marker):
    need("cgroup_pids")
    code = r"""
import os, sys, time
started = failed = 0
for _ in range(300):
    try:
        pid = os.fork()
    except OSError:
        failed += 1
        continue
    if pid == 0:
        time.sleep(30)
        os._exit(0)
    started += 1
print("started", started, "failed", failed, flush=True)
"""
    box, status, output = run(root, code, marker, limits=SandboxLimits(memory_mb=256, cpu_seconds=20, max_processes=20))
    started, failed = int(output.split()[1]), int(output.split()[3])
    assert started <= 20 and failed >= 280, output
    # The child (pid 1 of its namespace) exited: every process it left behind died with it.


def test_a_cpu_spin_ends_cpu_limit(root, marker):
    box, status, output = run(root, "while True: pass", marker, limits=SandboxLimits(memory_mb=128, cpu_seconds=1))
    assert box.end_reason() == "cpu_limit", (status, output)
    assert 1 <= box.stats()["cpu_seconds"] < 2.5


def _share_of_a_busy_cpu(root, marker, weight: int) -> float:
    """A spinning process outside any task group and a spinning sandbox of this cpu_weight, both on one CPU:
    the outsider's share of the CPU time the two got over the same second."""
    need("cgroup_cpu")
    cpu = max(os.sched_getaffinity(0))
    saved = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})  # the sandbox's launcher and the outsider inherit it
    try:
        box, out = start(root, "while True: pass", marker,
                         limits=SandboxLimits(memory_mb=128, cpu_seconds=20, timeout_seconds=30, cpu_weight=weight))
        outsider = psutil.Popen([sys.executable, "-c", "while True: pass"])
    finally:
        os.sched_setaffinity(0, saved)
    try:
        time.sleep(0.3)
        ours, theirs = box.stats()["cpu_seconds"], sum(outsider.cpu_times()[:2])
        time.sleep(1.0)
        ours, theirs = box.stats()["cpu_seconds"] - ours, sum(outsider.cpu_times()[:2]) - theirs
        return theirs / (ours + theirs)
    finally:
        outsider.kill()
        outsider.wait()
        box.cleanup()
        out.close()


def test_a_sandbox_yields_a_busy_cpu_to_the_platform(root, marker):
    # SANDBOX_CPU_WEIGHT's point: while the cores are all busy, the platform's own threads (web, the workers'
    # kills and ends) go before the tasks' trees. Equal weights share the CPU about evenly.
    assert _share_of_a_busy_cpu(root, marker, weight=2) > 0.85
    assert _share_of_a_busy_cpu(root, marker, weight=100) < 0.7


def test_a_spin_spread_over_processes_is_caught_by_the_cpu_total(root, marker):
    code = r"""
import os
for _ in range(3):
    if os.fork() == 0:
        break
while True:
    pass
"""
    limits = SandboxLimits(memory_mb=128, cpu_seconds=1, cpu_cores=2.0)
    box, status, output = run(root, code, marker, limits=limits)
    # RLIMIT_CPU alone would let 4 processes burn 4+ CPU seconds; the total stops them near 1.
    assert box.end_reason() == "cpu_limit", (status, output)
    assert 1 <= box.stats()["cpu_seconds"] < 2.5


def test_wall_clock_timeout_is_enforced_while_waiting(root, marker):
    box, status, output = run(root, "import time; time.sleep(30)", marker, limits=SandboxLimits(timeout_seconds=1))
    assert box.end_reason() == "timeout"


ESCAPE = r"""
import os, sys, time
marker = sys.argv[1]
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(60)", marker + "-grandchild"])
    os._exit(0)
time.sleep(60)
"""


def _alive(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _escape_and_kill(root, marker, **options):
    box, out = start(root, ESCAPE, marker, **options)
    try:
        deadline = time.monotonic() + 10
        while not _with_marker(marker + "-grandchild"):
            assert time.monotonic() < deadline, "the grandchild never started"
            time.sleep(0.05)
        grandchild = psutil.Process(_with_marker(marker + "-grandchild")[0])
        assert grandchild.pid != box.pid and os.getsid(grandchild.pid) != os.getsid(box.pid)
        started = time.monotonic()
        box.kill()
        assert box.wait(5) is not None
        # Dead means gone or a zombie: a killed orphan may wait a moment for whoever reaps it.
        while _alive(grandchild):
            assert time.monotonic() - started < 2, "the setsid'd, double-forked grandchild survived kill()"
            time.sleep(0.02)
    finally:
        box.cleanup()
        out.close()


def test_setsid_double_forked_grandchild_dies_on_kill(root, marker):
    _escape_and_kill(root, marker)


def test_kill_without_cgroups_or_namespaces_still_gets_the_grandchild(root, marker):
    _escape_and_kill(root, marker, cgroups=False, namespaces="off", seccomp=False)


@pytest.mark.parametrize("namespaces", ["root", "user"])
def test_kill_in_each_namespace_mode_without_cgroups(root, marker, namespaces):
    if namespaces == "root" and os.geteuid() != 0:
        host_lacks("root: the root namespace mode needs it")
    python = _user_mode_python() if namespaces == "user" else None
    try:
        _escape_and_kill(root, marker, cgroups=False, namespaces=namespaces, python=python)
    except SandboxError as exc:
        host_lacks(f"{namespaces} namespaces: {exc}")


def _user_mode_python() -> str:
    """The user-namespace mode runs as an unprivileged uid: it needs a Python that uid can read."""
    for candidate in (sys.executable, "/usr/bin/python3"):
        real = os.path.realpath(candidate)
        if all(os.stat(p).st_mode & 0o005 for p in [real] + [str(q) for q in Path(real).parents]):
            return candidate
    host_lacks("a Python an unprivileged uid can run (the venv's lives under /root)")


def test_user_namespace_mode_isolates_like_root_mode(root, marker):
    python = _user_mode_python()
    code = r"""
import json, os, socket
print(json.dumps({"pid": os.getpid(), "uid": os.getuid(), "user_ns": os.readlink("/proc/self/ns/user"),
                  "net": [n for _, n in socket.if_nameindex()], "root": sorted(os.listdir("/")),
                  "manage": os.path.exists("/work/main/manage.py")}))
"""
    try:
        box, status, output = run(root, code, marker, python=python, namespaces="user", cgroups=False)
    except SandboxError as exc:
        host_lacks(f"unprivileged user namespaces: {exc}")
    assert status == 0, output
    found = facts(output)
    assert found["pid"] == 1 and found["uid"] != 0
    assert found["user_ns"] != os.readlink("/proc/self/ns/user")
    assert found["net"] == ["lo"] and not found["manage"]


# -- accounting and failures -----------------------------------------------------------------------


def test_stats_come_from_the_whole_tree(root, marker):
    code = r"""
import os, time
data = b"\1" * (40 << 20)
if os.fork() == 0:
    more = b"\1" * (30 << 20)
    end = time.process_time() + 0.4
    while time.process_time() < end:
        pass
    time.sleep(5)
    os._exit(0)
time.sleep(5)
"""
    box, out = start(root, code, marker, limits=SandboxLimits(memory_mb=256, cpu_seconds=10))
    try:
        deadline = time.monotonic() + 5
        stats = box.stats()
        while (stats["memory_mb"] < 70 or stats["cpu_seconds"] < 0.4) and time.monotonic() < deadline:
            time.sleep(0.1)
            stats = box.stats()
        assert stats["memory_mb"] >= 70 and stats["cpu_seconds"] >= 0.4, stats
        box.kill()
        box.wait(5)
        final = box.stats()
        assert final["peak_memory_mb"] >= 70 and final["cpu_seconds"] >= 0.4
    finally:
        box.cleanup()
        out.close()


def test_a_sandbox_never_runs_the_probe_itself(root):
    """The probe runs when a worker starts (probe_capabilities()); a Sandbox only takes its choice."""
    box = Sandbox(task_id=5, limits=SandboxLimits(), root=root)
    config = REPORT["config"]
    assert (box.mode, box.use_cgroups, box.use_seccomp) == (config["namespaces"], config["cgroups"], config["seccomp"])
    # In a fresh process where nothing probed, building one fails at once instead of probing.
    program = (
        "import sys\n"
        "from runtime.sandbox import Sandbox, SandboxError, SandboxLimits\n"
        "try:\n"
        "    Sandbox(task_id=5, limits=SandboxLimits(), root=sys.argv[1])\n"
        "except SandboxError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", program, str(root)], capture_output=True, text=True, timeout=60,
                          cwd=settings.BASE_DIR)
    assert done.returncode == 0 and "call probe_capabilities() at start-up" in done.stdout, done.stdout + done.stderr
    assert not list(root.glob("task-5-*"))


def test_a_sandbox_that_cannot_be_built_raises_a_clear_error_and_leaves_nothing(root):
    box = Sandbox(task_id=5, limits=SandboxLimits(), root=root)
    with pytest.raises(SandboxError, match="nonexistent"):
        box.spawn(["/nonexistent/python", "-c", "pass"], env={"PATH": "/usr/bin"})
    assert not box.workdir.exists()
    assert not (box.cgroup and box.cgroup.created)
    box.cleanup()  # idempotent
    with pytest.raises(ValueError):
        Sandbox(task_id=5, limits=SandboxLimits(), root=root, namespaces="docker")


def test_cleanup_removes_the_workdir_and_every_cgroup(root, marker):
    box, status, output = run(root, "open('f', 'w').write('x')", marker)
    assert status == 0
    assert not box.workdir.exists()
    if box.cgroup:
        assert not box.cgroup.created
        assert not any(path.exists() for path in box.cgroup.dirs.values())


def test_work_dirs_left_by_a_dead_worker_are_removed(root):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = root / f"task-9-{dead.stdout.strip()}-abcdef"
    (stale / "sub").mkdir(parents=True)
    mine = root / f"task-9-{os.getpid()}-abcdef"
    mine.mkdir()
    box, status, output = run(root, "pass")
    assert status == 0 and not stale.exists() and mine.exists()


@pytest.mark.parametrize("variant", ["no cgroup.kill (Linux < 5.14)", "cgroup v1 only"])
def test_older_cgroup_setups_still_kill_and_count(root, marker, monkeypatch, variant):
    """Kill by freeze + SIGKILL, and CPU time from v1 cpuacct, as on hosts without cgroup.kill or v2."""
    import dataclasses

    from runtime.sandbox import cgroups

    need("cgroup_memory", "cgroup_pids", "cgroup_cpu")
    real = cgroups.hierarchies()
    if "freezer" not in real.v1 or ("cpuacct" not in real.v1 and variant == "cgroup v1 only"):
        host_lacks("a writable v1 freezer or cpuacct hierarchy")
    fake = dataclasses.replace(real, v2_kill=False, v2=None if variant == "cgroup v1 only" else real.v2)
    monkeypatch.setattr(cgroups, "hierarchies", lambda: fake)
    _escape_and_kill(root, marker)
    box, status, output = run(root, "while True: pass", marker, limits=SandboxLimits(memory_mb=128, cpu_seconds=1))
    assert box.cgroup.uses["kill"] is None and box.cgroup.uses["freezer"] == "v1"
    assert box.end_reason() == "cpu_limit" and 1 <= box.stats()["cpu_seconds"] < 2.5
