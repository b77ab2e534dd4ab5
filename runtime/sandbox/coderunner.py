"""The code runner: the task's second principal, which runs the code an agent's model wrote. Stdlib only.

The agent process (AgentChat, the broker channel) speaks for the task; the code its model writes is the
attacker's. Both live in the task's sandbox, so the launcher (launcher.start_code_runner) forks this
runner from P1 before P1 drops privileges and becomes the agent. The runner then:

    closes every descriptor but stdin/stdout/stderr and its own socket (no broker channel, no pipe
    of the launcher), drops to the task's code uid (task uid + CODE_UID_OFFSET, root worker) or
    stays on the agent's uid (one mapped uid in a user namespace), is not dumpable, dies with the
    agent (PR_SET_PDEATHSIG), sets no_new_privs and installs the same seccomp filter as the agent
    (ptrace, pidfd_getfd, kcmp, process_vm_*, process_madvise denied),

and serves requests, one at a time, as JSON lines on its socket:

    agent -> runner   {"op": "run", "blocks": [{"language", "code"}], "timeout": seconds}
                      {"op": "cancel"}          (while a run is under way: stop it)
    runner -> agent   {"exit_code": int, "output": str, "code_file": str | null}

    agent -> runner   {"op": "pack", "limit": bytes}     (the task stops to wait for a person)
    runner -> agent   {"archive": base64 tar.gz of the work dir | null, "too_large": bool}
    agent -> runner   {"op": "unpack", "archive": ...}   (the resumed task: the work dir as it was)
    runner -> agent   {"ok": bool, "error": str}

Packing and unpacking run here, as the code's uid inside the sandbox: the archive holds only what the
code could read, and unpacking ("data" filter: absolute names made relative, no "..", no links out, no
devices, no setuid)
can only write where the code could, within the work dir's size cap.

Each block runs the way AutoGen's LocalCommandLineCodeExecutor runs it (the same languages, file
names, output order, exit codes 124 for a timeout and 125 for a cancel), as a child of the runner in
the work directory, with the task's environment minus the AGENTCHILD_* descriptors' names.
"""
import os
import sys

REQUEST_LIMIT = 16 << 20  # bytes of one request (the code blocks)
OUTPUT_LIMIT = 32 << 20  # bytes of a run's output kept; the rest is read and dropped
SUPPORTED = ("bash", "shell", "sh", "pwsh", "powershell", "ps1", "python")
PYTHON_VARIANTS = ("python", "py")


def serve(fd: int, config: dict) -> None:
    """The runner's loop (privileges already dropped). Returns when the agent closes its end.

    Imports nothing until the first request: a task whose agent never runs code pays only the fork."""
    env = {k: v for k, v in config["env"].items() if not k.startswith("AGENTCHILD_")}
    workdir = config["cwd"]
    pending = b""
    while True:
        line, pending = _read_line(fd, pending)
        if line is None:
            return
        import json

        try:
            request = json.loads(line)
        except ValueError:
            request = None
        op = request.get("op") if isinstance(request, dict) else None
        if op not in ("run", "pack", "unpack"):
            continue  # a cancel that came after its run ended, or noise: nothing to answer
        try:
            if op == "pack":
                reply = _pack(workdir, int(request.get("limit") or 0))
            elif op == "unpack":
                reply = _unpack(workdir, str(request.get("archive") or ""))
            else:
                reply = _run(request, fd, workdir, env)
        except Exception as exc:  # noqa: BLE001 - the agent always gets an answer
            failure = f"the code runner failed: {type(exc).__name__}: {exc}"
            reply = {"exit_code": 1, "output": failure, "code_file": None} if op == "run" else {"ok": False, "error": failure}
        data = (json.dumps(reply) + "\n").encode()
        try:
            while data:
                data = data[os.write(fd, data):]
        except OSError:
            return


def _read_line(fd: int, pending: bytes):
    while b"\n" not in pending:
        if len(pending) > REQUEST_LIMIT:
            return None, b""
        try:
            chunk = os.read(fd, 1 << 16)
        except InterruptedError:
            continue
        except OSError:
            return None, b""
        if not chunk:
            return None, b""
        pending += chunk
    line, _, rest = pending.partition(b"\n")
    return line, rest


class _TooLarge(Exception):
    pass


def _pack(workdir: str, limit: int) -> dict:
    """The work dir as a base64 tar.gz of at most `limit` bytes (None, too_large, when it does not fit)."""
    import base64
    import io
    import tarfile

    class Bounded(io.BytesIO):
        def write(self, data):
            if self.tell() + len(data) > limit:
                raise _TooLarge
            return super().write(data)

    names = sorted(os.listdir(workdir))
    if not names:
        return {"archive": None, "too_large": False}
    buffer = Bounded()
    try:
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            for name in names:
                try:
                    tar.add(os.path.join(workdir, name), arcname=name)
                except OSError:
                    pass  # what the code made unreadable is not kept
    except _TooLarge:
        return {"archive": None, "too_large": True}
    return {"archive": base64.b64encode(buffer.getvalue()).decode(), "too_large": False}


def _unpack(workdir: str, archive: str) -> dict:
    import base64
    import io
    import tarfile

    def data_only(member, path):
        try:
            return tarfile.data_filter(member, path)
        except tarfile.FilterError:
            return None  # e.g. a link out of the work dir: left out, the rest comes back

    with tarfile.open(fileobj=io.BytesIO(base64.b64decode(archive, validate=True)), mode="r:gz") as tar:
        tar.extractall(workdir, filter=data_only)
    return {"ok": True}


