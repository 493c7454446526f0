"""Metrics and TensorBoard: scalars per step, validation metrics beside their baselines, the
views of distill/tbviews.py (custom-scalars layout, lattice montages, examples, projector),
histograms, hparams.

Every scalar of the run goes through ``accelerator.log`` (the configured trackers); baselines,
images, histograms, text, the projector and hparams go straight to the main process's
TensorBoard writer. Nothing here draws from the RNG or changes the model (the student runs in
eval mode, under no_grad), so logging cannot change the run it observes
(tests/distill/test_monitor.py checks the trained weights are bit-identical with it off).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from distill import tbviews
from distill.config import Config, dump_config
from distill.eval.evaluator import predict_all

EXAMPLES = 4  # fixed validation questions in the examples text
MONTAGE_EXAMPLES = 2  # of them, the ones with a lattice montage (one image each)
PROJECTOR_POINTS = 500  # validation pairs in the projector (x2 points: prediction and target)


def flat_hparams(cfg: Config) -> dict:
    """The config as {dotted.key: scalar}, teachers keyed by name (TensorBoard's hparams view)."""
    out = {}

    def walk(prefix, obj):
        if isinstance(obj, dict):
            for k, v in obj.items():
                walk(f"{prefix}.{k}" if prefix else k, v)
        elif isinstance(obj, (int, float, str, bool)):
            out[prefix] = obj
        elif obj is None:
            out[prefix] = "none"
        else:
            out[prefix] = str(obj)

    d = cfg.to_dict()
    d["teachers"] = {t["name"]: t for t in d["teachers"]}
    walk("", d)
    return out


@dataclass
class ShownSplit:
    """The split the views show (validation): its texts, student inputs and answer targets.

    questions, answers: N texts; x: (N, ...) student inputs; bank: {teacher: (N, d) answer
    targets}; row i of every field is pair i, so pair i's true answer is bank row i.
    """

    questions: list[str]
    answers: list[str]
    x: torch.Tensor
    bank: dict[str, torch.Tensor]

    @classmethod
    def of(cls, questions: list[str], answers: list[str], split) -> ShownSplit:
        """From the run's texts and an evaluated split (``idx``, ``x``, ``targets.a``)."""
        return cls([questions[i] for i in split.idx], [answers[i] for i in split.idx], split.x, dict(split.targets.a))


class Monitor:
    """The run's logger: progress bar, scalars, the views of distill/tbviews.py (baselines beside
    the student, lattice montages, examples, projector), histograms and the final hparams.

    ``shown``: the validation split, what every evaluation reads; without it (or without
    TensorBoard, or off the main process) only scalars and the progress bar are written.
    """

    def __init__(self, cfg: Config, accelerator, start_step: int, shown: ShownSplit | None = None):
        self.cfg, self.accelerator, self.shown = cfg, accelerator, shown
        self.pacing, self.weighting = cfg.curriculum.pacing, cfg.loss.weighting
        self.writer, self.baseline_writers = None, None
        # The same few validation questions at every evaluation (first distinct ones): text
        # examples for all of them, lattice montages for the first MONTAGE_EXAMPLES.
        self.examples = tbviews.fixed_examples(shown.questions, EXAMPLES) if shown is not None else []
        if cfg.logging.tensorboard:
            accelerator.init_trackers(cfg.run.name)
            if accelerator.is_main_process:
                self.writer = accelerator.get_tracker("tensorboard", unwrap=True)
                self.writer.add_text("config", "```yaml\n" + dump_config(cfg) + "\n```", start_step)
                tbviews.log_layout(self.writer, [t.name for t in cfg.teachers], self.pacing, self.weighting,
                                   split="validation")
        self.progress = None
        if accelerator.is_main_process and cfg.logging.progress:
            from tqdm.auto import tqdm

            self.progress = tqdm(total=cfg.train.max_steps, initial=start_step, desc="train", dynamic_ncols=True)
        self.t_last, self.n_last = time.perf_counter(), start_step

    def due(self, step: int) -> bool:
        return step % self.cfg.train.log_every == 0 or step == self.cfg.train.max_steps

    def log_step(self, step: int, loss: float, logs: dict) -> None:
        """``logs``: the step's scalars by tag; adds the throughput since the last logged step and
        drops the charts that mean nothing in this run (:func:`tbviews.keep_scalar`)."""
        if self.progress is not None:
            self.progress.update(1)
            self.progress.set_postfix(loss=f"{loss:.4f}")
        if not self.due(step):
            return
        now = time.perf_counter()
        sps = (step - self.n_last) * self.cfg.train.batch_size / max(now - self.t_last, 1e-9) \
            if step > self.n_last else 0.0
        self.t_last, self.n_last = now, step
        logs = tbviews.filter_scalars({**logs, "train/samples_per_s": sps}, self.pacing, self.weighting)
        self.accelerator.log(logs, step=step)

    def log_eval(self, step: int, results: dict, student=None, device="cpu") -> None:
        """Validation metrics as eval/<teacher>/<metric>; on the main process also the baselines
        under the same tags in the sub-runs baseline-<name> (one chart, one colour per run) and,
        given the student, the examples table of the fixed validation questions."""
        logs = {tbviews.eval_tag(n, m): v for n, rows in results.items() for m, v in rows["student"].items()}
        self.accelerator.log(logs, step=step)
        if self.writer is None:
            return
        if self.baseline_writers is None:  # opened at the first evaluation: it names the baselines
            self.baseline_writers = tbviews.baseline_writers(self.writer, results)
        tbviews.log_baselines(self.baseline_writers, results, step)
        if student is not None and self.examples:
            sh, ex = self.shown, self.examples
            preds = predict_all(student, sh.x[ex], len(ex), device)
            for n, bank in sh.bank.items():
                tbviews.log_examples(self.writer, n, step, [sh.questions[i] for i in ex], preds[n], bank,
                                     sh.answers, ex)

    def log_projector(self, step: int, student, device) -> None:
        """The embedding projector (main process, once: the last evaluation): the first
        PROJECTOR_POINTS validation predictions and answer targets per teacher."""
        if self.writer is None or self.shown is None:
            return
        sh = self.shown
        n = min(PROJECTOR_POINTS, len(sh.questions))
        preds = predict_all(student, sh.x[:n], self.cfg.eval.batch_size, device)
        for t, bank in sh.bank.items():
            tbviews.log_projector(self.writer, t, step, preds[t], bank[:n], sh.questions[:n])
        self.writer.flush()

    @torch.no_grad()
    def log_lattice(self, step: int, student, held_x: torch.Tensor, device) -> None:
        """When due (main process): a montage of the lattice state per fixed validation example
        (rows: lattice steps, columns: slices input -> output face) and the mean |Δstate| scalars;
        histograms of the final state and the heads' weights."""
        lg, lat = self.cfg.logging, student.lattice_config  # None: a student without a lattice
        if self.writer is None:
            return
        T = lat.steps if lat is not None else 0
        if lg.image_every and step % lg.image_every == 0 and lat is not None:
            ex = (self.examples or [0])[:MONTAGE_EXAMPLES]
            # Every lattice step is traced, so mean |Δstate| is per step; the montage shows ~5 rows.
            trace = student.trace(held_x[ex].to(device), range(T + 1))
            tbviews.log_lattice(self.writer, trace, step, io_axis=lat.io_axis)
        if lg.histogram_every and step % lg.histogram_every == 0:
            trace = student.trace(held_x[:8].to(device), trace_steps=(T,))
            self.writer.add_histogram("lattice/final_state", next(iter(trace.values())).float().cpu(), step)
            for n, weight in student.head_weights().items():
                self.writer.add_histogram(f"heads/{n}/weight", weight.detach().float().cpu(), step)

    def log_hparams(self, validation: dict, test: dict) -> None:
        """The config beside the final metrics: hparam/<teacher>/<metric> from the validation
        split, hparam_test/<teacher>/<metric> from the test split."""
        if self.writer is None:
            return
        final = {f"hparam/{n}/{m}": v for n, rows in validation.items() for m, v in rows["student"].items()}
        final.update({f"hparam_test/{n}/{m}": v for n, rows in test.items() for m, v in rows["student"].items()})
        self.writer.add_hparams(flat_hparams(self.cfg), final, run_name="hparams")
        self.writer.flush()

    def close(self) -> None:
        for w in (self.baseline_writers or {}).values():
            w.close()
        self.baseline_writers = None
        if self.progress is not None:
            self.progress.close()
            self.progress = None
