"""docs/reference/config.md and cli.md are generated from the code and must match it."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional, Union, get_type_hints

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("gen_reference", ROOT / "scripts" / "gen_reference.py")
gen = importlib.util.module_from_spec(_spec)
sys.modules["gen_reference"] = gen
_spec.loader.exec_module(gen)


def test_committed_config_reference_is_current():
    problem = gen.check(gen.PAGE)
    assert problem is None, problem


def test_committed_cli_reference_is_current():
    problem = gen.check(gen.CLI_PAGE)
    assert problem is None, problem


def test_cli_page_lists_every_subcommand_and_option():
    import argparse

    from distill.cli import build_parser

    page = gen.generate_cli()
    parser = build_parser(launch_options=True)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, p in sub.choices.items():
        assert f"## `distill {name}`" in page
        for a in p._actions:
            for opt in a.option_strings:
                if opt not in ("-h", "--help"):
                    assert opt in page, f"distill {name} {opt}"


def test_a_stale_reference_fails_and_says_how_to_regenerate(tmp_path):
    page = tmp_path / "config.md"
    text = gen.generate()
    # One default changed by hand, as someone editing the page instead of the schema would.
    page.write_text(text.replace("| `max_steps` | `int` | `1000` |", "| `max_steps` | `int` | `500` |"))
    assert page.read_text() != text
    problem = gen.check(page, want=text)
    assert problem is not None and gen.COMMAND in problem and "`500`" in problem
    page.write_text(text)
    assert gen.check(page, want=text) is None


def _schema_keys(cls, path=""):
    """Every key path of the schema, walked here independently of the generator."""
    hints = get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp, key = hints[f.name], f"{path}.{f.name}" if path else f.name
        if dataclasses.is_dataclass(tp):
            yield from _schema_keys(tp, key)
        elif getattr(tp, "__origin__", None) is list and dataclasses.is_dataclass(tp.__args__[0]):
            yield from _schema_keys(tp.__args__[0], key + "[]")
        else:
            yield key


def test_every_schema_key_has_a_row_in_its_section():
    from distill.config import Config

    page = gen.generate()
    sections = {}
    current = None
    for line in page.splitlines():
        if line.startswith("## `"):
            current = line.split("`")[1]
            sections[current] = set()
        elif current and line.startswith("| `"):
            sections[current].add(line.split("`")[1])
    keys = list(_schema_keys(Config))
    assert len(keys) > 100
    for key in keys:
        section, _, name = key.rpartition(".")
        assert name in sections.get(section, ()), f"{key} is not in the reference"


# A small schema with every kind of field the generator must read.
REGISTRY = {"alpha": 1, "beta": 2}


@dataclass
class _Inner:
    """Inner section."""

    # Above the field,
    # on two lines.
    x: int = 3  # and after it.


@dataclass
class _Item:
    name: str
    mode: Literal["p", "q"] = "p"


@dataclass
class _Top:
    # Checked against a registry.
    kind: str = "alpha"
    opt: Optional[int] = None

    either: Union[str, list[str], None] = None  # a blank line above: no comment from there
    weights: dict[str, float] = field(default_factory=lambda: {"alpha": 1.0})
    no: Literal["no", "yes"] = "no"
    items: list[_Item] = field(default_factory=list)
    inner: _Inner = field(default_factory=_Inner)
    maybe: Optional[_Inner] = None

    def __post_init__(self) -> None:
        if self.kind not in REGISTRY:
            raise ValueError("kind: unknown")
        for name, _w in self.weights.items():
            if name not in REGISTRY:
                raise ValueError("weights: unknown")


def test_generator_reads_types_defaults_choices_and_comments():
    sections = {s.path: s for s in gen.collect(_Top, "top")}
    assert list(sections) == ["top", "top.items[]", "top.inner", "top.maybe"]
    keys = {k.path: k for s in sections.values() for k in s.keys}
    kind = keys["top.kind"]
    assert (kind.type, kind.default, kind.allowed, kind.allowed_keys) == ("str", "alpha", ["alpha", "beta"], False)
    assert kind.comment == "Checked against a registry."
    assert (keys["top.opt"].type, keys["top.opt"].default, keys["top.opt"].comment) == ("int | null", "null", "")
    assert keys["top.either"].type == "str | list[str] | null"
    assert keys["top.either"].comment == "a blank line above: no comment from there"
    w = keys["top.weights"]
    assert (w.type, w.default, w.allowed, w.allowed_keys) == ("dict[str, float]", "{alpha: 1.0}", ["alpha", "beta"], True)
    # YAML would read a bare `no` / `yes` as a bool: the page must show them quoted.
    assert keys["top.no"].allowed == ["'no'", "'yes'"] and keys["top.no"].default == "'no'"
    assert keys["top.items[].name"].default == "required"
    assert keys["top.items[].mode"].allowed == ["p", "q"]
    assert keys["top.inner.x"].comment == "Above the field, on two lines. and after it."
    assert sections["top.inner"].doc == "Inner section."
    assert keys["top.maybe"].type == "section" and keys["top.maybe"].default == "null"
    assert [k.path for k in sections["top.maybe"].keys] == ["top.maybe.x"]
    page = gen.render(gen.collect(_Top, "top"), [])
    assert "| `kind` | `str` | `alpha` | `alpha`, `beta` | Checked against a registry. |" in page
    assert "| `weights` | `dict[str, float]` | `{alpha: 1.0}` | keys: `alpha`, `beta` |" in page


def test_description_falls_back_to_the_example_configs_comment(tmp_path):
    example = tmp_path / "example.yaml"
    example.write_text(
        "top:\n"
        "  opt: 3            # from the example\n"
        "  either: a         # a schema comment wins over this\n"
        "  items:\n"
        "    - name: first   # the first entry's comment\n"
        "      mode: q       # mode of an entry\n"
        "                    #   and its second line\n"
        "    - name: second  # a later entry: not used\n"
        "  weights: {}       # 'quoted # is not a comment' stays out\n",
    )
    comments = gen.yaml_comments(example)
    assert comments["top.opt"] == "from the example"
    assert comments["top.items[].name"] == "the first entry's comment"
    assert comments["top.items[].mode"] == "mode of an entry and its second line"
    keys = {k.path: k for s in gen.collect(_Top, "top", fallback=comments) for k in s.keys}
    assert keys["top.opt"].comment == "from the example"
    assert keys["top.either"].comment == "a blank line above: no comment from there"
    assert keys["top.items[].name"].comment == "the first entry's comment"
