"""Safety: checkpoints and store entries are read without unpickling arbitrary objects; a teacher's
custom code runs only with an explicit per-teacher opt-in.

Every refusal is checked against a marker file the planted payload would create if it ran, and
a control shows the payload does run when loaded unsafely -- so "no marker" means "refused".
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from distill.checkpoint import (
    CheckpointError,
    build_manifest,
    find_resume_checkpoint,
    verify_checkpoint,
    write_json_atomic,
)

STEP = "step_{:08d}".format


class _Payload:
    """Unpickling this runs `touch MARKER` (what a malicious checkpoint would do, harmlessly)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


def plant_pickle(path: Path, marker: Path) -> None:
    """Replace ``path`` with a torch.save file whose unpickling runs code."""
    torch.save({"state": _Payload(marker)}, str(path))


@pytest.fixture
def run_copy(baseline, tmp_path) -> Path:
    run_dir = tmp_path / "run"
    shutil.copytree(baseline.run_dir / "checkpoints", run_dir / "checkpoints")
    return run_dir


def test_planted_payload_is_live_when_loaded_unsafely(tmp_path):
    # Control: the payload really runs under an unrestricted unpickler.
    marker = tmp_path / "PWNED"
    plant_pickle(tmp_path / "evil.bin", marker)
    torch.load(tmp_path / "evil.bin", weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("victim", ["optimizer.bin", "random_states_0.pkl"])
def test_checkpoint_with_code_in_a_pickle_is_refused_not_run(run_copy, victim, tmp_path):
    marker = tmp_path / "PWNED"
    ck = run_copy / "checkpoints" / STEP(12)
    plant_pickle(ck / "accelerate" / victim, marker)
    # A matching manifest: checksums alone cannot tell; the weights-only check must.
    write_json_atomic(ck / "manifest.json", build_manifest(ck))
    with pytest.raises(CheckpointError) as err:
        verify_checkpoint(ck)
    msg = str(err.value)
    assert f"{victim}: refused" in msg and "weights_only" in msg and "posix.system" in msg, msg
    assert find_resume_checkpoint(run_copy).name == STEP(8)
    assert not marker.exists()


def test_accelerate_load_path_is_weights_only(tmp_path):
    # accelerator.load_state reads optimizer/scheduler/RNG files through accelerate.utils.load:
    # it must refuse the payload on its own too (defence in depth behind verify_checkpoint).
    from accelerate.utils import load as accelerate_load

    marker = tmp_path / "PWNED"
    plant_pickle(tmp_path / "optimizer.bin", marker)
    with pytest.raises(pickle.UnpicklingError):
        accelerate_load(str(tmp_path / "optimizer.bin"), map_location="cpu")
    assert not marker.exists()


def test_real_checkpoint_files_pass_the_weights_only_check(baseline):
    for ck in list((baseline.run_dir / "checkpoints").glob("step_*")):
        verify_checkpoint(ck)  # RNG states hold numpy arrays: allowed, like Accelerate allows them


# ---- trust_remote_code ---------------------------------------------------------------------

CUSTOM_CONFIG = '''
from pathlib import Path
from transformers import PretrainedConfig

Path({marker!r}).touch()  # runs when transformers imports this module


class EvilConfig(PretrainedConfig):
    model_type = "reltest_custom"
'''


def make_custom_code_model(root: Path, marker: Path, model_type: str = "reltest_custom") -> Path:
    """A local model directory whose config.json maps AutoConfig to code in the directory."""
    d = root / "custom-model"
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(json.dumps({
        "model_type": model_type, "hidden_size": 32, "num_hidden_layers": 2,
        "auto_map": {"AutoConfig": "evil_config.EvilConfig", "AutoModel": "evil_config.EvilModel"},
    }))
    (d / "evil_config.py").write_text(CUSTOM_CONFIG.format(marker=str(marker)))
    return d


def test_custom_code_teacher_refused_by_config_without_opt_in(baseline, tmp_path):
    from distill.config import ConfigError, load_config

    marker = tmp_path / "PWNED"
    model = make_custom_code_model(tmp_path, marker)
    with pytest.raises(ConfigError) as err:
        load_config(baseline.config, [f"teachers[1].model={model}"])
    msg = str(err.value)
    assert msg.startswith("teachers[1].trust_remote_code: "), msg
    assert "ships its own Python code (config.json: AutoConfig; config.json: AutoModel)" in msg, msg
    assert "set trust_remote_code: true for this teacher only if you trust that code" in msg
    # The opt-in is per teacher: with it, that teacher validates; the other one is unaffected.
    cfg = load_config(baseline.config, [f"teachers[1].model={model}", "teachers[1].trust_remote_code=true"])
    assert [t.trust_remote_code for t in cfg.teachers] == [False, True]
    assert not marker.exists()


def test_custom_code_teacher_refused_by_loader_without_opt_in(tmp_path):
    # The loader refuses on its own too (a hub model's code cannot be seen at config time).
    from teachers import TeacherSpec, load_teacher

    marker = tmp_path / "PWNED"
    model = make_custom_code_model(tmp_path, marker)
    with pytest.raises(Exception) as err:  # noqa: B017 (TeacherSourceError or transformers' ValueError)
        load_teacher(TeacherSpec(name="custom", model=str(model)))
    assert "trust_remote_code" in str(err.value), str(err.value)
    assert not marker.exists()


def test_custom_code_runs_with_opt_in_control(tmp_path):
    # Control for the two tests above: with the opt-in the code does run (so "no marker" there
    # means "refused"). In a subprocess, with the module cache inside tmp_path.
    marker = tmp_path / "PWNED"
    model = make_custom_code_model(tmp_path, marker)
    env = dict(os.environ, HF_MODULES_CACHE=str(tmp_path / "modules"))
    code = ("from transformers import AutoConfig; "
            f"AutoConfig.from_pretrained({str(model)!r}, trust_remote_code=True)")
    subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=300)
    assert marker.exists()


