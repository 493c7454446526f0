"""Target store (format 2): a text is embedded once per teacher and prompt, in checksummed shards
that dedupe across runs, resume after a failure, survive corruption and are garbage-collected."""

import dataclasses
import errno
import json
import logging
import os
import time

import numpy as np
import pytest
import torch

import teachers.store as store_mod
from fileio import temp_path
from teachers import TargetStore, TeacherSpec, build_targets, load_teacher
from teachers.store import StoreError, describe, gc_apply, gc_plan, request_spaces, verify
from tests.teachers.tiny import TEXTS

QUESTIONS = TEXTS
ANSWERS = [t[::-1] for t in TEXTS]
CORPUS = [f"sentence number {i} about {w}" for i, w in enumerate(TEXTS * 4)]  # 52 distinct texts


@pytest.fixture
def specs(tiny_models):
    return [
        TeacherSpec(name="enc", model=str(tiny_models["bert"]), query_prefix="q: ", answer_prefix="a: ", batch_size=4),
        TeacherSpec(name="dec", model=str(tiny_models["llama"]), pooling="last", padding_side="left", batch_size=5),
    ]


@pytest.fixture
def enc(specs):
    return specs[0]


def build(specs, store, questions=QUESTIONS, answers=ANSWERS, **kw):
    stats = {}
    views = build_targets(specs, {"question": questions, "answer": answers}, store, progress=False, stats=stats, **kw)
    return views, stats


def embed_texts(spec, store, texts, **kw):
    stats = {}
    views = build_targets([spec], {"text": texts}, store, progress=False, stats=stats, **kw)
    return views[(spec.name, "text")], stats


def shard_dirs(store):
    """Published shards (a writer's in-progress ``.tmp-*`` directory beside them is not one)."""
    return sorted(d for sp in store.spaces() for d in sp.shards_dir.iterdir() if not d.name.startswith("."))


def test_first_run_embeds_second_run_reuses_without_loading(specs, tmp_path, monkeypatch):
    store = TargetStore(tmp_path / "store")
    views, stats = build(specs, store)
    assert stats["embedded_rows"] == {"enc": 2 * 13, "dec": 2 * 13} and stats["loaded"] == ["enc", "dec"]
    assert (tmp_path / "store" / "FORMAT").read_text().strip() == "2"
    assert len(store.spaces()) == 4  # 2 teachers x 2 prompt roles

    # The rows are what the teacher gives, with each field's prompt, in request order.
    t = load_teacher(specs[0])
    np.testing.assert_allclose(np.asarray(views[("enc", "question")]), t.encode(QUESTIONS, "query").numpy(), atol=1e-6)
    np.testing.assert_allclose(views[("enc", "answer")].rows([3, 0]), t.encode([ANSWERS[3], ANSWERS[0]], "answer"),
                               atol=1e-6)
    assert views[("dec", "answer")].shape == (len(ANSWERS), 32)

    def no_loading(*a, **k):
        raise AssertionError("a teacher was loaded although every text is stored")

    monkeypatch.setattr(store_mod, "load_teacher", no_loading)
    again, stats2 = build(specs, store)
    assert stats2["embedded_rows"] == {} and stats2["loaded"] == [] and stats2["cached_rows"] == {"enc": 26, "dec": 26}
    for key, v in views.items():
        assert again[key].dtype == np.float32
        np.testing.assert_array_equal(np.asarray(again[key]), np.asarray(v))


def test_adding_texts_embeds_only_new_ones_and_reordering_or_removing_embeds_nothing(enc, tmp_path, monkeypatch):
    store = TargetStore(tmp_path / "store")
    first, st = embed_texts(enc, store, CORPUS[:40])
    assert st["embedded_rows"] == {"enc": 40}
    calls = []
    real = load_teacher

    def counting(*a, **k):
        t = real(*a, **k)
        orig = t._encode_local

        def enc_local(texts, **kw):
            calls.append(list(texts))
            return orig(texts, **kw)

        t._encode_local = enc_local
        return t

    monkeypatch.setattr(store_mod, "load_teacher", counting)
    grown, st = embed_texts(enc, store, CORPUS[::-1])  # all 52, reversed: 12 are new
    assert st["embedded_rows"] == {"enc": 12} and st["cached_rows"] == {"enc": 40}
    assert sorted(t for c in calls for t in c) == sorted("a: " + x for x in CORPUS[40:])
    np.testing.assert_array_equal(grown.rows(np.arange(12, 52)), np.asarray(first)[::-1])
    calls.clear()
    # Another corpus that shares texts, in another order, with duplicates, through a new store object.
    sub = [CORPUS[5], CORPUS[2], CORPUS[5], CORPUS[50]]
    view, st = embed_texts(enc, TargetStore(tmp_path / "store"), sub)
    assert st["embedded_rows"] == {} and not calls
    np.testing.assert_array_equal(view.rows([0, 2]), np.asarray(first)[[5, 5]])


