"""A folder named like one of the project's packages in the working directory (a ``teachers/``
preset folder copied beside a config, or a package of the user's own) must not shadow the
installed package: ``python -m distill`` and the ``accelerate launch ... -m distill`` workers that
``distill launch`` starts run from that directory.

The project is installed editable (``pip install -e``), whose import hook comes after the
working directory on ``sys.path``: a plain ``teachers/`` folder there becomes a namespace package
and wins. The subprocesses here get exactly that set-up for this checkout (a ``sitecustomize``
import hook in the editable hook's place, no ``PYTHONPATH`` to the checkout), so the test means
the same under ``make test`` and under ``PYTHONPATH=$PWD``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.launch.conftest import ROOT, free_port, launch_cmd, tiny_config

EDITABLE_HOOK = f'''
import sys
from importlib.machinery import PathFinder

ROOT = {str(ROOT)!r}
PACKAGES = ("distill", "teachers", "lattice", "launch", "fileio")


class EditableFinder:
    """What setuptools' editable install adds: top-level packages mapped to the checkout, looked
    up after sys.path (so a namespace folder in the working directory wins over it)."""

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        return PathFinder.find_spec(name, [ROOT]) if name in PACKAGES else None


at = next((i for i, f in enumerate(sys.meta_path) if "editable" in repr(f).lower()), len(sys.meta_path))
sys.meta_path.insert(at, EditableFinder)
'''


@pytest.fixture
def shadowed(tmp_path) -> tuple[Path, dict]:
    """A working directory holding ``teachers/`` (a preset folder), and the editable set-up's env."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(EDITABLE_HOOK)
    work = tmp_path / "work"
    (work / "teachers").mkdir(parents=True)
    (work / "teachers" / "bge.yaml").write_text("name: bge\nmodel: BAAI/bge-small-en-v1.5\n")
    env = dict(os.environ, PYTHONPATH=str(hook), OMP_NUM_THREADS="1")
    return work, env


def test_the_hook_reproduces_the_shadowing(shadowed):
    """Without ``-m distill``'s guard, the preset folder is what ``import teachers`` finds."""
    work, env = shadowed
    r = subprocess.run([sys.executable, "-c", "import teachers; print(teachers.__path__)"], cwd=work, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and str(work / "teachers") in r.stdout, r.stdout + r.stderr


@pytest.mark.parametrize("package", [False, True], ids=["preset-folder", "package"])
def test_python_m_distill_ignores_a_teachers_folder_in_the_working_directory(shadowed, tiny_teacher, store_dir,
                                                                             package):
    work, env = shadowed
    if package:  # a user's own package of that name shadows under any set-up
        (work / "teachers" / "__init__.py").write_text("")
    cfg = tiny_config(work / "run.yaml", tiny_teacher, store_dir)
    r = subprocess.run([sys.executable, "-m", "distill", "embed", str(cfg)], cwd=work, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "ImportError" not in r.stderr
    assert "tb: 48 questions and answers, dim 32" in r.stdout


@pytest.mark.slow
def test_distill_launch_workers_ignore_a_teachers_folder_in_the_working_directory(shadowed, tiny_teacher,
                                                                                   store_dir):
    work, env = shadowed
    cfg = tiny_config(work / "run.yaml", tiny_teacher, store_dir)
    r = subprocess.run(launch_cmd(str(cfg), "--cpu", "--procs-per-node", "1", "--no-embed", "--main-port",
                                  str(free_port())),
                       cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert "-m distill train" in r.stdout
    assert (work / "runs" / "tiny" / "student" / "student.json").is_file()
