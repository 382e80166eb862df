"""What the commands share: Keras on demand (quietly), models named by a name or a file, the
images a comparison runs on, and how a model is described in one line."""

from __future__ import annotations

import os
import re
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import nn

import torch_cnn
from torch_cnn import data
from torch_cnn.cli.args import (
    KERAS_MODEL_SUFFIXES,
    TORCH_SUFFIX,
    CliError,
    existing,
    has_suffix,
    is_keras_path,
    is_weights_only_path,
    plural,
)
from torch_cnn.models import KerasGraph, KerasStyleNet, TorchCnnModel
from torch_cnn.summary import summarize

DEFAULT_RANDOM_IMAGES = 256  # a comparison without CIFAR-10 data
CIFAR10_CHW = (3, 32, 32)

# ---------------------------------------------------------------------------------------------
# Keras, and TensorFlow's C++ log lines

# What TensorFlow's C++ code writes to the process's stderr while it loads: absl log lines
# ("I0000 00:00:1796171554.367570   26683 port.cc:153] oneDNN custom operations are on ...")
# printed before absl::InitializeLog, which TF_CPP_MIN_LOG_LEVEL does not reach (TF 2.21);
# "00:00:1796171554.367570" is what absl prints for the time before it is initialised.
TF_LOG_LINE = re.compile(
    r"[IWEF]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ \S+:\d+\] "
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|To enable the following instructions: .*rebuild TensorFlow"
)


@contextmanager
def native_stderr_filtered(pattern: re.Pattern[str] = TF_LOG_LINE) -> Iterator[None]:
    """Hold what native code writes to file descriptor 2 and pass on the lines that are not
    ``pattern``'s: log lines go, anything else (a real error) still reaches the user."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            text = held.read().decode("utf-8", "replace")
            kept = [line for line in text.splitlines() if line and not pattern.match(line)]
            if kept:
                print("\n".join(kept), file=sys.stderr)


def import_keras(command: str, verbose: bool = False) -> tuple[Any, Any]:
    """``(keras, keras_ref)`` on TensorFlow, its C++ log lines hidden unless ``verbose`` or
    ``TF_CPP_MIN_LOG_LEVEL`` was set by the user (then TensorFlow logs as it is told)."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    quiet = not verbose and "TF_CPP_MIN_LOG_LEVEL" not in os.environ
    if quiet:
        # Once loaded, TensorFlow's own filter: 3 hides errors too ("failed call to cuInit" on
        # a machine without a GPU); errors that matter reach Python as exceptions.
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    try:
        with native_stderr_filtered() if quiet else nullcontext():
            import keras

            import keras_ref
    except ImportError as exc:
        raise CliError(
            f"torch-cnn {command} needs Keras and TensorFlow (install the keras extra; in a checkout: pip install '.[keras]'): "
            f"{exc}"
        ) from exc
    return keras, keras_ref


# ---------------------------------------------------------------------------------------------
# Models: a registered name, a .safetensors file or a Keras file


def input_chw(model: nn.Module) -> tuple[int | None, ...]:
    """The per-sample input shape the model takes, torch layout (``None``: any size)."""
    if isinstance(model, KerasGraph):
        return tuple(model.input_spec.torch_shape)
    if isinstance(model, KerasStyleNet):
        return tuple(model.input_shape)
    raise TypeError(f"expected a torch_cnn model; received {type(model).__name__}")


def shape_str(shape: tuple[int | None, ...]) -> str:
    return "(N, " + ", ".join("?" if d is None else str(d) for d in shape) + ")"


def model_file_kind(path: str | os.PathLike[str]) -> str:
    """``"torch"``, ``"keras"`` (holds an architecture) or ``"weights"`` (Keras weights only),
    by the name; a usage error for anything else."""
    if has_suffix(path, (TORCH_SUFFIX,)):
        return "torch"
    if is_weights_only_path(path):
        return "weights"
    if is_keras_path(path):
        return "keras"
    raise CliError(
        f"{path}: expected a registered model ({', '.join(torch_cnn.list_models())}), a "
        f"{TORCH_SUFFIX} file, a Keras model file ({', '.join(KERAS_MODEL_SUFFIXES)}) or an "
        "unzipped .keras directory"
    )


def weights_only_error(path: str | os.PathLike[str], command: str) -> CliError:
    return CliError(
        f"{path} holds Keras weights but no architecture: give the architecture with --model "
        f"(a registered model, e.g. --model model_cifar10, or a converted model's .safetensors "
        f"file, e.g. --model converted.safetensors); torch-cnn {command} cannot guess it"
    )


