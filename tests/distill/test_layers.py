"""The package layers hold: lattice <- teachers <- distill core <- {recipe, commands} <- cli, and
launch reads only the config module (and the run lock). Checked on the source (every import, lazy
ones included)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RECIPE, COMMANDS, CLI = "distill.train", "distill.commands", "distill.cli"
ENTRY = "distill.__main__"  # python -m distill: the CLI itself
# What launch may read of distill: the config, and the run lock (fileio + errors) it checks first.
CONFIG_MODULES = {"distill.config", "distill.schema", "distill.errors", "distill.runlock"}


def imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}
    return {m for m in out if m.split(".")[0] in ("lattice", "teachers", "distill", "launch")}


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def known(mods: set[str]) -> set[str]:
    """Keep only names that are modules (``from distill import x`` may name a function)."""
    return {m for m in mods if (ROOT / Path(*m.split("."))).with_suffix(".py").exists()
            or (ROOT / Path(*m.split("."))).is_dir()}


def test_layers():
    bad = []
    for pkg in ("lattice", "teachers", "distill", "launch"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            me, deps = module_name(path), known(imports(path))
            top = {d.split(".")[0] for d in deps}
            if pkg == "lattice" and top - {"lattice"}:
                bad.append((me, sorted(deps)))
            if pkg == "teachers" and top - {"lattice", "teachers"}:
                bad.append((me, sorted(deps)))
            if pkg == "launch":
                other = {d for d in deps if d.split(".")[0] == "distill"} - CONFIG_MODULES - {"distill"}
                if other:
                    bad.append((me, sorted(other)))
            if pkg == "distill":
                if "launch" in top and me != CLI:
                    bad.append((me, "launch"))
                upper = {RECIPE, COMMANDS, CLI} & deps
                if me not in (RECIPE, COMMANDS, CLI, ENTRY) and upper:
                    bad.append((me, sorted(upper)))  # core must not reach up
                if me in (RECIPE, COMMANDS) and CLI in deps:
                    bad.append((me, "cli"))
                if me == COMMANDS and {d for d in deps if d.startswith(RECIPE + ".")} - {RECIPE + ".train"}:
                    bad.append((me, "eval/predict must not borrow the trainer's helpers"))
    assert not bad, bad


def test_no_function_in_distill_is_longer_than_80_lines():
    long = []
    for path in sorted((ROOT / "distill").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > 80:
                    long.append(f"{path.name}:{node.name} ({n} lines)")
    assert not long, long
