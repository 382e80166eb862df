"""What every command shares: Keras on demand, and the errors that end a command cleanly."""

from __future__ import annotations

import os
from typing import Any


def import_keras(command: str) -> tuple[Any, Any]:
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import keras

        import keras_ref
    except ImportError as exc:
        raise SystemExit(
            f"torch-cnn {command} needs Keras (pip install 'torch-cnn[keras]'): {exc}"
        ) from exc
    return keras, keras_ref
