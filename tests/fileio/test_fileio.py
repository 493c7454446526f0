"""fileio: atomic writes leave old-or-new content and no temporaries; stale temporaries and locks
of dead processes are recognised, live ones never touched."""

import json
import os
import subprocess
import sys

import pytest

import fileio


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_write_bytes_atomic_replaces_and_leaves_no_temporary(tmp_path):
    f = tmp_path / "a" / "x.json"
    fileio.write_json_atomic(f, {"a": 1})
    fileio.write_json_atomic(f, {"a": 2})
    assert json.loads(f.read_text()) == {"a": 2}
    assert [p.name for p in f.parent.iterdir()] == ["x.json"]


def test_failed_write_keeps_old_content(tmp_path, monkeypatch):
    f = tmp_path / "x.txt"
    fileio.write_text_atomic(f, "old")

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError):
        fileio.write_text_atomic(f, "new")
    assert f.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.txt"]


def test_write_dir_atomic_replace_and_keep(tmp_path):
    d = tmp_path / "entry"

    def fill(v):
        def f(tmp):
            tmp.mkdir()
            (tmp / "v").write_text(v)
        return f

    assert fileio.write_dir_atomic(d, fill("1"))
    assert fileio.write_dir_atomic(d, fill("2"))
    assert (d / "v").read_text() == "2"
    assert not fileio.write_dir_atomic(d, fill("3"), replace=False)
    assert (d / "v").read_text() == "2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["entry"]


def test_write_dir_atomic_failing_fill_leaves_old(tmp_path):
    d = tmp_path / "entry"
    d.mkdir()
    (d / "v").write_text("old")

    def fill(tmp):
        tmp.mkdir()
        (tmp / "half").write_text("x")
        raise ValueError("bad")

    with pytest.raises(ValueError):
        fileio.write_dir_atomic(d, fill)
    assert (d / "v").read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["entry"]


def test_temp_names_and_stale_cleaning(tmp_path):
    live = fileio.temp_path(tmp_path / "shard")
    assert fileio.temp_owner(live.name) == (fileio.hostname(), os.getpid())
    live.mkdir()
    dead = tmp_path / f".tmp-shard~{fileio.hostname()}~{dead_pid()}~abcd1234"
    dead.mkdir()
    (dead / "emb.npy").write_bytes(b"x" * 10)
    other_host = tmp_path / f".tmp-shard~some-other-host~{dead_pid()}~abcd1234"
    other_host.mkdir()
    unnamed = tmp_path / ".tmp-legacy"
    unnamed.mkdir()
    removed = fileio.clean_stale_temps(tmp_path)
    assert removed == [dead]
    assert live.exists() and other_host.exists() and unnamed.exists() and not dead.exists()


def test_lock_excludes_reports_holder_and_takes_over_dead(tmp_path):
    path = tmp_path / "run.lock"
    a = fileio.Lock(path, what="training").acquire()
    with pytest.raises(fileio.LockHeld) as err:
        fileio.Lock(path).acquire()
    assert f"pid {os.getpid()}" in str(err.value) and "training" in str(err.value)
    a.release()
    assert not path.exists()
    # A lock left by a dead process on this host is taken over.
    path.write_text(json.dumps({"host": fileio.hostname(), "pid": dead_pid(), "started": "x"}))
    b = fileio.Lock(path, what="second").acquire()
    assert json.loads(path.read_text())["pid"] == os.getpid()
    b.release()
    # Another host's lock is never called stale without stale_after_s.
    path.write_text(json.dumps({"host": "elsewhere", "pid": 1, "started": "x"}))
    with pytest.raises(fileio.LockHeld):
        fileio.Lock(path).acquire()
    os.utime(path, (0, 0))
    fileio.Lock(path, stale_after_s=60).acquire().release()


def test_sha256_file(tmp_path):
    import hashlib

    f = tmp_path / "b"
    f.write_bytes(os.urandom(3 << 20))
    assert fileio.sha256_file(f, chunk=1 << 20) == hashlib.sha256(f.read_bytes()).hexdigest()
