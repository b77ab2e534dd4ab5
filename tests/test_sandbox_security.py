"""The sandbox end to end, tried as an attacker would: a code-executing agent (replay model whose
answer is a ```python block) runs through the API, RQ, `manage.py runworker`, the supervisor and
the sandbox. It reads environments, scans the filesystem, connects to the platform's ports,
writes where it should not, allocates 2 GB, forks hundreds of processes, spins the CPU and hides
a setsid'd grandchild; it gets nothing, is stopped with the right reason, and other customers'
tasks and the workers carry on.
"""
import json
import secrets
import time
from urllib.parse import urlparse

import psutil
import pytest
from django.conf import settings

from accounts.crypto import encrypt
from conftest import host_lacks
from agents.models import Agent, ModelConfig
from runtime.sandbox import probe_capabilities
from tasks.models import Task, TaskEvent
from tests.execution_support import running, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

REPORT = probe_capabilities()


def need(*layers):
    for name in layers:
        info = REPORT["layers"][name]
        if not info["active"]:
            host_lacks(f"the {name} layer: {info['detail']}")


@pytest.fixture(scope="module")
def workers(django_db_setup, django_db_blocker):
    with running("s1", "s2") as procs:
        yield procs


@pytest.fixture
def customer(make_customer):
    return make_customer()


def code_agent(customer, code: str, name="attacker", **limits) -> Agent:
    model = ModelConfig.objects.create(
        customer=customer, name=f"{name}-model", provider="replay", responses=[f"```python\n{code}\n```", "Done. TERMINATE"]
    )
    return Agent.objects.create(customer=customer, name=name, model=model, system_message="You run code.",
                                code_execution=True, limits=limits)


def submit(client, agent: Agent) -> int:
    response = client.post("/api/tasks/", {"agent": agent.pk, "input": "Run your code."}, format="json")
    assert response.status_code == 201, response.content
    return response.json()["id"]


def finished(task_id: int, timeout: float = 40.0) -> Task:
    return wait_for(lambda: (t := Task.objects.get(pk=task_id)).is_finished and t, timeout=timeout, message=f"task {task_id}")


def code_output(task: Task) -> str:
    event = TaskEvent.objects.filter(task=task, type="code_execution").order_by("seq").first()
    assert event is not None, [e.as_dict() for e in TaskEvent.objects.filter(task=task)]
    return event.as_dict()["content"]["output"]


def with_marker(word: str) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if any(word in part for part in p.info["cmdline"] or []):
                found.append(p)
        except psutil.Error:
            pass
    return found


RECON = r"""
import json, os, socket, stat
report = {"env": dict(os.environ)}
try:
    report["init_environ"] = open("/proc/1/environ").read().split("\0")
except OSError as exc:
    report["init_environ"] = exc.strerror
report["processes"] = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
patterns = ["SECRET_KEY", "DATABASE_URL", "REDIS_URL", "postgres://", "redis://", "sk-test-", "PRIVATE KEY", "ADMIN_API_KEY"]
hits, scanned = [], 0
for top in ["/"]:
    for base, dirs, files in os.walk(top):
        dirs[:] = [d for d in dirs if os.path.join(base, d) not in ("/proc", "/usr", "/sys", "/dev") and d not in (".venv", ".pyenv")]
        for name in files:
            path = os.path.join(base, name)
            if path == os.path.abspath(__file__):
                continue  # this very script names the patterns
            try:
                if not os.path.isfile(path) or os.path.islink(path) or os.path.getsize(path) > 1 << 20:
                    continue
                text = open(path, "rb").read().decode(errors="replace")
            except OSError:
                continue
            scanned += 1
            hits += [f"{path}: {p}" for p in patterns if p in text]
report["scanned"], report["hits"] = scanned, hits
report["visible"] = [p for p in PATHS if os.path.lexists(p)]
# var/ may exist only as the path down to this task's own work dir.
report["var_tree"] = [os.path.join(base, n) for top in VAR_DIRS for base, dirs, files in os.walk(top)
                      for n in dirs + files if not (os.getcwd() + "/").startswith(os.path.join(base, n) + "/")
                      and not os.path.join(base, n).startswith(os.getcwd() + "/")]
report["connections"] = {}
for host, port in TARGETS:
    try:
        socket.create_connection((host, port), timeout=2).close()
        report["connections"][f"{host}:{port}"] = "CONNECTED"
    except OSError as exc:
        report["connections"][f"{host}:{port}"] = exc.strerror or str(exc)
report["writes"] = {}
for path in ["/etc/x", "/usr/x", "/work/main/x", "/x", os.path.dirname(os.getcwd()) + "/x"]:
    try:
        open(path, "w").write("x")
        report["writes"][path] = "WROTE"
    except OSError as exc:
        report["writes"][path] = exc.strerror
print("REPORT " + json.dumps(report))
"""


