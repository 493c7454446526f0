"""The training recipe: components built once, then the loop that reads as the algorithm.

    build:  accelerator, run data (pairs, split, targets), student, loss, curriculum sampler,
            optimiser + LR schedule, TrainState, evaluator (owns the baselines), eval policy
            (best / plateau / early stopping), checkpointer, monitor
    loop:   sample -> forward/backward/step -> log -> evaluate when due -> save when due or
            pre-empted -> stop when done, pre-empted or early-stopped

Accelerate drives it, so the same code runs on one CPU, several processes and several nodes.
Every rank holds the same targets and draws the same global batch from the curriculum sampler
(seeded by step, no communication); rank r trains on its slice and DDP averages the gradients,
so N processes with global batch B follow the same trajectory as one process with batch B
(exactly so for per-example losses; in-batch terms like InfoNCE see each rank's slice).

``build_recipe(cfg, resume, components)`` takes the pieces a caller may swap (``Components``):
the student ablation bench swaps the student, tests build the recipe with faulty ones (a NaN loss, a checkpointer that stalls mid-write, a
source whose rank dies) from ``tests/faults.py``; nothing here knows about faults.
"""

from __future__ import annotations

import logging
import math
import os
import signal
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from distill import checkpoint as ckpt
from distill.config import Config, check_world, dump_config
from distill.curriculum import CurriculumSampler, compute_difficulty
from distill.errors import TrainingDiverged
from distill.eval.evaluator import Evaluator, format_splits, pick_metric
from distill.eval.qa import answer_mean
from distill.losses import MultiTeacherLoss, compute_target_stats, target_stats_per_dim
from distill.monitor import Monitor, ShownSplit
from distill.rundata import RunData, TargetSource, load_run_data, pick_device
from distill.schema import ConfigError
from distill.state import EvalPolicy, TrainState, lr_factor
from distill.students import student_type

logger = logging.getLogger(__name__)
EXIT_PREEMPTED = 75  # EX_TEMPFAIL: pre-empted after a clean checkpoint; requeue and --resume


class DistillModule(nn.Module):
    """Student + loss in one module, so DDP syncs every trainable piece (learned loss weights too)."""

    def __init__(self, student: nn.Module, loss: nn.Module, both_sides: bool = False):
        super().__init__()
        self.student = student
        self.loss = loss
        self.both_sides = both_sides

    def forward(self, x, targets, ramp=None, per_example=False):
        if not self.both_sides:
            return self.loss(self.student(x), targets, ramp=ramp, per_example=per_example)
        # loss.both_sides: x (B, 2, L) holds each question's and its answer's token ids; one
        # forward over the 2B texts, split back into the question and the answer encodings.
        b = x.shape[0]
        out = self.student(torch.cat([x[:, 0], x[:, 1]]))
        return self.loss({n: v[:b] for n, v in out.items()}, targets, ramp=ramp, per_example=per_example,
                         answer_preds={n: v[b:] for n, v in out.items()})


def make_accelerator(cfg: Config, log: bool = True):
    from accelerate import Accelerator

    mp = cfg.train.mixed_precision
    use_cpu = pick_device(cfg) == "cpu"
    if mp == "auto":
        mp = "bf16" if (not use_cpu and torch.cuda.is_bf16_supported()) else "no"
    handlers = []
    if timeout := os.environ.get("DISTILL_DIST_TIMEOUT_S"):
        # Set by `distill launch --timeout`: a frozen peer fails the collectives in bounded time
        # instead of torch's 30-minute default.
        from datetime import timedelta

        from accelerate.utils import InitProcessGroupKwargs

        handlers.append(InitProcessGroupKwargs(timeout=timedelta(seconds=float(timeout))))
    return Accelerator(cpu=use_cpu, mixed_precision=mp,
                       log_with="tensorboard" if (log and cfg.logging.tensorboard) else None,
                       project_dir=cfg.run.output_dir, step_scheduler_with_optimizer=False,
                       kwargs_handlers=handlers)


