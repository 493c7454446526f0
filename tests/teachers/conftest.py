from pathlib import Path

import pytest

from tests.teachers.tiny import KINDS, build_tiny


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny_teachers")
    return {kind: build_tiny(kind, root / kind) for kind in KINDS}


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models: thread start-up and, on a busy 2-core machine, contention cost more than
    the matmuls; one thread is faster and keeps timings stable. Restored after each test."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
