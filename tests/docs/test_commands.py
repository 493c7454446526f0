"""The command blocks of the README and the docs run as written.

A fenced block is tested when the line above it (blank lines aside) is a marker comment:

    <!-- docs-test: run -->                     run it (bash -euo pipefail); it must exit 0
    <!-- docs-test: error -->                   a ```console block of `$ command` lines, the last
                                                followed by the `error: ...` line it must print
                                                (exit status 2); the earlier ones must succeed
    <!-- docs-test: long "why" -->              too long for `make test`: runs only with
                                                DOCS_LONG=1 (`make test-docs-long`)
    <!-- docs-test: skip "why" -->              cannot run here (a GPU, a cluster, a second node)

Every ```bash block of the README must carry a marker, so a new quickstart command cannot go
untested by accident. The blocks of one file run in order in one scratch copy of the repository
(a later block may use what an earlier one wrote: the quickstart trains, then encodes), with the
checkout's `distill` and `python` first on PATH. Nothing is rewritten: no overrides, no smaller
settings than the page shows.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
PAGES = [README, *sorted(p for p in (ROOT / "docs").rglob("*.md") if p != README)]
MARKER = re.compile(r'^<!--\s*docs-test:\s*(?P<kind>run|error|long|skip)(?:\s+"(?P<why>[^"]*)")?\s*-->\s*$')
FENCE = re.compile(r"^(?P<fence>```+|~~~+)\s*(?P<lang>[\w-]*)")
LONG = os.environ.get("DOCS_LONG") == "1"
COPY_IGNORE = shutil.ignore_patterns(".git", ".venv", ".cache", "runs", "site", "__pycache__", "*.egg-info",
                                     ".pytest_cache", ".ruff_cache")


@dataclass
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    kind: str | None  # None: no marker
    why: str = ""

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    out, lines = [], page.read_text(encoding="utf-8").splitlines()
    i, marker = 0, None
    while i < len(lines):
        m = MARKER.match(lines[i].strip())
        f = FENCE.match(lines[i])
        if m:
            marker = m
        elif f:
            fence, body, j = f.group("fence"), [], i + 1
            while j < len(lines) and not lines[j].startswith(fence):
                body.append(lines[j])
                j += 1
            out.append(Block(page, i + 1, f.group("lang"), "\n".join(body) + "\n",
                             marker.group("kind") if marker else None, (marker.group("why") or "") if marker else ""))
            marker, i = None, j
        elif lines[i].strip() and not lines[i].lstrip().startswith("<!--"):
            marker = None  # a marker applies to the block right below it
        i += 1
    return out


ALL = [b for p in PAGES for b in blocks(p)]
TESTED = [b for b in ALL if b.kind is not None]
# README sections whose blocks need nothing an earlier block wrote run from their own test file
# (tests/docs/test_commands_teachers.py), so `make test`'s two workers share the README's minutes.
OWN_FILE_SECTIONS = ("## Quickstart 3",)


@functools.cache
def _headings(page: Path) -> list[tuple[int, str]]:
    """(1-based line, text) of every ``## `` heading of a page (read once per page)."""
    return [(i, line) for i, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1)
            if line.startswith("## ")]


def section(block: Block) -> str:
    """The ``## `` heading a block sits under."""
    heading = ""
    for line, text in _headings(block.page):
        if line <= block.line:
            heading = text
    return heading


def own_file(block: Block) -> bool:
    return block.page == README and section(block).startswith(OWN_FILE_SECTIONS)


def test_every_readme_command_block_is_marked():
    unmarked = [b.id for b in blocks(README) if b.lang in ("bash", "sh", "console", "shell") and b.kind is None]
    assert not unmarked, f"command blocks without a <!-- docs-test: ... --> marker: {unmarked}"
    assert any(b.kind == "run" for b in blocks(README))


def test_marked_blocks_are_command_blocks_with_reasons():
    for b in TESTED:
        assert b.lang in (("console",) if b.kind == "error" else ("bash", "sh")), f"{b.id}: {b.kind} on ```{b.lang}"
        if b.kind in ("long", "skip"):
            assert b.why, f"{b.id}: a {b.kind} block needs its reason"


_workspaces: dict[Path, Path] = {}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """One scratch copy of the repository per page (made on first use)."""

    def get(page: Path) -> Path:
        if page not in _workspaces:
            ws = tmp_path_factory.mktemp(page.stem) / "repo"
            shutil.copytree(ROOT, ws, ignore=COPY_IGNORE, symlinks=True)
            if (ROOT / ".venv").is_dir():  # `make` finds its installed stamps
                (ws / ".venv").symlink_to(ROOT / ".venv")
            _workspaces[page] = ws
        return _workspaces[page]

    yield get
    _workspaces.clear()


def _env(ws: Path) -> dict:
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONPATH"] = str(ws)
    return env


@pytest.mark.slow
@pytest.mark.parametrize("block", [b for b in TESTED if b.kind in ("run", "long") and not own_file(b)],
                         ids=lambda b: b.id)
def test_block_runs(block, workspace):
    run_block(block, workspace)


def run_block(block: Block, workspace) -> None:
    if block.kind == "long" and not LONG:
        pytest.skip(f"long: {block.why} (DOCS_LONG=1 runs it)")
    ws = workspace(block.page)
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", block.text], cwd=ws, env=_env(ws),
                          capture_output=True, text=True, timeout=3000 if block.kind == "long" else 840)
    assert proc.returncode == 0, (f"{block.id} exited {proc.returncode}\n--- stdout\n{proc.stdout[-3000:]}"
                                  f"\n--- stderr\n{proc.stderr[-3000:]}")


def _run_distill(argv: list[str]) -> tuple[int, str]:
    """`distill ARGS` in this process (the CLI's own main): the import is paid once for all examples."""
    from distill.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            rc = main(argv)
        except SystemExit as exc:  # argparse errors
            rc = exc.code if isinstance(exc.code, int) else 1
    return rc, err.getvalue()


@pytest.mark.parametrize("block", [b for b in TESTED if b.kind == "error"], ids=lambda b: b.id)
def test_error_example_prints_what_the_page_says(block, workspace, monkeypatch):
    lines = [ln for ln in block.text.splitlines() if ln.strip()]
    commands = [ln[2:] for ln in lines if ln.startswith("$ ")]
    expected = [ln for ln in lines if ln.startswith("error:")]
    assert commands and len(expected) == 1, f"{block.id}: needs `$ command` lines and one `error:` line"
    ws = workspace(block.page)
    monkeypatch.chdir(ws)
    for i, command in enumerate(commands):
        argv = shlex.split(command)
        if argv[0] == "distill":
            rc, err = _run_distill(argv[1:])
        else:
            proc = subprocess.run(command, shell=True, cwd=ws, env=_env(ws), capture_output=True, text=True, timeout=120)
            rc, err = proc.returncode, proc.stderr
        if i < len(commands) - 1:
            assert rc == 0, f"{block.id}: `{command}` exited {rc}: {err[-2000:]}"
    got = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert rc == 2 and got == expected, f"{block.id}: `{commands[-1]}` exited {rc}, printed {got or err[-2000:]}"