def test_recon_finds_no_secret_no_platform_file_and_no_address(workers, customer, make_customer, client_for):
    need("filesystem", "net_namespace", "pid_namespace")
    org, user = customer
    api_key = f"sk-test-{secrets.token_hex(12)}"
    ModelConfig.objects.create(customer=org, name="real-provider", provider="openai", model="gpt-4o", api_key_encrypted=encrypt(api_key))
    redis = urlparse(settings.REDIS_URL)
    database = settings.DATABASES["default"]
    paths = [settings.BASE_DIR / "manage.py", settings.BASE_DIR / "autogen_platform", settings.BASE_DIR / ".env",
             settings.BASE_DIR / "runtime" / "supervisor.py", settings.BASE_DIR / "runtime" / "sandbox",
             settings.EMBEDDED_REDIS_SOCKET, settings.VAR_DIR / "platform.sqlite3", str(database["NAME"])]
    var_dirs = [str(settings.VAR_DIR), str(settings.BASE_DIR / "var")]
    targets = [("127.0.0.1", 5432), ("127.0.0.1", 6379), ("127.0.0.1", settings.PORT)]
    if redis.port:
        targets.append((redis.hostname, redis.port))
    code = f"PATHS = {json.dumps([str(p) for p in paths])}\nTARGETS = {json.dumps(targets)}\nVAR_DIRS = {json.dumps(var_dirs)}\n" + RECON
    task = finished(submit(client_for(user), code_agent(org, code)), timeout=90)  # the workers may still be starting
    assert task.status == "succeeded", task.error
    output = code_output(task)
    report = json.loads(output[output.index("REPORT ") + 7:])
    # Environment: only what the supervisor chose, in the child and in pid 1 (the agent itself).
    assert set(report["env"]) <= {"PATH", "HOME", "TMPDIR", "LANG", "LC_CTYPE", "PYTHONPATH", "PYTHONDONTWRITEBYTECODE",
                                   "PYTHONUNBUFFERED", "AGENTCHILD_FD", "PWD", "SHLVL", "_"}, report["env"]
    for secret in (settings.SECRET_KEY, settings.ADMIN_API_KEY, api_key, settings.REDIS_URL, "DATABASE_URL"):
        assert secret not in output
    assert report["scanned"] > 20 and report["hits"] == [], report["hits"]
    # Processes: the agent (pid 1), its code executor, nothing of the host.
    assert report["processes"][0] == 1 and len(report["processes"]) < 10, report["processes"]
    assert report["visible"] == [], report["visible"]
    assert report["var_tree"] == [], report["var_tree"]  # no socket, database or other task's directory
    assert set(report["connections"].values()).isdisjoint({"CONNECTED"}), report["connections"]
    assert "WROTE" not in report["writes"].values(), report["writes"]


HOG = "chunks = []\nfor _ in range(200):\n    chunks.append(b'x' * (10 << 20))\nprint('allocated 2 GB')"


def test_two_gigabytes_end_memory_limit_while_another_customer_runs(workers, customer, make_customer, client_for):
    need("cgroup_memory")
    org, user = customer
    other, other_user = make_customer("bystander")
    calm = submit(client_for(other_user), code_agent(other, "import time\ntime.sleep(3)\nprint('calm done')", name="calm"))
    hog = finished(submit(client_for(user), code_agent(org, HOG, memory_mb=128)))
    assert hog.status == "failed" and hog.error["code"] == "memory_limit", hog.error
    assert hog.usage.get("peak_memory_mb", 0) <= 140, hog.usage
    calm_task = finished(calm)
    assert calm_task.status == "succeeded", calm_task.error
    assert code_output(calm_task).strip() == "calm done"


def test_a_cpu_spin_ends_cpu_limit(workers, customer, client_for):
    org, user = customer
    started = time.monotonic()
    task = finished(submit(client_for(user), code_agent(org, "while True:\n    pass", cpu_seconds=2)))
    assert task.status == "failed" and task.error["code"] == "cpu_limit", task.error
    assert time.monotonic() - started < 20


FORK_BOMB = r"""
import os, time
children, refused = [], 0
for _ in range(500):
    try:
        pid = os.fork()
    except OSError:
        refused += 1
        continue
    if pid == 0:
        time.sleep(30)
        os._exit(0)
    children.append(pid)
for pid in children:
    os.kill(pid, 9)
    os.waitpid(pid, 0)
print(f"started {len(children)} refused {refused}")
"""


