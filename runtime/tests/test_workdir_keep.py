"""The code runner's pack/unpack of the work dir over a wait for input (runtime/sandbox/coderunner.py),
on real directories: what the code wrote comes back, nothing lands outside the work dir, and a work dir
over the limit is not kept."""
import base64
import io
import os
import tarfile

from runtime.sandbox.coderunner import _pack, _unpack


def test_a_work_dir_comes_back_as_it_was_without_links_out(tmp_path):
    before, after = tmp_path / "before", tmp_path / "after"
    before.mkdir(), after.mkdir()
    (before / "out").mkdir()
    (before / "out" / "notes.txt").write_text("kept")
    (before / "run.sh").write_text("echo hi")
    os.chmod(before / "run.sh", 0o755)
    os.symlink("/etc/hostname", before / "link-out")
    os.symlink("out/notes.txt", before / "link-in")

    packed = _pack(str(before), 1 << 20)
    assert packed["too_large"] is False and packed["archive"]
    assert _unpack(str(after), packed["archive"]) == {"ok": True}

    assert (after / "out" / "notes.txt").read_text() == "kept"
    assert os.access(after / "run.sh", os.X_OK)
    assert (after / "link-in").read_text() == "kept"
    assert not os.path.lexists(after / "link-out")


def test_an_archive_cannot_write_outside_the_work_dir(tmp_path):
    workdir = tmp_path / "work"
    workdir.mkdir()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name in ("../escaped.txt", "/tmp/absolute-escape.txt", "fine.txt"):
            info = tarfile.TarInfo(name)
            info.size = 2
            tar.addfile(info, io.BytesIO(b"hi"))

    assert _unpack(str(workdir), base64.b64encode(buffer.getvalue()).decode()) == {"ok": True}

    # ".." is left out; an absolute name loses its leading slash (tarfile's data filter): both stay inside
    assert sorted(os.listdir(workdir)) == ["fine.txt", "tmp"]
    assert (workdir / "tmp" / "absolute-escape.txt").read_text() == "hi"
    assert not (tmp_path / "escaped.txt").exists() and not os.path.exists("/tmp/absolute-escape.txt")


def test_a_work_dir_over_the_limit_is_not_kept_and_an_empty_one_is_nothing(tmp_path):
    (tmp_path / "noise.bin").write_bytes(os.urandom(64 << 10))  # random: gzip cannot shrink it

    assert _pack(str(tmp_path), 16 << 10) == {"archive": None, "too_large": True}
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _pack(str(empty), 1 << 20) == {"archive": None, "too_large": False}
