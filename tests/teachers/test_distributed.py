"""Real 2-process gloo jobs: ZeRO-3 sharded teachers equal the single-process ones."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from teachers import TargetStore, TeacherSpec, load_teacher
from tests import ports
from tests.teachers.tiny import TEXTS

WORKER = Path(__file__).parent / "dist_worker.py"
BIN = Path(sys.executable).parent


def launch(cmd, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-8000:]
    return [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]


def reference_specs(models):
    # The same specs as the worker, without sharding: one plain process.
    return {
        "enc": TeacherSpec(name="enc", model=str(models["bert"]), pooling="mean"),
        "dec": TeacherSpec(name="dec", model=str(models["llama"]), pooling="last", padding_side="left",
                           query_prefix="Q: "),
    }


@pytest.mark.slow
def test_zero3_two_processes_torchrun_then_accelerate(tiny_models, tmp_path):
    models = json.dumps({k: str(v) for k, v in tiny_models.items()})
    store = tmp_path / "store"
    args = ["--models", models, "--store", str(store), "--out", str(tmp_path)]
    ranks = launch([str(BIN / "torchrun"), "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
                    "--master_port", str(ports.free_port()), str(WORKER), *args], tmp_path)

    refs = {name: load_teacher(spec) for name, spec in reference_specs(tiny_models).items()}
    for name, ref in refs.items():
        full = ref.parameter_count()
        want_split = ref.encode(TEXTS, "query")
        for r, res in enumerate(ranks):
            got = res[name]
            assert got["shard"] == "zero3"
            # Each rank holds about half of every parameter (ceil(numel/2) each) and no full copy.
            assert got["total"] == full
            assert full / 2 <= got["local"] <= full / 2 + got["n_params"]
            assert got["placeholders"]
            # 13 texts over 2 ranks: gathered in input order, equal to one process.
            torch.testing.assert_close(got["split"], want_split, atol=1e-5, rtol=0)
            mine = TEXTS[:3] if r == 0 else TEXTS[3:]
            torch.testing.assert_close(got["online"], ref.encode(mine, "answer"), atol=1e-5, rtol=0)
        # Same number of forwards on both ranks although rank 0 had 1 online batch and rank 1 had 3.
        assert ranks[0][name]["forward_calls"] == ranks[1][name]["forward_calls"] == 2 + 3

    # build_targets in the job: the ranks embedded disjoint units (rank 0 units 0 and 2 of each
    # field: 8 rows; rank 1 units 1 and 3: 5 rows), both read every row, equal to one process.
    assert [res["stats"]["embedded_rows"] for res in ranks] == [{"enc": 16, "dec": 16}, {"enc": 10, "dec": 10}]
    for res in ranks:
        for (name, field), texts in {("enc", "question"): TEXTS, ("enc", "answer"): TEXTS[::-1],
                                     ("dec", "question"): TEXTS, ("dec", "answer"): TEXTS[::-1]}.items():
            role = "query" if field == "question" else "answer"
            torch.testing.assert_close(res["targets"][f"{name}/{field}"], refs[name].encode(texts, role),
                                       atol=1e-5, rtol=0)
    assert len(TargetStore(store).spaces()) == 4
    assert sum(len(sp.shard_names()) for sp in TargetStore(store).spaces()) == 16

    # Second job, under Accelerate's own process group: the questions are stored (no forward for
    # them), the new answers are computed -- with ZeRO-3 inside the group Accelerate created.
    ranks = launch([str(BIN / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2",
                    "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                    "--main_process_port", str(ports.free_port()), str(WORKER), *args, "--accelerate"], tmp_path)
    upper = [x.upper() for x in TEXTS]
    for res in ranks:
        assert res["accelerate_group"]
        assert res["stats"]["cached_rows"] == {"enc": 13, "dec": 13}  # the questions (and no answer: all new)
        for name, ref in refs.items():
            torch.testing.assert_close(res["targets"][f"{name}/answer"], ref.encode(upper, "answer"),
                                       atol=1e-5, rtol=0)
    assert sum(res["stats"]["embedded_rows"]["enc"] for res in ranks) == 13  # only the new answers
    assert len(TargetStore(store).spaces()) == 4  # the new answers joined the answer spaces


def test_a_cpu_job_never_compiles_deepspeeds_shared_memory_op():
    """load_teacher's ZeRO-3 path disables DeepSpeed's JIT build of ``deepspeed_shm_comm`` on CPU
    (two minutes of g++ per fresh machine, for an op a ZeRO-3 teacher never calls). If DeepSpeed
    renames or moves ``build_shm_op``, this fails instead of the skip silently doing nothing."""
    import importlib

    from teachers.teacher import _skip_cpu_shm_comm_build

    backend = importlib.import_module("deepspeed.comm.torch")
    original = backend.build_shm_op
    try:
        _skip_cpu_shm_comm_build()
        assert backend.build_shm_op is not original
        assert backend.build_shm_op() is None  # TorchBackend then keeps shm_comm_op None
    finally:
        backend.build_shm_op = original
