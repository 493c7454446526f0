"""Loaded at interpreter start when a test puts this directory on PYTHONPATH: with
``$STUB_ACCELERATE`` set, a command that starts ``accelerate`` runs that stub instead. The hostfile
tests use it to run real node launchers (``distill launch --node-rank R``) whose jobs are stubs."""

import os
import subprocess

_STUB = os.environ.get("STUB_ACCELERATE")

if _STUB:
    _Popen = subprocess.Popen

    class _StubPopen(_Popen):
        def __init__(self, args, *rest, **kwargs):
            if isinstance(args, (list, tuple)) and args and args[0] == "accelerate":
                args = [_STUB, *args[1:]]
            super().__init__(args, *rest, **kwargs)

    subprocess.Popen = _StubPopen
