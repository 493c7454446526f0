"""Tiny random BERT / GPT-2 / Llama / Qwen2 teachers, loaded by path from YAML specs, against a
hand-computed reference: every text run alone (no padding at all), its hidden states pooled by
hand."""

import math

import pytest
import torch
import yaml

from teachers import TeacherSourceError, TeacherSpec, load_teacher
from tests.teachers.tiny import DECODERS, KINDS, TEXTS


def spec_from_yaml(tmp_path, name, **fields):
    """Write the spec as a user would, then load it the way the config loader does."""
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(fields))
    return TeacherSpec(name=name, **yaml.safe_load(path.read_text()))


def reference(teacher, texts, prefix=""):
    """Each text alone through the model; pooling written out by hand. -> (N, dim)."""
    spec, tok, model = teacher.spec, teacher.tokenizer, teacher.model
    rows = []
    for text in texts:
        ids = tok(prefix + text, truncation=True, max_length=spec.max_length, return_tensors="pt")
        with torch.no_grad():
            out = model(input_ids=ids["input_ids"], output_hidden_states=True)
        h = out.hidden_states[spec.layer][0] if spec.layer != -1 else out.last_hidden_state[0]  # (L, H)
        v = {"mean": h.mean(0), "cls": h[0], "last": h[-1], "max": h.max(0).values}[spec.pooling]
        rows.append(v / v.norm() if spec.normalize else v)
    return torch.stack(rows)


def pairs(kinds):
    for kind in kinds:
        sides = ("left", "right") if kind in DECODERS else ("right",)
        for pooling in ("mean", "cls", "last", "max"):
            for side in sides:
                yield kind, pooling, side


@pytest.mark.parametrize("kind,pooling,side", list(pairs(KINDS)))
def test_pooling_matches_unpadded_reference(tiny_models, tmp_path, kind, pooling, side):
    spec = spec_from_yaml(tmp_path, kind, model=str(tiny_models[kind]), pooling=pooling, padding_side=side,
                          batch_size=4, max_length=64)
    t = load_teacher(spec)
    emb = t.encode(TEXTS, role="query")
    assert emb.shape == (len(TEXTS), t.dim) and emb.dtype == torch.float32
    assert t.tokenizer.padding_side == side
    ref = reference(t, TEXTS)
    torch.testing.assert_close(emb, ref, atol=1e-5, rtol=0)
    assert t.forward_calls == math.ceil(len(TEXTS) / 4)


@pytest.mark.parametrize("kind", ["bert", "llama"])
def test_hidden_layer_prefix_truncation_and_no_normalisation(tiny_models, kind):
    spec = TeacherSpec(name="t", model=str(tiny_models[kind]), pooling="mean", layer=1, max_length=8,
                       normalize=False, query_prefix="query: ", answer_prefix="passage: ", batch_size=5)
    t = load_teacher(spec)
    q, a = t.encode(TEXTS, "query"), t.encode(TEXTS, "answer")
    torch.testing.assert_close(q, reference(t, TEXTS, "query: "), atol=1e-5, rtol=0)
    torch.testing.assert_close(a, reference(t, TEXTS, "passage: "), atol=1e-5, rtol=0)
    assert not torch.allclose(q, a)
    assert q.norm(dim=1).std() > 1e-3  # not normalised
    # Truncation really happened for the long texts, so max_length is honoured.
    assert max(len(t.tokenizer(x)["input_ids"]) for x in TEXTS) > 8


def test_input_order_survives_length_sorting(tiny_models):
    t = load_teacher(TeacherSpec(name="g", model=str(tiny_models["gpt2"]), pooling="last", batch_size=3))
    full = t.encode(TEXTS)
    rev = t.encode(TEXTS[::-1])
    torch.testing.assert_close(rev, full.flip(0), atol=1e-5, rtol=0)
    single = torch.cat([t.encode([x]) for x in TEXTS])
    torch.testing.assert_close(full, single, atol=1e-5, rtol=0)
    assert t.encode([]).shape == (0, t.dim)


