import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"

# Tests never touch a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def pytest_configure(config):
    """Under pytest-xdist, each worker and every process a test starts (they inherit the
    environment) gets its share of the cores: on the 2-core CI machine with 2 workers, one
    intra-op thread. More threads than cores only contend (OpenMP threads spin at their barriers).
    Set in the controller before it starts the workers; thread counts the user exported win."""
    n = getattr(config.option, "numprocesses", None)
    if "PYTEST_XDIST_WORKER" in os.environ or not isinstance(n, int) or n < 1:
        return
    if any(var in os.environ for var in THREAD_VARS):
        return
    share = str(max(1, (os.cpu_count() or 1) // n))
    for var in THREAD_VARS:
        os.environ[var] = share


def run_cli(args, cwd, timeout=600, env=None):
    """Run the real `distill` console entry point in a subprocess."""
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "distill", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=e)


def snapshot(root: Path) -> dict:
    """{relative path: (size, mtime_ns)} of every file below root: to prove nothing was written."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path
