"""TensorBoard views (distill/tbviews.py): written with a real SummaryWriter, read back with
tensorboard's own readers (EventAccumulator, the custom-scalars layout proto)."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.custom_scalar import layout_pb2
from torch.utils.tensorboard import SummaryWriter

from distill import tbviews
from distill.students.teacher import Student
from lattice import LatticeConfig

TEACHERS = ["bert-mean", "e5.small"]  # a dot: layout regexes must escape it
METRICS = {"cosine": 0.5, "cosine_centred": 0.3, "recall@1": 0.25, "recall@5": 0.5, "mrr": 0.4}


def read(logdir) -> EventAccumulator:
    ev = sorted(logdir.glob("events.out.tfevents.*"))
    assert ev, f"no event file in {logdir}"
    acc = EventAccumulator(str(ev[-1]), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return acc


def results(offset: float = 0.0) -> dict:
    return {t: {"student": {m: v + offset for m, v in METRICS.items()},
                "identity": {m: v / 2 for m, v in METRICS.items()},
                "ridge": {m: v * 1.5 for m, v in METRICS.items()}} for t in TEACHERS}


def tiny_student(zero_init: bool) -> Student:
    torch.manual_seed(0)
    lat = LatticeConfig(depth=4, height=3, width=3, channels=4, hidden=8, steps=6, zero_init=zero_init)
    return Student({"bert-mean": 12, "e5-small": 8}, "bert-mean", lat)


# ---- layout and baselines --------------------------------------------------------------------


def read_runs(logdir) -> dict[str, EventAccumulator]:
    """{run name: accumulator} as TensorBoard sees the log dir ('.' = the writer's own run)."""
    return {("." if d == logdir else d.name): read(d) for d in [logdir, *sorted(p for p in logdir.iterdir() if p.is_dir())]
            if any(d.glob("events.out.tfevents.*"))}


def test_layout_and_baselines_put_student_and_baselines_on_one_chart(tmp_path):
    w = SummaryWriter(str(tmp_path))
    tbviews.log_layout(w, TEACHERS, pacing="none", weighting="fixed")
    bw = tbviews.baseline_writers(w, results())
    for step, off in ((10, 0.0), (20, 0.1)):  # the loop logs the student's eval scalars as today
        for t in TEACHERS:
            for m, v in METRICS.items():
                w.add_scalar(tbviews.eval_tag(t, m), v + off, step)
        tbviews.log_baselines(bw, results(off), step)
    w.close()
    for x in bw.values():
        x.close()
    runs = read_runs(tmp_path)
    assert set(runs) == {".", "baseline-identity", "baseline-ridge"}
    raw = runs["."].Tensors("custom_scalars__config__")[0].tensor_proto.string_val[0]
    layout = layout_pb2.Layout()
    layout.ParseFromString(raw)
    cats = {c.title.split(" (")[0]: c for c in layout.category}
    assert set(cats) == {"summary"} | {f"validation: {t}" for t in TEACHERS}
    for t in TEACHERS:
        charts = cats[f"validation: {t}"].chart
        assert len(charts) == 4  # cosine, centred cosine, R@1, MRR
        for chart, m in zip(charts, ("cosine", "cosine_centred", "recall@1", "mrr")):
            # The chart's regexes pick, in every run, exactly this teacher's and metric's series ...
            for name, acc in runs.items():
                hits = [tag for tag in acc.Tags()["scalars"] for rx in chart.multiline.tag if re.match(rx, tag)]
                assert hits == [f"eval/{t}/{m}"], (name, chart.title)
            # ... which hold the student's curve and the two flat baselines.
            vals = {n: [e.value for e in acc.Scalars(f"eval/{t}/{m}")] for n, acc in runs.items()}
            assert vals["."] == pytest.approx([METRICS[m], METRICS[m] + 0.1])
            assert vals["baseline-identity"] == pytest.approx([METRICS[m] / 2] * 2)
            assert vals["baseline-ridge"] == pytest.approx([METRICS[m] * 1.5] * 2)
    summary = {c.title: list(c.multiline.tag) for c in cats["summary"].chart}
    assert any(re.match(rx, "loss/total") for rx in summary["loss (total)"])
    assert any(re.match(rx, "loss/teacher/e5.small") for rx in summary["loss per teacher"])
    assert any(re.match(rx, "train/lr") for rx in summary["learning rate"])
    assert any(re.match(rx, "train/samples_per_s") for rx in summary["throughput (samples/s)"])
    # pacing none / weighting fixed: those charts mean nothing and are not in the layout
    assert not any("curriculum" in rx or "teacher_weight" in rx for rxs in summary.values() for rx in rxs)


def test_baselines_follow_the_results_online_mode_has_no_ridge(tmp_path):
    online = {t: {k: v for k, v in rows.items() if k != "ridge"} for t, rows in results().items()}
    w = SummaryWriter(str(tmp_path))
    bw = tbviews.baseline_writers(w, online)
    assert set(bw) == {"identity"}
    out = tbviews.log_baselines(bw, online, 3)
    assert set(out) == {"identity"} and out["identity"]["eval/e5.small/mrr"] == pytest.approx(0.2)
    with pytest.raises(ValueError, match="writers: no writer for baseline 'ridge'"):
        tbviews.log_baselines(bw, results(), 4)
    for x in [w, *bw.values()]:
        x.close()
    runs = read_runs(tmp_path)
    assert set(runs) == {".", "baseline-identity"}
    assert runs["."].Tags()["scalars"] == []  # the student's run is the loop's to write
    # the refused call wrote nothing: identity holds step 3 only
    assert [e.step for e in runs["baseline-identity"].Scalars("eval/bert-mean/cosine")] == [3]


def test_charts_follow_pacing_and_weighting():
    logs = {"loss/total": 1.0, "curriculum/competence": 1.0, "curriculum/threshold": 0.0,
            "teacher_weight/a": 0.5, "train/lr": 1e-3}
    assert set(tbviews.filter_scalars(logs, "none", "fixed")) == {"loss/total", "train/lr"}
    assert set(tbviews.filter_scalars(logs, "root", "fixed")) == {"loss/total", "train/lr", "curriculum/competence",
                                                                  "curriculum/threshold"}
    assert set(tbviews.filter_scalars(logs, "none", "uncertainty")) == {"loss/total", "train/lr", "teacher_weight/a"}
    full = tbviews.scalar_layout(TEACHERS, pacing="linear", weighting="inverse_loss")["summary"]
    assert "curriculum" in full and "teacher weights" in full
    assert re.match(full["teacher weights"][1][0], "teacher_weight/e5.small")


# ---- lattice images and activity -------------------------------------------------------------


def test_viridis_is_a_colour_map_with_rising_lightness():
    rgb = tbviews.viridis(np.linspace(0, 1, 33)).astype(float)
    assert tuple(rgb[0]) == (0x44, 0x01, 0x54) and tuple(rgb[-1]) == (0xFD, 0xE7, 0x25)
    luma = rgb @ np.array([0.2126, 0.7152, 0.0722])
    assert np.all(np.diff(luma) > 0)  # perceptually ordered: darker = smaller
    assert (rgb.max(1) - rgb.min(1)).mean() > 50  # coloured, not grey


def test_montage_is_readable_colour_mapped_and_uses_one_scale(tmp_path):
    st = tiny_student(zero_init=False)
    x = torch.randn(2, 12)
    trace = st.trace(x, range(st.lattice_config.steps + 1))
    w = SummaryWriter(str(tmp_path))
    tbviews.log_lattice(w, trace, step=7, io_axis="z", montage_steps=[0, 3, 6])
    w.close()
    acc = read(tmp_path)
    assert set(acc.Tags()["images"]) == {"lattice/state/example_0", "lattice/state/example_1"}
    ev = acc.Images("lattice/state/example_1")[0]
    assert ev.step == 7 and ev.width >= 256
    img = np.asarray(Image.open(io.BytesIO(ev.encoded_image_string)).convert("RGB")).astype(int)
    assert img.shape[1] == ev.width
    spread = img.max(-1) - img.min(-1)
    assert (spread > 60).mean() > 0.2  # a large part of the picture is coloured, not grey
    # One scale per image: the example's minimum and maximum cells take the map's two ends.
    colours = {tuple(c) for c in img.reshape(-1, 3)}
    assert (0x44, 0x01, 0x54) in colours and (0xFD, 0xE7, 0x25) in colours
    # The image is this example's state: the montage of example 1 differs from example 0's.
    arr0, (lo0, hi0) = tbviews.lattice_montage(trace, 0, "z", [0, 3, 6])
    arr1, (lo1, hi1) = tbviews.lattice_montage(trace, 1, "z", [0, 3, 6])
    assert np.array_equal(arr1, img) and not np.array_equal(arr0, arr1)
    s1 = trace[6][1].pow(2).mean(-1).sqrt()
    assert hi1 == pytest.approx(max(s1.max().item(), trace[3][1].pow(2).mean(-1).sqrt().max().item(),
                                    trace[0][1].pow(2).mean(-1).sqrt().max().item()), rel=1e-5)


def test_montage_layout_follows_the_io_axis():
    # Only the z = 0 face is non-zero (RMS 2 over 4 channels of 2.0).
    s = torch.zeros(1, 5, 2, 3, 4)
    s[0, 0] = 2.0
    trace = {0: s, 3: s * 0.5}
    vz, steps, sl = tbviews.montage_values(trace, 0, "z")
    assert vz.shape == (2, 5, 2, 3) and steps == [0, 3] and list(sl) == [0, 1, 2, 3, 4]
    assert np.allclose(vz[0, 0], 2.0) and np.allclose(vz[1, 0], 1.0) and np.all(vz[:, 1:] == 0)
    vx, _, sl = tbviews.montage_values(trace, 0, "x")  # 3 slices along x of (D=5, H=2) faces
    assert vx.shape == (2, 3, 5, 2) and np.allclose(vx[0, :, 0], 2.0) and np.all(vx[0, :, 1:] == 0)
    vz16, _, sl = tbviews.montage_values({0: torch.zeros(1, 40, 2, 2, 1)}, 0, "z", max_slices=16)
    assert vz16.shape[1] == 16 and sl[0] == 0 and sl[-1] == 39  # both faces always shown
    img, (lo, hi) = tbviews.lattice_montage(trace, 0, "x", min_width=300)
    assert (lo, hi) == (0.0, pytest.approx(2.0)) and img.shape[1] >= 300


def test_state_change_is_zero_for_an_inert_lattice_and_positive_otherwise(tmp_path):
    x = torch.randn(3, 12)
    inert = tiny_student(zero_init=True)
    live = tiny_student(zero_init=False)
    T = inert.lattice_config.steps
    d0 = tbviews.state_change(inert.trace(x, range(T + 1)))
    d1 = tbviews.state_change(live.trace(x, range(T + 1)))
    assert sorted(d0) == list(range(1, T + 1))
    assert all(v == 0.0 for v in d0.values())
    assert all(v > 0 for v in d1.values())
    # Per step: a gap of 2 steps is divided by 2.
    trace = {0: torch.zeros(1, 2, 2, 2, 1), 2: torch.ones(1, 2, 2, 2, 1)}
    assert tbviews.state_change(trace) == {2: 0.5}
    w = SummaryWriter(str(tmp_path))
    tbviews.log_lattice(w, inert.trace(x[:1], range(T + 1)), step=1)
    tbviews.log_lattice(w, live.trace(x[:1], range(T + 1)), step=2)
    w.close()
    acc = read(tmp_path)
    mean = {e.step: e.value for e in acc.Scalars("lattice/delta/mean")}
    assert mean[1] == 0.0 and mean[2] > 0
    assert {"lattice/delta/first", "lattice/delta/last"} <= set(acc.Tags()["scalars"])


def test_lattice_bad_input_names_the_argument():
    s = torch.zeros(2, 3, 3, 3, 2)
    with pytest.raises(ValueError, match="trace: no traced steps"):
        tbviews.lattice_montage({})
    with pytest.raises(ValueError, match=r"steps: \[5\] were not traced"):
        tbviews.lattice_montage({0: s, 1: s}, steps=[0, 5])
    with pytest.raises(ValueError, match="example: 2 is outside"):
        tbviews.lattice_montage({0: s}, example=2)
    with pytest.raises(ValueError, match="io_axis"):
        tbviews.lattice_montage({0: s}, io_axis="w")
    with pytest.raises(ValueError, match=r"\(B, D, H, W, C\)"):
        tbviews.lattice_montage({0: s[0]})


# ---- examples and projector ------------------------------------------------------------------


def test_examples_table_shows_top3_and_the_true_answer(tmp_path):
    torch.manual_seed(1)
    bank = torch.randn(6, 5)
    texts = [f"answer {i}" for i in range(6)]
    texts[4] = "four | with a pipe\nand a __newline__"
    # q0 predicts its true answer (2) exactly; q1 predicts answer 0 but its true answer is 4.
    pred = torch.stack([bank[2] * 3, bank[0]])
    w = SummaryWriter(str(tmp_path))
    md = tbviews.log_examples(w, "e5.small", 9, ["what is two?", "what is four?"], pred, bank, texts, [2, 4])
    w.close()
    lines = md.splitlines()
    assert lines[0].count("top-") == 3 and len(lines) == 4
    row0 = [c.strip() for c in re.split(r"(?<!\\)\|", lines[2])[1:-1]]
    assert row0[0] == "what is two?" and row0[1] == "answer 2 (**rank 1** of 6)"
    assert row0[2].startswith("✓ answer 2 (1.00)")
    row1 = [c.strip() for c in re.split(r"(?<!\\)\|", lines[3])[1:-1]]
    assert len(row1) == 5  # the escaped pipe did not split the cell
    assert row1[1].startswith("four \\| with a pipe and a \\_\\_newline\\_\\_ (**rank ")  # no bold
    assert row1[2].startswith("answer 0 (1.00)")
    sims = torch.nn.functional.cosine_similarity(bank[0][None], bank)
    assert row1[1].endswith(f"(**rank {int((sims >= sims[4]).sum())}** of 6)")
    acc = read(tmp_path)
    ev = acc.Tensors("examples/e5.small/text_summary")[0]
    assert ev.step == 9
    assert b"what is four?" in ev.tensor_proto.string_val[0] and b"answer 2" in ev.tensor_proto.string_val[0]


def test_fixed_examples_are_distinct_questions():
    qs = ["What is AI?", "what is  ai?", "Are you sentient?", "What is AI?", "Hi", "Bye"]
    assert tbviews.fixed_examples(qs, 3) == [0, 2, 4]
    assert tbviews.fixed_examples(qs[:2], 3) == [0]


def test_projector_config_and_metadata_are_written(tmp_path):
    torch.manual_seed(2)
    q = ["first\tquestion", "second question?", "third"]
    pred, tgt = torch.randn(3, 8), torch.randn(3, 8)
    w = SummaryWriter(str(tmp_path))
    tbviews.log_projector(w, "bert-mean", 40, pred, tgt, q)
    w.close()
    cfg = (tmp_path / "projector_config.pbtxt").read_text()
    assert 'tensor_name: "projector/bert-mean:00040"' in cfg
    meta_path = re.search(r'metadata_path: "([^"]+)"', cfg).group(1)
    tens_path = re.search(r'tensor_path: "([^"]+)"', cfg).group(1)
    meta = (tmp_path / meta_path).read_text().splitlines()
    assert meta[0] == "question\tsource"  # the question first: the projector labels by it
    assert meta[1:] == [f"{q}\t{src}" for src in ("student", "teacher")
                        for q in ("first question", "second question?", "third")]
    rows = np.loadtxt(tmp_path / tens_path, delimiter="\t")
    assert rows.shape == (6, 8)
    want = torch.nn.functional.normalize(torch.cat([pred, tgt]), dim=-1).numpy()
    assert np.allclose(rows, want, atol=1e-5)
    with pytest.raises(ValueError, match="student_pred/targets/questions"):
        tbviews.log_projector(SummaryWriter(str(tmp_path / "bad")), "t", 0, pred, tgt[:2], q)
