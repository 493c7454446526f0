"""Write a small TensorBoard log with every view of distill/tbviews.py, to look at in a browser.

A real (tiny) training run on the built-in chatterbot pairs, validation split as in training, but
with two stand-in "teachers" so it needs no model download: hashed bag-of-words vectors
projected to 64 dims (``bow-lin``) and through a random tanh layer to 48 dims (``bow-tanh``).
The numbers it draws are a demo's, not a benchmark's: they only have to move.

    python bench/tb_demo.py --logdir /tmp/tbdemo
    tensorboard --logdir /tmp/tbdemo --host 127.0.0.1 --port 6006
"""

from __future__ import annotations

import argparse
import re
import sys
import time
import zlib
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.tensorboard import SummaryWriter

# bench/ holds a lattice.py: the repository root must come first so `lattice` is the package.
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from distill import tbviews  # noqa: E402
from distill.config import DataSection  # noqa: E402
from distill.data import load_pairs, split_indices  # noqa: E402
from distill.eval.qa import evaluate_spaces, retrieval_metrics  # noqa: E402
from distill.students.teacher import Student  # noqa: E402
from lattice import LatticeConfig  # noqa: E402

HASH_DIM = 512


def bag_of_words(texts: list[str]) -> torch.Tensor:
    """texts -> (N, HASH_DIM) signed hashed word counts (crc32, so the same on every run)."""
    out = torch.zeros(len(texts), HASH_DIM)
    for i, t in enumerate(texts):
        for w in re.findall(r"\w+", t.lower()):
            h = zlib.crc32(w.encode())
            out[i, h % HASH_DIM] += 1.0 if (h >> 16) & 1 else -1.0
    return out


def stand_in_teachers(texts: list[str], seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    bow = bag_of_words(texts)
    lin = bow @ torch.randn(HASH_DIM, 64, generator=g) / HASH_DIM**0.5
    tanh = torch.tanh(bow @ torch.randn(HASH_DIM, 48, generator=g) / 4)
    return {"bow-lin": F.normalize(lin, dim=-1), "bow-tanh": F.normalize(tanh, dim=-1)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--logdir", required=True)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--eval-every", type=int, default=20)
    ap.add_argument("--image-every", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)

    ds = load_pairs(DataSection(path="builtin:chatterbot_english")).dataset
    questions, answers = list(ds["question"]), list(ds["answer"])
    # The views show the validation split, as in training (the test split is not used here).
    split = split_indices(questions, 0.2, 0.2, args.seed)
    tr, held = split.train, split.validation
    q_emb, a_emb = stand_in_teachers(questions), stand_in_teachers(answers)
    names = list(q_emb)
    tq = {n: q_emb[n][tr] for n in names}
    ta = {n: a_emb[n][tr] for n in names}
    hq = {n: q_emb[n][held] for n in names}
    ha = {n: a_emb[n][held] for n in names}
    held_q = [questions[i] for i in held]
    held_a = [answers[i] for i in held]

    lat = LatticeConfig(depth=6, height=4, width=4, channels=8, hidden=32, steps=6)
    student = Student({n: hq[n].shape[1] for n in names}, "bow-lin", lat, skip=True)
    opt = torch.optim.AdamW(student.parameters(), lr=3e-3)
    pacing, weighting = "none", "fixed"

    # As in training: the run's writer is <logdir>/<run name>, so TensorBoard names the runs
    # "demo", "demo/baseline-identity", "demo/baseline-ridge".
    w = SummaryWriter(str(Path(args.logdir) / "demo"))
    tbviews.log_layout(w, names, pacing, weighting)
    baselines = evaluate_spaces(hq, hq, ha, tq, ta)
    bw = tbviews.baseline_writers(w, baselines)
    fixed = torch.tensor(tbviews.fixed_examples(held_q, 4))  # the same validation examples at every evaluation
    T = lat.steps
    t0, n_seen = time.perf_counter(), 0
    for step in range(1, args.steps + 1):
        idx = torch.randint(0, len(tr), (32,))
        out = student(tq["bow-lin"][idx])
        per = {n: (1 - F.cosine_similarity(out[n], ta[n][idx])).mean() for n in names}
        loss = sum(per.values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        n_seen += len(idx)
        if step % 10 == 0:
            logs = {"loss/total": loss.item(), "train/lr": opt.param_groups[0]["lr"],
                    "train/samples_per_s": n_seen / (time.perf_counter() - t0),
                    "curriculum/competence": 1.0, "teacher_weight/bow-lin": 1.0}
            logs.update({f"loss/teacher/{n}": v.item() for n, v in per.items()})
            for k, v in tbviews.filter_scalars(logs, pacing, weighting).items():
                w.add_scalar(k, v, step)
        if step % args.image_every == 0 or step == 1:
            tbviews.log_lattice(w, student.trace(hq["bow-lin"][:2], range(T + 1)), step, io_axis=lat.io_axis)
        if step % args.eval_every == 0 or step == args.steps:
            with torch.no_grad():
                student.eval()
                pred = student(hq["bow-lin"])
                student.train()
            for n in names:
                for m, v in retrieval_metrics(pred[n], ha[n]).items():
                    w.add_scalar(tbviews.eval_tag(n, m), v, step)
            tbviews.log_baselines(bw, baselines, step)
            tbviews.log_examples(w, "bow-tanh", step, [held_q[i] for i in fixed], pred["bow-tanh"][fixed],
                                 ha["bow-tanh"], held_a, fixed.tolist())
            if step == args.steps:
                for n in names:
                    tbviews.log_projector(w, n, step, pred[n][:100], ha[n][:100], held_q[:100])
    for x in [w, *bw.values()]:
        x.close()
    print(f"wrote {args.logdir}: {args.steps} steps, {len(tr)} train / {len(held)} validation pairs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
