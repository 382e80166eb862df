"""Writing files so that they appear whole or not at all: one copy for the whole package."""

from __future__ import annotations

import json
import math
import os
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any


def atomic_write(path: str | os.PathLike[str], write: Callable[[str], object]) -> None:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it into place.

    The file is flushed to disk before the rename, so a crash or power loss leaves either
    the old file or the complete new one, never a renamed file with missing contents.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = str(path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp"))
    # Created empty and exclusive, with the umask's permissions (mkstemp's are 0600).
    os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    try:
        write(tmp)
        with open(tmp, "rb") as written:
            os.fsync(written.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """``text`` (UTF-8) written atomically to ``path``."""
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def json_number(value: float) -> float | None:
    """``None`` for NaN (JSON has no NaN: e.g. the accuracy of a class with no images)."""
    return None if math.isnan(value) else value


def write_json(path: str | os.PathLike[str], obj: Mapping[str, Any]) -> None:
    """``obj`` as indented JSON, written atomically (NaN refused: use ``json_number``)."""
    atomic_write_text(path, json.dumps(obj, indent=2, allow_nan=False) + "\n")
