"""Target store: reuse without forwards, a new entry for every input that changes embeddings,
atomic writes, corrupt entries detected and rebuilt."""

import dataclasses
import json
import logging

import numpy as np
import pytest
import torch

import teachers.store as store_mod
from teachers import TargetStore, TeacherSpec, build_targets, load_teacher
from tests.teachers.tiny import TEXTS

QUESTIONS = TEXTS
ANSWERS = [t[::-1] for t in TEXTS]


@pytest.fixture
def specs(tiny_models):
    return [
        TeacherSpec(name="enc", model=str(tiny_models["bert"]), query_prefix="q: ", answer_prefix="a: ", batch_size=4),
        TeacherSpec(name="dec", model=str(tiny_models["llama"]), pooling="last", padding_side="left", batch_size=5),
    ]


def build(specs, store, questions=QUESTIONS, answers=ANSWERS):
    stats = {}
    arrays = build_targets(specs, {"question": questions, "answer": answers}, store, progress=False, stats=stats)
    return arrays, stats


def test_first_run_computes_second_run_reuses_without_loading(specs, tmp_path, caplog, monkeypatch):
    store = TargetStore(tmp_path / "store")
    arrays, stats = build(specs, store)
    assert sorted(stats["computed"]) == sorted((s.name, f) for s in specs for f in ("question", "answer"))
    assert stats["forward_calls"] == {"enc": 2 * 4, "dec": 2 * 3}  # ceil(13/4), ceil(13/5) per field
    assert len(store.entries()) == 4

    # The arrays are what the teacher gives, with each field's prompt.
    enc = load_teacher(specs[0])
    np.testing.assert_allclose(arrays[("enc", "question")], enc.encode(QUESTIONS, "query").numpy(), atol=1e-6)
    np.testing.assert_allclose(arrays[("enc", "answer")], enc.encode(ANSWERS, "answer").numpy(), atol=1e-6)
    assert arrays[("dec", "answer")].shape == (len(ANSWERS), 32)

    def no_loading(*a, **k):
        raise AssertionError("a teacher was loaded although every entry is stored")

    monkeypatch.setattr(store_mod, "load_teacher", no_loading)
    with caplog.at_level(logging.INFO, logger="teachers"):
        again, stats2 = build(specs, store)
    assert stats2["forward_calls"] == {} and stats2["loaded"] == [] and stats2["computed"] == []
    assert len(stats2["cached"]) == 4
    assert "enc/question from entry" in caplog.text and "no teacher forward" in caplog.text
    for key, arr in arrays.items():
        assert isinstance(again[key], np.memmap) and again[key].dtype == np.float32
        np.testing.assert_array_equal(again[key], arr)
    assert len(store.entries()) == 4


@pytest.mark.parametrize("change", [
    {"query_prefix": "question: "},
    {"pooling": "max"},
    {"max_length": 6},
    {"layer": 1},
    {"normalize": False},
    "text",
])
def test_any_change_that_alters_embeddings_makes_a_new_entry(specs, tmp_path, change):
    store = TargetStore(tmp_path / "store")
    spec = specs[0]
    base, _ = build([spec], store)
    before = {m["fingerprint"] for m in store.entries()}
    questions = QUESTIONS
    if change == "text":
        questions = QUESTIONS[:-1] + [QUESTIONS[-1] + "!"]
    else:
        spec = dataclasses.replace(spec, **change)
    arrays, stats = build([spec], store, questions=questions)
    changed = {"question"} if change in ("text", {"query_prefix": "question: "}) else {"question", "answer"}
    assert {f for _, f in stats["computed"]} == changed
    assert {f for _, f in stats["cached"]} == {"question", "answer"} - changed
    assert stats["forward_calls"]["enc"] == 4 * len(changed)
    after = {m["fingerprint"] for m in store.entries()}
    assert before < after and len(after) == len(before) + len(changed)
    assert not np.allclose(arrays[("enc", "question")], base[("enc", "question")])


