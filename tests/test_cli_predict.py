"""``torch_cnn.predict`` and ``torch-cnn predict``: real CIFAR-10 test images written as PNG,
JPEG and NumPy files into a temporary directory, classified by converted and seed models."""

from __future__ import annotations

import json
import pickle
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import torch_cnn
from torch_cnn import data
from torch_cnn.cli import main
from torch_cnn.convert.build import from_config
from torch_cnn.porting.graph_weights import load_tree
from torch_cnn.porting.keras_files import read_keras_source
from torch_cnn.predict import (
    CIFAR10_CLASSES,
    ImageError,
    PredictError,
    predict,
    probabilities,
    read_images,
)

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT / "parity_tests" / "zoo"
N = 6


@pytest.fixture(scope="module")
def cifar(cifar10_dir: Path) -> data.Cifar10:
    return data.load_cifar10(cifar10_dir, download=False)


@pytest.fixture(scope="module")
def files(cifar: data.Cifar10, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The first N test images: one PNG each, one lossless JPEG-free NPY of all, one HWC NPY."""
    d = tmp_path_factory.mktemp("images")
    hwc = cifar.test.images[:N].permute(0, 2, 3, 1).numpy()
    out = {}
    for i in range(N):
        out[f"png{i}"] = d / f"img{i}.png"
        Image.fromarray(hwc[i]).save(out[f"png{i}"])
    out["jpg"] = d / "img0.jpg"
    Image.fromarray(hwc[0]).save(out["jpg"], quality=95)
    out["npy"] = d / "batch.npy"
    np.save(out["npy"], hwc)
    out["one"] = d / "one.npy"
    np.save(out["one"], hwc[1])
    out["big"] = d / "big.png"
    Image.fromarray(hwc[2]).resize((64, 48), Image.NEAREST).save(out["big"])
    return out


def _model_of_size(entry: str, shape: str) -> torch_cnn.models.KerasGraph:
    """A zoo model (global pooling: any size fits its weights) built for another input size."""
    contents = read_keras_source(ZOO / entry / "model.keras")
    config = json.loads(json.dumps(contents.config).replace("[null, 32, 32, 3]", shape))
    assert contents.weights is not None
    model = from_config(config)
    load_tree(model, contents.weights, entry)
    return model.eval()


# ---------------------------------------------------------------------------------------------
# The library


def test_predict_is_the_models_probabilities(cifar: data.Cifar10) -> None:
    """Softmax model: its own outputs; logits model: their softmax; top-k in order."""
    x = cifar.test.images[:N]
    for entry, activation in (("residual_bn", "softmax"), ("activation_layers_smooth", "linear")):
        model = torch_cnn.from_keras(ZOO / entry / "model.keras")
        assert model.output_activation == activation
        with torch.no_grad():
            out = model(data.to_float(x))
        expected = out if activation == "softmax" else torch.softmax(out, dim=1)
        preds = predict(model, x, top_k=3)
        assert [p.source for p in preds] == [str(i) for i in range(N)]
        for p, row in zip(preds, expected, strict=True):
            values, indices = row.topk(3)
            assert [s.index for s in p.top] == indices.tolist()
            assert [s.probability for s in p.top] == pytest.approx(values.tolist(), abs=1e-7)
            assert [s.name for s in p.top] == [CIFAR10_CLASSES[i] for i in indices.tolist()]
            assert p.label == p.top[0].name
        assert torch.allclose(probabilities(model, data.to_float(x)).sum(1), torch.ones(N))


def test_predict_takes_floats_and_uint8_alike(cifar: data.Cifar10) -> None:
    model = torch_cnn.from_keras(ZOO / "residual_bn" / "model.keras")
    x = cifar.test.images[:N]
    a = predict(model, x, top_k=10)
    b = predict(model, data.to_float(x), top_k=10, batch_size=4)
    assert [p.to_dict() for p in a] == [p.to_dict() for p in b]
    assert len(a[0].top) == 10 and len(predict(model, x, top_k=50)[0].top) == 10


def test_predict_runs_a_training_model_in_inference_mode_and_leaves_it_so(
    cifar: data.Cifar10,
) -> None:
    """After fit a model is in training mode: predict still uses BatchNormalization's moving
    statistics (Keras's predict does), changes none of them, and restores every module's mode."""
    model = torch_cnn.from_keras(ZOO / "residual_bn" / "model.keras")
    x = cifar.test.images[:N]
    expected = [p.to_dict() for p in predict(model, x, top_k=10)]
    model.train()
    frozen = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    frozen.eval()  # one module in another mode than the rest: kept as it was
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert [p.to_dict() for p in predict(model, x, top_k=10)] == expected
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert model.training and not frozen.training
    assert sum(m.training for m in model.modules()) == len(list(model.modules())) - 1


def test_one_sigmoid_unit_is_two_classes(cifar: data.Cifar10) -> None:
    model = torch_cnn.from_keras(ZOO / "head_sigmoid_one_unit" / "model.keras")
    x = data.to_float(cifar.test.images[:N])
    with torch.no_grad():
        p = model(x)[:, 0]
    [first, *_] = predict(model, x, top_k=2)
    assert {s.name for s in first.top} == {"class_0", "class_1"}
    by_name = {s.name: s.probability for s in first.top}
    assert by_name["class_1"] == pytest.approx(float(p[0]), abs=1e-7)
    assert by_name["class_0"] == pytest.approx(1 - float(p[0]), abs=1e-7)


def test_predict_refuses_what_is_not_a_classifier(cifar: data.Cifar10) -> None:
    maps = torch_cnn.from_keras(ZOO / "fully_conv_image_output" / "model.keras")
    with pytest.raises(PredictError, match=r"returns outputs of shape \(2, 2, 16, 16\)"):
        predict(maps, cifar.test.images[:2])
    with pytest.raises(ValueError, match="top_k must be ≥ 1; received top_k=0"):
        predict(maps, cifar.test.images[:2], top_k=0)


def test_read_images_reads_real_images_exactly(cifar: data.Cifar10, files: dict[str, Path]) -> None:
    expected = data.to_float(cifar.test.images[:N])
    for i in range(N):
        x, sources = read_images(files[f"png{i}"])
        assert sources == [str(files[f"png{i}"])] and torch.equal(x, expected[i : i + 1])
    x, sources = read_images(files["npy"])
    assert torch.equal(x, expected) and sources[3] == f"{files['npy']}[3]"
    x, _ = read_images(files["one"])
    assert torch.equal(x, expected[1:2])
    x, _ = read_images(files["jpg"])  # lossy: close, not equal
    assert x.shape == (1, 3, 32, 32) and float((x - expected[:1]).abs().mean()) < 0.02


def _bilinear_half_pixel(img: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """tf.image.resize's bilinear (half_pixel_centers=True, no antialias) in NumPy: output
    pixel i samples the input at (i + 0.5) · in / out − 0.5, clamped at the borders."""

    def axis(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        src = np.maximum((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0)
        lo = np.minimum(np.floor(src).astype(int), n_in - 1)
        return lo, np.minimum(lo + 1, n_in - 1), src - lo

    (y0, y1, fy), (x0, x1, fx) = axis(img.shape[0], out_h), axis(img.shape[1], out_w)
    top = img[y0][:, x0] * (1 - fx)[None, :, None] + img[y0][:, x1] * fx[None, :, None]
    bottom = img[y1][:, x0] * (1 - fx)[None, :, None] + img[y1][:, x1] * fx[None, :, None]
    return top * (1 - fy)[:, None, None] + bottom * fy[:, None, None]


def test_resize_is_half_pixel_bilinear(files: dict[str, Path]) -> None:
    """Down (64×48 → 32×32) and up (→ 24×20 is down too; → 80×70 up), against NumPy; the
    align-corners convention is caught."""
    img = np.asarray(Image.open(files["big"])).astype(np.float64) / 255
    with pytest.raises(ImageError, match=r"big.png: images of 64×48 pixels .* takes 32×32"):
        read_images(files["big"])
    for size in ((32, 32), (20, 24), (70, 80)):
        x, _ = read_images(files["big"], size, resize=True)
        ref = _bilinear_half_pixel(img, *size)
        assert x.shape == (1, 3, *size)
        assert np.abs(x[0].permute(1, 2, 0).double().numpy() - ref).max() < 1e-6
    wrong = torch.nn.functional.interpolate(
        torch.from_numpy(img).permute(2, 0, 1)[None], size=(32, 32), mode="bilinear",
        align_corners=True,
    )[0].permute(1, 2, 0).numpy()  # fmt: skip
    assert np.abs(wrong - _bilinear_half_pixel(img, 32, 32)).max() > 1e-2


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG whose header declares width × height, with a tiny IDAT: a decompression bomb's
    signature, refused before any decoding."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0"))
        + chunk(b"IEND", b"")
    )  # fmt: skip


def test_read_images_refuses_hostile_and_wrong_files(tmp_path: Path) -> None:
    cases: list[tuple[Path, str]] = []
    bomb = tmp_path / "bomb.png"  # over torch_cnn's cap
    _png_header_only(bomb, 9000, 9000)
    cases.append((bomb, r"bomb.png: 9000×9000 pixels, over the limit of 67,108,864"))
    big_bomb = tmp_path / "big_bomb.png"  # over Pillow's own (it refuses at open)
    _png_header_only(big_bomb, 40_000, 40_000)
    cases.append((big_bomb, r"big_bomb.png: refused, too many pixels \(Image size \(1600000000"))
    text = tmp_path / "text.png"
    text.write_text("not an image")
    cases.append((text, "text.png: not a readable PNG or JPEG image"))
    gif = tmp_path / "real.png"  # a GIF named .png: Pillow may decode only PNG and JPEG
    Image.new("RGB", (32, 32)).save(gif, format="GIF")
    cases.append((gif, "real.png: not a readable PNG or JPEG image"))
    clear = tmp_path / "clear.png"
    Image.new("RGBA", (32, 32), (10, 20, 30, 0)).save(clear)
    cases.append((clear, "clear.png: has transparent pixels"))
    cmyk = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (32, 32)).save(cmyk)
    cases.append((cmyk, "cmyk.jpg: mode CMYK"))
    floats = tmp_path / "floats.npy"
    np.save(floats, np.zeros((2, 32, 32, 3), np.float32))
    cases.append((floats, r"floats.npy: holds a float32 array of shape \(2, 32, 32, 3\)"))
    objects = tmp_path / "objects.npy"
    np.save(objects, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    cases.append((objects, "objects.npy: holds a object array"))
    huge = tmp_path / "huge.npy"  # a header declaring 4 GB, no data behind it
    header = np.lib.format.header_data_from_array_1_0(np.zeros((1, 1, 1, 3), np.uint8))
    header["shape"] = (500_000, 1000, 1000, 3)
    with open(huge, "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
    cases.append((huge, "huge.npy: declares 1,500,000,000,000 bytes, over the limit"))
    short = tmp_path / "short.npy"
    short.write_bytes(np.lib.format.magic(1, 0) + b"\x10\x00{'descr': '|u1'")
    cases.append((short, "short.npy: not a readable .npy file"))
    cases.append((tmp_path / "a.bmp", r"a.bmp: expected a PNG or JPEG image or a NumPy .npy"))
    for path, message in cases:
        with pytest.raises(ImageError, match=message):
            read_images(path)


def test_grayscale_and_opaque_alpha_become_rgb(tmp_path: Path) -> None:
    gray = np.arange(32 * 32, dtype=np.uint8).reshape(32, 32)
    Image.fromarray(gray).save(tmp_path / "g.png")
    x, _ = read_images(tmp_path / "g.png")
    assert all(torch.equal(x[0, c], torch.from_numpy(gray).float() / 255) for c in range(3))
    rgba = np.dstack([np.full((32, 32, 3), 7, np.uint8), np.full((32, 32), 255, np.uint8)])
    Image.fromarray(rgba).save(tmp_path / "a.png")
    assert torch.equal(read_images(tmp_path / "a.png")[0], torch.full((1, 3, 32, 32), 7 / 255))


# ---------------------------------------------------------------------------------------------
# The command


def _lines(out: str) -> dict[str, list[tuple[str, float]]]:
    """``source: name p, name p`` lines → {source: [(name, p), ...]}."""
    result = {}
    for line in out.strip().splitlines():
        source, _, rest = line.rpartition(": ")
        result[source] = [
            (c.rsplit(" ", 1)[0], float(c.rsplit(" ", 1)[1])) for c in rest.split(", ")
        ]
    return result


def test_predict_command_on_real_images(
    converted: Path,
    files: dict[str, Path],
    cifar: data.Cifar10,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("CIFAR10_DIR", raising=False)
    images = [str(files[f"png{i}"]) for i in range(N)]
    assert main(["predict", str(converted), *images, str(files["npy"]), "--top-k", "3"]) == 0
    captured = capsys.readouterr()
    printed = _lines(captured.out)
    assert f"residual_bn ({converted}) on {2 * N} images" in captured.err
    model = torch_cnn.load(converted)
    expected = predict(model, cifar.test.images[:N], top_k=3)
    for i, p in enumerate(expected):
        want = [(s.name, round(s.probability, 4)) for s in p.top]
        assert printed[images[i]] == want and printed[f"{files['npy']}[{i}]"] == want
    assert main(["predict", str(converted), images[0], "--json", "--top-k", "1"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["model"] == "residual_bn" and len(record["predictions"]) == 1
    [top] = record["predictions"][0]["top"]
    assert (top["index"], top["name"]) == (expected[0].top[0].index, expected[0].top[0].name)
    assert top["probability"] == pytest.approx(expected[0].top[0].probability, abs=1e-7)


def test_predict_names_classes_from_batches_meta(
    converted: Path,
    files: dict[str, Path],
    cifar10_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """CIFAR10_DIR (or --data-dir) honoured: its batches.meta's names are printed."""
    from tests.helpers import small_data_dir

    root = small_data_dir(cifar10_dir, tmp_path / "data", per_batch=1, test=1)
    names = [f"kind{i}" for i in range(10)]
    with open(root / data.META_FILE, "wb") as f:
        pickle.dump({b"label_names": [n.encode() for n in names]}, f)
    assert main(["predict", str(converted), str(files["png0"]), "--data-dir", str(root)]) == 0
    [(_, top)] = _lines(capsys.readouterr().out).items()
    assert {name for name, _ in top} <= set(names) and len(top) == 5
    (root / data.META_FILE).write_bytes(b"\x80\x04\x95")  # a broken batches.meta: an error
    assert main(["predict", str(converted), str(files["png0"]), "--data-dir", str(root)]) == 2
    assert "batches.meta" in capsys.readouterr().err


def test_predict_with_a_registered_model_needs_weights(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keras_file = ROOT / "parity_tests" / "files" / "model_cnn.keras"
    image = str(files["png0"])
    assert main(["predict", "model_cnn", image]) == 2
    assert "--weights FILE" in capsys.readouterr().err
    assert main(["predict", "model_cnn", image, "--weights", str(keras_file)]) == 0
    by_name = capsys.readouterr().out
    assert main(["predict", str(keras_file), image]) == 0  # the same model, from the file
    assert capsys.readouterr().out == by_name
    other = tmp_path / "other.safetensors"
    torch_cnn.save(torch_cnn.create_model("model_cifar10"), other)
    assert main(["predict", "model_cnn", image, "--weights", str(other)]) == 2
    assert "holds 'model_cifar10', not 'model_cnn'" in capsys.readouterr().err


def test_predict_resizes_only_when_asked(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 24×20 model: CIFAR's 32×32 images are refused naming both sizes, or resized."""
    path = tmp_path / "small.safetensors"
    torch_cnn.save(_model_of_size("global_pooling_keepdims", "[null, 24, 20, 3]"), path)
    image = str(files["png0"])
    assert main(["predict", str(path), image]) == 2
    err = capsys.readouterr().err
    assert f"{image}: images of 32×32 pixels" in err and "takes 20×24" in err
    assert main(["predict", str(path), image, "--resize", "--top-k", "1"]) == 0
    model = torch_cnn.load(path)
    x, _ = read_images(image, (24, 20), resize=True)
    [expected] = predict(model, x, top_k=1, sources=[image])
    assert _lines(capsys.readouterr().out)[image][0][0] == expected.label
    anysize = tmp_path / "any.safetensors"  # no fixed size: every image as it is
    torch_cnn.save(_model_of_size("global_pooling_keepdims", "[null, null, null, 3]"), anysize)
    assert main(["predict", str(anysize), image, str(files["big"])]) == 0
    assert set(_lines(capsys.readouterr().out)) == {image, str(files["big"])}


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["MODEL", "{tmp}/a.gif"], "a.gif: expected a PNG or JPEG image or a NumPy .npy"),
        (["MODEL", "{tmp}/missing.png"], "missing.png: no such file"),
        (["{tmp}/m.onnx", "IMAGE"], "m.onnx: expected a registered model"),
        (["{zoo}/residual_bn/model.weights.h5", "IMAGE"], "--model"),
        (["MODEL", "IMAGE", "--weights", "MODEL"], "--weights goes with a registered model"),
        (["{zoo}/fully_conv_image_output/model.keras", "IMAGE"], "needs a (N, classes) output"),
    ],
)
def test_predict_errors_are_usage_errors(
    argv: list[str],
    needle: str,
    converted: Path,
    files: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    subst = {"MODEL": str(converted), "IMAGE": str(files["png0"])}
    argv = [subst.get(a, a).format(tmp=tmp_path, zoo=ZOO) for a in argv]
    assert main(["predict", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err, err
