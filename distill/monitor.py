"""Metrics and TensorBoard: scalars per step, eval metrics, lattice images/histograms, hparams.

Every scalar goes through ``accelerator.log`` (the configured trackers); images, histograms,
text and hparams go straight to the main process's TensorBoard writer. Nothing here draws from
the RNG or changes the model, so logging cannot change the run it observes.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from distill.config import Config, dump_config


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


class Monitor:
    """The run's logger: progress bar, scalars, images, histograms and the final hparams."""

    def __init__(self, cfg: Config, accelerator, start_step: int):
        self.cfg, self.accelerator = cfg, accelerator
        self.writer = None
        if cfg.logging.tensorboard:
            accelerator.init_trackers(cfg.run.name)
            if accelerator.is_main_process:
                self.writer = accelerator.get_tracker("tensorboard", unwrap=True)
                self.writer.add_text("config", "```yaml\n" + dump_config(cfg) + "\n```", start_step)
        self.progress = None
        if accelerator.is_main_process and cfg.logging.progress:
            from tqdm.auto import tqdm

            self.progress = tqdm(total=cfg.train.max_steps, initial=start_step, desc="train", dynamic_ncols=True)
        self.t_last, self.n_last = time.perf_counter(), start_step

    def due(self, step: int) -> bool:
        return step % self.cfg.train.log_every == 0 or step == self.cfg.train.max_steps

    def log_step(self, step: int, loss: float, logs: dict) -> None:
        """``logs``: the step's scalars by tag; adds the throughput since the last logged step."""
        if self.progress is not None:
            self.progress.update(1)
            self.progress.set_postfix(loss=f"{loss:.4f}")
        if not self.due(step):
            return
        now = time.perf_counter()
        sps = (step - self.n_last) * self.cfg.train.batch_size / max(now - self.t_last, 1e-9) \
            if step > self.n_last else 0.0
        self.t_last, self.n_last = now, step
        self.accelerator.log({**logs, "train/samples_per_s": sps}, step=step)

    def log_eval(self, step: int, results: dict) -> None:
        """Validation metrics as eval/<teacher>/<metric>."""
        logs = {f"eval/{n}/{m}": v for n, rows in results.items() for m, v in rows["student"].items()}
        self.accelerator.log(logs, step=step)

    def log_lattice(self, step: int, student, held_x: torch.Tensor, device) -> None:
        """Lattice state images and histograms of held-out inputs, when due (main process)."""
        lg = self.cfg.logging
        if self.writer is None:
            return
        if lg.image_every and step % lg.image_every == 0:
            T = student.lattice_config.steps
            trace = student.trace(held_x[:1].to(device), trace_steps=sorted({0, T // 2, T}))
            self.writer.add_image("lattice/state_slices", lattice_image(trace), step)
        if lg.histogram_every and step % lg.histogram_every == 0:
            trace = student.trace(held_x[:8].to(device), trace_steps=(student.lattice_config.steps,))
            self.writer.add_histogram("lattice/final_state", next(iter(trace.values())).float().cpu(), step)
            for n, head in student.heads.items():
                self.writer.add_histogram(f"heads/{n}/weight", head.net[-1].weight.detach().float().cpu(), step)

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
        if self.progress is not None:
            self.progress.close()
            self.progress = None
