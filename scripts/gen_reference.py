"""Write the reference pages from the code: docs/reference/config.md from the run config's schema
and docs/reference/cli.md from the ``distill`` argument parser.

Every key comes from the dataclasses themselves (``distill.config.Config`` and every dataclass
it nests, whichever module defines it): its type from the type hints, its default from the field,
its allowed values from a ``Literal`` type or from the registry its ``__post_init__`` checks it
against (``if self.pooling not in POOLERS``, ``_one_of("rule", self.rule, RULES)``, ``for name in
self.terms: ... name not in LOSS_FNS``), and its description from the ``#`` comments written
above the field (and after it on the same line) in the source. A key added, removed or
re-commented in the schema changes the page; nothing here names a key.

The CLI page lists every subcommand and option of ``distill.cli.build_parser`` (with
``distill launch``'s own options) from the parser's actions: names, metavars, defaults, help.

    python scripts/gen_reference.py            # rewrite both pages
    python scripts/gen_reference.py --check    # exit 1 if a committed page is stale

tests/docs/test_reference.py runs the check in ``make test``.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import difflib
import importlib
import inspect
import io
import sys
import textwrap
import tokenize
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "reference" / "config.md"
CLI_PAGE = ROOT / "docs" / "reference" / "cli.md"
COMMAND = "python scripts/gen_reference.py"

if str(ROOT) not in sys.path:  # run as a script from anywhere: this checkout's packages first
    sys.path.insert(0, str(ROOT))


# ---------------------------------------------------------------------------------------------
# Reading the schema


@dataclass
class Key:
    """One documented key: ``path`` as a user writes it (``teachers[].pooling``)."""

    path: str
    type: str
    default: str  # YAML text, or "required"
    allowed: list[str] = field(default_factory=list)  # allowed values (or keys, see allowed_keys)
    allowed_keys: bool = False  # the allowed names are the mapping's keys, not its value
    comment: str = ""


@dataclass
class Section:
    path: str  # "student.lattice", "teachers[]"
    cls: type
    doc: str
    keys: list[Key]


def field_comments(cls: type) -> dict[str, str]:
    """{field name: its comment}: the ``#`` lines directly above the field (no blank line between)
    and a ``#`` comment on the field's own lines, joined into one paragraph."""
    try:
        lines, start = inspect.getsourcelines(cls)
    except (OSError, TypeError):
        return {}
    source = textwrap.dedent("".join(lines))
    src_lines = source.splitlines()
    inline: dict[int, str] = {}  # 1-based line -> comment text (tokenize: no '#' inside strings)
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            inline[tok.start[0]] = tok.string
    klass = ast.parse(source).body[0]
    out: dict[str, str] = {}
    for node in klass.body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        above = []
        i = node.lineno - 1  # 1-based line above the field
        while i >= 1 and src_lines[i - 1].strip().startswith("#"):
            above.append(src_lines[i - 1].strip())
            i -= 1
        parts = [c.lstrip("#").strip() for c in reversed(above)]
        for line in range(node.lineno, (node.end_lineno or node.lineno) + 1):
            if line in inline and not src_lines[line - 1].strip().startswith("#"):
                parts.append(inline[line].lstrip("#").strip())
        out[node.target.id] = " ".join(p for p in parts if p)
    return out


def _registry_values(obj: Any) -> list[str] | None:
    """The names a registry object allows: a dict's keys, or a tuple/list/set of strings."""
    if isinstance(obj, dict):
        names = list(obj)
    elif isinstance(obj, (tuple, list, set, frozenset)):
        names = sorted(obj) if isinstance(obj, (set, frozenset)) else list(obj)
    else:
        return None
    if not names or not all(isinstance(n, str) for n in names):
        return None
    return names


