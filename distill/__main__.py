"""``python -m distill ...`` (and the ``accelerate launch ... -m distill`` of every launch).

Two things the ``distill`` console script does not need:

* ``-m`` puts the working directory first on ``sys.path``, where a folder named like one of this
  project's packages (a copied ``teachers/`` preset folder beside a config) would shadow the
  installed package: ``ImportError: cannot import name 'TargetStore' from 'teachers'``. The entry
  is dropped here, before anything imports ``teachers``/``lattice``/``launch``/``fileio``, as
  ``python -P`` would (Python >= 3.11) -- unless the working directory is where this package lives
  (a source checkout run without installing). A folder named ``distill/`` in the working directory
  is found before this file runs; nothing here can help with that one.
* Under ``distill launch``, each process reports its exit status in ``$DISTILL_STATUS_DIR`` (the
  launcher cannot see it otherwise: torchrun reports a failing worker as a plain 1).
"""

import os
import sys


def _drop_working_directory() -> None:
    if getattr(sys.flags, "safe_path", False) or not sys.path:
        return  # python -P: the working directory is not on the path
    here = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
    cwd = os.path.realpath(os.getcwd())
    if os.path.realpath(sys.path[0] or os.curdir) == cwd and cwd != here:
        del sys.path[0]


def _report(status: int) -> None:
    directory = os.environ.get("DISTILL_STATUS_DIR")
    if not directory:
        return
    try:
        with open(os.path.join(directory, f"rank-{os.environ.get('RANK', '0')}"), "w") as f:
            f.write(f"{status}\n")
    except OSError:
        pass  # the launcher treats a missing report as "not pre-empted"


_drop_working_directory()

from distill.cli import main  # noqa: E402

status = main()
_report(status)
sys.exit(status)
