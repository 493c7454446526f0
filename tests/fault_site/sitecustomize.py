"""Loaded at interpreter start when tests put this directory on PYTHONPATH (tests/faults.py,
``fault_env``): once ``distill.train`` is imported, its recipe is built with faulty components.
Processes that never import the trainer (launchers, torchrun) are left alone."""

import importlib.abc
import os
import sys

SPEC = os.environ.get("DISTILL_TEST_FAULTS")


class _AfterTrainImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "distill.train":
            return None
        sys.meta_path.remove(self)
        import importlib.util

        spec = importlib.util.find_spec(name)
        exec_module = spec.loader.exec_module

        def exec_and_install(module):
            exec_module(module)
            from tests.faults import install

            install(SPEC)

        spec.loader.exec_module = exec_and_install
        return spec


if SPEC:
    sys.meta_path.insert(0, _AfterTrainImport())