def load_model(
    spec: str,
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    command: str,
) -> TorchCnnModel:
    """The model ``spec`` names, in eval mode: a registered model (torch's initial weights), a
    ``.safetensors`` file (``torch_cnn.load``) or a Keras model file (``torch_cnn.from_keras``,
    read in a child process)."""
    if spec in torch_cnn.list_models():
        model: nn.Module = torch_cnn.create_model(spec, dtype=dtype, device=device).eval()
    else:
        kind = model_file_kind(spec)
        existing(spec, "file or directory" if kind == "keras" else "file")
        if kind == "weights":
            raise weights_only_error(spec, command)
        if kind == "torch":
            model = torch_cnn.load(spec, device=device)
            if dtype is not None:
                model = model.to(dtype)
        else:
            model = torch_cnn.from_keras(spec, dtype=dtype, device=device)
    assert isinstance(model, KerasGraph | KerasStyleNet)
    return model


def load_weights_into(model: TorchCnnModel, weights: str) -> TorchCnnModel:
    """``weights`` (a ``.safetensors`` file of the same model, or any Keras file) into
    ``model``; the model is unchanged if they do not fit."""
    kind = model_file_kind(weights)
    existing(weights)
    if kind == "torch":
        loaded = torch_cnn.load(weights)
        if loaded.name != model.name or type(loaded) is not type(model):
            raise CliError(f"{weights} holds {loaded.name!r}, not {model.name!r}")
        state = loaded.state_dict()
        model.load_state_dict(state, strict=True)
        return model
    result = torch_cnn.load_keras_weights(model, weights)
    assert isinstance(result, KerasGraph | KerasStyleNet)
    return result


def describe_model(model: TorchCnnModel) -> str:
    """``'residual_bn (converted: 19 layers, 5,514 parameters, 5,450 trainable)'``: Keras's
    counts (BatchNormalization's moving statistics are non-trainable parameters)."""
    s = summarize(model)
    layers = sum(1 for r in s.rows if r.class_name != "InputLayer")
    kind = "seed model" if isinstance(model, KerasStyleNet) else "converted"
    return (
        f"{model.name} ({kind}: {plural(layers, 'layer')}, {plural(s.total, 'parameter')}, "
        f"{s.trainable:,} trainable)"
    )


def nonfinite_tensors(model: nn.Module) -> list[str]:
    """The names of the model's floating-point tensors holding NaN or Inf."""
    return [
        name
        for name, t in model.state_dict().items()
        if t.is_floating_point() and not bool(torch.isfinite(t).all())
    ]


def warn_nonfinite(model: nn.Module, where: str) -> None:
    """A one-line warning (not an error: the file is what it is) naming the tensors."""
    bad = nonfinite_tensors(model)
    if bad:
        names = ", ".join(bad[:5]) + (", ..." if len(bad) > 5 else "")
        print(
            f"warning: {where}: NaN or Inf in {plural(len(bad), 'tensor')} ({names}); "
            "written as they are",
            file=sys.stderr,
        )


# ---------------------------------------------------------------------------------------------
# Images for a comparison: CIFAR-10's test split, or seeded noise of the model's input shape


def find_data_dir(data_dir: str | None) -> Path | None:
    """``--data-dir``, else ``CIFAR10_DIR``, else the cache; never a download. A directory the
    user named must hold the data (an error otherwise); without one, ``None`` if none is found."""
    if data_dir is not None or os.environ.get("CIFAR10_DIR"):
        return data.resolve_data_dir(data_dir, download=False)
    try:
        return data.resolve_data_dir(None, download=False)
    except data.Cifar10NotFoundError:
        return None


def comparison_images(
    model: nn.Module, data_dir: str | None, n: int | None, dtype: torch.dtype, seed: int
) -> tuple[torch.Tensor, str]:
    """``(x, what)``: the first ``n`` CIFAR-10 test images (all by default) as ``dtype`` in
    [0, 1] when the model takes 32×32 RGB images and the data is found; else ``n`` (default
    256) seeded uniform images of the model's input shape, with a note on stderr."""
    shape = input_chw(model)
    fits = len(shape) == 3 and all(d in (None, c) for d, c in zip(shape, CIFAR10_CHW, strict=True))
    root = find_data_dir(data_dir) if fits else None
    if root is not None:
        images = data.load_test_split(root, download=False).images[:n]
        return data.to_float(
            images, dtype
        ), f"{plural(len(images), 'CIFAR-10 test image')} from {root}"
    count = n or DEFAULT_RANDOM_IMAGES
    why = (
        "no CIFAR-10 data found (set CIFAR10_DIR or --data-dir)"
        if fits
        else f"the model takes inputs {shape_str(shape)}, not CIFAR-10's (N, 3, 32, 32)"
    )
    print(f"note: {why}; using {plural(count, 'seeded random image')}", file=sys.stderr)
    g = torch.Generator().manual_seed(seed)
    full = tuple(32 if d is None else d for d in shape)
    x = torch.rand(count, *full, generator=g, dtype=torch.float64).to(dtype)
    return x, f"{plural(count, 'seeded random image')} (seed {seed})"
