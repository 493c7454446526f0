"""bench/multi_teacher.py: which variants run with which overrides, and which paired differences
are reported (a label typo would silently drop a comparison from the table)."""

from __future__ import annotations

from bench.multi_teacher import BOTH, comparisons, input_of, variant_list
from distill.config import PROJECT_ROOT, load_config


def test_one_input_keeps_the_old_labels_and_sets_every_target_norm():
    v = variant_list([BOTH, "minilm alone"], ["none", "center"])
    # "none" is set too: the demo config itself centres
    assert v == {BOTH: (BOTH, ["loss.target_norm=none"]), "minilm alone": ("minilm alone", ["loss.target_norm=none"]),
                 f"{BOTH}, target_norm=center": (BOTH, ["loss.target_norm=center"]),
                 "minilm alone, target_norm=center": ("minilm alone", ["loss.target_norm=center"])}


def test_inputs_multiply_the_variants_and_set_the_input_teachers():
    v = variant_list([BOTH], ["none", "center"], ["minilm", "minilm,smollm2"])
    assert set(v) == {f"{BOTH}, input=minilm", f"{BOTH}, target_norm=center, input=minilm",
                      f"{BOTH}, input=minilm+smollm2", f"{BOTH}, target_norm=center, input=minilm+smollm2"}
    w, extra = v[f"{BOTH}, target_norm=center, input=minilm+smollm2"]
    assert w == BOTH and "loss.target_norm=center" in extra and input_of(extra) == "minilm+smollm2"
    # the override is one the real config loader accepts and reads as the list
    cfg = load_config(PROJECT_ROOT / "configs" / "default.yaml", [e for e in extra if e.startswith("student.")])
    assert cfg.input_names() == ["minilm", "smollm2"]


def test_each_input_is_compared_with_the_first_on_the_spaces_its_weights_train():
    v = variant_list([BOTH, "minilm alone"], ["none"], ["minilm", "minilm,smollm2"])
    got = set(comparisons(v))
    both_two, both_one = f"{BOTH}, input=minilm+smollm2", f"{BOTH}, input=minilm"
    assert {(both_two, both_one, "minilm"), (both_two, both_one, "smollm2")} <= got
    # "minilm alone" never trains the SmolLM2 head: no comparison there
    assert ("minilm alone, input=minilm+smollm2", "minilm alone, input=minilm", "minilm") in got
    assert ("minilm alone, input=minilm+smollm2", "minilm alone, input=minilm", "smollm2") not in got
    # both vs the single teacher, within the same input only
    assert (both_two, "minilm alone, input=minilm+smollm2", "minilm") in got
    assert (both_two, "minilm alone, input=minilm", "minilm") not in got
    assert all(a in v and b in v for a, b, _ in got)
