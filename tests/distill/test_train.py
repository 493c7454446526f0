"""End-to-end training through the real CLI: TensorBoard contents, export, resume, 2 processes."""

from __future__ import annotations

import json
import shutil

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.distill.e2e import accelerate_cmd, distill_cmd, free_port, run, scalars, tiny_setup
from tests.faults import fault_env

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    cfg = tiny_setup(root)
    r = run(distill_cmd("train", str(cfg)), cwd=root)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return root, cfg, r


def test_run_writes_tensorboard_scalars_images_hparams_config(trained):
    root, _, r = trained
    run_dir = root / "runs" / "tiny"
    assert "teacher space: bert-mean (input teacher)" in r.stdout and "identity" in r.stdout
    losses = scalars(run_dir, "loss/total")
    assert sorted(losses) == list(range(1, 13))
    for tag in ("loss/teacher/bert-mean", "loss/teacher/bert-cls", "loss/term/bert-mean/cosine",
                "loss/term/bert-cls/mse", "train/lr", "train/grad_norm",
                "curriculum/competence", "curriculum/threshold", "train/samples_per_s",
                "eval/bert-mean/cosine", "eval/bert-cls/recall@1", "eval/bert-mean/mrr"):
        assert scalars(run_dir, tag), f"missing scalar {tag}"
    assert not scalars(run_dir, "teacher_weight/bert-cls")  # fixed weighting: a flat line, not written
    comp = scalars(run_dir, "curriculum/competence")
    assert comp[1] < comp[12] <= 1.0  # linear pacing grows
    lr = scalars(run_dir, "train/lr")
    assert lr[1] < lr[2]  # warmup
    ev = next(run_dir.glob("events.out.tfevents.*"))
    acc = EventAccumulator(str(ev), size_guidance={"images": 0, "histograms": 0, "tensors": 0})
    acc.Reload()
    tags = acc.Tags()
    assert "lattice/state/example_0" in tags["images"]
    img = acc.Images("lattice/state/example_0")[0]
    assert img.width >= 256 and img.height > 0  # a montage drawn at a readable size
    assert "lattice/final_state" in tags["histograms"]
    assert any(t.startswith("config") for t in tags["tensors"])  # add_text is stored as a tensor
    hp = next((run_dir / "hparams").glob("events.out.tfevents.*"))
    hacc = EventAccumulator(str(hp), size_guidance={"scalars": 0})
    hacc.Reload()
    assert "hparam/bert-mean/cosine" in hacc.Tags()["scalars"]


def test_export_and_eval_json_match(trained):
    root, _, _ = trained
    run_dir = root / "runs" / "tiny"
    payload = json.loads((run_dir / "eval.json").read_text())
    assert payload["best_split"] == "validation"
    assert payload["pairs"]["validation"] > 0 and payload["pairs"]["test"] > 0
    for split in ("validation", "test"):
        assert set(payload[split]) == {"bert-mean", "bert-cls"}
        assert set(payload[split]["bert-mean"]) == {"student", "identity", "ridge"}
    assert payload["validation"] != payload["test"]  # two different sets of questions
    from distill.students.teacher import Student

    st = Student.from_pretrained(run_dir / "student")
    assert st.input_teacher == "bert-mean" and st.residual
    # `distill eval` on the run reproduces the numbers written at the end of training.
    r = run(distill_cmd("eval", str(run_dir), "--out", str(root / "e.json")), cwd=root)
    assert r.returncode == 0, r.stderr[-2000:]
    again = json.loads((root / "e.json").read_text())
    for split in ("validation", "test"):
        for t, rows in payload[split].items():
            for m, v in rows["student"].items():
                assert again[split][t]["student"][m] == pytest.approx(v, abs=1e-6)
    r = run(distill_cmd("predict", str(run_dir), "What is AI?", "-k", "3"), cwd=root)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert len(out["answers"]) == 3
    scores = [a["score"] for a in out["answers"]]
    assert scores == sorted(scores, reverse=True)


def test_resume_after_stop_reproduces_uninterrupted_losses(trained, tmp_path):
    root, cfg, _ = trained
    full = scalars(root / "runs" / "tiny", "loss/total")
    # Same config, a fresh run that dies at the start of step 8 (after the step-8 checkpoint).
    r = run(distill_cmd("train", str(cfg), "--set", "run.name=stopped"), cwd=root,
            env=fault_env("rank_exit=0:8"))
    assert r.returncode == 13, r.stderr[-2000:]
    run_dir = root / "runs" / "stopped"
    assert (run_dir / "checkpoints" / "latest").read_text().strip() == "step_00000008"
    r = run(distill_cmd("train", str(cfg), "--set", "run.name=stopped", "--resume"), cwd=root)
    assert r.returncode == 0, r.stderr[-3000:]
    resumed = scalars(run_dir, "loss/total")
    for step in range(9, 13):
        assert resumed[step] == pytest.approx(full[step], abs=1e-6), step
    # Without --resume an existing run directory is refused, and left alone.
    before = sorted(p.name for p in run_dir.iterdir())
    r = run(distill_cmd("train", str(cfg), "--set", "run.name=stopped"), cwd=root)
    assert r.returncode == 2 and "already exists" in r.stderr
    assert sorted(p.name for p in run_dir.iterdir()) == before


def test_two_processes_match_one_process(trained):
    root, cfg, _ = trained
    full = scalars(root / "runs" / "tiny", "loss/total")
    r = run(accelerate_cmd(2, "train", str(cfg), "--set", "run.name=two", port=free_port()), cwd=root)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    two = scalars(root / "runs" / "two", "loss/total")
    assert sorted(two) == sorted(full)
    for step in full:
        assert two[step] == pytest.approx(full[step], rel=1e-4, abs=1e-5), step
    shutil.rmtree(root / "runs" / "two")
