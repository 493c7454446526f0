"""Hub ids, exercised offline through a hand-made Hugging Face cache: the snapshot a revision
resolves to is the weights identity, and a moved branch makes new store entries."""

import shutil

import pytest
import torch

from teachers import (
    TargetStore,
    TeacherSourceError,
    TeacherSpec,
    build_targets,
    load_teacher,
    weights_identity,
)
from tests.teachers.tiny import TEXTS, build_tiny

COMMIT_A = "a" * 40
COMMIT_B = "b" * 40


@pytest.fixture
def hub_cache(tmp_path, monkeypatch, tiny_models):
    from huggingface_hub import constants

    repo = tmp_path / "hub" / "models--acme--tiny-llama"
    shutil.copytree(tiny_models["llama"], repo / "snapshots" / COMMIT_A)
    build_tiny("llama", repo / "snapshots" / COMMIT_B, seed=7)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT_A)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return repo


def test_hub_id_loads_the_resolved_snapshot(hub_cache, tiny_models):
    spec = TeacherSpec(name="hub", model="acme/tiny-llama", pooling="last")
    assert weights_identity(spec.model) == f"hub:acme/tiny-llama@{COMMIT_A}"
    t = load_teacher(spec)
    assert t.revision == COMMIT_A and t.source == "acme/tiny-llama"
    local = load_teacher(TeacherSpec(name="loc", model=str(tiny_models["llama"]), pooling="last"))
    torch.testing.assert_close(t.encode(TEXTS), local.encode(TEXTS), atol=1e-6, rtol=0)
    pinned = load_teacher(TeacherSpec(name="hub", model="acme/tiny-llama", pooling="last", revision=COMMIT_B))
    assert not torch.allclose(pinned.encode(TEXTS), t.encode(TEXTS))


def test_moved_branch_makes_a_new_space(hub_cache, tmp_path):
    spec = TeacherSpec(name="hub", model="acme/tiny-llama", pooling="last")
    store = TargetStore(tmp_path / "store")
    stats = {}
    a = build_targets([spec], {"question": TEXTS}, store, progress=False, stats=stats)
    assert stats["embedded_rows"] == {"hub": len(TEXTS)}
    assert store.spaces()[0].info()["inputs"]["weights"] == f"hub:acme/tiny-llama@{COMMIT_A}"
    build_targets([spec], {"question": TEXTS}, store, progress=False, stats=stats)
    assert stats["loaded"] == []
    (hub_cache / "refs" / "main").write_text(COMMIT_B)  # the branch moved on the hub
    b = build_targets([spec], {"question": TEXTS}, store, progress=False, stats=stats)
    assert stats["embedded_rows"] == {"hub": len(TEXTS)} and len(store.spaces()) == 2
    assert not torch.allclose(a[("hub", "question")].tensor(), b[("hub", "question")].tensor())


def test_unknown_revision_names_teacher_and_model(hub_cache, tmp_path):
    spec = TeacherSpec(name="hub", model="acme/tiny-llama", revision="v2")
    with pytest.raises(TeacherSourceError, match=r"teacher 'hub'.*'acme/tiny-llama' \(revision v2\)"):
        load_teacher(spec)
    with pytest.raises(TeacherSourceError, match=r"teacher 'hub'.*'acme/tiny-llama' \(revision v2\)"):
        build_targets([spec], {"question": TEXTS}, TargetStore(tmp_path / "s"), progress=False)
