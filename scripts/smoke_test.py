"""A smoke test of an installed torch-cnn (``make dist-check`` runs it in a fresh venv).

    python scripts/smoke_test.py KERAS_FILE

Checks that the package imports from where it was installed (not a checkout), that
TensorFlow is not needed, that the ``torch-cnn`` command answers, and that a Keras file
converts, runs, and round-trips through ``torch_cnn.save``/``load``.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

import torch_cnn


def main() -> int:
    keras_file = Path(sys.argv[1])
    where = Path(torch_cnn.__file__).resolve()
    assert "site-packages" in where.parts, f"torch_cnn imported from {where}, not an install"
    assert importlib.util.find_spec("tensorflow") is None, "the smoke test wants no TensorFlow"
    cli = shutil.which("torch-cnn") or str(Path(sys.executable).with_name("torch-cnn"))
    version = subprocess.run([cli, "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.strip() == torch_cnn.__version__, version.stdout
    model = torch_cnn.from_keras(keras_file)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = model(x)
    with tempfile.TemporaryDirectory() as tmp:
        path = torch_cnn.save(model, Path(tmp) / "m.safetensors")
        with torch.no_grad():
            assert torch.equal(torch_cnn.load(path)(x), y)
    print(f"torch-cnn {torch_cnn.__version__} from {where.parent}: {keras_file.name} → "
          f"{type(model).__name__} {tuple(y.shape)}; save/load round trip exact")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
