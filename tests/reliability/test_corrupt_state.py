"""Corrupt state: a truncated or altered checkpoint or store entry is detected by its manifest,
reported, and the previous good one is used (checkpoint) or it is rebuilt (store entry); a resume
onto a checkpoint of a different teacher set or lattice shape is refused, saying what differs.

The unit tests work on copies of the baseline run's checkpoints; the end-to-end tests resume a
damaged copy through the CLI and compare its losses with the uninterrupted baseline.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from distill.checkpoint import (
    CheckpointError,
    build_manifest,
    check_compatible,
    find_resume_checkpoint,
    list_checkpoints,
    remove_leftovers,
    verify_checkpoint,
    write_json_atomic,
)
from tests.conftest import snapshot
from tests.distill.e2e import distill_cmd, run
from tests.reliability.conftest import (
    MAX_STEPS,
    THREADS,
    assert_losses_match,
    resumed_step,
    train_args,
)

STEP = "step_{:08d}".format


@pytest.fixture
def run_copy(baseline, tmp_path) -> Path:
    """A copy of the baseline run's checkpoints (steps 4, 8, 12; latest -> 12)."""
    run_dir = tmp_path / "run"
    shutil.copytree(baseline.run_dir / "checkpoints", run_dir / "checkpoints")
    return run_dir


def _truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _flip_byte(p: Path) -> None:
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0xFF
    p.write_bytes(bytes(data))


def _alter_json(p: Path) -> None:
    text = p.read_text()
    assert '"step": 12' in text
    p.write_text(text.replace('"step": 12', '"step": 99', 1))  # same size: only the checksum tells


CORRUPTIONS = {
    # name: (what to do to step_12, words the report must contain)
    "truncated model weights": (lambda ck: _truncate(ck / "accelerate" / "model.safetensors"),
                                ["model.safetensors", "the manifest says", "truncated or altered"]),
    "flipped byte in optimizer state": (lambda ck: _flip_byte(ck / "accelerate" / "optimizer.bin"),
                                        ["optimizer.bin", "checksum differs"]),
    "missing RNG states": (lambda ck: (ck / "accelerate" / "random_states_0.pkl").unlink(),
                           ["random_states_0.pkl", "missing"]),
    "altered trainer state": (lambda ck: _alter_json(ck / "trainer_state.json"),
                              ["trainer_state.json", "checksum differs"]),
    "no manifest": (lambda ck: (ck / "manifest.json").unlink(), ["no manifest.json", "incomplete"]),
    "corrupt manifest": (lambda ck: (ck / "manifest.json").write_text('{"files": '),
                         ["manifest.json is corrupt"]),
}


@pytest.mark.parametrize("kind", list(CORRUPTIONS))
def test_damaged_checkpoint_is_reported_and_previous_good_one_used(run_copy, kind, caplog):
    damage, words = CORRUPTIONS[kind]
    ck12 = run_copy / "checkpoints" / STEP(12)
    verify_checkpoint(ck12)  # intact before
    damage(ck12)
    with pytest.raises(CheckpointError) as err:
        verify_checkpoint(ck12)
    for w in words:
        assert w in str(err.value), str(err.value)
    with caplog.at_level(logging.WARNING, logger="distill.checkpoint"):
        found = find_resume_checkpoint(run_copy)
    assert found.name == STEP(8)  # `latest` names step 12; the fallback is the previous good one
    warning = " ".join(r.getMessage() for r in caplog.records)
    assert f"skipping checkpoint {STEP(12)}" in warning and "falling back to the previous one" in warning
    assert words[0] in warning  # the report says which file


def test_garbage_latest_pointer_falls_back_to_newest_verified(run_copy):
    (run_copy / "checkpoints" / "latest").write_bytes(b"\xff\xfe\x00 not a name")
    assert find_resume_checkpoint(run_copy).name == STEP(12)