def test_hundreds_of_processes_are_contained_and_the_worker_carries_on(workers, customer, client_for):
    need("cgroup_pids")
    org, user = customer
    task = finished(submit(client_for(user), code_agent(org, FORK_BOMB)))
    words = code_output(task).split()
    started, refused = int(words[1]), int(words[3])
    assert started < 70 and refused > 400, words
    follow_up = finished(submit(client_for(user), code_agent(org, "print('still fine')", name="next")))
    assert follow_up.status == "succeeded" and code_output(follow_up).strip() == "still fine"


def test_a_setsid_double_forked_grandchild_dies_on_cancel(workers, customer, client_for):
    org, user = customer
    marker = f"hidden-{secrets.token_hex(4)}"
    code = (
        "import os, subprocess, sys, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        f"        os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(120)', '{marker}'])\n"
        "    os._exit(0)\n"
        "time.sleep(120)\n"
    )
    client = client_for(user)
    task_id = submit(client, code_agent(org, code))
    hidden = wait_for(lambda: with_marker(marker), timeout=30, message="the hidden grandchild")
    started = time.monotonic()
    assert client.post(f"/api/tasks/{task_id}/cancel/").status_code == 200
    task = finished(task_id, timeout=5)
    assert task.status == "cancelled"
    gone, alive = psutil.wait_procs(hidden, timeout=3)
    assert not alive and time.monotonic() - started < 3


WARM_CHECKS = r"""
import json, os
def status(pid):
    return dict(l.split(":", 1) for l in open(f"/proc/{pid}/status").read().splitlines() if ":" in l)
def denied(read):
    try:
        return read()
    except OSError as exc:
        return exc.strerror
agent = {
    "cmdline": open("/proc/1/cmdline").read().split("\0"),
    "status": {k: v.strip() for k, v in status(1).items() if k in ("Uid", "Gid", "CapEff", "CapPrm", "NoNewPrivs", "Seccomp", "Threads")},
    "fds": denied(lambda: {fd: os.readlink(f"/proc/1/fd/{fd}") for fd in os.listdir("/proc/1/fd")}),
    "environ": denied(lambda: [e for e in open("/proc/1/environ").read().split("\0") if e]),
    "code_uid": os.getuid(),
    "limits": [l for l in open("/proc/1/limits").read().splitlines() if l.startswith(("Max cpu time", "Max open files", "Max core", "Max file size"))],
    "cgroup": open("/proc/1/cgroup").read().splitlines(),
    "hostname": open("/proc/sys/kernel/hostname").read().strip(),
}
print("AGENT " + json.dumps(agent))
"""