def _self_attr(node: ast.AST) -> str | None:
    """``self.name`` (or ``self.name.items()`` / ``self.name.keys()``) -> name."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ("items", "keys"):
        node = node.func.value
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
        return node.attr
    return None


def registry_checks(cls: type) -> dict[str, tuple[list[str], bool]]:
    """{field: (allowed names, names are keys)} for the fields ``__post_init__`` checks against a
    module-level registry or a literal tuple of names."""
    post = cls.__dict__.get("__post_init__")
    if post is None:
        return {}
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(post)))
    except (OSError, TypeError, SyntaxError):
        return {}
    module_globals = vars(sys.modules[cls.__module__])

    def resolve(node: ast.AST) -> list[str] | None:
        if isinstance(node, ast.Name):
            return _registry_values(module_globals.get(node.id))
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)) and all(isinstance(e, ast.Constant) for e in node.elts):
            return _registry_values(tuple(e.value for e in node.elts if e.value is not None))
        return None

    # Loop variables bound to a field's keys: `for name, w in self.terms.items()` / `for name in self.terms`.
    loop_keys: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.For) and (attr := _self_attr(node.iter)) is not None:
            target = node.target.elts[0] if isinstance(node.target, ast.Tuple) else node.target
            if isinstance(target, ast.Name):
                loop_keys[target.id] = attr
    found: dict[str, tuple[list[str], bool]] = {}
    for node in ast.walk(tree):
        # `x not in REG` (raise otherwise) names what is allowed; `x in (...)` may name what is refused.
        if isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.ops[0], ast.NotIn):
            names = resolve(node.comparators[0])
            if names is None:
                continue
            if (attr := _self_attr(node.left)) is not None:
                found.setdefault(attr, (names, False))
            elif isinstance(node.left, ast.Name) and node.left.id in loop_keys:
                found.setdefault(loop_keys[node.left.id], (names, True))
        elif isinstance(node, ast.Call):  # a helper such as _one_of("rule", self.rule, RULES)
            attrs = [a for a in map(_self_attr, node.args) if a is not None]
            regs = [r for r in map(resolve, node.args) if r is not None]
            if len(attrs) == 1 and len(regs) == 1:
                found.setdefault(attrs[0], (regs[0], False))
    return found


def type_name(tp: Any) -> str:
    """A type as a YAML user reads it: ``int``, ``str | null``, ``list[str]``, ``dict[str, float]``."""
    origin = get_origin(tp)
    if tp is type(None):
        return "null"
    if tp is Any:
        return "any"
    if origin is Literal:
        kinds = sorted({type(a).__name__ if a is not None else "null" for a in get_args(tp)})
        return " | ".join(kinds)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        parts = [type_name(a) for a in args if a is not type(None)]
        if type(None) in args:
            parts.append("null")
        return " | ".join(dict.fromkeys(parts))
    if origin in (list, typing.List):  # noqa: UP006
        (inner,) = get_args(tp) or (Any,)
        return f"list[{type_name(inner)}]"
    if origin in (dict, typing.Dict) or tp is dict:  # noqa: UP006
        args = get_args(tp) or (str, Any)
        return f"dict[{type_name(args[0])}, {type_name(args[1])}]"
    if dataclasses.is_dataclass(tp):
        return "section"
    return getattr(tp, "__name__", str(tp))


def literal_values(tp: Any) -> list[str]:
    """The Literal choices inside ``tp`` (``Optional[Literal[...]]`` included), as YAML text."""
    if get_origin(tp) is Literal:
        return [yaml_text(a) for a in get_args(tp)]
    if get_origin(tp) in (Union, types.UnionType):
        return [v for a in get_args(tp) for v in literal_values(a)]
    return []


def yaml_text(value: Any) -> str:
    """A value as it would be written in the YAML file (flow style, one line)."""
    import yaml

    if isinstance(value, str) and value and value.strip() == value and not any(c in value for c in ":#{}[],&*!|>'\"%@`"):
        try:
            if yaml.safe_load(value) == value:
                return value
        except yaml.YAMLError:
            pass
    text = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=10**9).strip()
    return text[: -len("...")].strip() if text.endswith("...") else text


def _element_dataclass(tp: Any) -> type | None:
    """The dataclass of a ``list[Dataclass]`` field (teachers), else None."""
    if get_origin(tp) in (list, typing.List):  # noqa: UP006
        args = get_args(tp)
        if args and dataclasses.is_dataclass(args[0]):
            return args[0]
    return None


def _optional_dataclass(tp: Any) -> type | None:
    """The dataclass of an ``Optional[Dataclass]`` field, else None."""
    if get_origin(tp) in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(get_args(tp)) == 2 and dataclasses.is_dataclass(args[0]):
            return args[0]
    return None


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def collect(cls: type, path: str = "", fallback: dict[str, str] | None = None) -> list[Section]:
    """Every section reachable from the dataclass ``cls``, depth first, in field order. A field
    without a comment in the source takes ``fallback[key path]`` (see :func:`yaml_comments`)."""
    fallback = fallback or {}
    hints = get_type_hints(cls)
    comments = field_comments(cls)
    checks = registry_checks(cls)
    doc = inspect.getdoc(cls) or ""
    if doc.startswith(f"{cls.__name__}("):  # dataclass's generated signature, not a docstring
        doc = ""
    section = Section(path=path, cls=cls, doc=doc, keys=[])
    nested: list[Section] = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        tp = hints[f.name]
        optional = _optional_dataclass(tp)  # Optional[Section]: its keys, under "null = off"
        if optional is not None:
            tp = optional
        key_path = f"{path}.{f.name}" if path else f.name
        comment = comments.get(f.name) or fallback.get(key_path, "")
        if dataclasses.is_dataclass(tp):
            sub = collect(tp, key_path, fallback)
            if comment and not sub[0].doc:
                sub[0].doc = comment
            elif comment:
                sub[0].doc = comment + "\n\n" + sub[0].doc
            nested += sub
            if path:  # a nested section is also a key of its parent, pointing to its own table
                first = sub[0].doc.split("\n\n")[0].replace("\n", " ")
                section.keys.append(Key(key_path, "section", "null" if optional else "",
                                        comment=comment or _rst_to_md(first)))
            continue
        element = _element_dataclass(tp)
        if element is not None:
            sub = collect(element, key_path + "[]", fallback)
            if comment:
                sub[0].doc = comment + ("\n\n" + sub[0].doc if sub[0].doc else "")
            nested += sub
            if path:
                section.keys.append(Key(key_path, f"list of {key_path}[] entries", yaml_text(_default(f)),
                                        comment=comment))
            continue
        default = _default(f)
        allowed = literal_values(tp)
        allowed_keys = False
        if not allowed and f.name in checks:
            allowed, allowed_keys = checks[f.name]
        section.keys.append(Key(
            path=key_path,
            type=type_name(tp),
            default="required" if default is dataclasses.MISSING else yaml_text(default),
            allowed=list(allowed),
            allowed_keys=allowed_keys,
            comment=comment,
        ))
    return [section, *nested]


# ---------------------------------------------------------------------------------------------
# Keys that live outside the dataclasses: documented from the code that reads them


def extra_sections() -> list[tuple[str, str]]:
    """(title, markdown) for the keys the loader handles before the schema: a teacher's
    ``preset`` and the ``stages`` list. Each is taken from its module's own docstring, and left
    out when that module or paragraph is gone."""
    out = []
    config_mod = importlib.import_module("distill.config")
    paragraphs = (inspect.getdoc(config_mod) or "").split("\n\n")
    preset = [p for p in paragraphs if "preset:" in p]
    if preset:
        out.append(("teachers[].preset", "\n\n".join(_rst_to_md(p) for p in preset)))
    try:
        stages_mod = importlib.import_module("distill.stages")
    except ImportError:
        stages_mod = None
    if stages_mod is not None and inspect.getdoc(stages_mod):
        out.append(("stages", _rst_to_md(inspect.getdoc(stages_mod))))
    return out


def _rst_to_md(text: str) -> str:
    """The docstrings' reST bits as Markdown: ``code`` -> `code`, :mod:`x` -> `x`, and a
    ``::`` literal block as a fenced YAML block."""
    import re

    text = re.sub(r":\w+:`([^`]+)`", r"`\1`", text).replace("``", "`")
    out: list[str] = []
    block: list[str] | None = None  # the lines of a literal block being read

    def close() -> None:
        while block and not block[-1].strip():
            block.pop()
        out.extend(["```yaml", *block, "```"])

    for line in text.splitlines():
        if block is not None:
            if not line.strip() or line.startswith("    "):
                if block or line.strip():
                    block.append(line[4:])
                continue
            close()
            out.append("")
            block = None
        if line.rstrip().endswith("::"):
            head = line.rstrip()[:-2].rstrip()
            if head:
                out.append(head + ":")
            out.append("")
            block = []
            continue
        out.append(line)
    if block is not None:
        close()
    return "\n".join(out)


def yaml_comments(path: Path) -> dict[str, str]:
    """{schema key path: comment} from a commented YAML config such as configs/default.yaml: the
    ``#`` comment after each key, with its continuation lines (comment-only lines, or comments
    starting ``#  `` after a later key, indented past the key). A key of the first list item of a
    section stands for the entries' key (``teachers[0].pooling`` -> ``teachers[].pooling``)."""
    if not path.is_file():
        return {}
    out: dict[str, str] = {}
    stack: list[tuple[int, str]] = []  # (column, path) of the enclosing keys and list items
    items: dict[str, int] = {}  # list path -> index of its current item
    last: str | None = None  # the key whose comment a continuation extends

    def extend(key: str, text: str) -> None:
        out[key] = (out.get(key, "") + " " + text).strip()

    for raw in path.read_text(encoding="utf-8").splitlines():
        stripped = raw.strip()
        indent = len(raw) - len(raw.lstrip())
        if stripped.startswith("#"):
            if last is not None and indent > 8:
                extend(last, stripped.lstrip("#").strip())
            continue
        m = _YAML_KEY.match(raw)
        if m is None:
            last = None if stripped else last
            continue
        col = indent
        if m.group("dash"):
            while stack and stack[-1][0] >= indent:
                stack.pop()
            lst = stack[-1][1] if stack else ""
            items[lst] = items.get(lst, -1) + 1
            stack.append((indent, f"{lst}[{items[lst]}]"))
            col = indent + 2
        while stack and stack[-1][0] >= col:
            stack.pop()
        key = f"{stack[-1][1]}.{m.group('key')}" if stack else m.group("key")
        stack.append((col, key))
        raw_comment = _inline_comment(m.group("rest"))
        if raw_comment.startswith("  ") and last is not None:  # "#   more": the previous key's comment goes on
            extend(last, raw_comment.strip())
            continue
        if "[" in key and "[0]" not in key:
            last = None
            continue
        key = key.replace("[0]", "[]")
        last = key if raw_comment.strip() else None
        if raw_comment.strip():
            out[key] = raw_comment.strip()
    return out