def test_pointer_is_the_commit_point(run_copy):
    # A kill between the rename of step 12 and the pointer update leaves step 12 complete but
    # `latest` on step 8: the resume follows the pointer (both are complete and verified).
    (run_copy / "checkpoints" / "latest").write_text(STEP(8) + "\n")
    assert find_resume_checkpoint(run_copy).name == STEP(8)
    # A pointer to a checkpoint that is gone falls back to the newest verified one.
    (run_copy / "checkpoints" / "latest").write_text(STEP(40) + "\n")
    assert find_resume_checkpoint(run_copy).name == STEP(12)


def test_leftover_tmp_dir_is_never_loaded_and_is_removed(run_copy):
    cks = run_copy / "checkpoints"
    # A leftover write that even looks complete (valid manifest) and is newer than everything.
    leftover = cks / ".tmp-step_00000016"
    shutil.copytree(cks / STEP(12), leftover)
    verify_checkpoint(leftover)
    (cks / ".tmp-latest").write_text("step_00000016\n")
    assert [c.name for c in list_checkpoints(run_copy)] == [STEP(12), STEP(8), STEP(4)]
    assert find_resume_checkpoint(run_copy).name == STEP(12)
    # The next save calls remove_leftovers: both leftovers go, the real checkpoints stay.
    assert sorted(remove_leftovers(cks)) == [".tmp-latest", ".tmp-step_00000016"]
    assert sorted(p.name for p in cks.iterdir()) == ["latest", STEP(4), STEP(8), STEP(12)]


def test_every_checkpoint_corrupt_gives_none(run_copy):
    for ck in list_checkpoints(run_copy):
        _truncate(ck / "accelerate" / "model.safetensors")
    assert find_resume_checkpoint(run_copy) is None


# ---- compatibility -------------------------------------------------------------------------


def _meta(baseline) -> dict:
    return json.loads((baseline.run_dir / "checkpoints" / STEP(12) / "meta.json").read_text())


def test_compatible_meta_passes_and_each_difference_is_named(baseline):
    meta = _meta(baseline)
    check_compatible(meta, json.loads(json.dumps(meta)), Path("ck"))  # identical: fine

    fewer = json.loads(json.dumps(meta))
    del fewer["teachers"]["bert-cls"]
    with pytest.raises(CheckpointError, match=r"teachers: checkpoint has \['bert-cls', 'bert-mean'\], "
                                              r"config has \['bert-mean'\]"):
        check_compatible(meta, fewer, Path("ck"))

    changed = json.loads(json.dumps(meta))
    changed["teachers"]["bert-cls"]["pooling"] = "max"
    changed["teachers"]["bert-cls"]["max_length"] = 64
    changed["lattice"]["depth"] = 5
    changed["skip"] = False
    changed["data"]["spans"] = 2
    with pytest.raises(CheckpointError) as err:
        check_compatible(meta, changed, Path("ck"))
    msg = str(err.value)
    assert msg.startswith("cannot resume from ck: ")
    assert "data.spans: checkpoint 0, config 2" in msg
    assert "teacher 'bert-cls' differs in max_length, pooling" in msg
    assert "student.lattice.depth: checkpoint 3, config 5" in msg
    assert "student.skip: checkpoint True, config False" in msg

    old = json.loads(json.dumps(meta))
    del old["data"]  # a checkpoint from before the meta held the data settings
    check_compatible(old, changed | {"teachers": meta["teachers"], "lattice": meta["lattice"], "skip": True},
                     Path("ck"))


def test_partial_check_from_config_alone_ignores_derived_sizes(baseline):
    from distill.checkpoint import config_meta
    from distill.config import load_config

    meta = _meta(baseline)
    cfg = load_config(baseline.config)
    expected = config_meta(cfg)
    assert "input_dim" not in expected["lattice"]
    check_compatible(meta, expected, Path("ck"), partial=True)  # the baseline's own config passes
    cfg = load_config(baseline.config, ["student.lattice.channels=4"])
    with pytest.raises(CheckpointError, match="student.lattice.channels: checkpoint 8, config 4"):
        check_compatible(meta, config_meta(cfg), Path("ck"), partial=True)


