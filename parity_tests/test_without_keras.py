"""The suite on a machine without TensorFlow: it loads, and the torch side still runs.

A GPU machine may have no TensorFlow; there the stored Keras outputs (``golden/``) and the
torch-only tests must run, and the tests that need Keras must skip, not break collection.
"""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from tests.helpers import run_python


def _pytest_without_keras(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CI"}  # a user's machine: Keras tests skip
    return run_python(
        "-m", "pytest", "-p", "parity_tests.no_keras", "-p", "no:cacheprovider", "-q", "-rs",
        *args, env=env,
    )  # fmt: skip


@pytest.mark.slow
def test_every_test_module_loads_without_keras() -> None:
    proc = _pytest_without_keras("--collect-only", "tests", "parity_tests", "torch_cnn")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "error" not in proc.stdout.lower().split("\n")[-2], proc.stdout[-2000:]
    collected = re.search(r"(\d+) tests? collected", proc.stdout)
    assert collected and int(collected.group(1)) > 300, proc.stdout[-500:]


@pytest.mark.slow
def test_golden_and_torch_side_tests_run_without_keras() -> None:
    proc = _pytest_without_keras(
        "parity_tests/test_golden.py",
        "parity_tests/test_architecture.py",
        "parity_tests/test_padding.py",
    )
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:] + proc.stderr[-3000:]
    passed = int(re.search(r"(\d+) passed", out).group(1))  # type: ignore[union-attr]
    assert passed >= 20, out[-1000:]
    # What needs Keras skips, saying why; nothing errors.
    assert "Keras is not installed" in out and "None in sys.modules" in out, out[-2000:]
    assert " error" not in out.splitlines()[-1], out[-1000:]
