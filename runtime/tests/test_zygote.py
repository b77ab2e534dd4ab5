"""Warm start at the Sandbox level: the zygote holds nothing it may not, its forks get every layer,
and a dead zygote only means a cold start."""
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from runtime.sandbox import Sandbox, SandboxLimits, probe_capabilities, zygote

REPORT = probe_capabilities()


@pytest.fixture(autouse=True)
def _needs_namespaces():
    """Warm start exists only where the sandbox has namespaces (CI: always; elsewhere said, not hidden)."""
    if REPORT["mode"] == "off":
        from conftest import host_lacks

        host_lacks("namespaces (no warm start without them)")


AGENTCHILD = [sys.executable, "-m", "agentchild"]


@pytest.fixture
def root():
    path = Path(tempfile.mkdtemp(prefix="zygote-test-"))
    os.chmod(path, 0o711)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def zyg():
    z = zygote.start()
    yield z
    zygote.stop()


def spawn(root, warm=True):
    box = Sandbox(task_id=777, limits=SandboxLimits(memory_mb=256), root=root)
    ours, theirs = socket.socketpair()
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(zygote.__file__).parent.parent), "AGENTCHILD_FD": str(theirs.fileno())}
    box.spawn(AGENTCHILD, env=env, pass_fds=(theirs.fileno(),), warm=warm)
    theirs.close()
    return box, ours


def agent_of(box) -> psutil.Process:
    """The agent's process: warm in mode "root" the zygote's child itself (cloned into its namespaces), else the
    launcher's (P0's) child."""
    if box.warm and box.mode == "root":
        return psutil.Process(box.pid)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        kids = psutil.Process(box.pid).children()
        if kids:
            return kids[0]
        time.sleep(0.01)
    raise AssertionError("no child")


def status(pid: int) -> dict:
    return {k: v.strip() for k, v in (l.split(":", 1) for l in open(f"/proc/{pid}/status").read().splitlines() if ":" in l)}


def test_the_zygote_holds_one_thread_no_environment_and_only_its_control_socket(zyg):
    assert os.listdir(f"/proc/{zyg.pid}/task") == [str(zyg.pid)]
    assert open(f"/proc/{zyg.pid}/environ").read() == ""
    fds = {int(fd): os.readlink(f"/proc/{zyg.pid}/fd/{fd}") for fd in os.listdir(f"/proc/{zyg.pid}/fd")}
    assert [t for fd, t in fds.items() if t.startswith("socket:")] == [fds[max(fds)]] and len(fds) == 5, fds
    # and a pidfd of itself (its direct children check it), no other process's
    pidfds = [fd for fd, t in fds.items() if t == "anon_inode:[pidfd]"]
    assert len(pidfds) == 1 and f"Pid:\t{zyg.pid}\n" in open(f"/proc/{zyg.pid}/fdinfo/{pidfds[0]}").read()


def test_a_warm_child_is_a_single_use_fork_with_every_layer(root, zyg):
    box, channel = spawn(root)
    try:
        assert box.warm
        agent = agent_of(box)
        assert psutil.Process(box.pid).ppid() == zyg.pid
        # mode "root": the agent is the zygote's child, cloned into its namespaces; else P0's child
        assert agent.pid == box.pid if box.mode == "root" else agent.ppid() == box.pid
        st = status(agent.pid)
        assert int(st["Uid"].split()[0]) >= 200000 or REPORT["mode"] == "user"
        assert int(st["CapEff"], 16) == 0 and st["NoNewPrivs"] == "1" and st["Seccomp"] == "2" and st["Threads"] == "1", st
        for ns in ("pid", "net", "mnt", "ipc", "uts"):
            assert os.readlink(f"/proc/{agent.pid}/ns/{ns}") != os.readlink(f"/proc/self/ns/{ns}")
        assert "autogen-sandbox-" in open(f"/proc/{agent.pid}/cgroup").read()
        assert os.readlink(f"/proc/{agent.pid}/root") == "/"  # its own root (pivoted)
        assert not os.path.exists(f"/proc/{agent.pid}/root{Path(zygote.__file__)}")
        # A second task gets another fork: children are never reused.
        other, other_channel = spawn(root)
        assert other.warm and agent_of(other).pid != agent.pid
        other_channel.close()
        assert other.wait(10) == 70
        other.cleanup()
    finally:
        channel.close()  # agentchild ends itself (and its group) when its channel closes
    assert box.wait(10) == 70 and box.end_reason() is None
    box.cleanup()