# ---- end to end ----------------------------------------------------------------------------


@pytest.mark.slow
def test_resume_of_damaged_run_falls_back_and_reproduces_losses(baseline):
    """step 12 truncated, step 8 altered with a manifest that matches (so only the safety check
    can catch it: an optimizer.bin that would run code): the resume reports both and continues
    from step 4, and the losses from there equal the uninterrupted run's."""
    from tests.reliability.test_safety import plant_pickle

    b = baseline
    run_dir = b.run_dir_of("damaged")
    shutil.copytree(b.run_dir, run_dir)
    cks = run_dir / "checkpoints"
    _truncate(cks / STEP(12) / "accelerate" / "model.safetensors")
    marker = b.root / "PWNED-damaged"
    plant_pickle(cks / STEP(8) / "accelerate" / "optimizer.bin", marker)
    write_json_atomic(cks / STEP(8) / "manifest.json", build_manifest(cks / STEP(8)))
    r = run(distill_cmd(*train_args(b, "damaged", resume=True)), cwd=b.root, env=THREADS)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"skipping checkpoint {STEP(12)}" in r.stderr and "model.safetensors" in r.stderr
    assert f"skipping checkpoint {STEP(8)}" in r.stderr and "optimizer.bin: refused" in r.stderr
    assert resumed_step(r.stderr) == 4
    assert not marker.exists()
    assert_losses_match(run_dir, b, range(5, MAX_STEPS + 1))
    for ck in list_checkpoints(run_dir):
        verify_checkpoint(ck)  # the damaged ones were replaced by the resumed run's saves


def _entries(store: Path) -> dict[tuple[str, str], Path]:
    """{(teacher, role): the space's one shard directory} of a small (one shard per space) store."""
    out = {}
    for d in (store / "spaces").iterdir():
        info = json.loads((d / "space.json").read_text())
        shards = sorted(p for p in (d / "shards").iterdir() if not p.name.startswith("."))
        assert len(shards) == 1, shards
        out[(info["teacher"], info["inputs"]["role"])] = shards[0]
    return out


@pytest.mark.slow
def test_damaged_store_shards_are_reported_and_rebuilt(baseline, tmp_path):
    from teachers import TargetStore

    store_dir = tmp_path / "store"
    shutil.copytree(baseline.root / "store", store_dir)
    entries = _entries(store_dir)
    assert len(entries) == 4
    original = {k: np.load(d / "emb.npy") for k, d in entries.items()}
    q, a = entries[("bert-mean", "query")], entries[("bert-mean", "answer")]
    _truncate(q / "emb.npy")
    _flip_byte(a / "emb.npy")  # same size: only the sha256 can tell
    untouched = {k: snapshot(d) for k, d in entries.items() if k[0] == "bert-cls"}
    r = run(distill_cmd("embed", str(baseline.config), "--set", f"targets.store_dir={store_dir}"),
            cwd=tmp_path, env=THREADS)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"bert-mean/question shard {q.name} is corrupt (emb.npy is" in r.stderr
    assert f"bert-mean/answer shard {a.name} is corrupt (sha256 of emb.npy differs" in r.stderr
    assert r.stderr.count("will be re-embedded") == 2
    store = TargetStore(store_dir)
    for sp in store.spaces():
        assert sp.verify(full=True) == []
    for k, d in _entries(store_dir).items():
        np.testing.assert_allclose(np.load(d / "emb.npy"), original[k], atol=1e-6, err_msg=str(k))
    for k, snap in untouched.items():
        assert snapshot(entries[k]) == snap, k  # good shards are reused, not rewritten
    leftovers = [p for sp in store.spaces() for p in sp.shards_dir.iterdir() if p.name.startswith(".")]
    assert not leftovers and not [p.name for p in store_dir.iterdir() if p.name.startswith(".")]
