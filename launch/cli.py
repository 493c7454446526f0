"""``distill launch``: compose accelerate launch commands (not built yet)."""

from __future__ import annotations

import argparse


def add_launch_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("rest", nargs=argparse.REMAINDER, help="launch options (not built yet)")


def cmd_launch(args) -> int:
    raise NotImplementedError("distill launch is not built yet (issue 6)")
