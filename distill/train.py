"""The training recipe: build, prepare, then for each step sample by curriculum, forward, loss
per teacher, backward, clip, step, log; evaluate and checkpoint every N steps.

Accelerate drives it, so the same code runs on one CPU, several processes and several nodes.
Every rank holds the same targets and draws the same global batch from the curriculum sampler
(seeded by step, no communication); rank r trains on its slice and DDP averages the gradients,
so N processes with global batch B follow the same trajectory as one process with batch B
(exactly so for per-example losses; in-batch terms like InfoNCE see each rank's slice).
"""

from __future__ import annotations

import logging
import math
import os
import signal
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from distill import checkpoint as ckpt
from distill.config import Config, dump_config
from distill.curriculum import CurriculumSampler, compute_difficulty
from distill.data import load_pairs, split_indices
from distill.errors import RunDirError, TrainingDiverged
from distill.evaluate import evaluate_spaces, format_table, retrieval_metrics
from distill.losses import MultiTeacherLoss, compute_target_stats
from distill.schema import ConfigError
from distill.student import Student
from distill.targets import Targets, compute_targets

logger = logging.getLogger(__name__)
EXIT_PREEMPTED = 75  # EX_TEMPFAIL: pre-empted after a clean checkpoint; requeue and --resume


def dump_targets(path: str, rank: int, idx, x: torch.Tensor, targets: dict[str, torch.Tensor]) -> None:
    """Test hook (DISTILL_DUMP_TARGETS=DIR): this rank's first-step indices, inputs and targets."""
    from safetensors.torch import save_file

    Path(path).mkdir(parents=True, exist_ok=True)
    tensors = {"idx": torch.as_tensor(np.asarray(idx), dtype=torch.long), "x": x.contiguous()}
    tensors.update({f"target/{n}": t.contiguous() for n, t in targets.items()})
    save_file(tensors, str(Path(path) / f"rank{rank}.safetensors"))


def fault_injection() -> dict:
    """Test hooks, read from the environment (never set in normal use):

    DISTILL_FAULT_RANK_EXIT="<rank>:<step>"  that rank dies (os._exit(13)) when it reaches the step;
    DISTILL_FAULT_NAN_STEPS="3,4,5"          the loss of those steps is made NaN on every rank.
    """
    out: dict = {"exit": None, "nan_steps": set()}
    if v := os.environ.get("DISTILL_FAULT_RANK_EXIT"):
        r, s = v.split(":")
        out["exit"] = (int(r), int(s))
    if v := os.environ.get("DISTILL_FAULT_NAN_STEPS"):
        out["nan_steps"] = {int(x) for x in v.split(",") if x.strip()}
    return out


class DistillModule(nn.Module):
    """Student + loss in one module, so DDP syncs every trainable piece (learned loss weights too)."""

    def __init__(self, student: Student, loss: MultiTeacherLoss):
        super().__init__()
        self.student = student
        self.loss = loss

    def forward(self, x, targets, ramp=None, per_example=False):
        return self.loss(self.student(x), targets, ramp=ramp, per_example=per_example)


@dataclass
class RunData:
    """Everything the loop needs about the pairs, identical on every rank."""

    questions: list[str]
    answers: list[str]
    train_idx: np.ndarray
    held_idx: np.ndarray
    train: Targets | None  # teacher targets of the training split (None in online mode)
    held: Targets  # teacher targets of the held-out split
    stats_answers: dict[str, torch.Tensor]  # answer targets the standardisation statistics come from
    source: StoredTargets | OnlineTargets
    held_x: torch.Tensor  # student inputs of the held-out split
    extra: dict  # vocab_size / pad_id for a token-input student


class StoredTargets:
    """Targets of every pair computed up front through the target store."""

    def __init__(self, train_x: torch.Tensor, train: Targets):
        self.train_x, self.train = train_x, train

    def batch(self, idx: np.ndarray) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """idx: positions in the training split -> (student input (B, ...), {teacher: (B, d)})."""
        t = torch.as_tensor(idx, dtype=torch.long)
        return self.train_x[t], {n: a[t] for n, a in self.train.a.items()}