def default_student(r: Recipe) -> nn.Module:
    """The configured type's student (``student.input``, :mod:`distill.students`), built from the
    config and the run data."""
    return student_type(r.cfg.student.input).build(r.cfg, r.data)


def default_loss(r: Recipe) -> nn.Module:
    """The configured multi-teacher loss, with the training answers' statistics (``loss.target_norm``).

    The stats come from ``RunData.stats_answers`` (the store's training answers, or in online mode
    a seeded sample every rank encodes alike), so every rank and a resumed run get the same."""
    per_dim = target_stats_per_dim(r.cfg.loss)
    stats = {n: compute_target_stats(r.data.stats_answers[n], per_dim=per_dim) for n in r.names}
    return MultiTeacherLoss(r.cfg.loss, r.names, {t.name: t.weight for t in r.cfg.teachers}, stats=stats,
                            reduce_mean=lambda x: r.accelerator.reduce(x, "mean"))


def default_checkpointer(r: Recipe) -> ckpt.Checkpointer:
    return ckpt.Checkpointer(r.accelerator, r.cfg.run_dir, ckpt.run_meta(r.cfg, r.student), r.cfg.train.keep_last)


def default_source(r: Recipe) -> TargetSource:
    return r.data.source


@dataclass
class Components:
    """Factories for the recipe's swappable pieces; each gets the recipe built so far."""

    student: Callable[[Recipe], nn.Module] = default_student
    loss: Callable[[Recipe], nn.Module] = default_loss
    checkpointer: Callable[[Recipe], ckpt.Checkpointer] = default_checkpointer
    source: Callable[[Recipe], TargetSource] = default_source