def test_teacher_weights_pickle_is_not_run(baseline, tmp_path):
    # A teacher directory with pickle weights (pytorch_model.bin) instead of safetensors: loading
    # goes through transformers' weights_only=True load and refuses the payload.
    from teachers import TeacherSpec, load_teacher

    marker = tmp_path / "PWNED"
    model = tmp_path / "pickle-bert"
    shutil.copytree(baseline.root / "tiny-bert", model)
    (model / "model.safetensors").unlink()
    plant_pickle(model / "pytorch_model.bin", marker)
    with pytest.raises(Exception):  # noqa: B017 (the loader's error type is not the point here)
        load_teacher(TeacherSpec(name="pickled", model=str(model)))
    assert not marker.exists()


def test_store_entry_that_verifies_but_does_not_load_is_rebuilt(baseline, tmp_path):
    from distill.config import load_config
    from distill.data import load_pairs
    from distill.targets import compute_targets
    from fileio import sha256_file
    from teachers import TargetStore

    marker = tmp_path / "PWNED"
    store_dir = tmp_path / "store"
    shutil.copytree(baseline.root / "store", store_dir)
    space = next(sp for sp in TargetStore(store_dir).spaces()
                 if sp.info()["teacher"] == "bert-mean" and sp.info()["inputs"]["role"] == "query")
    victim = space.shards_dir / space.shard_names()[0]
    original_shard = np.load(victim / "emb.npy")
    arr = np.empty(1, dtype=object)
    arr[0] = _Payload(marker)
    np.save(victim / "emb.npy", arr, allow_pickle=True)
    meta = json.loads((victim / "shard.json").read_text())
    meta["files"]["emb.npy"] = {"size": (victim / "emb.npy").stat().st_size, "sha256": sha256_file(victim / "emb.npy")}
    (victim / "shard.json").write_text(json.dumps(meta))
    (space.dir / "verified.json").unlink(missing_ok=True)

    cfg = load_config(baseline.config)
    pairs = load_pairs(cfg.data).dataset
    targets = compute_targets(cfg.teachers, list(pairs["question"]), list(pairs["answer"]), str(store_dir),
                              progress=False)
    # The shard matched its checksums but held objects: treated as corrupt, re-embedded, never unpickled.
    assert original_shard.dtype == np.float32
    ref = compute_targets(cfg.teachers, list(pairs["question"]), list(pairs["answer"]), str(baseline.root / "store"),
                          progress=False)
    np.testing.assert_allclose(targets.q["bert-mean"].numpy(), ref.q["bert-mean"].numpy(), atol=1e-6)
    assert not marker.exists()