class OnlineTargets:
    """Teachers inside the job: each step's targets are computed on the fly.

    Every rank calls every teacher once per step in config order with the same number of texts
    (its slice of the global batch), so ZeRO-3's collective forwards line up.
    """

    def __init__(self, pool, questions: list[str], answers: list[str], input_teacher: str,
                 token_ids: torch.Tensor | None = None):
        self.pool, self.questions, self.answers = pool, questions, answers
        self.input_teacher, self.token_ids = input_teacher, token_ids

    def batch(self, idx: np.ndarray) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        answers = self.pool.encode([self.answers[i] for i in idx], role="answer")
        if self.token_ids is not None:
            x = self.token_ids[torch.as_tensor(idx, dtype=torch.long)]
        else:
            x = self.pool[self.input_teacher].encode([self.questions[i] for i in idx], role="query")
        return x, answers


def make_accelerator(cfg: Config, log: bool = True):
    from accelerate import Accelerator

    mp = cfg.train.mixed_precision
    use_cpu = cfg.train.cpu or not torch.cuda.is_available()
    if mp == "auto":
        mp = "bf16" if (not use_cpu and torch.cuda.is_bf16_supported()) else "no"
    handlers = []
    if timeout := os.environ.get("DISTILL_DIST_TIMEOUT_S"):
        # Set by `distill launch --timeout`: a frozen peer fails the collectives in bounded time
        # instead of torch's 30-minute default.
        from datetime import timedelta

        from accelerate.utils import InitProcessGroupKwargs

        handlers.append(InitProcessGroupKwargs(timeout=timedelta(seconds=float(timeout))))
    return Accelerator(
        cpu=use_cpu,
        mixed_precision=mp,
        log_with="tensorboard" if (log and cfg.logging.tensorboard) else None,
        project_dir=cfg.run.output_dir,
        step_scheduler_with_optimizer=False,
        kwargs_handlers=handlers,
    )


def token_inputs(cfg: Config, questions: list[str]) -> tuple[torch.Tensor, int, int]:
    """(N, L) token ids of the questions on the input teacher's tokenizer, plus vocab size and pad id."""
    from transformers import AutoTokenizer

    from teachers import resolve_model_source

    spec = cfg.input_teacher()
    tok = AutoTokenizer.from_pretrained(resolve_model_source(spec.model), revision=spec.revision,
                                        trust_remote_code=spec.trust_remote_code)
    pad = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
    enc = tok([spec.query_prefix + q for q in questions], truncation=True, max_length=min(spec.max_length, 128),
              add_special_tokens=False)
    width = max(1, max(len(ids) for ids in enc["input_ids"]))
    ids = torch.full((len(questions), width), pad, dtype=torch.long)
    for i, row in enumerate(enc["input_ids"]):
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return ids, len(tok), pad


ONLINE_STATS_SAMPLE = 1024  # training answers embedded at start for the standardisation statistics