_YAML_KEY = __import__("re").compile(r"^\s*(?P<dash>- )?(?P<key>[A-Za-z_][\w]*):(?P<rest>.*)$")


def _inline_comment(rest: str) -> str:
    """The comment of ``key: value  # comment`` (a '#' inside quotes is part of the value)."""
    quote = None
    for i, c in enumerate(rest):
        if quote:
            quote = None if c == quote else quote
        elif c in "'\"":
            quote = c
        elif c == "#" and (i == 0 or rest[i - 1] in " \t"):
            return rest[i + 1:].rstrip()
    return ""


# ---------------------------------------------------------------------------------------------
# Writing the page


def _cell(text: str) -> str:
    """Text for a Markdown table cell: no raw HTML (<teacher> would vanish), no column breaks."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")
    return " ".join(text.replace("*", "\\*").split())


def _code(text: str) -> str:
    """``text`` as code in a table cell. A type such as ``str | null`` becomes one code span per
    alternative joined by an escaped pipe: a pipe inside a code span would end the cell on GitHub
    and show its backslash on the site."""
    if "|" in text:
        sep = " \\| " if " | " in text else "\\|"
        return sep.join(_code(part.strip()) for part in text.split("|"))
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def _anchor(path: str) -> str:
    return path.replace("[]", "").replace(".", "-").lower() or "top"


def render(sections: list[Section], extras: list[tuple[str, str]]) -> str:
    out = [
        "# Configuration reference",
        "",
        "<!-- Generated by " + COMMAND + " from the schema's dataclasses; do not edit by hand. -->",
        "",
        "Every key of a run config, generated from the schema (`distill/config.py` and the dataclasses",
        "it nests) by `" + COMMAND + "`; `make test` fails when this page is out of date.",
        "A run config is one YAML file of these sections; a key left out takes the default below",
        "(`configs/default.yaml`, the demo, sets many keys to other values). A wrong key, type or",
        "value stops the run before anything is written, naming the key path and what is allowed;",
        "`--set key.path=value` overrides any key from the command line (the value is read as YAML).",
        "",
        "Types: `int`, `float` (an integer is accepted), `str`, `bool` (`true`/`false`), `list[...]`,",
        "`dict[str, ...]` (a mapping), `null`. **allowed** lists the names a key accepts: a fixed",
        "choice, or the names registered today (a registry grows by one function and one line).",
        "Descriptions are the comments above each field in the schema's source or, where a field",
        "has none, the key's comment in `configs/default.yaml`.",
        "",
        "Sections: " + " · ".join(f"[`{s.path}`](#{_anchor(s.path)})" for s in sections
                                  if s.path and "." not in s.path)
        + "; keys read before the schema: " + " · ".join(f"[`{t}`](#{_anchor(t)})" for t, _ in extras) + ".",
        "",
    ]
    for s in sections:
        if not s.path:
            continue
        out += [f"## `{s.path}` {{#{_anchor(s.path)}}}", ""]
        if s.doc:
            out += [_escape_prose(s.doc), ""]
        if not s.keys:
            continue
        out += ["| key | type | default | allowed | description |", "|---|---|---|---|---|"]
        for k in s.keys:
            name = k.path.rsplit(".", 1)[-1] if "." in k.path else k.path
            if k.type == "section" or k.type.startswith("list of "):
                target = k.path if k.type == "section" else k.path + "[]"
                default = _code(k.default) if k.default else ""
                out.append(f"| `{name}` | [{k.type}](#{_anchor(target)}) | {default} | | {_cell(k.comment)} |")
                continue
            allowed = ", ".join(_code(a) for a in k.allowed)
            if allowed and k.allowed_keys:
                allowed = "keys: " + allowed
            default = "**required**" if k.default == "required" else _code(k.default)
            out.append(f"| `{name}` | {_code(k.type)} | {default} | {allowed} | {_cell(k.comment)} |")
        out.append("")
    for title, text in extras:
        out += [f"## `{title}` {{#{_anchor(title)}}}", "", text, ""]
    return "\n".join(out).rstrip() + "\n"


def _escape_prose(text: str) -> str:
    """A docstring as Markdown prose: reST literals to code, angle brackets kept visible."""
    md = _rst_to_md(text)
    lines, out, fenced = md.splitlines(), [], False
    for line in lines:
        if line.startswith("```"):
            fenced = not fenced
        out.append(line if fenced else line.replace("<", "&lt;").replace(">", "&gt;"))
    return "\n".join(out)


EXAMPLE_CONFIG = ROOT / "configs" / "default.yaml"


def generate() -> str:
    from distill.config import Config

    return render(collect(Config, fallback=yaml_comments(EXAMPLE_CONFIG)), extra_sections())


def undocumented(sections: list[Section]) -> list[str]:
    """Key paths with no description (neither a schema comment nor one in the example config)."""
    return [k.path for s in sections for k in s.keys if not k.comment]


# ---------------------------------------------------------------------------------------------
# The CLI page


def _option_text(action: argparse.Action) -> str:
    if not action.option_strings:
        return action.metavar or action.dest
    names = ", ".join(action.option_strings)
    if action.nargs == 0:
        return names
    metavar = action.metavar or action.dest.upper()
    return f"{names} {metavar}" + (" ..." if action.nargs in ("+", "*") else "")


def generate_cli() -> str:
    from distill.cli import build_parser

    parser = build_parser(launch_options=True)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {c.dest: c.help for c in sub._choices_actions}
    out = [
        "# Command line",
        "",
        "<!-- Generated by " + COMMAND + " from distill/cli.py's parser; do not edit by hand. -->",
        "",
        "Every `distill` subcommand and option, generated from the argument parser by",
        "`" + COMMAND + "`. `distill COMMAND --help` prints the same. Exit status: 0 done,",
        "2 bad input (config, data, arguments, run directory, checkpoint: one `error:` line, nothing",
        "written), 75 training pre-empted by SIGTERM after a clean checkpoint, 1 any other failure.",
        "",
        "Global options: " + ", ".join(f"`{_option_text(a)}` ({_cell(a.help or '')})" for a in parser._actions
                                       if a.option_strings and a.dest not in ("help",)) + ".",
        "",
    ]
    for name, p in sub.choices.items():
        out += [f"## `distill {name}`", "", _cell(p.description or helps.get(name) or ""), ""]
        groups = [(g.title, [a for a in g._group_actions if a.dest != "help"]) for g in p._action_groups]
        out += ["| argument | description |", "|---|---|"]
        for title, actions in groups:
            for a in actions:
                group = f" ({title})" if title not in ("positional arguments", "options", "optional arguments") else ""
                out.append(f"| {_code(_option_text(a))}{group} | {_cell(a.help or '')} |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


PAGES = {PAGE: generate, CLI_PAGE: generate_cli}


def check(page: Path = PAGE, want: str | None = None) -> str | None:
    """None when ``page`` equals what the generator writes for it, else what differs and how to fix it."""
    if want is None:
        want = PAGES.get(page, generate)()
    have = page.read_text(encoding="utf-8") if page.is_file() else ""
    if have == want:
        return None
    diff = list(difflib.unified_diff(have.splitlines(), want.splitlines(), "committed", "generated", lineterm="", n=1))
    shown = "\n".join(diff[:60]) + ("\n..." if len(diff) > 60 else "")
    name = page.relative_to(ROOT) if page.is_relative_to(ROOT) else page
    return f"{name} is out of date with the code; regenerate it with:\n    {COMMAND}\n{shown}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="exit 1 if a page differs from the generated one")
    args = p.parse_args(argv)
    if args.check:
        problems = [msg for page in PAGES if (msg := check(page))]
        for msg in problems:
            print(msg, file=sys.stderr)
        if not problems:
            print("the reference pages are up to date")
        return 1 if problems else 0
    for page, make in PAGES.items():
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_text(make(), encoding="utf-8")
        print(f"wrote {page.relative_to(ROOT)}")
    from distill.config import Config

    missing = undocumented(collect(Config, fallback=yaml_comments(EXAMPLE_CONFIG)))
    if missing:
        print(f"keys without a description (add a # comment above the field): {', '.join(missing)}",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