@pytest.mark.parametrize("kind", DECODERS)
def test_decoder_gets_eos_as_pad_without_resizing(tiny_models, kind):
    t = load_teacher(TeacherSpec(name="d", model=str(tiny_models[kind]), pooling="last"))
    assert t.tokenizer.pad_token == t.tokenizer.eos_token == "</s>"
    # The embedding matrix keeps the checkpoint's vocabulary.
    assert t.model.get_input_embeddings().weight.shape[0] == t.model.config.vocab_size
    # A text that itself ends in the eos/pad token keeps that token (the mask decides, not the id).
    text = "What is AI?" + t.tokenizer.eos_token
    emb = t.encode([text, "a much longer text so that the first one gets padded"])
    torch.testing.assert_close(emb[:1], reference(t, [text]), atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", KINDS)
def test_teacher_is_frozen(tiny_models, kind):
    t = load_teacher(TeacherSpec(name="f", model=str(tiny_models[kind])))
    assert not t.model.training
    assert all(not p.requires_grad for p in t.model.parameters())
    assert not isinstance(t, torch.nn.Module)  # cannot be handed to an optimizer by accident
    assert not t.encode(TEXTS[:2]).requires_grad
    assert t.shard == "eager"


def test_bad_layer_and_max_length_are_named(tiny_models):
    with pytest.raises(ValueError, match=r"^layer: 3 is out of range .* 0\.\.2"):
        load_teacher(TeacherSpec(name="b", model=str(tiny_models["bert"]), layer=3))
    with pytest.raises(ValueError, match=r"^max_length: 1024 exceeds .*\(512\)"):
        load_teacher(TeacherSpec(name="b", model=str(tiny_models["gpt2"]), max_length=1024))
    t = load_teacher(TeacherSpec(name="b", model=str(tiny_models["bert"])))
    with pytest.raises(ValueError, match="^role: 'question' is not one of query, answer"):
        t.encode(["x"], role="question")


def test_hub_id_fails_with_teacher_and_model_named():
    spec = TeacherSpec(name="bge", model="BAAI/bge-small-en-v1.5-not-cached")
    with pytest.raises(TeacherSourceError, match=r"teacher 'bge'.*BAAI/bge-small-en-v1.5-not-cached"):
        load_teacher(spec)


def test_trust_remote_code_is_off_unless_set(tiny_models, monkeypatch):
    import transformers

    seen = []
    real = transformers.AutoModel.from_pretrained

    def spy(*args, **kwargs):
        seen.append(kwargs.get("trust_remote_code"))
        return real(*args, **kwargs)

    monkeypatch.setattr(transformers.AutoModel, "from_pretrained", spy)
    load_teacher(TeacherSpec(name="a", model=str(tiny_models["bert"])))
    load_teacher(TeacherSpec(name="b", model=str(tiny_models["bert"]), trust_remote_code=True))
    assert seen == [False, True]


def test_pool_of_teachers_with_their_own_tokenizers_and_dims(tiny_models):
    from teachers import TeacherPool

    specs = [TeacherSpec(name="enc", model=str(tiny_models["bert"])),
             TeacherSpec(name="dec", model=str(tiny_models["qwen2"]), pooling="last", answer_prefix="A: ")]
    pool = TeacherPool(specs)
    assert pool.dims == {"enc": 32, "dec": 32} and len(pool) == 2
    assert pool["enc"].tokenizer.vocab_size != pool["dec"].tokenizer.vocab_size
    out = pool.encode(TEXTS[:5], role="answer")
    for spec in specs:
        torch.testing.assert_close(out[spec.name], load_teacher(spec).encode(TEXTS[:5], "answer"), atol=1e-6, rtol=0)
    pool.close()
    with pytest.raises(ValueError, match="^teachers: names must be unique, repeated: enc"):
        TeacherPool([specs[0], specs[0]])


def test_auto_sharding_measures_the_model_without_loading_it(tiny_models):
    from transformers import AutoConfig

    from teachers.teacher import _param_bytes

    for dtype, width in (("float32", 4), ("bfloat16", 2)):
        spec = TeacherSpec(name="s", model=str(tiny_models["llama"]), dtype=dtype)
        real = load_teacher(spec).parameter_count()
        assert _param_bytes(spec, AutoConfig.from_pretrained(spec.model)) == real * width
