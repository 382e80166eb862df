"""``torch-cnn parity | compare``: torch_cnn against Keras, layer by layer (needs Keras).

``compare FILE`` loads the file twice, independently: with Keras (``keras.saving.load_model``,
or an architecture's ``load_weights`` for weights-only files) and with torch_cnn's own reader
(no TensorFlow), then runs both on the same images and compares every layer's output.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

import torch_cnn
from torch_cnn.cli.args import (
    DTYPES,
    FAILURE_STATUS,
    CliError,
    add_data_dir,
    add_dtype,
    command,
    existing,
    has_suffix,
    is_keras_path,
    is_weights_only_path,
    positive_int,
    seed,
)
from torch_cnn.cli.common import (
    comparison_images,
    describe_model,
    import_keras,
    load_model,
    load_weights_into,
    weights_only_error,
)
from torch_cnn.models import KerasGraph, KerasStyleNet, TorchCnnModel
from torch_cnn.parity import LayerDiff, ParityReport, compare_with_keras
from torch_cnn.porting.keras_files import read_keras_source

COMPARE_MEMORY = 1 << 30  # bytes of layer outputs held at once: images are compared in batches


# ---------------------------------------------------------------------------------------------
# Comparing in batches


def _batch_size(model: TorchCnnModel, x: torch.Tensor) -> int:
    """Images per batch so that every layer's output of both models, and one layer's float64
    differences, fit in ``COMPARE_MEMORY``."""
    with torch.no_grad():
        sizes = [t.numel() for t in model.layer_outputs(x[:1]).values()]
    per_image = 2 * sum(sizes) * x.element_size() + 4 * 8 * max(sizes, default=1)
    return max(1, min(len(x), COMPARE_MEMORY // max(per_image, 1)))


def _merge(reports: list[ParityReport], counts: list[int]) -> ParityReport:
    """One report from per-batch reports: the largest |Δ| of each layer over all batches, its
    largest relative |Δ| over the batches, top-1 agreement over all images."""
    first = reports[0]
    layers = []
    for rows in zip(*(r.layers for r in reports), strict=True):
        d: LayerDiff = rows[0]
        max_abs = max(r.max_abs for r in rows)
        layers.append(
            LayerDiff(
                d.keras_layer, d.torch_module, (sum(counts), *d.shape[1:]), d.params, max_abs,
                max(r.max_rel for r in rows), all(r.ok for r in rows),
            )
        )  # fmt: skip
    agree = sum(r.top1_agreement * n for r, n in zip(reports, counts, strict=True)) / sum(counts)
    return ParityReport(first.model, first.dtype, sum(counts), first.atol, tuple(layers), agree)


def compare_in_batches(model: TorchCnnModel, keras_model: Any, x: torch.Tensor) -> ParityReport:
    """``torch_cnn.parity.compare_with_keras`` over ``x`` in batches (bounded memory)."""
    size = _batch_size(model, x)
    reports, counts = [], []
    for start in range(0, len(x), size):
        xb = x[start : start + size]
        reports.append(compare_with_keras(model, keras_model, xb))
        counts.append(len(xb))
    return _merge(reports, counts)


# ---------------------------------------------------------------------------------------------
# Keras's side


def _with_dtype(obj: Any, dtype: str) -> Any:
    """A serialised Keras object with every floating dtype (and dtype policy) set to ``dtype``."""
    if isinstance(obj, list):
        return [_with_dtype(v, dtype) for v in obj]
    if not isinstance(obj, Mapping):
        return obj
    out: dict[str, Any] = {}
    for key, value in obj.items():
        if key == "dtype" and isinstance(value, str) and ("float" in value or "mixed" in value):
            out[key] = dtype
        elif (
            key == "dtype"
            and isinstance(value, Mapping)
            and "Policy" in str(value.get("class_name", ""))
        ):
            out[key] = {**value, "config": {**value.get("config", {}), "name": dtype}}
        else:
            out[key] = _with_dtype(value, dtype)
    return out


def keras_in_dtype(keras: Any, keras_model: Any, dtype: str) -> Any:
    """The same Keras model computing in ``dtype``: rebuilt from its config with every layer's
    dtype policy set to ``dtype``, and its weights cast (integer ones, counters, kept).

    A saved model's layers keep the dtype policy they were saved with (``float32``), so
    ``load_model`` alone would compute in float32 whatever the inputs."""
    entry = _with_dtype(keras.saving.serialize_keras_object(keras_model), dtype)
    rebuilt = keras.saving.deserialize_keras_object(entry)
    weights = [
        w.astype(dtype) if np.issubdtype(w.dtype, np.floating) else w
        for w in keras_model.get_weights()
    ]
    rebuilt.set_weights(weights)
    _finalize_state(rebuilt)
    return rebuilt


def _finalize_state(layer: Any) -> None:
    """What Keras's loaders do after assigning variables (``legacy_h5_format.py``,
    ``Normalization.load_own_variables``) and ``set_weights`` does not: an adapted
    ``Normalization`` derives the mean and variance it computes with from its variables."""
    if hasattr(layer, "finalize_state") and layer.weights:
        layer.finalize_state()
    for sub in getattr(layer, "layers", ()):
        _finalize_state(sub)


def _keras_call(keras: Any, what: str, fn: Callable[[], Any]) -> Any:
    """``fn()``, with Keras's own errors as a one-line failure naming ``what``."""
    try:
        return fn()
    except (MemoryError, KeyboardInterrupt):
        raise
    except Exception as exc:  # Keras raises many types for a file it cannot take
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise CliError(
            f"Keras {keras.__version__} cannot {what} ({type(exc).__name__}: {first[:300]})",
            FAILURE_STATUS,
        ) from exc