def _silence_pip(code: str, lang: str) -> str:
    import re

    if lang == "python":
        regex = r"^! ?pip install"
    elif lang in ("bash", "shell", "sh", "pwsh", "powershell", "ps1"):
        regex = r"^pip install"
    else:
        return code
    lines = code.split("\n")
    for i, line in enumerate(lines):
        match = re.search(regex, line)
        if match is not None and "-qqq" not in line:
            lines[i] = line.replace(match.group(0), match.group(0) + " -qqq")
    return "\n".join(lines)


def _file_name(code: str, workdir: str) -> str | None:
    """`# filename: x` on the first line names the file; it must stay inside the work dir."""
    first = code.split("\n")[0]
    if not first.startswith("# filename:"):
        return None
    name = first.split(":")[1].strip()
    path = os.path.realpath(os.path.join(workdir, name))
    root = os.path.realpath(workdir)
    if os.path.commonpath([path, root]) != root:
        raise ValueError("Filename is not in the workspace")
    return os.path.relpath(path, root)


def _command(lang: str) -> str:
    import shutil

    if lang == "shell":
        return "sh"
    if lang in ("pwsh", "powershell", "ps1"):
        for name in ("pwsh", "powershell"):
            if shutil.which(name):
                return name
        raise ValueError("Powershell or pwsh is not installed. Please install one of them.")
    return lang


def _run(request: dict, fd: int, workdir: str, env: dict) -> dict:
    import hashlib

    timeout = max(1.0, float(request.get("timeout") or 60))
    output, exit_code, files = "", 0, []
    try:
        for block in request.get("blocks") or []:
            lang = str(block.get("language") or "").lower()
            code = _silence_pip(str(block.get("code") or ""), lang)
            if lang in PYTHON_VARIANTS:
                lang = "python"
            if lang not in SUPPORTED:
                exit_code = 1
                output += "\n" + f"unknown language {lang}"
                break
            try:
                name = _file_name(code, workdir)
            except ValueError as exc:
                return {"exit_code": 1, "output": str(exc), "code_file": None}
            if name is None:
                ext = "py" if lang == "python" else ("ps1" if lang in ("pwsh", "powershell", "ps1") else lang)
                name = f"tmp_code_{hashlib.sha256(code.encode()).hexdigest()}.{ext}"
            path = os.path.join(workdir, name)
            with open(path, "w", encoding="utf-8") as f:
                f.write(code)
            files.append(path)
            try:
                argv = [sys.executable, path] if lang == "python" else [_command(lang), path]
            except ValueError as exc:
                exit_code = 1
                output += "\n" + str(exc)
                break
            exit_code, text, ended = _execute(argv, workdir, env, timeout, fd)
            output += text
            if ended or exit_code != 0:
                break
    finally:
        for path in files:
            try:
                os.unlink(path)
            except OSError:
                pass
    return {"exit_code": exit_code, "output": output, "code_file": files[0] if files else None}


def _execute(argv: list, workdir: str, env: dict, timeout: float, control: int) -> tuple[int, str, bool]:
    """Run one file: (exit code, stderr + stdout, whether a timeout or cancel ended the run)."""
    import selectors
    import signal
    import subprocess
    import time

    proc = subprocess.Popen(argv, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()
    streams = {out_fd: [], err_fd: []}
    kept = 0
    sel = selectors.DefaultSelector()
    for stream in (proc.stdout, proc.stderr):
        sel.register(stream.fileno(), selectors.EVENT_READ)
    sel.register(control, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    stop = None
    try:
        while len(sel.get_map()) > 1 or proc.poll() is None:
            left = deadline - time.monotonic()
            if left <= 0:
                stop = ("\nTimeout", 124)
                break
            if len(sel.get_map()) == 1:  # the pipes closed: wait for the exit alone
                try:
                    proc.wait(min(left, 0.05))
                except subprocess.TimeoutExpired:
                    pass
                if any(key.fd == control for key, _ in sel.select(0)):
                    stop = _control(control)
                    if stop:
                        break
                continue
            for key, _ in sel.select(left):
                fd = key.fd
                if fd == control:
                    stop = _control(control)
                    if stop:
                        break
                    continue
                data = os.read(fd, 1 << 16)
                if not data:
                    sel.unregister(fd)
                    continue
                if kept < OUTPUT_LIMIT:
                    streams[fd].append(data[: OUTPUT_LIMIT - kept])
                    kept += len(data)
            if stop:
                break
    finally:
        sel.close()
        if stop or proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    text = b"".join(streams[err_fd]).decode(errors="replace") + b"".join(streams[out_fd]).decode(errors="replace")
    if kept > OUTPUT_LIMIT:
        text += f"\n[output cut at {OUTPUT_LIMIT >> 20} MB]"
    if stop:
        return stop[1], text + stop[0], True
    return proc.returncode or 0, text, False


def _control(fd: int) -> tuple[str, int] | None:
    """The agent wrote during a run: a cancel (or its end closed): stop the run."""
    try:
        data = os.read(fd, 4096)
    except OSError:
        data = b""
    if not data or b'"cancel"' in data:
        return ("\nCancelled", 125)
    return None
