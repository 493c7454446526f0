"""A finished run directory: its resolved config, validated, wherever the directory now lives."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from distill.config import Config, load_config, load_yaml
from distill.errors import RunDirError


def load_run(run_dir: str | Path) -> tuple[Config, Path]:
    """The resolved config of a trained run, validated; errors name the run directory."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunDirError(f"run directory {run_dir} does not exist")
    cfg_file = run_dir / "config.yaml"
    if not cfg_file.is_file():
        raise RunDirError(f"{run_dir} is not a run directory (no config.yaml)")
    if not any((run_dir / "student" / f).is_file() for f in ("student.json", "config.json")):
        raise RunDirError(f"{run_dir} has no exported student (training has not finished)")
    data = load_yaml(cfg_file)
    cfg = load_config(data=data)
    # The run directory may have moved: point the config at where it is now.
    cfg.run = replace(cfg.run, output_dir=str(run_dir.parent), name=run_dir.name)
    return cfg, run_dir