def keras_architecture(keras: Any, keras_ref: Any, arch: str, model: TorchCnnModel) -> Any:
    """A Keras model of ``--model``'s architecture (its weights are then loaded from the file):
    keras_ref's seed model, a converted model's Keras config, or a Keras model file's."""
    if isinstance(model, KerasStyleNet):
        return keras_ref.build_model(model.name, "float32")
    if isinstance(model, KerasGraph) and has_suffix(arch, (".safetensors",)):
        config = model.keras_config
        return _keras_call(
            keras,
            f"build the architecture stored in {arch}",
            lambda: keras.saving.deserialize_keras_object(config),
        )
    return _keras_call(keras, f"load {arch}", lambda: keras.saving.load_model(arch, compile=False))


def _torch_model(path: str, arch: str | None, dtype: torch.dtype) -> TorchCnnModel:
    """torch_cnn's reading of the file (no Keras): ``--model``'s architecture with its weights,
    or the file's own model."""
    if arch:
        return load_weights_into(load_model(arch, dtype=dtype, command="compare"), path)
    if is_weights_only_path(path):
        raise weights_only_error(path, "compare")
    try:
        return load_model(path, dtype=dtype, command="compare")
    except torch_cnn.ConversionError:
        if read_keras_source(path).config is None:  # a Keras 2 weights .h5
            raise weights_only_error(path, "compare") from None
        raise


def _cmd_compare(args: argparse.Namespace) -> int:
    path = args.file
    if not is_keras_path(path):
        raise CliError(
            f"{path}: expected a Keras file (.keras, .h5, .weights.h5, .weights.json or an "
            "unzipped .keras directory)"
        )
    existing(path, "file or directory")
    dtype = DTYPES[args.dtype]
    model = _torch_model(path, args.model, dtype)  # torch_cnn's own reader, no Keras
    keras, keras_ref = import_keras("compare", args.verbose)
    if args.model:
        keras_model = keras_architecture(keras, keras_ref, args.model, model)
        _keras_call(keras, f"load the weights of {path}", lambda: keras_model.load_weights(path))
    else:
        keras_model = _keras_call(
            keras, f"load {path}", lambda: keras.saving.load_model(path, compile=False)
        )
    if args.dtype != "float32":
        keras_model = keras_in_dtype(keras, keras_model, args.dtype)
    x, what = comparison_images(model, args.data_dir, args.n, dtype, args.seed)
    report = compare_in_batches(model, keras_model, x)
    print(f"{path}: {describe_model(model)}")
    print(f"Keras {keras.__version__} vs torch_cnn {torch_cnn.__version__} on {what}")
    print(report.format())
    return 0 if report.ok else FAILURE_STATUS