def test_a_name_change_shares_rows_and_an_embedding_change_makes_a_new_space(enc, tmp_path):
    store = TargetStore(tmp_path / "store")
    embed_texts(enc, store, CORPUS[:8])
    _, st = embed_texts(dataclasses.replace(enc, name="renamed", batch_size=7), store, CORPUS[:8])
    assert st["embedded_rows"] == {}
    _, st = embed_texts(dataclasses.replace(enc, query_prefix="other: "), store, CORPUS[:8])  # texts use the answer prompt
    assert st["embedded_rows"] == {}
    for change in ({"answer_prefix": "doc: "}, {"pooling": "max"}, {"max_length": 4}, {"normalize": False}):
        _, st = embed_texts(dataclasses.replace(enc, **change), store, CORPUS[:8])
        assert st["embedded_rows"] == {"enc": 8}, change
    assert len(store.spaces()) == 5


def test_shards_are_cut_in_request_order_and_a_failure_loses_at_most_the_unit_in_flight(enc, tmp_path, monkeypatch):
    ref, _ = embed_texts(enc, TargetStore(tmp_path / "ref", shard_rows=10), CORPUS)
    store = TargetStore(tmp_path / "store", shard_rows=10)
    real = store_mod.Space.write_shard
    written = []

    def dies_on_third(self, name, keys, emb):
        if len(written) == 2:
            raise KeyboardInterrupt  # the process dies while the third unit is in flight
        written.append(name)
        return real(self, name, keys, emb)

    monkeypatch.setattr(store_mod.Space, "write_shard", dies_on_third)
    with pytest.raises(KeyboardInterrupt):
        embed_texts(enc, store, CORPUS)
    monkeypatch.setattr(store_mod.Space, "write_shard", real)
    assert len(shard_dirs(store)) == 2
    view, st = embed_texts(enc, store, CORPUS)
    assert st["embedded_rows"] == {"enc": 32}  # 52 - the two finished units of 10
    assert [d.name for d in shard_dirs(store)] == [d.name for d in shard_dirs(TargetStore(tmp_path / "ref"))]
    np.testing.assert_array_equal(np.asarray(view), np.asarray(ref))  # bit for bit
    assert not list((tmp_path / "store").rglob(".tmp-*"))
    assert not list((tmp_path / "store").rglob("*.lock"))


def test_float16_storage_halves_the_bytes_and_keeps_the_rows_close(enc, tmp_path):
    f32, _ = embed_texts(enc, TargetStore(tmp_path / "s"), CORPUS)
    f16, st = embed_texts(enc, TargetStore(tmp_path / "s"), CORPUS, dtype="float16")
    assert st["embedded_rows"] == {"enc": 52} and f16.dtype == np.float32 and f16.store_dtype == np.float16
    a, b = np.asarray(f32), np.asarray(f16)
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.min() > 0.9999 and not np.array_equal(a, b)
    sizes = {s["dtype"]: s["bytes"] for s in describe(TargetStore(tmp_path / "s"))["spaces"]}
    assert sizes["float16"] < 0.75 * sizes["float32"]
    with pytest.raises(ValueError, match="targets.dtype"):
        embed_texts(enc, TargetStore(tmp_path / "s"), CORPUS, dtype="int8")


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete_keys", "garbage_json"])
def test_a_corrupt_shard_is_found_and_only_it_is_re_embedded(enc, tmp_path, damage, caplog):
    store = TargetStore(tmp_path / "store", shard_rows=20)
    ref, _ = embed_texts(enc, store, CORPUS)
    target = shard_dirs(store)[1]
    emb = target / "emb.npy"
    if damage == "flip":
        raw = bytearray(emb.read_bytes())
        raw[-5] ^= 0xFF
        emb.write_bytes(bytes(raw))
    elif damage == "truncate":
        emb.write_bytes(emb.read_bytes()[:-64])
    elif damage == "delete_keys":
        (target / "keys.npy").unlink()
    else:
        (target / "shard.json").write_text("{not json")
    rows = 20
    assert verify(store) and verify(store)[0][1] == target.name
    with caplog.at_level(logging.WARNING, logger="teachers"):
        view, st = embed_texts(enc, TargetStore(tmp_path / "store", shard_rows=20), CORPUS)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and target.name in warnings[0].getMessage() and "corrupt" in warnings[0].getMessage()
    assert st["embedded_rows"] == {"enc": rows} and st["lost_rows"] in (rows, 0)
    np.testing.assert_allclose(np.asarray(view), np.asarray(ref), atol=1e-6)
    assert verify(store) == []