def test_a_warm_started_child_keeps_every_layer(workers, customer, client_for):
    """The workers start tasks from their zygote (SANDBOX_WARM_START, on by default): the agent,
    pid 1 of its namespace, is a fork of the zygote, and the recon above still finds nothing."""
    need("filesystem", "net_namespace", "pid_namespace", "identity", "seccomp", "cgroup_memory", "cgroup_pids", "code_identity")
    org, user = customer
    redis = urlparse(settings.REDIS_URL)
    paths = [settings.BASE_DIR / "manage.py", settings.BASE_DIR / ".env", settings.BASE_DIR / "runtime" / "sandbox",
             settings.EMBEDDED_REDIS_SOCKET, settings.VAR_DIR / "platform.sqlite3"]
    targets = [("127.0.0.1", 5432), ("127.0.0.1", 6379)] + ([(redis.hostname, redis.port)] if redis.port else [])
    var_dirs = [str(settings.VAR_DIR), str(settings.BASE_DIR / "var")]
    code = (f"PATHS = {json.dumps([str(p) for p in paths])}\nTARGETS = {json.dumps(targets)}\nVAR_DIRS = {json.dumps(var_dirs)}\n"
            + RECON + WARM_CHECKS)
    task = finished(submit(client_for(user), code_agent(org, code, name="warm-recon")), timeout=90)
    assert task.status == "succeeded", task.error
    output = code_output(task)
    report = json.loads(output[output.index("REPORT ") + 7:output.index("\nAGENT ")])
    agent = json.loads(output[output.index("AGENT ") + 6:].splitlines()[0])
    # Warm: the agent is a fork of the zygote (its command line), not `python -m agentchild`.
    assert any(part.endswith("sandbox/zygote.py") for part in agent["cmdline"]), agent["cmdline"]
    # Identity, capabilities, no_new_privs, seccomp, one thread (no thread came from the zygote).
    st = agent["status"]
    assert all(int(uid) >= 200000 for uid in st["Uid"].split()) and all(int(g) >= 200000 for g in st["Gid"].split()), st
    assert agent["code_uid"] == int(st["Uid"].split()[0]) + 100000, (agent["code_uid"], st)  # the code: a second uid
    assert int(st["CapEff"], 16) == 0 and int(st["CapPrm"], 16) == 0, st
    assert st["NoNewPrivs"] == "1" and st["Seccomp"] == "2", st
    # The agent is not dumpable: its code can list neither its descriptors nor its environment.
    assert agent["fds"] == "Permission denied", agent["fds"]
    # Environment: exactly the supervisor's (the zygote started with an empty one).
    assert set(report["env"]) <= {"PATH", "HOME", "TMPDIR", "LANG", "LC_CTYPE", "PYTHONPATH", "PYTHONDONTWRITEBYTECODE",
                                   "PYTHONUNBUFFERED", "AGENTCHILD_FD", "PWD", "SHLVL", "_"}, report["env"]
    assert agent["environ"] == report["init_environ"] == "Permission denied", agent["environ"]
    for secret in (settings.SECRET_KEY, settings.ADMIN_API_KEY, settings.REDIS_URL, "DATABASE_URL"):
        assert secret not in output
    # rlimits and the task's cgroups.
    limits = {line[:26].strip(): line[26:].split()[:2] for line in agent["limits"]}
    assert limits["Max core file size"] == ["0", "0"] and limits["Max open files"] == ["256", "256"], limits
    assert int(limits["Max cpu time"][0]) <= 60 + 5, limits
    for controller in ("memory", "pids"):
        assert any(f":{controller}:" in line and "autogen-sandbox-" in line for line in agent["cgroup"]) or \
            any(line.startswith("0::") for line in agent["cgroup"]), agent["cgroup"]
    # Namespaces and the filesystem view, as in the recon test.
    assert agent["hostname"] == "sandbox"
    assert report["processes"][0] == 1 and len(report["processes"]) < 10, report["processes"]
    assert report["hits"] == [] and report["visible"] == [] and report["var_tree"] == [], report
    assert set(report["connections"].values()).isdisjoint({"CONNECTED"}), report["connections"]
    assert "WROTE" not in report["writes"].values(), report["writes"]


# What took a task over before the code got its own uid: the agent's descriptors through
# pidfd_open + pidfd_getfd (syscalls 434 and 438) and /proc/1/fd, a `done` written on each socket.
FORGE = r"""
import ctypes, json, os
libc = ctypes.CDLL(None, use_errno=True)
forged = (json.dumps({"op": "done", "result": {"text": "FORGED", "stop_reason": "forged"}, "state": None}) + "\n").encode()
sent, refused = [], set()
pidfd = libc.syscall(434, 1, 0)
if pidfd < 0:
    refused.add("pidfd_open: " + os.strerror(ctypes.get_errno()))
for fd in range(3, 64):
    got = libc.syscall(438, pidfd, fd, 0) if pidfd >= 0 else -1
    if got < 0:
        if pidfd >= 0:
            refused.add("pidfd_getfd: " + os.strerror(ctypes.get_errno()))
        continue
    try:
        os.write(got, forged)
        sent.append(fd)
    except OSError:
        pass
for what in ("mem", "fd"):
    try:
        open("/proc/1/mem", "rb").close() if what == "mem" else os.listdir("/proc/1/fd")
        refused.add(what + ": opened")
    except OSError as exc:
        refused.add(what + ": " + exc.strerror)
print("FORGE " + json.dumps({"sent": sent, "refused": sorted(refused)}))
"""


def test_code_cannot_forge_its_tasks_result(workers, customer, client_for):
    """Issue 9 point 3: the code an agent runs took the broker channel and sent `done` with its own
    result, which the platform stored. Now the task ends with what its agent did."""
    need("pid_namespace", "code_identity")
    org, user = customer
    task = finished(submit(client_for(user), code_agent(org, FORGE, name="forger")), timeout=90)
    assert task.status == "succeeded", task.error
    assert task.result["text"] == "Done. TERMINATE" and "FORGED" not in json.dumps(task.result), task.result
    output = code_output(task)
    found = json.loads(output[output.index("FORGE ") + 6:])
    assert found["sent"] == [], found
    assert found["refused"] == ["fd: Permission denied", "mem: Permission denied", "pidfd_getfd: Operation not permitted"], found
