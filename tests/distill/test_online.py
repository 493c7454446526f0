"""Online targets: teachers sharded with ZeRO-3 inside a 2-rank training job."""

from __future__ import annotations

import pytest
from safetensors.torch import load_file

from teachers import TargetStore, build_targets
from tests.distill.e2e import accelerate_cmd, free_port, run, scalars, tiny_setup
from tests.faults import fault_env

pytestmark = pytest.mark.slow


def test_online_zero3_two_ranks_matches_store_and_trains(tmp_path):
    cfg = tiny_setup(tmp_path, n_pairs=64, max_steps=4,
                     **{"targets.mode": "online", "curriculum.difficulty": "length",
                        "train.eval_every": 4, "train.save_every": 4})
    import yaml

    conf = yaml.safe_load(cfg.read_text())
    for t in conf["teachers"]:
        t["shard"] = "zero3"
    cfg.write_text(yaml.safe_dump(conf))
    dump = tmp_path / "dump"
    r = run(accelerate_cmd(2, "train", str(cfg), port=free_port()), cwd=tmp_path,
            env=fault_env(f"dump_targets={dump}"))
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-5000:]
    assert "zero3 on 2 process(es)" in r.stderr
    run_dir = tmp_path / "runs" / "tiny"
    assert sorted(scalars(run_dir, "loss/total")) == [1, 2, 3, 4]
    assert (run_dir / "student" / "student.safetensors").is_file()

    # The same texts through the (single-process, unsharded) store give the same targets.
    from distill.config import load_config
    from distill.data import load_pairs, split_indices

    c = load_config(cfg)
    pairs = load_pairs(c.data).dataset
    qs, ans = list(pairs["question"]), list(pairs["answer"])
    train_idx = split_indices(qs, c.data.holdout_fraction, c.data.validation_fraction, c.data.split_seed).train
    for t in c.teachers:
        t.shard = "replicate"
    ref = build_targets(c.teachers, {"question": qs, "answer": ans}, TargetStore(tmp_path / "ref"), progress=False)
    seen = set()
    for rank in (0, 1):
        d = load_file(str(dump / f"rank{rank}.safetensors"))
        rows = train_idx[d["idx"].numpy()]
        seen |= set(rows.tolist())
        for t in c.teachers:
            got = d[f"target/{t.name}"].numpy()
            assert abs(got - ref[(t.name, "answer")][rows]).max() < 1e-5
        assert abs(d["x"].numpy() - ref[("bert-mean", "question")][rows]).max() < 1e-5
    assert len(seen) == 8  # the two ranks' slices make up the whole global batch