def test_unchanged_shards_are_not_rehashed_on_every_open(enc, tmp_path, monkeypatch):
    store = TargetStore(tmp_path / "store", shard_rows=20)
    embed_texts(enc, store, CORPUS)
    embed_texts(enc, store, CORPUS)  # first open after writing: verifies and records
    hashed = []
    real = store_mod.sha256_file
    monkeypatch.setattr(store_mod, "sha256_file", lambda p, *a: hashed.append(p) or real(p, *a))
    embed_texts(enc, store, CORPUS)
    assert hashed == []


def test_disk_full_mid_shard_is_one_error_and_the_rerun_continues(enc, tmp_path, monkeypatch):
    store = TargetStore(tmp_path / "store", shard_rows=20)
    real = store_mod._save_npy
    n = []

    def full(path, arr):
        n.append(path)
        if len(n) == 4:  # the second shard's keys are written, its rows hit a full disk
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, arr)

    monkeypatch.setattr(store_mod, "_save_npy", full)
    with pytest.raises(StoreError, match="No space left on device.*rerun continues"):
        embed_texts(enc, store, CORPUS)
    assert len(shard_dirs(store)) == 1  # the half-written shard was never published
    assert not list((tmp_path / "store").rglob(".tmp-*"))
    monkeypatch.setattr(store_mod, "_save_npy", real)
    _, st = embed_texts(enc, store, CORPUS)
    assert st["embedded_rows"] == {"enc": 32}


def test_stale_temporaries_go_and_a_live_writers_stay(enc, tmp_path):
    store = TargetStore(tmp_path / "store", shard_rows=20)
    embed_texts(enc, store, CORPUS[:5])
    shards = store.spaces()[0].shards_dir
    dead = shards / ".tmp-u-dead~{}~999999~abcd1234".format(__import__("fileio").hostname())
    dead.mkdir()
    (dead / "emb.npy").write_bytes(b"x" * 1000)
    live = temp_path(shards / "u-live")  # names this (live) process
    live.mkdir()
    embed_texts(enc, store, CORPUS[:5])
    assert not dead.exists() and live.exists()


def test_ls_gc_and_legacy_entries(enc, specs, tmp_path):
    root = tmp_path / "store"
    store = TargetStore(root)
    embed_texts(enc, store, CORPUS[:30])
    embed_texts(enc, TargetStore(root, shard_rows=10), CORPUS[30:])  # 22 texts -> 3 more shards
    legacy = root / ("f" * 64)
    legacy.mkdir()
    (legacy / "manifest.json").write_text(json.dumps({"fingerprint": "f" * 64}))
    (legacy / "embeddings.npy").write_bytes(b"0" * 4096)
    d = describe(store)
    assert [(s["teacher"], s["rows"], s["shards"]) for s in d["spaces"]] == [("enc", 52, 4)]
    assert d["spaces"][0]["last_used"] and d["legacy"][0]["entry"] == "f" * 64

    plan = gc_plan(store)
    assert [p for p, _ in plan] == [legacy]  # without --keep only leftovers and format-1 entries
    keep = request_spaces([enc], {"text": CORPUS[30:40]})
    plan = gc_plan(store, keep)
    gone = {p.name for p, _ in plan}
    assert legacy.name in gone and len(gone) == 4  # shards of texts 0-29, 40-49 and 50-51 go; 30-39 stays
    freed = gc_apply(plan)
    assert freed > 4096 and not legacy.exists()
    view, st = embed_texts(enc, store, CORPUS[30:40])
    assert st["embedded_rows"] == {}
    _, st = embed_texts(enc, store, CORPUS[:3])
    assert st["embedded_rows"] == {"enc": 3}


def test_a_store_of_another_format_is_refused(tmp_path):
    (tmp_path / "FORMAT").write_text("3\n")
    with pytest.raises(StoreError, match="format '3'"):
        TargetStore(tmp_path)


def test_row_view_reads_rows_without_loading_the_store(enc, tmp_path):
    view, _ = embed_texts(enc, TargetStore(tmp_path / "s", shard_rows=7), CORPUS)
    full = np.asarray(view)
    idx = np.array([51, 0, 8, 8, 30])
    np.testing.assert_array_equal(view.rows(idx), full[idx])
    sub = view.select(idx)
    assert sub.shape == (5, full.shape[1])
    np.testing.assert_array_equal(sub[1:3], full[[0, 8]])
    np.testing.assert_array_equal(sub.tensor().numpy(), full[idx])
    assert torch.equal(torch.as_tensor(np.asarray(view.select([2]))), torch.from_numpy(full[[2]]))
    assert os.path.getsize(next(iter(view.shards_dir.iterdir())) / "emb.npy") < full.nbytes