def load_run_data(cfg: Config, progress: bool = True) -> RunData:
    """Pairs, split and targets: from the store, or (online mode) from teachers inside the job."""
    pairs = load_pairs(cfg.data).dataset
    questions, answers = list(pairs["question"]), list(pairs["answer"])
    train_idx, held_idx = split_indices(questions, cfg.data.holdout_fraction, cfg.data.split_seed)
    device = "cuda" if (torch.cuda.is_available() and not cfg.train.cpu) else "cpu"
    extra: dict = {}
    token_ids = None
    if cfg.student.input == "tokens":
        token_ids, extra["vocab_size"], extra["pad_id"] = token_inputs(cfg, questions)
    input_name = cfg.input_teacher().name
    train_q = [questions[i] for i in train_idx]
    train_a = [answers[i] for i in train_idx]
    if cfg.targets.mode == "store":
        targets = compute_targets(cfg.teachers, questions, answers, cfg.targets.store_dir, device=device,
                                  progress=progress)
        train_t, held_t = targets.select(train_idx), targets.select(held_idx)
        inputs = token_ids if token_ids is not None else targets.q[input_name]
        source = StoredTargets(inputs[torch.as_tensor(train_idx)], train_t)
        stats_answers = train_t.a
        held_x = inputs[torch.as_tensor(held_idx)]
    else:
        from teachers import TeacherPool

        pool = TeacherPool(cfg.teachers, device=device)
        held_q = [questions[i] for i in held_idx]
        held_t = Targets(pool.encode(held_q, role="query", split=True, progress=progress),
                         pool.encode([answers[i] for i in held_idx], role="answer", split=True, progress=progress))
        sample = np.random.default_rng(cfg.run.seed).permutation(len(train_idx))[:ONLINE_STATS_SAMPLE]
        stats_answers = pool.encode([train_a[i] for i in sample], role="answer", split=True)
        train_t = None
        source = OnlineTargets(pool, train_q, train_a, input_name,
                               token_ids[torch.as_tensor(train_idx)] if token_ids is not None else None)
        held_x = token_ids[torch.as_tensor(held_idx)] if token_ids is not None else held_t.q[input_name]
    return RunData(questions, answers, train_idx, held_idx, train_t, held_t, stats_answers, source, held_x, extra)


def build_student(cfg: Config, dims: dict[str, int], extra: dict) -> Student:
    s = cfg.student
    return Student(
        teacher_dims=dims,
        input_teacher=cfg.input_teacher().name,
        lattice=s.lattice,
        input_mode=s.input,
        residual=s.residual,
        skip=s.skip,
        head_hidden=s.head_hidden,
        vocab_size=extra.get("vocab_size", 0),
        token_dim=s.token_dim,
        pad_id=extra.get("pad_id", 0),
    )


def run_meta(cfg: Config, student: Student) -> dict:
    """What a resume must match: the teacher set (everything that changes targets) and the shape,
    with the lattice sizes the built student actually has."""
    return {**ckpt.config_meta(cfg), "lattice": student.lattice_config.to_dict()}


def lr_lambda_factory(cfg: Config, state: dict):
    warm, total, floor = cfg.optim.warmup_steps, cfg.train.max_steps, cfg.optim.min_lr_ratio

    def factor(step: int) -> float:
        w = min(1.0, (step + 1) / warm) if warm else 1.0
        if cfg.optim.schedule == "cosine" and step >= warm:
            progress = min(1.0, (step - warm) / max(1, total - warm))
            w = floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
        elif cfg.optim.schedule == "plateau":
            w *= state["plateau_factor"]
        return w

    return factor


@torch.no_grad()
def predict_all(student: Student, inputs: torch.Tensor, batch_size: int, device) -> dict[str, torch.Tensor]:
    was_training = student.training
    student.eval()
    outs: dict[str, list[torch.Tensor]] = {}
    for i in range(0, len(inputs), batch_size):
        for k, v in student(inputs[i : i + batch_size].to(device)).items():
            outs.setdefault(k, []).append(v.float().cpu())
    student.train(was_training)
    return {k: torch.cat(v) for k, v in outs.items()}


def pick_metric(results: dict, cfg: Config) -> float:
    name = cfg.eval.metric
    teacher, _, metric = name.rpartition("/")
    teacher = teacher or cfg.input_teacher().name
    return results[teacher]["student"][metric]


def prepare_run_dir(cfg: Config, resume: bool) -> Path | None:
    """Refuse to overwrite a finished or running run; return the checkpoint to resume from."""
    run_dir = cfg.run_dir
    if not resume:
        if run_dir.exists() and any(run_dir.iterdir()):
            raise RunDirError(
                f"run directory {run_dir} already exists; pass --resume to continue it, "
                "or choose another run.name"
            )
        return None
    ck = ckpt.find_resume_checkpoint(run_dir)
    if ck is None and ckpt.list_checkpoints(run_dir):
        raise ckpt.CheckpointError(f"{run_dir}: no checkpoint passed verification; refusing to start over it")
    return ck


