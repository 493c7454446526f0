"""The documentation site builds with `mkdocs build --strict`: a broken link or anchor, a page
missing from the nav or a nav entry without its page, or a snippet whose file is gone, fails."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_site_builds_strictly(tmp_path):
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    site = tmp_path / "site"
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    # The generated reference renders as tables, with a type's alternatives shown without escapes.
    config = (site / "reference" / "config" / "index.html").read_text(encoding="utf-8")
    assert 'id="student-lattice"' in config and config.count("<table>") > 10
    assert "<code>str</code> | <code>list[str]</code> | <code>null</code>" in config
    assert "\\|" not in config
    # The quickstarts are included from the README, not copied.
    start = (site / "getting-started" / "index.html").read_text(encoding="utf-8")
    assert "Quickstart 2" in start and "my_corpus.yaml" in start