def test_a_kill_ends_the_warm_tree_with_sigkill(root, zyg):
    box, channel = spawn(root)
    agent = agent_of(box)
    box.kill()
    assert box.wait(5) == -signal.SIGKILL
    _gone, alive = psutil.wait_procs([agent], timeout=3)
    assert not alive
    box.cleanup()
    channel.close()


def test_a_dead_zygote_means_a_cold_start(root, zyg):
    zyg.proc.kill()
    zyg.proc.wait()
    box, channel = spawn(root)
    try:
        assert not box.warm
        assert agent_of(box).cmdline()[1:] == ["-m", "agentchild"]
    finally:
        channel.close()
    assert box.wait(10) == 70
    box.cleanup()
    assert zygote.ensure() is not None and zygote.current().alive()


def test_a_zygote_that_dies_takes_its_direct_children_with_it(root, zyg):
    """Mode "root": the agent is the zygote's child (no P0 between), armed with PR_SET_PDEATHSIG; so the chain
    worker -> zygote -> agent kills every agent when the worker dies, and a zygote that dies alone ends its
    running agents too (each run then ends sandbox_error, 'ended unexpectedly')."""
    if REPORT["mode"] != "root":
        from conftest import host_lacks

        host_lacks("the sandbox's root mode (a root worker): only there is the agent the zygote's own child")
    box, channel = spawn(root)
    try:
        agent = agent_of(box)
        assert box.warm and agent.pid == box.pid
        zyg.proc.kill()
        zyg.proc.wait()
        assert box.wait(5) == -signal.SIGKILL
        _gone, alive = psutil.wait_procs([agent], timeout=3)
        assert not alive
    finally:
        channel.close()
        box.cleanup()


def test_a_warm_starts_end_is_its_exit_pipes_not_its_pidfds():
    """A direct child's pidfd is readable as soon as it dies, before the zygote has reaped it and written its
    code: poll() must say "still running" then (and not wait for the code), and the code once it is written."""
    import subprocess

    from runtime.sandbox.processes import ForkedProcess

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    pidfd = os.pidfd_open(dead.pid)
    dead.wait()  # its pidfd is readable from now on
    exit_r, exit_w = os.pipe()
    proc = ForkedProcess(dead.pid, pidfd, exit_r)
    started = time.monotonic()
    assert proc.poll() is None and time.monotonic() - started < 0.5
    os.write(exit_w, b"-9")
    os.close(exit_w)
    assert proc.poll() == -9 and proc.wait(1) == -9


def test_a_pass_fd_that_takes_the_number_of_the_zygotes_pidfd_leaves_both_intact():
    """In the clone, the descriptors the child keeps for itself (the zygote's own pidfd) move above every
    pass_fd target before the pass_fds are placed: a pass_fd whose number is the pidfd's must not close it
    (nor the other way round). Run in a fork, as the zygote runs it: it closes every other descriptor."""
    import fcntl  # noqa: F401 - what _adopt_fds imports, imported before the fork (no import lock taken in it)

    pid = os.fork()
    if pid == 0:
        try:
            ends = [os.pipe() for _ in range(zygote.REPLY + 1)]
            keep_r, keep_w = os.pipe()  # stands for the zygote's pidfd
            pass_r, pass_w = os.pipe()  # what the task gets at the pidfd's number
            os.write(keep_w, b"kept")
            os.write(pass_w, b"passed")
            fds = [r for r, _ in ends] + [pass_r]
            *_, kept = zygote._adopt_fds(fds, [keep_r], keep_exit=False, also_keep=(keep_r,))
            ok = os.read(keep_r, 100) == b"passed" and os.read(kept[0], 100) == b"kept" and kept[0] != keep_r
            os._exit(0 if ok else 1)
        except BaseException:  # noqa: BLE001 - the test process must not go on in the fork
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