def lattice_image(state: dict[int, torch.Tensor]) -> np.ndarray:
    """Traced states {step: (B, D, H, W, C)} -> one CHW grayscale image: for each step, the (D, W)
    slice through the middle row, channel RMS, steps side by side, upscaled 8x."""
    tiles = []
    for t in sorted(state):
        s = state[t][0].float()  # (D, H, W, C)
        sl = s[:, s.shape[1] // 2].pow(2).mean(-1).sqrt()  # (D, W)
        tiles.append(sl)
        tiles.append(torch.full((sl.shape[0], 1), float("nan")))
    img = torch.cat(tiles[:-1], dim=1)
    finite = img[torch.isfinite(img)]
    lo, hi = (finite.min(), finite.max()) if finite.numel() else (0, 1)
    img = ((img - lo) / (hi - lo + 1e-8)).nan_to_num(1.0).clamp(0, 1)
    img = img.repeat_interleave(8, 0).repeat_interleave(8, 1)
    return img[None].numpy()


def flat_hparams(cfg: Config) -> dict:
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


def train(cfg: Config, resume: bool = False) -> int:
    """Run training; returns the process exit status (0, or EXIT_PREEMPTED).

    SIGTERM (pre-emption) is caught for the whole run, target computation included: the next
    step boundary saves a checkpoint and the run exits with EXIT_PREEMPTED.
    """
    preempted = {"flag": False}

    def on_sigterm(signum, frame):  # noqa: ARG001
        preempted["flag"] = True
        logger.warning("SIGTERM: saving a checkpoint at the next step boundary, then exiting")

    old_handler = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        return _train(cfg, resume, preempted)
    finally:
        signal.signal(signal.SIGTERM, old_handler)


def _train(cfg: Config, resume: bool, preempted: dict) -> int:
    accelerator = make_accelerator(cfg)
    main = accelerator.is_main_process
    rank, world = accelerator.process_index, accelerator.num_processes
    if cfg.train.batch_size % (world * cfg.train.grad_accum):
        raise ConfigError(
            "train.batch_size",
            f"{cfg.train.batch_size} must be divisible by processes x grad_accum ({world} x {cfg.train.grad_accum})",
        )
    from accelerate.utils import set_seed

    set_seed(cfg.run.seed)
    resume_from = prepare_run_dir(cfg, resume)  # before anything is written
    run_dir = cfg.run_dir

    # ---- data and targets (the teachers run here only if the store lacks an entry) ----
    data = load_run_data(cfg, progress=cfg.logging.progress and main)
    train_t, held_t, held_x = data.train, data.held, data.held_x
    names = [t.name for t in cfg.teachers]
    dims = {n: held_t.a[n].shape[1] for n in names}
    logger.info("pairs: %d train, %d held out; teachers: %s; targets: %s", len(data.train_idx),
                len(data.held_idx), ", ".join(f"{n} ({d})" for n, d in dims.items()), cfg.targets.mode)

    # ---- student, loss, curriculum, optimiser ----
    try:
        student = build_student(cfg, dims, data.extra)
    except ValueError as err:  # a shape only known once the teachers' widths are (e.g. a hub teacher)
        raise ConfigError("student.lattice", str(err)) from None
    stats = {n: compute_target_stats(data.stats_answers[n]) for n in names}
    loss_fn = MultiTeacherLoss(cfg.loss, names, {t.name: t.weight for t in cfg.teachers}, stats=stats,
                               reduce_mean=lambda x: accelerator.reduce(x, "mean"))
    difficulty = compute_difficulty(
        cfg.curriculum.difficulty,
        q_targets={n: train_t.q[n].numpy() for n in names} if train_t is not None else {},
        a_targets={n: train_t.a[n].numpy() for n in names} if train_t is not None else {},
        questions=[data.questions[i] for i in data.train_idx],
        answers=[data.answers[i] for i in data.train_idx],
    )
    sampler = CurriculumSampler(difficulty, cfg.curriculum, total_steps=cfg.train.max_steps,
                                global_batch_size=cfg.train.batch_size, seed=cfg.run.seed,
                                rank=rank, world_size=world)
    model = DistillModule(student, loss_fn)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.optim.lr, betas=tuple(cfg.optim.betas),
                                  eps=cfg.optim.eps, weight_decay=cfg.optim.weight_decay)
    loop = {"step": 0, "plateau_factor": 1.0, "plateau_bad": 0, "best_metric": None, "best_step": None,
            "bad_evals": 0, "nonfinite_total": 0, "nonfinite_run": 0}
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda_factory(cfg, loop))
    model, optimizer = accelerator.prepare(model, optimizer)
    device = accelerator.device
    meta = run_meta(cfg, student)

    if resume_from is not None:
        ckpt.check_compatible(ckpt.read_checkpoint_json(resume_from, "meta.json"), meta, resume_from)
        accelerator.load_state(str(resume_from / "accelerate"))
        state = ckpt.read_checkpoint_json(resume_from, "trainer_state.json")
        loop.update(state["loop"])
        scheduler.load_state_dict(state["scheduler"])
        sampler.load_state_dict(state["sampler"])
        logger.info("resumed from %s (step %d)", resume_from, loop["step"])

    # ---- run directory and tracking (main process writes; nothing before input was validated) ----
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        ckpt.write_text_atomic(run_dir / "config.yaml", dump_config(cfg))
    accelerator.wait_for_everyone()
    writer = None
    if cfg.logging.tensorboard:
        accelerator.init_trackers(cfg.run.name)
        if main:
            writer = accelerator.get_tracker("tensorboard", unwrap=True)
            writer.add_text("config", "```yaml\n" + dump_config(cfg) + "\n```", loop["step"])

    # Baselines on the held-out split, once: the student must beat these.
    # (Online mode never holds the whole training split's targets: identity baseline only.)
    baselines = evaluate_spaces({n: held_t.q[n] for n in names}, {n: held_t.q[n] for n in names}, held_t.a,
                                train_t.q if train_t is not None else None,
                                train_t.a if train_t is not None else None,
                                ks=tuple(cfg.eval.recall_at), ridge_lambda=cfg.eval.ridge_lambda)

    def evaluate_now() -> dict:
        preds = predict_all(accelerator.unwrap_model(model).student, held_x, cfg.eval.batch_size, device)
        res = {}
        for n in names:
            res[n] = {"student": retrieval_metrics(preds[n], held_t.a[n], tuple(cfg.eval.recall_at))}
            res[n].update({k: v for k, v in baselines[n].items() if k != "student"})
        return res

    def trainer_state() -> dict:
        return {"loop": loop, "scheduler": scheduler.state_dict(), "sampler": sampler.state_dict(),
                "world_size": world}

    def save(step: int) -> None:
        ckpt.save_checkpoint(accelerator, run_dir, step, trainer_state(), meta, cfg.train.keep_last)

    # ---- the loop ----
    micro = cfg.train.grad_accum
    params = [p for p in model.parameters() if p.requires_grad]
    progress = None
    if main and cfg.logging.progress:
        from tqdm.auto import tqdm

        progress = tqdm(total=cfg.train.max_steps, initial=loop["step"], desc="train", dynamic_ncols=True)
    t_last, n_last = time.perf_counter(), 0
    exit_status = 0
    results = None
    faults = fault_injection()
    dump_dir = os.environ.get("DISTILL_DUMP_TARGETS")
    try:
        while loop["step"] < cfg.train.max_steps:
            step = loop["step"]
            if faults["exit"] is not None and faults["exit"] == (rank, step):
                logger.error("fault injection: rank %d exits at step %d", rank, step)
                os._exit(13)
            idx = sampler.next_batch()  # this rank's slice of the global batch
            ramp = sampler.teacher_ramp(step)
            want_per_ex = cfg.curriculum.difficulty == "student_loss"
            model.train()
            total = torch.zeros((), device=device)
            per_teacher = {n: 0.0 for n in names}
            per_term: dict[str, float] = {}
            per_ex = []
            batch_x, batch_t = data.source.batch(idx)
            if dump_dir is not None and step == 0:
                dump_targets(dump_dir, rank, idx, batch_x, batch_t)
            for j, mb in enumerate(np.array_split(np.arange(len(idx)), micro)):
                sync = nullcontext() if j == micro - 1 else accelerator.no_sync(model)
                x = batch_x[mb].to(device)
                tgt = {n: batch_t[n][mb].to(device) for n in names}
                with sync, accelerator.autocast():
                    out = model(x, tgt, ramp=ramp, per_example=want_per_ex)
                    if step in faults["nan_steps"]:
                        out.total = out.total * float("nan")
                    accelerator.backward(out.total / micro)
                total += out.total.detach() / micro
                for n in names:
                    per_teacher[n] += out.per_teacher[n] / micro
                for k, v in out.per_term.items():
                    per_term[k] = per_term.get(k, 0.0) + v / micro
                if want_per_ex:
                    per_ex.append(out.per_example)
            grad_norm = accelerator.clip_grad_norm_(params, cfg.optim.grad_clip or float("inf"))
            # One small collective per step: the mean loss and "any rank pre-empted".
            flags = accelerator.reduce(torch.stack([total, torch.tensor(float(preempted["flag"]), device=device)]),
                                       "sum")
            loss_value = flags[0].item() / world
            finite = math.isfinite(loss_value) and math.isfinite(float(grad_norm))
            if finite:
                optimizer.step()
                loop["nonfinite_run"] = 0
            else:
                loop["nonfinite_total"] += 1
                loop["nonfinite_run"] += 1
                logger.warning("step %d: non-finite loss or gradient (loss=%s, grad norm=%s); step skipped",
                               step, loss_value, float(grad_norm))
            optimizer.zero_grad(set_to_none=True)
            lr_used = scheduler.get_last_lr()[0]
            scheduler.step()
            if want_per_ex and finite:
                all_idx = accelerator.gather(torch.as_tensor(idx, device=device))
                all_loss = accelerator.gather(torch.cat(per_ex).to(device))
                sampler.update_losses(all_idx.cpu().numpy(), all_loss.float().cpu().numpy())
            loop["step"] = step = step + 1
            if progress is not None:
                progress.update(1)
                progress.set_postfix(loss=f"{loss_value:.4f}")

            if loop["nonfinite_run"] >= cfg.train.max_nonfinite:
                raise TrainingDiverged(
                    f"{loop['nonfinite_run']} consecutive non-finite losses/gradients at step {step} "
                    f"(train.max_nonfinite={cfg.train.max_nonfinite}); stopped. The last good checkpoint in "
                    f"{ckpt.checkpoint_dir(run_dir)} is intact; lower optim.lr or check the data."
                )

            if step % cfg.train.log_every == 0 or step == cfg.train.max_steps:
                now = time.perf_counter()
                sps = (step - n_last) * cfg.train.batch_size / max(now - t_last, 1e-9) if step > n_last else 0.0
                t_last, n_last = now, step
                reduced = accelerator.reduce(torch.tensor([per_teacher[n] for n in names] + list(per_term.values()),
                                                          device=device), "mean").tolist()
                logs = {"loss/total": loss_value, "train/lr": lr_used,
                        "train/grad_norm": float(grad_norm), "train/samples_per_s": sps,
                        "train/nonfinite_steps": loop["nonfinite_total"],
                        "curriculum/competence": sampler.competence, "curriculum/threshold": sampler.threshold}
                for n, v in zip(names, reduced[: len(names)]):
                    logs[f"loss/teacher/{n}"] = v
                for k, v in zip(per_term, reduced[len(names):]):
                    logs[f"loss/term/{k}"] = v
                for n, w in out.weights.items():
                    logs[f"teacher_weight/{n}"] = w
                accelerator.log(logs, step=step)

            if writer is not None and cfg.logging.image_every and step % cfg.logging.image_every == 0:
                st = accelerator.unwrap_model(model).student
                T = st.lattice_config.steps
                trace = st.trace(held_x[:1].to(device), trace_steps=sorted({0, T // 2, T}))
                writer.add_image("lattice/state_slices", lattice_image(trace), step)
            if writer is not None and cfg.logging.histogram_every and step % cfg.logging.histogram_every == 0:
                st = accelerator.unwrap_model(model).student
                trace = st.trace(held_x[:8].to(device), trace_steps=(st.lattice_config.steps,))
                writer.add_histogram("lattice/final_state", next(iter(trace.values())).float().cpu(), step)
                for n, head in st.heads.items():
                    writer.add_histogram(f"heads/{n}/weight", head.net[-1].weight.detach().float().cpu(), step)

            stop_early = False
            if step % cfg.train.eval_every == 0 or step == cfg.train.max_steps:
                results = evaluate_now()
                metric = pick_metric(results, cfg)
                logs = {}
                for n in names:
                    for m, v in results[n]["student"].items():
                        logs[f"eval/{n}/{m}"] = v
                accelerator.log(logs, step=step)
                best = loop["best_metric"]
                if best is None or metric > best:
                    loop["best_metric"], loop["best_step"], loop["bad_evals"] = metric, step, 0
                else:
                    loop["bad_evals"] += 1
                    if cfg.optim.schedule == "plateau" and loop["bad_evals"] % cfg.optim.plateau_patience == 0:
                        loop["plateau_factor"] *= cfg.optim.plateau_factor
                        logger.info("plateau: lr factor now %.4g", loop["plateau_factor"])
                    if cfg.train.early_stopping_patience and loop["bad_evals"] >= cfg.train.early_stopping_patience:
                        logger.info("early stopping at step %d (best %s=%.4f at step %s)", step,
                                    cfg.eval.metric, best, loop["best_step"])
                        stop_early = True

            if flags[1].item() > 0:
                save(step)
                logger.warning("pre-empted: checkpoint saved at step %d; resume with --resume", step)
                exit_status = EXIT_PREEMPTED
                break
            if step % cfg.train.save_every == 0 or step == cfg.train.max_steps or stop_early:
                save(step)
            if stop_early:
                break
    finally:
        if progress is not None:
            progress.close()

    if exit_status == 0:
        if results is None or loop["step"] % cfg.train.eval_every:
            results = evaluate_now()
        finish(cfg, accelerator, model, results, loop, writer)
    accelerator.end_training()
    return exit_status


def finish(cfg: Config, accelerator, model, results: dict, loop: dict, writer) -> None:
    """Export the student, write eval.json, print the table, log hparams (main process)."""
    if accelerator.is_main_process:
        run_dir = cfg.run_dir
        student = accelerator.unwrap_model(model).student
        export_student(student, run_dir / "student")
        payload = {"step": loop["step"], "split": "heldout", "input_teacher": cfg.input_teacher().name,
                   "results": results, "best_step": loop["best_step"], "best_metric": loop["best_metric"],
                   "nonfinite_steps": loop["nonfinite_total"]}
        ckpt.write_json_atomic(run_dir / "eval.json", payload)
        print(format_table(results, cfg.input_teacher().name), flush=True)
        if writer is not None:
            final = {}
            for n, rows in results.items():
                for m, v in rows["student"].items():
                    final[f"hparam/{n}/{m}"] = v
            writer.add_hparams(flat_hparams(cfg), final, run_name="hparams")
            writer.flush()
    accelerator.wait_for_everyone()


def export_student(student: Student, path: Path) -> None:
    """save_pretrained into a temporary directory, then rename into place."""
    import shutil

    tmp = path.with_name(f".tmp-{path.name}")
    if tmp.exists():
        shutil.rmtree(tmp)
    student.save_pretrained(tmp)
    if path.exists():
        shutil.rmtree(path)
    tmp.rename(path)