def test_things_that_do_not_change_embeddings_reuse_the_entry(specs, tmp_path):
    store = TargetStore(tmp_path / "store")
    build([specs[0]], store)
    renamed = dataclasses.replace(specs[0], name="other", weight=5.0, batch_size=2, shard="zero3")
    _, stats = build([renamed], store)
    assert stats["computed"] == [] and stats["loaded"] == []


def test_weights_change_makes_a_new_entry(tiny_models, tmp_path):
    import shutil

    from tests.teachers.tiny import build_tiny

    model_dir = shutil.copytree(tiny_models["bert"], tmp_path / "bert")
    spec = TeacherSpec(name="enc", model=str(model_dir))
    store = TargetStore(tmp_path / "store")
    build([spec], store)
    build_tiny("bert", model_dir, seed=1)  # same path, same names and sizes, new weights
    _, stats = build([spec], store)
    assert len(stats["computed"]) == 2


@pytest.mark.parametrize("damage", ["truncate", "flip", "manifest"])
def test_damaged_entry_is_detected_and_rebuilt(specs, tmp_path, damage, caplog):
    store = TargetStore(tmp_path / "store")
    first, _ = build([specs[0]], store)
    good = np.array(first[("enc", "answer")])
    entry = next(m for m in store.entries() if m["field"] == "answer")
    data = store.entry_dir(entry["fingerprint"]) / entry["file"]
    raw = data.read_bytes()
    if damage == "truncate":
        data.write_bytes(raw[: len(raw) - 100])
    elif damage == "flip":  # same size: only the sha256 can tell
        data.write_bytes(raw[:-4] + bytes(b ^ 0xFF for b in raw[-4:]))
    else:
        (data.parent / "manifest.json").write_text("{ not json")
    assert store.check(entry["fingerprint"])[0] is False
    assert store.load(entry["fingerprint"]) is None
    with caplog.at_level(logging.WARNING, logger="teachers"):
        arrays, stats = build([specs[0]], store)
    assert stats["computed"] == [("enc", "answer")] and stats["cached"] == [("enc", "question")]
    assert "corrupt" in caplog.text
    np.testing.assert_allclose(arrays[("enc", "answer")], good, atol=1e-6)
    assert store.check(entry["fingerprint"]) == (True, "ok")


def test_manifest_and_atomic_layout(specs, tmp_path):
    store = TargetStore(tmp_path / "store")
    build([specs[1]], store)
    entries = store.entries()
    assert len(entries) == 2
    for m in entries:
        d = store.entry_dir(m["fingerprint"])
        assert sorted(p.name for p in d.iterdir()) == ["embeddings.npy", "manifest.json"]
        assert m["shape"] == [len(TEXTS), 32] and m["dtype"] == "float32"
        assert m["size"] == (d / "embeddings.npy").stat().st_size
        inputs = m["inputs"]
        assert inputs["spec"]["pooling"] == "last" and inputs["weights"].startswith("sha256:")
        assert inputs["role"] == ("query" if m["field"] == "question" else "answer")
        assert inputs["pooling_code_version"] >= 1 and inputs["n_texts"] == len(TEXTS)
        assert m["created"] and json.loads((d / "manifest.json").read_text()) == m
    # Nothing temporary is left behind.
    assert [p.name for p in (tmp_path / "store").iterdir() if p.name.startswith(".")] == []


def test_failed_write_leaves_no_entry(tmp_path, monkeypatch):
    store = TargetStore(tmp_path / "store")

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(store_mod.os, "rename", boom)
    with pytest.raises(OSError, match="disk full"):
        store.put("f" * 64, torch.ones(3, 2), {"x": 1})
    monkeypatch.undo()
    assert store.entries() == [] and list((tmp_path / "store").iterdir()) == []
    assert store.load("f" * 64) is None
