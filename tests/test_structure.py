"""The code's shape, checked by reading it (AST), not by running it (issue #22).

* No import cycle among the modules of ``distill/``, ``teachers/``, ``lattice/`` (and ``launch/``,
  ``fileio/``), counting
  function-level imports too (they are deferred, not gone: a cycle through one still couples the
  two modules both ways). An edge is an explicit import of a project module; ``from pkg import
  name`` is an edge to ``pkg.name`` when that is a module, else to ``pkg``. The implicit import of
  a parent package's ``__init__`` is not an edge (every submodule would otherwise depend on it).
* The student type is named in one registry: no module outside ``distill/students/`` compares a
  student's type (``student.input`` / ``input_mode``) with a name.
* Every function in ``distill/`` is at most 80 lines.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The issue names distill/, teachers/ and lattice/; launch/ (distill.cli <-> launch) and fileio/ ride along.
PACKAGES = ("distill", "teachers", "lattice", "launch", "fileio")
MAX_FUNCTION_LINES = 80


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules ``name`` imports anywhere in its body (function-level included)."""
    is_pkg = path.name == "__init__.py"
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in modules else mod for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in modules:  # `import a.b.c` where only a.b is ours, etc.
                t = t.rpartition(".")[0]
            if t and t != name:
                out.add(t)
    return out


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (as a path a -> ... -> a), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (found := visit(m)):
                return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (found := visit(n)):
            return found
    return None


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    graph = {n: imports_of(n, p, modules) for n, p in modules.items()}
    # The student registry imports its entries by module path (importlib): edges all the same.
    from distill.students import STUDENT_TYPES

    graph["distill.students"] |= set(STUDENT_TYPES.values())
    return graph


def test_no_import_cycles_function_level_imports_included():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_sees_function_level_imports(tmp_path):
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    # a deferred import is an edge like any other
    mods = project_modules()
    edges = imports_of("distill.checkpoint", mods["distill.checkpoint"], mods)
    assert "distill.students" in edges  # imported inside config_meta()


# The student's type compared with a name: `section.input == "tokens"`, `student.input_mode != 'teacher'`.
DISPATCH = re.compile(r"""\b(input|input_mode)\s*(==|!=|\bin\b|\bnot in\b)\s*[\[("']""")


def test_the_student_type_is_named_in_one_registry():
    offenders = []
    for path in sorted((ROOT / "distill").rglob("*.py")):
        if "students" in path.relative_to(ROOT / "distill").parts:
            continue
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if DISPATCH.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()}")
    assert not offenders, "branches on the student type (ask distill.students instead):\n" + "\n".join(offenders)


def test_the_registry_and_the_config_choices_agree():
    from typing import get_args, get_type_hints

    from distill.config import StudentSection
    from distill.students import STUDENT_TYPES, student_types

    assert get_args(get_type_hints(StudentSection)["input"]) == tuple(STUDENT_TYPES)
    for name, t in student_types().items():
        assert t.name == name


def test_every_function_in_distill_is_at_most_80_lines():
    long = []
    for path in sorted((ROOT / "distill").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {n} lines")
    assert not long, "\n".join(long)
