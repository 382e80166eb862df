"""Make TensorFlow and Keras unimportable, as on a machine without them.

``install()`` in a fresh process, or ``pytest -p parity_tests.no_keras`` (a plugin that
installs it at start-up), so the suite can be run as on a machine without TensorFlow (a GPU
machine, a plain ``.[dev]`` install). Importing this module changes nothing by itself.

A ``None`` in ``sys.modules`` is Python's own way to say "not there": ``import keras``
raises ``ModuleNotFoundError`` and ``importlib.util.find_spec("keras")`` returns ``None``,
as torch's probes for optional packages expect.
"""

from __future__ import annotations

import sys
from typing import Any

BLOCKED = ("tensorflow", "keras", "tf_keras")


def install() -> None:
    loaded = [name for name in BLOCKED if sys.modules.get(name) is not None]
    if loaded:
        raise RuntimeError(f"already imported, cannot be made unimportable: {loaded}")
    for name in BLOCKED:
        sys.modules[name] = None  # type: ignore[assignment]


def pytest_configure(config: Any) -> None:
    install()
