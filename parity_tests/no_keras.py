"""Make TensorFlow and Keras unimportable in this process: ``import parity_tests.no_keras``.

Also a pytest plugin (``pytest -p parity_tests.no_keras``), so the suite can be run as on a
machine without TensorFlow (a GPU machine, a plain ``.[dev]`` install). Only tests use it.
"""

from __future__ import annotations

import importlib.abc
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType

BLOCKED = ("tensorflow", "keras", "tf_keras")


class _Blocked(importlib.abc.MetaPathFinder):
    def find_spec(
        self, name: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked in this test")
        return None


if not any(isinstance(f, _Blocked) for f in sys.meta_path):
    sys.meta_path.insert(0, _Blocked())
