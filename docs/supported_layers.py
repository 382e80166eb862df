"""The supported-layer tables of docs/converter.md, generated from the converter registry.

    python docs/supported_layers.py            # print the tables
    python docs/supported_layers.py --write    # rewrite the block in docs/converter.md

Each registered Keras layer class is built once or twice with a small representative config
(the variants that pick another torch module: 'same' padding, a map or a vector input), and
the table lists the torch module each build returns. Op nodes (``keras.src.ops.*``) are
listed by name. ``tests/test_examples.py`` checks that the page holds what this prints, so a
converter added to the registry without a line here fails the tests.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from torch import nn

import torch_cnn
from torch_cnn.convert import BuildContext, KerasCall, TensorArg, get_converter
from torch_cnn.convert.registry import supported_ops
from torch_cnn.layers.spec import TensorSpec

PAGE = Path(__file__).resolve().parent / "converter.md"
START, END = "<!-- supported layers start -->", "<!-- supported layers end -->"

MAP, VEC = TensorSpec((8, 8, 4)), TensorSpec((16,))
# class → [(config, input spec, when)]: the builds whose torch modules the table lists; a class
# not listed is built once, on a map, with an empty config (Keras's defaults).
VARIANTS: dict[str, list[tuple[dict[str, Any], TensorSpec, str]]] = {
    "Activation": [({"activation": "relu"}, MAP, "")],
    "Conv2D": [
        ({"filters": 4, "kernel_size": 3}, MAP, ""),
        ({"filters": 4, "kernel_size": 3, "strides": 2, "padding": "same"}, MAP, "TF 'same'"),
    ],
    "Conv2DTranspose": [
        ({"filters": 4, "kernel_size": 3}, MAP, ""),
        ({"filters": 4, "kernel_size": 3, "strides": 2, "padding": "same"}, MAP, "TF 'same'"),
    ],
    "DepthwiseConv2D": [({"kernel_size": 3}, MAP, "")],
    "SeparableConv2D": [({"filters": 4, "kernel_size": 3}, MAP, "")],
    "Dense": [({"units": 3}, VEC, ""), ({"units": 3}, MAP, "on a map")],
    "BatchNormalization": [({}, MAP, "on a map"), ({}, VEC, "on vectors")],
    "Softmax": [({}, MAP, ""), ({"axis": 1}, MAP, "another axis")],
    "MaxPooling2D": [
        ({"pool_size": 2}, MAP, ""),
        ({"pool_size": 3, "padding": "same"}, MAP, "'same'"),
    ],
    "AveragePooling2D": [
        ({"pool_size": 2}, MAP, ""),
        ({"pool_size": 3, "padding": "same"}, MAP, "'same'"),
    ],
    "ReLU": [
        ({}, MAP, ""),
        ({"max_value": 6.0}, MAP, "max_value=6"),
        ({"threshold": 1.0}, MAP, "other options"),
    ],
    "Cropping2D": [({"cropping": 1}, MAP, "")],
    "ZeroPadding2D": [({"padding": 1}, MAP, "")],
    "UpSampling2D": [({"size": 2}, MAP, "")],
    "Reshape": [({"target_shape": [4, 4, 16]}, MAP, "")],
    "Permute": [({"dims": [2, 1, 3]}, MAP, "")],
    "Rescaling": [({"scale": 0.5}, MAP, "")],
    "Normalization": [({"axis": [-1], "mean": [0.0] * 4, "variance": [1.0] * 4}, MAP, "")],
    "Dropout": [({"rate": 0.5}, MAP, "")],
    "SpatialDropout1D": [({"rate": 0.5}, TensorSpec((8, 4)), "")],
    "SpatialDropout2D": [({"rate": 0.5}, MAP, "")],
    "SpatialDropout3D": [({"rate": 0.5}, TensorSpec((4, 4, 4, 2)), "")],
    "GaussianNoise": [({"stddev": 0.1}, MAP, "")],
    "GaussianDropout": [({"rate": 0.1}, MAP, "")],
    "TFOpLambda": [({"function": "__operators__.add"}, MAP, "")],
}
NOTES = {
    "Activation": "the activation fused into the graph, so `logits()` can skip a final softmax",
    "BatchNormalization": "Keras's epsilon (1e-3), momentum convention, biased moving variance",
    "Conv2D": "'same' pads TensorFlow's way: the odd pixel bottom/right",
    "Conv2DTranspose": "TensorFlow's output size and placement; `output_padding`",
    "Dense": "on a map, over the channel axis (Keras's last)",
    "DepthwiseConv2D": "`groups` = channels; kernel `(kh, kw, in, mult)`",
    "Flatten": "Keras's (H, W, C) order; `nn.Flatten` when only Dense layers read it",
    "LeakyReLU": "Keras 3's default slope 0.3, rounded to float32 as TensorFlow does",
    "AveragePooling2D": "'same' excludes the padding from the mean, as TensorFlow",
    "MaxPooling2D": "'same' pads with -inf, as TensorFlow",
    "Permute": "on Keras's axes",
    "Reshape": "in Keras's element order",
    "Softmax": "fused on the last axis, so `logits()` can skip it",
    "TFOpLambda": "Keras 2's recorded TensorFlow ops (`x + 3.0`, `tf.nn.relu6`, ...)",
    "UpSampling2D": "nearest and bilinear",
}
MERGES = ("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate")


def module_name(module: nn.Module) -> str:
    """``nn.Conv2d`` for torch's own classes, the class name for torch_cnn's."""
    cls = type(module)
    return f"nn.{cls.__name__}" if cls.__module__.startswith("torch.nn") else cls.__name__


def built(class_name: str, config: dict[str, Any], spec: TensorSpec) -> str:
    """The torch module the registered converter builds for one call (and its fused activation)."""
    if class_name in MERGES:
        call = KerasCall(
            "x", class_name, config, "keras.layers", args=([TensorArg(0), TensorArg(1)],)
        )
        inputs = [spec, spec]
    else:
        args: tuple[Any, ...] = (
            (TensorArg(0), 3.0) if class_name == "TFOpLambda" else (TensorArg(0),)
        )
        call = KerasCall("x", class_name, config, "keras.layers", args=args)
        inputs = [spec]
    out = get_converter(call).build(call, inputs, BuildContext())
    fused = f" + {out.activation}" if out.activation != "linear" else ""
    return f"`{module_name(out.module)}`{fused}"


def layer_table() -> list[str]:
    rows = ["| Keras layer | torch module | note |", "| --- | --- | --- |"]
    for cls in torch_cnn.supported_layers():
        shown = []
        for cfg, spec, when in VARIANTS.get(cls, [({}, MAP, "")]):
            module = built(cls, cfg, spec) + (f" ({when})" if when else "")
            if module not in shown:
                shown.append(module)
        rows.append(f"| `{cls}` | {', '.join(shown)} | {NOTES.get(cls, '')} |")
    return rows


def tables() -> str:
    ops = ", ".join(f"`{name}`" for name in supported_ops())
    lines = [
        START,
        *layer_table(),
        "",
        f"Keras 3 op nodes (`module: keras.src.ops.*`, {len(supported_ops())}): {ops}.",
        END,
    ]
    return "\n".join(lines) + "\n"


def write(page: Path = PAGE) -> None:
    text = page.read_text(encoding="utf-8")
    i, j = text.index(START), text.index(END) + len(END) + 1
    page.write_text(text[:i] + tables() + text[j:], encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"rewrite the block in {PAGE.name}")
    args = parser.parse_args(argv)
    if args.write:
        write()
        print(f"wrote the supported-layer tables into {PAGE}", file=sys.stderr)
    else:
        print(tables(), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
