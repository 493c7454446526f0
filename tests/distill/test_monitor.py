"""The TensorBoard views wired into a real (tiny, in-process) training run, read back from the
event files: baselines beside the student, the custom-scalars layout, lattice montages, examples
text, the projector; charts that mean nothing are absent; logging does not change the run."""

from __future__ import annotations

import io
import json
import re

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.custom_scalar import layout_pb2

from distill.config import load_config
from distill.train import train
from tests.distill.e2e import scalars, tiny_setup

pytestmark = pytest.mark.slow

TEACHERS = ("bert-mean", "bert-cls")
# Stochastic lattice updates and a random T per batch: training draws from the global RNG, so a
# view that drew from it (or ran the student in training mode) would change every later step.
RUN = {"curriculum.pacing": "none", "student.lattice.update_rate": 0.5, "student.lattice.steps_range": [2, 4],
       "train.eval_every": 4, "logging.image_every": 4, "logging.histogram_every": 4}
QUIET = {"logging.tensorboard": False, "logging.image_every": 0, "logging.histogram_every": 0}


def _train(root, name: str, **overrides):
    cfg = load_config(tiny_setup(root, n_pairs=64, max_steps=8, **{"run.name": name, **RUN, **overrides}))
    assert train(cfg) == 0
    return root / "runs" / name


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("monitor")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        logged = _train(root, "logged")
        quiet = _train(root, "quiet", **QUIET)
    finally:
        torch.set_num_threads(threads)
    return root, logged, quiet


def _acc(run_dir) -> EventAccumulator:
    acc = EventAccumulator(str(run_dir), size_guidance={"images": 0, "tensors": 0, "scalars": 0})
    acc.Reload()
    return acc


def test_baselines_are_logged_beside_the_student_under_the_same_tags(runs):
    _, run_dir, _ = runs
    ev = json.loads((run_dir / "eval.json").read_text())["validation"]
    for t in TEACHERS:
        for m in ("cosine", "cosine_centred", "recall@1", "mrr"):
            tag = f"eval/{t}/{m}"
            assert sorted(scalars(run_dir, tag)) == [4, 8]
            assert scalars(run_dir, tag)[8] == pytest.approx(ev[t]["student"][m], abs=1e-6)
            for b in ("identity", "ridge"):
                # The validation split's baseline, a flat line at every evaluation.
                got = scalars(run_dir / f"baseline-{b}", tag)
                assert got == pytest.approx({4: ev[t][b][m], 8: ev[t][b][m]}, abs=1e-6), (b, tag)


def test_layout_groups_validation_charts_and_drops_meaningless_ones(runs):
    _, run_dir, _ = runs
    acc = _acc(run_dir)
    layout = layout_pb2.Layout()
    layout.ParseFromString(acc.Tensors("custom_scalars__config__")[0].tensor_proto.string_val[0])
    cats = {c.title.split(" (")[0]: c for c in layout.category}
    assert set(cats) == {"summary"} | {f"validation: {t}" for t in TEACHERS}
    summary = {c.title for c in cats["summary"].chart}
    assert "loss (total)" in summary and "curriculum" not in summary and "teacher weights" not in summary
    for t in TEACHERS:
        assert [c.multiline.tag[0] for c in cats[f"validation: {t}"].chart] == [
            "^" + re.escape(f"eval/{t}/{m}") + "$" for m in ("cosine", "cosine_centred", "recall@1", "mrr")]
    tags = acc.Tags()["scalars"]
    # pacing none, fixed weighting: neither chart would say anything, so neither is written.
    assert not [x for x in tags if x.startswith(("curriculum/", "teacher_weight/"))], tags
    assert "loss/total" in tags and "train/samples_per_s" in tags


def test_lattice_montages_are_readable_images_and_the_lattice_moves(runs):
    _, run_dir, _ = runs
    acc = _acc(run_dir)
    assert "lattice/state_slices" not in acc.Tags()["images"]  # the old grey strip is gone
    for ex in (0, 1):
        evs = acc.Images(f"lattice/state/example_{ex}")
        assert [e.step for e in evs] == [4, 8]
        img = Image.open(io.BytesIO(evs[-1].encoded_image_string))
        assert img.mode == "RGB" and img.width >= 256 and img.height >= 100, img.size
        colours = img.convert("RGB").getcolors(1 << 16)
        assert colours is not None and len(colours) > 20  # colour-mapped, not a grey strip
    delta = scalars(run_dir, "lattice/delta/mean")
    assert sorted(delta) == [4, 8] and delta[8] > 0  # trained rule: the state changes per step


def test_examples_text_shows_the_fixed_validation_questions(runs):
    root, run_dir, _ = runs
    acc = _acc(run_dir)
    pairs = [json.loads(x) for x in (root / "pairs.jsonl").read_text().splitlines()]
    questions = {p["question"] for p in pairs}
    firsts = []
    for t in TEACHERS:
        evs = acc.Tensors(f"examples/{t}/text_summary")
        assert [e.step for e in evs] == [4, 8]
        md = evs[-1].tensor_proto.string_val[0].decode()
        rows = md.splitlines()
        assert rows[0].startswith("| question | true answer (its rank) | top-1 | top-2 | top-3")
        body = rows[2:]
        assert len(body) == 4
        qs = [r.split(" | ")[0].removeprefix("| ").replace("\\", "") for r in body]
        assert len(set(qs)) == 4 and set(qs) <= questions
        assert all("**rank " in r for r in body)
        firsts.append(qs)
    assert firsts[0] == firsts[1]  # the same questions for every teacher (and every evaluation)


def test_projector_holds_validation_predictions_and_targets(runs):
    _, run_dir, _ = runs
    cfg = (run_dir / "projector_config.pbtxt").read_text()
    for t in TEACHERS:
        assert f'tensor_name: "projector/{t}:00008"' in cfg  # the last evaluation only
        assert f"projector/{t}:00004" not in cfg
    n_val = json.loads((run_dir / "eval.json").read_text())["pairs"]["validation"]
    path = re.search(r'metadata_path: "([^"]*bert-mean[^"]*)"', cfg).group(1)
    meta = (run_dir / path).read_text().splitlines()
    assert meta[0] == "question\tsource" and len(meta) == 1 + 2 * min(n_val, 500)
    assert {r.split("\t")[1] for r in meta[1:]} == {"student", "teacher"}


def test_logging_does_not_change_the_run(runs):
    _, logged, quiet = runs
    assert not list(quiet.glob("events.out.tfevents.*"))
    a, b = load_file(next((logged / "student").glob("*.safetensors"))), \
        load_file(next((quiet / "student").glob("*.safetensors")))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    ea, eb = (json.loads((d / "eval.json").read_text()) for d in (logged, quiet))
    assert ea["validation"] == eb["validation"] and ea["test"] == eb["test"]
