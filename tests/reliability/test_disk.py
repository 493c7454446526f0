"""Disk: a failed write (full disk, I/O error) leaves the previous checkpoint and the target store
usable, leaves no partial files behind, and says what failed.

Two ways to fail a write, in process (we run as root, so permissions stop nothing):
* ``RLIMIT_FSIZE``: the kernel refuses writes past N bytes (EFBIG), so the real writers fail the
  way they do on a full disk -- safetensors raises SafetensorError, torch.save a RuntimeError,
  numpy an OSError -- through their real code paths;
* monkeypatching one call (fsync, rename, replace) to raise OSError(ENOSPC) at an exact point.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

from distill import checkpoint as ckpt
from tests.conftest import snapshot
from tests.reliability.conftest import MAX_STEPS, THREADS, assert_losses_match, resumed_step, train_args

STEP = "step_{:08d}".format


@contextlib.contextmanager
def file_size_limit(nbytes: int):
    """Writes past ``nbytes`` in any file fail (EFBIG) while inside the block."""
    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the kernel kills us
    resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, old_limit[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
        signal.signal(signal.SIGXFSZ, old_handler)


def enospc(*_a, **_k):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.fixture(scope="module")
def acc():
    """A real Accelerator with a model big enough that its files have distinct sizes:
    model.safetensors ~ 256 KiB, optimizer.bin ~ 512 KiB."""
    from accelerate import Accelerator

    a = Accelerator(cpu=True)
    model = torch.nn.Linear(256, 256)
    opt = torch.optim.AdamW(model.parameters())
    model, opt = a.prepare(model, opt)
    model(torch.randn(2, 256)).sum().backward()
    opt.step()
    return a


def save(acc, run_dir: Path, step: int) -> Path:
    return ckpt.save_checkpoint(acc, run_dir, step, {"loop": {"step": step}}, {"teachers": {}}, keep_last=3)


FAULTS = {
    # name: (fault to apply around the step-8 save, words of the cause in the report)
    "model weights hit the size limit (safetensors)": (lambda mp: file_size_limit(64 * 1024),
                                                       "SafetensorError"),
    "optimizer state hits the size limit (torch.save)": (lambda mp: file_size_limit(300 * 1024),
                                                         "RuntimeError"),
    "fsync of trainer_state.json: ENOSPC": (lambda mp: mp.setattr(os, "fsync", enospc), "No space left on device"),
    "rename into place: EIO": (
        lambda mp: mp.setattr(os, "rename", _failing_rename(errno.EIO, lambda dst: Path(dst).name.startswith("step_"))),
        "Input/output error"),
    "latest pointer: ENOSPC": (
        lambda mp: mp.setattr(os, "replace", _failing_replace(lambda dst: Path(dst).name == "latest")),
        "No space left on device"),
}


def _failing_rename(code: int, when):
    real = os.rename

    def rename(src, dst, *a, **k):
        if when(dst):
            raise OSError(code, os.strerror(code))
        return real(src, dst, *a, **k)

    return rename


def _failing_replace(when):
    real = os.replace

    def replace(src, dst, *a, **k):
        if when(dst):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(src, dst, *a, **k)

    return replace


@pytest.mark.parametrize("fault", list(FAULTS))
def test_failed_checkpoint_write_keeps_previous_and_says_what_failed(acc, tmp_path, monkeypatch, fault):
    apply, cause = FAULTS[fault]
    run_dir = tmp_path / "run"
    save(acc, run_dir, 4)
    before = snapshot(run_dir / "checkpoints" / STEP(4))
    with monkeypatch.context() as mp:
        cm = apply(mp)
        with cm if cm is not None else contextlib.nullcontext(), pytest.raises(OSError) as err:
            save(acc, run_dir, 8)
    msg = str(err.value)
    assert msg.startswith(f"writing checkpoint {run_dir / 'checkpoints' / STEP(8)} failed (")
    assert cause in msg and msg.endswith("; the previous checkpoint is unchanged"), msg
    # The previous checkpoint: untouched, still named by `latest`, verifies, is what a resume uses.
    assert snapshot(run_dir / "checkpoints" / STEP(4)) == before
    assert ckpt.read_latest(run_dir) == STEP(4)
    assert ckpt.find_resume_checkpoint(run_dir).name == STEP(4)
    # No partial files: the temporary directory (and pointer temporary) are gone.
    assert not [p.name for p in (run_dir / "checkpoints").iterdir() if p.name.startswith(".tmp-")]
    names = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    if fault.startswith("latest pointer"):
        # Failed after the rename: step 8 is complete (and verifies) but not yet committed.
        assert names == ["latest", STEP(4), STEP(8)]
        ckpt.verify_checkpoint(run_dir / "checkpoints" / STEP(8))
    else:
        assert names == ["latest", STEP(4)]
    # Space again: the next save works and moves the pointer.
    save(acc, run_dir, 8)
    assert ckpt.find_resume_checkpoint(run_dir).name == STEP(8)


def test_failed_resave_of_same_step_restores_the_old_one(acc, tmp_path, monkeypatch):
    # After a resume from an older checkpoint the same step is saved again: the old copy is
    # moved aside, and must come back if the new one cannot be put in place.
    run_dir = tmp_path / "run"
    save(acc, run_dir, 4)
    save(acc, run_dir, 8)
    before = snapshot(run_dir / "checkpoints" / STEP(8))
    real = os.rename
    calls = []

    def rename(src, dst):
        calls.append(Path(dst).name)
        if Path(src).name.startswith(".tmp-step_") and Path(dst).name == STEP(8):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(OSError, match="previous checkpoint is unchanged"):
        save(acc, run_dir, 8)
    assert ".tmp-replaced-step_00000008" in calls  # it was moved aside first ...
    assert snapshot(run_dir / "checkpoints" / STEP(8)) == before  # ... and put back
    assert ckpt.find_resume_checkpoint(run_dir).name == STEP(8)
    assert not [p.name for p in (run_dir / "checkpoints").iterdir() if p.name.startswith(".tmp-")]


@pytest.mark.slow
def test_disk_full_during_training_exits_1_and_resume_reproduces_losses(baseline, monkeypatch, capsys):
    """The real CLI, in process: the step-8 checkpoint write hits the size limit. One error line,
    exit 1, step 4 intact; a resume (space again) continues and matches the baseline."""
    import accelerate

    from distill import cli
    from tests.distill.e2e import distill_cmd, run

    b = baseline
    real_save_state = accelerate.Accelerator.save_state

    def save_state(self, output_dir=None, **kw):
        if output_dir and ".tmp-step_00000008" in str(output_dir):
            with file_size_limit(16 * 1024):
                return real_save_state(self, output_dir, **kw)
        return real_save_state(self, output_dir, **kw)

    monkeypatch.setattr(accelerate.Accelerator, "save_state", save_state)
    monkeypatch.chdir(b.root)
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # as the subprocesses (OMP_NUM_THREADS=1): same float results
    try:
        rc = cli.main(train_args(b, "diskfull"))
    finally:
        torch.set_num_threads(n)
    err = capsys.readouterr().err
    run_dir = b.run_dir_of("diskfull")
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert rc == 1, err[-3000:]
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"error: writing checkpoint {run_dir / 'checkpoints' / STEP(8)} failed (")
    assert "File too large" in errors[0] and errors[0].endswith("the previous checkpoint is unchanged")
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["latest", STEP(4)]
    ckpt.verify_checkpoint(run_dir / "checkpoints" / STEP(4))

    r = run(distill_cmd(*train_args(b, "diskfull", resume=True)), cwd=b.root, env=THREADS)
    assert r.returncode == 0, r.stderr[-3000:]
    assert resumed_step(r.stderr) == 4
    assert_losses_match(run_dir, b, range(1, MAX_STEPS + 1))


# ---- target store ----------------------------------------------------------------------------


def test_failed_store_write_keeps_existing_shards_and_leaves_no_partial_shard(baseline, tmp_path):
    from teachers import TargetStore
    from teachers.store import StoreError, text_keys

    root = tmp_path / "store"
    shutil.copytree(baseline.root / "store", root)
    before = snapshot(root)
    store = TargetStore(root)
    sp = store.spaces()[0]
    keys = text_keys([f"new text {i}" for i in range(200)])
    with file_size_limit(16 * 1024), pytest.raises(StoreError, match="writing shard u-new failed"):
        sp.write_shard("u-new", keys, np.ones((200, 32), dtype=np.float32))  # 25 KiB: over the limit
    assert snapshot(root) == before  # existing shards untouched, nothing new, no .tmp-* left
    assert not (sp.shards_dir / "u-new").exists()
    for s in store.spaces():
        assert s.verify(full=True) == []
    # Space again: the same write succeeds.
    assert sp.write_shard("u-new", keys, np.ones((200, 32), dtype=np.float32))
    assert sp.check_shard("u-new") is None


def test_failed_store_write_via_cli_names_the_store(baseline, tmp_path, monkeypatch, capsys):
    from distill import cli

    store_dir = tmp_path / "new-store"  # empty: `distill embed` must write every entry
    monkeypatch.setattr(np, "save", enospc)
    rc = cli.main(["embed", str(baseline.config), "--set", f"targets.store_dir={store_dir}"])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert rc == 1 and len(errors) == 1, err[-2000:]
    assert "No space left on device" in errors[0]
    assert str(store_dir) in errors[0] and "target store" in errors[0], errors[0]
    assert not [p for p in store_dir.iterdir() if p.name.startswith(".tmp-")]
