"""Test-only fault injection: the training recipe built with faulty components.

Production code has no fault hooks. A test runs a real ``distill`` process (directly, under
``accelerate launch`` or under ``distill launch``) with the environment from :func:`fault_env`:
``tests/fault_site/sitecustomize.py`` then makes ``distill.train.build_recipe`` use the faulty
components below. In-process tests call :func:`faulty_build` and monkeypatch it in.

Spec: ``;``-separated ``key=value`` items --
    nan_steps=3,4,5       the loss of those loop steps (0-based) is NaN on every rank
    rank_exit=R:S         rank R dies (os._exit(13)) when it reaches loop step S
    ckpt_pause=S:SECONDS  the step-S checkpoint write stalls mid-write (model files in the
                          temporary directory, no manifest yet) so a test can kill it there
    dump_targets=DIR      each rank writes its first step's indices, inputs and targets to DIR
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
ENV = "DISTILL_TEST_FAULTS"
logger = logging.getLogger("tests.faults")


def fault_env(spec: str) -> dict:
    """Environment for a subprocess whose recipe gets the faulty components of ``spec``."""
    path = [str(ROOT / "tests" / "fault_site"), str(ROOT)]
    if os.environ.get("PYTHONPATH"):
        path.append(os.environ["PYTHONPATH"])
    return {ENV: spec, "PYTHONPATH": os.pathsep.join(path)}


def parse(spec: str) -> dict:
    out: dict = {}
    for item in filter(None, (s.strip() for s in spec.split(";"))):
        key, _, value = item.partition("=")
        if key == "nan_steps":
            out[key] = {int(x) for x in value.split(",") if x.strip()}
        elif key in ("rank_exit", "ckpt_pause"):
            a, b = value.split(":")
            out[key] = (int(a), float(b) if key == "ckpt_pause" else int(b))
        elif key == "dump_targets":
            out[key] = value
        else:
            raise ValueError(f"{ENV}: unknown fault {key!r}")
    return out


class FaultySource:
    """Wraps the recipe's target source: a rank that dies at a step; a dump of the first batch."""

    def __init__(self, r, inner, faults: dict):
        self.r, self.inner, self.faults = r, inner, faults

    def batch(self, idx: np.ndarray):
        r, step = self.r, self.r.state.step
        if self.faults.get("rank_exit") == (r.rank, step):
            logger.error("fault injection: rank %d exits at step %d", r.rank, step)
            os._exit(13)
        x, targets = self.inner.batch(idx)
        if "dump_targets" in self.faults and step == 0:
            from safetensors.torch import save_file

            d = Path(self.faults["dump_targets"])
            d.mkdir(parents=True, exist_ok=True)
            tensors = {"idx": torch.as_tensor(np.asarray(idx), dtype=torch.long), "x": x.contiguous()}
            tensors.update({f"target/{n}": t.contiguous() for n, t in targets.items()})
            save_file(tensors, str(d / f"rank{r.rank}.safetensors"))
        return x, targets


def faulty_components(faults: dict):
    from distill import train as t

    def loss(r):
        module = t.default_loss(r)
        if faults.get("nan_steps"):
            inner = module.forward

            def forward(*args, **kwargs):  # same module, same parameter names: checkpoints stay loadable
                out = inner(*args, **kwargs)
                if r.state.step in faults["nan_steps"]:
                    out.total = out.total * float("nan")
                return out

            module.forward = forward
        return module

    def checkpointer(r):
        c = t.default_checkpointer(r)
        if "ckpt_pause" in faults:
            step, secs = faults["ckpt_pause"]

            def before_publish(tmp):
                if r.state.step == step:
                    time.sleep(secs)

            c.before_publish = before_publish
        return c

    def source(r):
        return FaultySource(r, t.default_source(r), faults)

    return t.Components(loss=loss, checkpointer=checkpointer, source=source)


def faulty_build(spec: str):
    """A drop-in for ``distill.train.build_recipe`` that builds with the faults of ``spec``."""
    from distill import train as t

    original = t.build_recipe
    faults = parse(spec)

    def build_recipe(cfg, resume=False, components=None):
        return original(cfg, resume, components or faulty_components(faults))

    return build_recipe


def install(spec: str) -> None:
    from distill import train as t

    t.build_recipe = faulty_build(spec)
