"""TensorBoard views that answer "is it learning, and from which teacher?" (issue #14).

Pure functions over a ``torch.utils.tensorboard.SummaryWriter`` and tensors; they hold no state,
never touch the model's RNG or parameters, and are meant to run on the main process only.

- :func:`scalar_layout` / :func:`log_layout`: a custom-scalars layout (TensorBoard's
  ``custom_scalars`` plugin) with one chart per teacher and metric (``eval/<teacher>/<metric>``),
  plus a summary section (loss, per-teacher loss and weight, learning rate, throughput,
  curriculum, lattice activity).
- :func:`baseline_writers` / :func:`log_baselines`: the identity and ridge baselines as scalars
  under the student's own tags, in sub-runs ``baseline-identity`` / ``baseline-ridge``, so every
  chart of a validation metric draws the student and both baselines in three colours (log them at
  every evaluation: flat lines across the run).
- :func:`lattice_montage` / :func:`log_lattice`: per validation example, a colour-mapped montage of
  the lattice state (rows = lattice steps, columns = slices along the input->output axis) with
  one scale per image and a drawn colour bar; and the mean |Δstate| per lattice step as scalars
  (an inert lattice is a flat line at 0).
- :func:`examples_table` / :func:`log_examples`: the student's top-k answers from the answer bank
  for a few fixed validation questions, as a markdown table.
- :func:`log_projector`: an embedding-projector view of validation-split student predictions and teacher
  targets, labelled with the question text.
- :func:`keep_scalar` / :func:`filter_scalars`: charts that mean nothing in a run are not written
  (curriculum when pacing is ``none``, per-teacher weights when weighting is ``fixed``).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

LAYOUT_METRICS = ("cosine", "cosine_centred", "recall@1", "mrr")
_METRIC_TITLES = {"cosine": "cosine", "cosine_centred": "centred cosine", "mrr": "MRR"}
_AXIS_DIM = {"z": 1, "y": 2, "x": 3}

# ---------------------------------------------------------------------------------------------
# tags
# ---------------------------------------------------------------------------------------------


def eval_tag(teacher: str, metric: str) -> str:
    """The evaluated split's metric tag, ``eval/<teacher>/<metric>`` (the validation split in
    training). The baselines use the
    same tag in their own runs (:func:`baseline_run`)."""
    return f"eval/{teacher}/{metric}"


def baseline_run(name: str) -> str:
    """The sub-run (a folder of the writer's log dir) a baseline's scalars go to: ``baseline-<name>``.

    One run per baseline, same tags as the student: TensorBoard colours lines by run and names the
    run in its legend, so every chart of ``eval/<teacher>/<metric>`` (Scalars, Time Series and the
    custom layout) shows the student and each baseline in its own colour, with no extra setup.
    """
    return f"baseline-{name}"


def _exact(tag: str) -> str:
    # Multiline charts take regular expressions: anchor them, and escape teacher names with dots.
    return "^" + re.escape(tag) + "$"


def _metric_title(metric: str) -> str:
    if metric.startswith("recall@"):
        return "R@" + metric.split("@", 1)[1]
    return _METRIC_TITLES.get(metric, metric)


# ---------------------------------------------------------------------------------------------
# which charts are written
# ---------------------------------------------------------------------------------------------


def keep_scalar(tag: str, pacing: str, weighting: str) -> bool:
    """Whether a training scalar means something in this run.

    ``curriculum/*`` is constant (competence 1, no threshold) when ``curriculum.pacing`` is
    ``none``; ``teacher_weight/*`` is constant when ``loss.weighting`` is ``fixed``.
    """
    if tag.startswith("curriculum/") and pacing == "none":
        return False
    if tag.startswith("teacher_weight/") and weighting == "fixed":
        return False
    return True


def filter_scalars(logs: Mapping[str, float], pacing: str, weighting: str) -> dict[str, float]:
    """``logs`` without the scalars :func:`keep_scalar` drops (apply before ``accelerator.log``)."""
    return {k: v for k, v in logs.items() if keep_scalar(k, pacing, weighting)}


# ---------------------------------------------------------------------------------------------
# custom-scalars layout and baselines
# ---------------------------------------------------------------------------------------------


def scalar_layout(
    teachers: Sequence[str],
    metrics: Sequence[str] = LAYOUT_METRICS,
    pacing: str = "none",
    weighting: str = "fixed",
    split: str = "validation",
) -> dict[str, dict[str, list]]:
    """The custom-scalars layout, in ``SummaryWriter.add_custom_scalars`` form.

    ``{category: {chart title: ["Multiline", [tag regex, ...]]}}``. Categories: one
    ``<split>: <teacher>`` per teacher (``split``: the evaluated split the eval/ tags come from,
    validation in training) with one chart per metric, then ``summary`` (training). A metric's
    tag is logged by the student's run and by each baseline's run (:func:`baseline_run`), so the
    chart holds all of them, one colour per run. Curriculum and teacher-weight charts follow
    :func:`keep_scalar`.
    """
    if not teachers:
        raise ValueError("teachers: the layout needs at least one teacher name")
    summary: dict[str, list] = {
        "loss (total)": ["Multiline", [_exact("loss/total")]],
        "loss per teacher": ["Multiline", ["^" + re.escape("loss/teacher/") + ".*$"]],
        "learning rate": ["Multiline", [_exact("train/lr")]],
        "throughput (samples/s)": ["Multiline", [_exact("train/samples_per_s")]],
        "lattice: mean |Δstate| per lattice step (mean, first, last)": [
            "Multiline", ["^" + re.escape("lattice/delta/") + ".*$"]],
    }
    if keep_scalar("teacher_weight/", pacing, weighting):
        summary["teacher weights"] = ["Multiline", ["^" + re.escape("teacher_weight/") + ".*$"]]
    if keep_scalar("curriculum/", pacing, weighting):
        summary["curriculum"] = ["Multiline", [_exact("curriculum/competence"), _exact("curriculum/threshold")]]
    # The student-vs-baselines charts first: what a user opens the dashboard to see.
    layout = {}
    for t in teachers:
        layout[f"{split}: {t} (one colour per run: the student's, baseline-identity, baseline-ridge)"] = {
            f"{t} {_metric_title(m)} ({split})": ["Multiline", [_exact(eval_tag(t, m))]] for m in metrics
        }
    layout["summary"] = summary
    return layout


def log_layout(writer, teachers: Sequence[str], pacing: str, weighting: str,
               metrics: Sequence[str] = LAYOUT_METRICS, split: str = "validation") -> dict:
    """Write :func:`scalar_layout` once, at the start of the run; returns the layout."""
    layout = scalar_layout(teachers, metrics, pacing, weighting, split)
    writer.add_custom_scalars(layout)
    return layout


def baseline_writers(writer, results: Mapping[str, Mapping[str, Mapping[str, float]]]) -> dict:
    """One ``SummaryWriter`` per baseline present in ``results`` (``evaluate_spaces``' form
    ``{teacher: {predictor: {metric: v}}}``; ridge is absent in online mode), each writing to
    ``<writer's log dir>/baseline-<name>``. Open once at the start; close them at the end."""
    from torch.utils.tensorboard import SummaryWriter

    names = sorted({p for rows in results.values() for p in rows if p != "student"})
    return {n: SummaryWriter(os.path.join(writer.log_dir, baseline_run(n))) for n in names}


def log_baselines(writers: Mapping[str, object], results: Mapping[str, Mapping[str, Mapping[str, float]]],
                  step: int) -> dict[str, dict[str, float]]:
    """Log each baseline's metrics under the student's tags in its own run, at ``step``.

    They are constants: log them at every evaluation (or at least the first and last) so they draw
    as flat lines beside the student's curve. The student's row is skipped (the loop logs it as
    today). Returns ``{baseline: {tag: value}}``.
    """
    missing = sorted({p for rows in results.values() for p in rows if p != "student" and p not in writers})
    if missing:  # checked before writing anything, so a bad call leaves no partial evaluation behind
        raise ValueError(f"writers: no writer for baseline {missing[0]!r} (open them with baseline_writers)")
    out: dict[str, dict[str, float]] = {}
    for t, rows in results.items():
        for pred, vals in rows.items():
            if pred == "student":
                continue
            for m, v in vals.items():
                writers[pred].add_scalar(eval_tag(t, m), float(v), step)
                out.setdefault(pred, {})[eval_tag(t, m)] = float(v)
    return out


# ---------------------------------------------------------------------------------------------
# colour map
# ---------------------------------------------------------------------------------------------

# matplotlib's viridis (CC0; van der Walt & Smith) sampled at 9 evenly spaced points. Linear
# interpolation between them stays within a few RGB levels of the 256-entry table and keeps
# the map perceptually uniform and monotone in lightness, without a matplotlib dependency.
_VIRIDIS = np.array(
    [
        [0x44, 0x01, 0x54], [0x47, 0x2D, 0x7B], [0x3B, 0x52, 0x8B], [0x2C, 0x72, 0x8E], [0x21, 0x90, 0x8C],
        [0x27, 0xAD, 0x81], [0x5D, 0xC8, 0x63], [0xAA, 0xDC, 0x32], [0xFD, 0xE7, 0x25],
    ],
    dtype=np.float64,
)


def viridis(values: np.ndarray) -> np.ndarray:
    """values in [0, 1] (any shape S; NaN -> white) -> uint8 RGB, shape S + (3,)."""
    v = np.asarray(values, dtype=np.float64)
    nan = ~np.isfinite(v)
    v = np.clip(np.where(nan, 0.0, v), 0.0, 1.0) * (len(_VIRIDIS) - 1)
    i = np.minimum(np.floor(v).astype(np.int64), len(_VIRIDIS) - 2)
    f = (v - i)[..., None]
    rgb = _VIRIDIS[i] * (1 - f) + _VIRIDIS[i + 1] * f
    rgb[nan] = 255.0
    return np.rint(rgb).astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# lattice montage and activity
# ---------------------------------------------------------------------------------------------


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: fixed-size bitmap font
        return ImageFont.load_default()


def _check_trace(trace: Mapping[int, torch.Tensor], io_axis: str) -> None:
    if not trace:
        raise ValueError("trace: no traced steps (pass trace_steps to Student.trace)")
    if io_axis not in _AXIS_DIM:
        raise ValueError(f"io_axis: must be one of z, y, x, got {io_axis!r}")
    shapes = {tuple(s.shape) for s in trace.values()}
    if len(shapes) != 1 or len(next(iter(shapes))) != 5:
        raise ValueError(f"trace: every state must be (B, D, H, W, C) with one shape, got {sorted(shapes)}")


def montage_values(
    trace: Mapping[int, torch.Tensor],
    example: int = 0,
    io_axis: str = "z",
    steps: Iterable[int] | None = None,
    max_slices: int = 16,
) -> tuple[np.ndarray, list[int], np.ndarray]:
    """The numbers a montage shows, before colour.

    trace: {lattice step t: state (B, D, H, W, C)}; ``steps``: traced steps to show (default all).
    Returns (values (n_steps, n_slices, rows, cols): RMS over channels of slice s along ``io_axis``
    (0 = input face) at step t; the steps; the slice indices, at most ``max_slices`` evenly spaced).
    """
    _check_trace(trace, io_axis)
    steps = sorted(trace) if steps is None else sorted(set(steps))
    missing = [t for t in steps if t not in trace]
    if missing:
        raise ValueError(f"steps: {missing} were not traced (traced: {sorted(trace)})")
    B = next(iter(trace.values())).shape[0]
    if not 0 <= example < B:
        raise ValueError(f"example: {example} is outside the traced batch of {B}")
    dim = _AXIS_DIM[io_axis]
    # (L, rows, cols) per step: move the io axis first, RMS over channels.
    grids = [trace[t][example].float().cpu().movedim(dim - 1, 0).pow(2).mean(-1).sqrt().numpy() for t in steps]
    L = grids[0].shape[0]
    slices = np.unique(np.linspace(0, L - 1, min(L, max_slices)).round().astype(int))
    return np.stack([g[slices] for g in grids]), steps, slices


def lattice_montage(
    trace: Mapping[int, torch.Tensor],
    example: int = 0,
    io_axis: str = "z",
    steps: Iterable[int] | None = None,
    min_width: int = 256,
    max_slices: int = 16,
) -> tuple[np.ndarray, tuple[float, float]]:
    """One readable image of one example's lattice state.

    trace: {lattice step t: state (B, D, H, W, C)} as ``Student.trace`` returns; ``steps``: which
    traced steps to show (default all), one row each, top to bottom. Columns: the slices along
    ``io_axis`` from the input face (0) to the output face (L-1; at most ``max_slices``, evenly
    spaced), each a (rows, cols) face whose cells show the RMS of the C channels
    (:func:`montage_values`). One colour scale (viridis, from the image's minimum to its maximum)
    for the whole image, drawn as a labelled colour bar below; cells are upscaled so the grid is at
    least ``min_width`` pixels wide.

    Returns (HWC uint8 RGB image, (lo, hi) of the scale).
    """
    from PIL import Image, ImageDraw

    vals, steps, cols_idx = montage_values(trace, example, io_axis, steps, max_slices)
    L = trace[steps[0]].shape[_AXIS_DIM[io_axis]]
    finite = vals[np.isfinite(vals)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    norm = (vals - lo) / (hi - lo) if hi > lo else np.zeros_like(vals)

    n_t, n_s, rows, cols = vals.shape
    gap = 3
    # TensorBoard shows an image card ~350 px wide: a grid of ~256-300 px is shown 1:1 and its
    # labels stay legible; larger lattices are downscaled ("Show actual image size" restores it).
    scale = max(2, math.ceil(min_width / (n_s * cols)))
    cw, ch = cols * scale, rows * scale
    font_px = 13
    font = _font(font_px)
    title = f"{io_axis} slice: 0 = input face ... {L - 1} = output face"
    caption = "colour: RMS over the state's channels"
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    left, top, bar_h = 40, 2 * font_px + 10, 12
    text_w = max(measure.textlength(title, font=font), measure.textlength(caption, font=font))
    W = int(max(left + n_s * (cw + gap) + 6, left + text_w + 6))
    H = top + n_t * (ch + gap) + bar_h + 2 * font_px + 16
    img = Image.new("RGB", (W, H), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    black = (0, 0, 0)
    draw.text((left, 2), title, fill=black, font=font)
    for c in range(n_s):
        label = str(int(cols_idx[c]))
        x0 = left + c * (cw + gap)
        draw.text((x0 + (cw - draw.textlength(label, font=font)) / 2, top - font_px - 4), label, fill=black, font=font)
    for r in range(n_t):
        y0 = top + r * (ch + gap)
        draw.text((2, y0 + (ch - font_px) / 2), f"t={steps[r]}", fill=black, font=font)
        for c in range(n_s):
            cell = viridis(norm[r, c]).repeat(scale, 0).repeat(scale, 1)
            img.paste(Image.fromarray(cell, "RGB"), (left + c * (cw + gap), y0))
    # Colour bar with its range: the only scale in the image.
    bar_y = top + n_t * (ch + gap) + 3
    bar_w = W - left - 6
    img.paste(Image.fromarray(viridis(np.linspace(0.0, 1.0, bar_w))[None].repeat(bar_h, 0), "RGB"), (left, bar_y))
    ty = bar_y + bar_h + 2
    lo_s, hi_s = f"{lo:.3g}", f"{hi:.3g}"
    draw.text((left, ty), lo_s, fill=black, font=font)
    draw.text((left + bar_w - draw.textlength(hi_s, font=font), ty), hi_s, fill=black, font=font)
    draw.text((left, ty + font_px + 2), caption, fill=black, font=font)
    return np.asarray(img), (lo, hi)


def state_change(trace: Mapping[int, torch.Tensor]) -> dict[int, float]:
    """Mean |Δstate| per lattice step: {t: mean |s_t - s_prev| / (t - prev)} for consecutive traced
    steps prev < t (mean over B, D, H, W, C). Zero at every t for an inert lattice (zero-initialised
    rule, or one that learnt nothing); trace every step for a per-step profile."""
    ts = sorted(trace)
    return {
        t: (trace[t].float() - trace[p].float()).abs().mean().item() / (t - p) for p, t in zip(ts[:-1], ts[1:])
    }


def delta_scalars(trace: Mapping[int, torch.Tensor]) -> dict[str, float]:
    """{lattice/delta/mean|first|last: v} from :func:`state_change` (needs >= 2 traced steps)."""
    d = state_change(trace)
    if not d:
        raise ValueError("trace: mean |Δstate| needs at least two traced steps (e.g. 0..T)")
    ts = sorted(d)
    return {"lattice/delta/mean": float(np.mean([d[t] for t in ts])),
            "lattice/delta/first": d[ts[0]], "lattice/delta/last": d[ts[-1]]}


def log_lattice(
    writer, trace: Mapping[int, torch.Tensor], step: int, io_axis: str = "z",
    montage_steps: Iterable[int] | None = None, tag: str = "lattice/state",
) -> dict[str, float]:
    """Log one montage per traced example (``<tag>/example_<i>``) and the mean |Δstate| scalars.

    trace: {t: (B, D, H, W, C)} with B = the few fixed validation inputs, ideally every t in 0..T
    (``Student.trace(x, range(T + 1))``) so the Δstate is per step; ``montage_steps``: the rows of
    the montage (default: ~5 evenly spaced traced steps). Returns the scalars.
    """
    _check_trace(trace, io_axis)
    ts = sorted(trace)
    if montage_steps is None:
        montage_steps = [ts[int(round(i))] for i in np.linspace(0, len(ts) - 1, min(len(ts), 5))]
    B = next(iter(trace.values())).shape[0]
    for b in range(B):
        img, _ = lattice_montage(trace, b, io_axis, montage_steps)
        writer.add_image(f"{tag}/example_{b}", img, step, dataformats="HWC")
    scalars = delta_scalars(trace) if len(ts) > 1 else {}
    for k, v in scalars.items():
        writer.add_scalar(k, v, step)
    return scalars


# ---------------------------------------------------------------------------------------------
# examples as text
# ---------------------------------------------------------------------------------------------


def _one_line(text: str, limit: int) -> str:
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[: limit - 1] + "…"


def _cell(text: str, limit: int = 120) -> str:
    # One markdown table cell, shown as written: no newlines, and the characters markdown would
    # act on (a pipe splits the cell, "__init__" turns bold) escaped.
    return re.sub(r"([\\|*_`\[\]<>#])", r"\\\1", _one_line(text, limit))


def top_k_answers(pred: torch.Tensor, bank: torch.Tensor, k: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """pred (N, d), bank (M, d) -> (indices (N, k), cosines (N, k)) of the most similar answers."""
    if pred.dim() != 2 or bank.dim() != 2 or pred.shape[1] != bank.shape[1]:
        raise ValueError(f"pred/bank: expected (N, d) and (M, d), got {tuple(pred.shape)} and {tuple(bank.shape)}")
    sims = F.normalize(pred.double(), dim=-1) @ F.normalize(bank.double(), dim=-1).T
    vals, idx = sims.topk(min(k, bank.shape[0]), dim=1)
    return idx, vals


def examples_table(
    questions: Sequence[str], pred: torch.Tensor, bank: torch.Tensor, bank_texts: Sequence[str],
    true_index: Sequence[int], k: int = 3,
) -> str:
    """A markdown table: per question, the true answer, its rank in the bank, and the student's
    top-k answers (cosine in brackets; the true answer marked ✓).

    questions: N texts; pred: (N, d) student predictions; bank: (M, d) answer embeddings with texts
    ``bank_texts`` (M); true_index: N indices into the bank.
    """
    n = len(questions)
    if pred.shape[0] != n or len(true_index) != n:
        raise ValueError(f"questions/pred/true_index: lengths differ ({n}, {pred.shape[0]}, {len(true_index)})")
    if bank.shape[0] != len(bank_texts):
        raise ValueError(f"bank/bank_texts: {bank.shape[0]} embeddings but {len(bank_texts)} texts")
    idx, vals = top_k_answers(pred, bank, k)
    sims = F.normalize(pred.double(), dim=-1) @ F.normalize(bank.double(), dim=-1).T
    header = "| question | true answer (its rank) | " + " | ".join(f"top-{j + 1}" for j in range(idx.shape[1])) + " |"
    lines = [header, "|" + "---|" * (2 + idx.shape[1])]
    for i in range(n):
        ti = int(true_index[i])
        # Same tie rule as retrieval_metrics: ties count against the true answer.
        rank = int((sims[i] >= sims[i, ti]).sum().item())
        cells = []
        for j in range(idx.shape[1]):
            a = int(idx[i, j])
            mark = "✓ " if a == ti else ""
            cells.append(f"{mark}{_cell(bank_texts[a], 80)} ({vals[i, j].item():.2f})")
        true = f"{_cell(bank_texts[ti], 80)} (**rank {rank}** of {bank.shape[0]})"
        lines.append(f"| {_cell(questions[i])} | {true} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def fixed_examples(questions: Sequence[str], n: int = 4) -> list[int]:
    """Indices of the first ``n`` distinct questions (case- and whitespace-insensitive), in order:
    the fixed validation examples to show at every evaluation (a question with several answers
    would otherwise fill the table with one question)."""
    seen, out = set(), []
    for i, q in enumerate(questions):
        key = " ".join(str(q).lower().split())
        if key not in seen:
            seen.add(key)
            out.append(i)
            if len(out) == n:
                break
    return out


def log_examples(writer, teacher: str, step: int, questions, pred, bank, bank_texts, true_index, k: int = 3) -> str:
    """Log :func:`examples_table` as text under ``examples/<teacher>``; returns the markdown."""
    md = examples_table(questions, pred, bank, bank_texts, true_index, k)
    writer.add_text(f"examples/{teacher}", md, step)
    return md


# ---------------------------------------------------------------------------------------------
# embedding projector
# ---------------------------------------------------------------------------------------------


def log_projector(writer, teacher: str, step: int, student_pred: torch.Tensor, targets: torch.Tensor,
                  questions: Sequence[str]) -> None:
    """Held-out student predictions and teacher targets in one projector view (``projector/<teacher>``).

    student_pred, targets: (N, d) in the teacher's space; questions: N texts. Points are labelled
    (question, source = student | teacher); the vectors are L2-normalised so the projector's
    distances are the cosines the metrics use. Writes ``projector_config.pbtxt`` in the log dir;
    log at the last evaluation only (each call adds a checkpoint's worth of TSV files).
    """
    if student_pred.shape != targets.shape or student_pred.dim() != 2 or student_pred.shape[0] != len(questions):
        raise ValueError(f"student_pred/targets/questions: expected two (N, d) and N texts, got "
                         f"{tuple(student_pred.shape)}, {tuple(targets.shape)}, {len(questions)}")
    mat = torch.cat([F.normalize(student_pred.float().cpu(), dim=-1), F.normalize(targets.float().cpu(), dim=-1)])
    # metadata.tsv is tab- and newline-separated: labels must be single-line, tab-free.
    q = [_one_line(s, 200) for s in questions]
    # The question first: the projector labels points by the first column; colour by "source".
    meta = [[s, "student"] for s in q] + [[s, "teacher"] for s in q]
    writer.add_embedding(mat, metadata=meta, metadata_header=["question", "source"], tag=f"projector/{teacher}",
                         global_step=step)


__all__ = [
    "LAYOUT_METRICS", "baseline_run", "baseline_writers", "delta_scalars", "eval_tag", "examples_table", "fixed_examples",
    "filter_scalars", "keep_scalar", "lattice_montage", "log_baselines", "log_examples", "log_lattice",
    "log_layout", "log_projector", "montage_values", "scalar_layout", "state_change", "top_k_answers", "viridis",
]