def _cmd_parity(args: argparse.Namespace) -> int:
    """Build each Keras reference model, port it, and compare every layer's output."""
    keras, keras_ref = import_keras("parity", args.verbose)
    dtype = DTYPES[args.dtype]
    names = [args.model] if args.model else torch_cnn.list_models()
    status = 0
    for name in names:
        keras.utils.set_random_seed(args.seed)
        keras_model = keras_ref.build_model(name, args.dtype)
        model = torch_cnn.create_model(name, dtype=dtype)
        assert isinstance(model, KerasStyleNet)
        torch_cnn.load_keras_weights(model, keras_model)
        x, what = comparison_images(model, args.data_dir, args.n, dtype, args.seed)
        print(torch_cnn.summary(model), end="\n\n")
        report = compare_in_batches(model, keras_model, x)
        print(f"Keras {keras.__version__} vs torch_cnn {torch_cnn.__version__} on {what}")
        print(report.format(), end="\n\n")
        status |= 0 if report.ok else FAILURE_STATUS
    return status


def _add_images(p: argparse.ArgumentParser) -> None:
    add_data_dir(p, "CIFAR10_DIR, else the cache; seeded random images when there is none")
    p.add_argument(
        "-n",
        type=positive_int,
        metavar="N",
        help="compare on the first N test images (default: all of them; 256 random images "
        "without data)",
    )
    p.add_argument(
        "--seed",
        type=seed,
        default=0,
        help="seed of Keras's initialisers (parity) and of the random images (default: 0)",
    )


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``parity`` and ``compare`` on a ``parser.add_subparsers()`` object."""
    p = command(
        subparsers,
        "parity",
        _cmd_parity,
        summary="build each seed model in Keras, port it, compare every layer (needs Keras)",
        description=[
            "Build the Keras reference of each seed model (keras_ref, seeded), port its "
            "weights into the torch_cnn model and compare every layer's output on CIFAR-10's "
            "test images. Exit status 1 if any layer is over the tolerance (1e-5 in float32, "
            "1e-12 in float64) or a prediction differs.",
        ],
    )
    p.add_argument("--model", choices=torch_cnn.list_models(), help="one model (default: both)")
    add_dtype(p, "both frameworks compute in this dtype (default: float32)")
    _add_images(p)

    p = command(
        subparsers,
        "compare",
        _cmd_compare,
        summary="a Keras file against its torch_cnn conversion, layer by layer (needs Keras)",
        description=[
            "Load FILE with Keras and, independently, with torch_cnn's own reader, run both "
            "on the same images (CIFAR-10's test split from CIFAR10_DIR or --data-dir; "
            "seeded random images of the model's input shape when there is no data or the "
            "model does not take 32×32 RGB images) and compare every layer's output. Exit "
            "status 1 if any layer is over the tolerance (1e-5 in float32, 1e-12 in float64) "
            "or a prediction differs.",
            "A weights-only file (.weights.h5, .weights.json, a Keras 2 weights .h5) records "
            "no architecture: give it with --model.",
            "  torch-cnn compare my_model.keras",
            "  torch-cnn compare ckpt.weights.h5 --model converted.safetensors --dtype float64",
        ],
    )
    p.add_argument(
        "file",
        metavar="FILE",
        help="a Keras file: .keras, .h5, .weights.h5, .weights.json, or an unzipped .keras "
        "directory",
    )
    p.add_argument(
        "--model",
        metavar="ARCH",
        help="the architecture for a weights-only FILE: a registered model, or a .safetensors "
        "or Keras model file (default: FILE's own)",
    )
    add_dtype(
        p,
        "both frameworks compute in this dtype: float64 rebuilds the Keras model with float64 "
        "layers and the file's weights cast (default: float32)",
    )
    _add_images(p)