class Recipe:
    """One run's components (see the module docstring); ``train_step`` is one optimiser step."""

    def __init__(self, cfg: Config, accelerator, data: RunData, components: Components):
        self.cfg, self.accelerator, self.data = cfg, accelerator, data
        self.rank, self.world = accelerator.process_index, accelerator.num_processes
        self.names = [t.name for t in cfg.teachers]
        self.state = TrainState()
        self.student = components.student(self)
        self.sampler = self._sampler()
        self.source = components.source(self)
        self.model = DistillModule(self.student, components.loss(self), both_sides=cfg.loss.encodes_answers)
        o = cfg.optim
        optimizer = torch.optim.AdamW(self.model.parameters(), lr=o.lr, betas=tuple(o.betas), eps=o.eps,
                                      weight_decay=o.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: lr_factor(o, cfg.train.max_steps, step, self.state.plateau_factor))
        self.model, self.optimizer = accelerator.prepare(self.model, optimizer)
        self.device = accelerator.device
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.policy = EvalPolicy(self.state, o.schedule, o.plateau_patience, o.plateau_factor,
                                 cfg.train.early_stopping_patience)
        ev = (tuple(cfg.eval.recall_at), cfg.eval.ridge_lambda, cfg.eval.batch_size, cfg.data.task == "pairs")
        # Every decision reads the validation split; the test split is evaluated once, at the end.
        it = cfg.input_names() if student_type(cfg.student.input).reads_teacher_input else None
        # Centred cosine subtracts the training answers' mean (online mode: the statistics sample's).
        c = {n: answer_mean(a) for n, a in data.stats_answers.items()}
        self.evaluator = Evaluator(data.validation.x, data.validation.targets, data.train, *ev, input_teacher=it,
                                   centers=c)
        self.test_evaluator = Evaluator(data.test.x, data.test.targets, data.train, *ev, input_teacher=it, centers=c)
        self.checkpointer = components.checkpointer(self)
        self.monitor: Monitor | None = None  # started once the run directory exists

    def _sampler(self) -> CurriculumSampler:
        cfg, data, names = self.cfg, self.data, self.names
        train_t = data.train
        # A store view is read whole only for a difficulty that looks at the targets.
        need = cfg.curriculum.difficulty != "none"

        def arr(v):
            return v.numpy() if isinstance(v, torch.Tensor) or need else v

        difficulty = compute_difficulty(
            cfg.curriculum.difficulty,
            q_targets={n: arr(train_t.q[n]) for n in names} if train_t is not None else {},
            a_targets={n: arr(train_t.a[n]) for n in names} if train_t is not None else {},
            questions=[data.questions[i] for i in data.train_idx],
            answers=[data.answers[i] for i in data.train_idx],
        )
        return CurriculumSampler(difficulty, cfg.curriculum, total_steps=cfg.train.max_steps,
                                 global_batch_size=cfg.train.batch_size, seed=cfg.run.seed,
                                 rank=self.rank, world_size=self.world)

    # ---- state ----------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """The trainer's part of a checkpoint (the Accelerate state holds model and optimiser)."""
        return {"loop": self.state.state_dict(), "scheduler": self.scheduler.state_dict(),
                "sampler": self.sampler.state_dict(), "world_size": self.world}

    def load_state_dict(self, d: dict) -> None:
        self.state.load_state_dict(d["loop"])
        self.scheduler.load_state_dict(d["scheduler"])
        self.sampler.load_state_dict(d["sampler"])

    def resume(self, ck: Path) -> None:
        self.load_state_dict(self.checkpointer.restore(ck))
        logger.info("resumed from %s (step %d)", ck, self.state.step)

    def save(self) -> None:
        self.checkpointer.save(self.state.step, self.state_dict())

    @property
    def unwrapped(self) -> nn.Module:
        return self.accelerator.unwrap_model(self.model).student

    # ---- one step -------------------------------------------------------------------------------

    def forward_backward(self, idx: np.ndarray, step: int) -> dict:
        """Forward and backward over ``grad_accum`` micro-batches of this rank's slice ``idx``.

        Returns this rank's mean loss (a 0-d tensor), per-teacher and per-term losses, the last
        micro-batch's teacher weights and, for student_loss scoring, the per-example losses (B,).
        """
        micro, acc = self.cfg.train.grad_accum, self.accelerator
        want_per_ex = self.cfg.curriculum.difficulty == "student_loss"
        self.model.train()
        total = torch.zeros((), device=self.device)
        per_teacher, per_term, per_ex = {n: 0.0 for n in self.names}, {}, []
        batch_x, batch_t = self.source.batch(idx)
        for j, mb in enumerate(np.array_split(np.arange(len(idx)), micro)):
            sync = nullcontext() if j == micro - 1 else acc.no_sync(self.model)
            x, tgt = batch_x[mb].to(self.device), {n: batch_t[n][mb].to(self.device) for n in self.names}
            with sync, acc.autocast():
                out = self.model(x, tgt, per_example=want_per_ex)
                acc.backward(out.total / micro)
            total += out.total.detach() / micro
            for n in self.names:
                per_teacher[n] += out.per_teacher[n] / micro
            for k, v in out.per_term.items():
                per_term[k] = per_term.get(k, 0.0) + v / micro
            if want_per_ex:
                per_ex.append(out.per_example)
        return {"total": total, "per_teacher": per_teacher, "per_term": per_term, "weights": out.weights,
                "per_example": torch.cat(per_ex) if per_ex else None}

    def train_step(self, idx: np.ndarray, preempted: bool) -> bool:
        """One optimiser step (skipped if the loss or gradient is non-finite on any rank), its
        logs; returns True if any rank has been pre-empted (one small collective carries both)."""
        s, acc, step = self.state, self.accelerator, self.state.step
        fb = self.forward_backward(idx, step)
        grad_norm = float(acc.clip_grad_norm_(self.params, self.cfg.optim.grad_clip or float("inf")))
        flags = acc.reduce(torch.stack([fb["total"], torch.tensor(float(preempted), device=self.device)]), "sum")
        loss = flags[0].item() / self.world
        finite = math.isfinite(loss) and math.isfinite(grad_norm)
        if finite:
            self.optimizer.step()
            s.nonfinite_run = 0
        else:
            s.nonfinite_total += 1
            s.nonfinite_run += 1
            logger.warning("step %d: non-finite loss or gradient (loss=%s, grad norm=%s); step skipped",
                           step, loss, grad_norm)
        self.optimizer.zero_grad(set_to_none=True)
        lr_used = self.scheduler.get_last_lr()[0]
        self.scheduler.step()
        if fb["per_example"] is not None and finite:
            all_idx = acc.gather(torch.as_tensor(idx, device=self.device))
            all_loss = acc.gather(fb["per_example"].to(self.device))
            self.sampler.update_losses(all_idx.cpu().numpy(), all_loss.float().cpu().numpy())
        s.step += 1
        self._log_step(loss, lr_used, grad_norm, fb)
        if s.nonfinite_run >= self.cfg.train.max_nonfinite:
            raise TrainingDiverged(
                f"{s.nonfinite_run} consecutive non-finite losses/gradients at step {s.step} "
                f"(train.max_nonfinite={self.cfg.train.max_nonfinite}); stopped. The last good checkpoint in "
                f"{ckpt.checkpoint_dir(self.cfg.run_dir)} is intact; lower optim.lr or check the data.")
        return flags[1].item() > 0

    def _log_step(self, loss: float, lr: float, grad_norm: float, fb: dict) -> None:
        logs = None
        if self.monitor.due(self.state.step):
            # Collective: every rank reaches it on the same steps.
            values = [fb["per_teacher"][n] for n in self.names] + list(fb["per_term"].values())
            reduced = self.accelerator.reduce(torch.tensor(values, device=self.device), "mean").tolist()
            logs = {"loss/total": loss, "train/lr": lr, "train/grad_norm": grad_norm,
                    "train/nonfinite_steps": self.state.nonfinite_total,
                    "curriculum/competence": self.sampler.competence,
                    "curriculum/threshold": self.sampler.threshold}
            logs.update({f"loss/teacher/{n}": v for n, v in zip(self.names, reduced)})
            logs.update({f"loss/term/{k}": v for k, v in zip(fb["per_term"], reduced[len(self.names):])})
            logs.update({f"teacher_weight/{n}": w for n, w in fb["weights"].items()})
        self.monitor.log_step(self.state.step, loss, logs)
        self.monitor.log_lattice(self.state.step, self.unwrapped, self.data.validation.x, self.device)

    # ---- evaluation and the end -----------------------------------------------------------------

    def eval_due(self) -> bool:
        step = self.state.step
        return step % self.cfg.train.eval_every == 0 or step == self.cfg.train.max_steps

    def save_due(self) -> bool:
        step = self.state.step
        return step % self.cfg.train.save_every == 0 or step == self.cfg.train.max_steps

    def evaluate(self, log: bool = True) -> dict:
        """The student on the validation split (what the run's decisions read)."""
        results = self.evaluator.evaluate(self.unwrapped, self.device)
        if log:
            self.monitor.log_eval(self.state.step, results, self.unwrapped, self.device)
        return results

    def metric(self, results: dict) -> float:
        return pick_metric(results, self.cfg.eval.metric, self.cfg.input_teacher().name)

    def finish(self, validation: dict) -> None:
        """Evaluate the test split (once, here), export the student, write eval.json, print both
        tables, log hparams (main process writes)."""
        cfg, s, d = self.cfg, self.state, self.data
        test = self.test_evaluator.evaluate(self.unwrapped, self.device)
        if self.accelerator.is_main_process:
            export_student(self.unwrapped, cfg.run_dir / "student")
            pairs = {"train": len(d.train_idx), "validation": len(d.validation.idx), "test": len(d.test.idx)}
            payload = {"step": s.step, "input_teacher": cfg.input_teacher().name, "pairs": pairs,
                       "validation": validation, "test": test,
                       "results": test,  # the old key (the held-out split is now the test split)
                       "best_step": s.best_step, "best_metric": s.best_metric, "best_split": "validation",
                       "nonfinite_steps": s.nonfinite_total, "skipped_records": d.skipped_records}
            ckpt.write_json_atomic(cfg.run_dir / "eval.json", payload)
            print(format_splits({"validation": validation, "test": test}, pairs, cfg.input_names()),
                  flush=True)
            self.monitor.log_projector(s.step, self.unwrapped, self.device)  # the last evaluation's student
            self.monitor.log_hparams(validation, test)
        self.accelerator.wait_for_everyone()