def test_a_unit_another_job_holds_is_waited_for_and_never_embedded_twice(enc, tmp_path, monkeypatch, caplog):
    """Two jobs filling one store: a unit whose claim another job holds is left to it; this job embeds
    the rest, waits for that unit's shard, and says how many rows the other job gave it."""
    import threading

    from fileio import Lock

    monkeypatch.setattr(store_mod, "CLAIM_POLL_S", 0.05)
    ref, _ = embed_texts(enc, TargetStore(tmp_path / "ref", shard_rows=8), CORPUS)
    store = TargetStore(tmp_path / "shared", shard_rows=8)
    embed_texts(enc, store, ["a text of neither job"])  # the space exists before the fills
    (sp,) = store.spaces()
    keys = store_mod.text_keys(CORPUS)
    unit = store_mod._unit_name(keys[:8])  # the first of 7 units: the other job is embedding it
    other = Lock(sp.dir / "claims" / f"{unit}.lock", what="the other job")
    other.acquire()
    out = {}

    def fill():
        with caplog.at_level(logging.INFO, logger="teachers.store"):
            out["view"], out["stats"] = embed_texts(enc, store, CORPUS)

    t = threading.Thread(target=fill)
    t.start()
    try:
        deadline = time.monotonic() + 120
        while len(sp.shard_names()) < 1 + 6 and time.monotonic() < deadline:  # the setup text's shard + 6 units
            time.sleep(0.05)
        assert len(sp.shard_names()) == 7 and t.is_alive()  # this job's units are done; it waits for ours
        time.sleep(0.3)
        assert t.is_alive() and unit not in sp.shard_names()
        sp.write_shard(unit, keys[:8], np.ascontiguousarray(np.asarray(ref)[:8]))
    finally:
        other.release()
        t.join(120)
    assert not t.is_alive()
    assert out["stats"]["embedded_rows"] == {"enc": 52 - 8}
    assert out["stats"]["other_job_rows"] == {"enc": 8}
    np.testing.assert_array_equal(np.asarray(out["view"]), np.asarray(ref))
    assert "44 embedded by this process, 8 by another job sharing the store" in caplog.text


FILL_SCRIPT = """
import json, sys, time
import teachers.store as store_mod
from teachers import TargetStore, TeacherSpec, build_targets
spec = TeacherSpec(**json.loads(sys.argv[1]))
texts = json.loads(sys.argv[3])
if sys.argv[4] == "slow":  # a pause after every shard, so the test can kill the fill between shards
    write = store_mod.Space.write_shard
    def slow_write(self, *a, **kw):
        out = write(self, *a, **kw)
        time.sleep(0.3)
        return out
    store_mod.Space.write_shard = slow_write
stats = {}
build_targets([spec], {"text": texts}, TargetStore(sys.argv[2], shard_rows=8), progress=False, stats=stats)
print(json.dumps(stats["embedded_rows"]))
"""


@pytest.mark.slow
def test_a_sigkilled_fill_resumes_with_only_the_missing_rows_and_bit_identical(enc, tmp_path):
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=str(root), OMP_NUM_THREADS="1")
    texts = CORPUS  # 52 texts: 7 shards of 8
    args = [json.dumps(enc.to_dict()), None, json.dumps(texts)]

    def fill(store, mode, **kw):
        a = list(args)
        a[1] = str(store)
        return subprocess.Popen([sys.executable, "-c", FILL_SCRIPT, *a, mode], env=env, cwd=tmp_path,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)

    store = TargetStore(tmp_path / "killed")
    p = fill(tmp_path / "killed", "slow")
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and p.poll() is None and len(shard_dirs(store) if store.root.is_dir() else []) < 3:
        time.sleep(0.05)
    assert p.poll() is None, "the fill finished before it could be killed"
    p.send_signal(signal.SIGKILL)
    p.wait()
    done = len(shard_dirs(store))
    assert 3 <= done < 7
    again = fill(tmp_path / "killed", "fast")
    out, err = again.communicate(timeout=240)
    assert again.returncode == 0, err[-3000:]
    assert json.loads(out.strip().splitlines()[-1])["enc"] == len(texts) - 8 * done  # only the missing rows
    a, _ = embed_texts(enc, TargetStore(tmp_path / "killed", shard_rows=8), texts)
    b, _ = embed_texts(enc, TargetStore(tmp_path / "ref", shard_rows=8), texts)
    assert np.array_equal(np.asarray(a), np.asarray(b))  # bit for bit
    assert not [p for p in (tmp_path / "killed").rglob(".tmp-*")]  # the killed writer's temporary is gone
