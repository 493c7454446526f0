"""Helpers for end-to-end runs: a tiny teacher, a small pairs file, a tiny run config."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from distill.config import DataSection
from distill.data import load_pairs


def tiny_setup(root: Path, n_pairs: int = 64, max_steps: int = 12, **overrides) -> Path:
    """Write a tiny BERT teacher, a pairs file and a run config under ``root``; return the config path."""
    from tests.teachers.tiny import build_tiny

    teacher = root / "tiny-bert"
    if not teacher.exists():
        build_tiny("bert", teacher)
    ds = load_pairs(DataSection(path="builtin:chatterbot_english", max_pairs=n_pairs)).dataset
    with open(root / "pairs.jsonl", "w") as f:
        for q, a in zip(ds["question"], ds["answer"]):
            f.write(json.dumps({"question": q, "answer": a}) + "\n")
    cfg = {
        "run": {"name": "tiny", "output_dir": str(root / "runs"), "seed": 0},
        "data": {"path": str(root / "pairs.jsonl"), "holdout_fraction": 0.25, "validation_fraction": 0.2},
        "teachers": [
            {"name": "bert-mean", "model": str(teacher), "pooling": "mean", "max_length": 32, "batch_size": 16},
            {"name": "bert-cls", "model": str(teacher), "pooling": "cls", "layer": 1, "max_length": 32,
             "batch_size": 16, "weight": 0.5},
        ],
        "student": {"lattice": {"depth": 3, "height": 4, "width": 4, "channels": 8, "hidden": 16, "steps": 3}},
        "targets": {"store_dir": str(root / "store")},
        "loss": {"terms": {"cosine": 1.0, "mse": 0.5}},
        "curriculum": {"difficulty": "qa_distance", "pacing": "linear", "start_fraction": 0.5},
        "optim": {"lr": 0.003, "warmup_steps": 2},
        "train": {"max_steps": max_steps, "batch_size": 8, "eval_every": 6, "save_every": 4, "log_every": 1,
                  "keep_last": 5},
        "logging": {"image_every": 6, "histogram_every": 6, "progress": False},
    }
    for key, value in overrides.items():
        node = cfg
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    path = root / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def distill_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "distill", *args]


def accelerate_cmd(nproc: int, *args: str, port: int | None = None) -> list[str]:
    # --multi_gpu with the trainer's Accelerator(cpu=True) gives a gloo job on a CPU machine.
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no"]
    if nproc > 1:
        cmd += ["--multi_gpu", "--num_processes", str(nproc)]
    else:
        cmd += ["--cpu", "--num_processes", "1"]
    if port is not None:
        cmd += ["--main_process_port", str(port)]
    return cmd + ["-m", "distill", *args]


def run(cmd: list[str], cwd: Path, timeout: int = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=e)


def scalars(run_dir: Path, tag: str) -> dict[int, float]:
    """{step: value} of a scalar tag across every event file of a run (later files win)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict[int, float] = {}
    for f in sorted(Path(run_dir).glob("events.out.tfevents.*"), key=lambda p: p.stat().st_mtime):
        acc = EventAccumulator(str(f), size_guidance={"scalars": 0})
        acc.Reload()
        if tag in acc.Tags()["scalars"]:
            for ev in acc.Scalars(tag):
                out[ev.step] = ev.value
    return out


def free_port() -> int:
    """A rendezvous port this test may use (tests/ports.py: per xdist worker ranges)."""
    from tests.ports import free_port as _free_port

    return _free_port()
