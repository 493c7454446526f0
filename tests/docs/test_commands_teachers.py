"""The README's Quickstart 3 (two teachers, one a GGUF LLM) as written, in its own scratch copy of the
repository: it needs nothing the other quickstarts write, and as its own test file it runs beside
them under `make test`'s two workers (tests/docs/test_commands.py has the rules)."""

from __future__ import annotations

import pytest

from tests.docs.test_commands import TESTED, own_file, run_block, workspace  # noqa: F401  (fixture)


def test_the_split_sections_hold_command_blocks():
    assert [b for b in TESTED if own_file(b) and b.kind == "run"], "no Quickstart 3 block found in the README"


@pytest.mark.slow
@pytest.mark.parametrize("block", [b for b in TESTED if b.kind in ("run", "long") and own_file(b)],
                         ids=lambda b: b.id)
def test_block_runs(block, workspace):  # noqa: F811
    run_block(block, workspace)