def build_recipe(cfg: Config, resume: bool = False, components: Components | None = None) -> Recipe:
    """Validate, load the data, build every component, restore a checkpoint, start logging."""
    accelerator = make_accelerator(cfg)
    if problem := check_world(cfg.train, accelerator.num_processes):
        raise ConfigError("train.batch_size", problem)
    from accelerate.utils import set_seed

    set_seed(cfg.run.seed)
    resume_from = ckpt.prepare_run_dir(cfg.run_dir, resume)  # before anything is written
    # The teachers run here only if the store lacks an entry (or every step, in online mode).
    data = load_run_data(cfg, progress=cfg.logging.progress and accelerator.is_main_process)
    logger.info("pairs: %d train, %d validation, %d test; teachers: %s; targets: %s", len(data.train_idx),
                len(data.validation.idx), len(data.test.idx), ", ".join(f"{n} ({d})" for n, d in data.dims.items()),
                cfg.targets.mode)
    r = Recipe(cfg, accelerator, data, components or Components())
    if resume_from is not None:
        r.resume(resume_from)
    if accelerator.is_main_process:  # nothing is written before the input was validated
        cfg.run_dir.mkdir(parents=True, exist_ok=True)
        ckpt.write_text_atomic(cfg.run_dir / "config.yaml", dump_config(cfg))
    accelerator.wait_for_everyone()
    r.monitor = Monitor(cfg, accelerator, r.state.step, ShownSplit.of(data.questions, data.answers, data.validation))
    return r


def run(r: Recipe, preempted: Callable[[], bool]) -> int:
    """The loop; returns 0, or EXIT_PREEMPTED after saving a checkpoint."""
    results, max_steps = None, r.cfg.train.max_steps
    try:
        while r.state.step < max_steps:
            idx = r.sampler.next_batch()  # this rank's slice of the global batch
            any_preempted = r.train_step(idx, preempted())
            stop_early = False
            if r.eval_due():
                results = r.evaluate()
                stop_early = r.policy.on_eval(r.metric(results))
            if any_preempted:
                r.save()
                logger.warning("pre-empted: checkpoint saved at step %d; resume with --resume", r.state.step)
                return EXIT_PREEMPTED
            if r.save_due() or stop_early:
                r.save()
            if stop_early:
                break
    finally:
        r.monitor.close()
    if results is None or r.state.step % r.cfg.train.eval_every:
        results = r.evaluate(log=False)
    r.finish(results)
    return 0


def train(cfg: Config, resume: bool = False, components: Components | None = None) -> int:
    """Run training; returns the process exit status (0, or EXIT_PREEMPTED).

    SIGTERM (pre-emption) is caught for the whole run, target computation included: the next
    step boundary saves a checkpoint and the run exits with EXIT_PREEMPTED. The run directory's
    lock (:mod:`distill.runlock`) is taken before anything else and released on every exit.
    """
    from distill import runlock

    flag = {"set": False}

    def on_sigterm(signum, frame):  # noqa: ARG001
        flag["set"] = True
        logger.warning("SIGTERM: saving a checkpoint at the next step boundary, then exiting")

    old_handler = signal.signal(signal.SIGTERM, on_sigterm)
    lock = None
    try:
        # The job's process group first (build_recipe's Accelerator shares it): one writer per run.
        lock = runlock.acquire(cfg.run_dir, make_accelerator(cfg, log=False))
        r = build_recipe(cfg, resume, components)
        status = run(r, lambda: flag["set"])
        r.accelerator.end_training()
        return status
    finally:
        if lock is not None:
            lock.release()
        signal.signal(signal.SIGTERM, old_handler)


def export_student(student: nn.Module, path: Path) -> None:
    """The student's config + weights (save_pretrained), written aside and renamed into place."""
    ckpt.write_dir_atomic(path, student.save_pretrained)
