"""The benchmark's markdown: the throughput and latency tables, issue 15's targets, the accuracy
lines, the whole report, and the README block it is written into.

Formatting only, on records (dicts as ``--json`` writes them): no torch at run time.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.common import LATENCY_REPEAT_S, atomic_write_text

if TYPE_CHECKING:
    from benchmarks.torch_side import RunConfig

ACCURACY_TOLERANCE_POINTS = 2.0  # fast mode may lose at most this much test accuracy
CIFAR10_TRAIN_IMAGES = 50_000
EPOCH_TARGET_MS = 50.0  # fast mode's CIFAR-10 epoch on one GPU
KERAS = "keras_tensorflow"
ORT = "onnxruntime"
# Issue 15's targets (model_cifar10, float32 unless said, every row within the parity bars).
INFER_VS_KERAS = 1.3  # default inference ≥ 1.3× Keras-TF's best predict (same batch)
INFER_VS_ORT = 1.1  # ... and ≥ 1.1× onnxruntime
LATENCY_VS_KERAS = 0.5  # default batch-1 latency ≤ 0.5× Keras's predict_on_batch
LATENCY_VS_ORT = 1.0  # ... and ≤ onnxruntime's
TRAIN_VS_KERAS = 1.3  # default training at the recipe's batch ≥ 1.3× Keras-TF's best fit there
FAST_TRAIN_VS_KERAS = 2.0  # fast (bf16) training ≥ 2× Keras-TF's best fit (any batch, any mode)


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def settings_text(rec: Mapping[str, Any]) -> str:
    """The table's ``settings`` cell: what a record ran with, in a few words."""
    s = rec.get("settings", {})
    if rec["framework"] == ORT:
        return f"{s.get('provider', 'CPUExecutionProvider')}, {s.get('onnx_source', 'ONNX')}"
    if s.get("call"):
        return f"{s['call']}, compile defaults (jit_compile={s.get('jit_compile')!r})"
    if rec["framework"] != "torch_cnn":
        jit = s.get("jit_compile")
        text = (
            "XLA (jit_compile=True)" if jit is True else f"compile defaults (jit_compile={jit!r})"
        )
        if s.get("steps_per_execution", 1) > 1:
            text += f", steps_per_execution={s['steps_per_execution']}"
        return text
    parts = ["bf16 autocast" if s.get("autocast") else "fp32"]
    if s.get("memory_format") == "channels_last":
        parts.append("channels_last (parameters too)")
    elif s.get("model_memory_format") == "contiguous":
        parts.append("plain NCHW (memory_format='contiguous')")
    elif s.get("model_memory_format") == "auto":
        parts.append("channels_last inside the model (default)")
    if "optimizer" in s:
        parts.append(f"{s['optimizer']} lr {s['lr']:.2g}")
    if s.get("compile"):
        parts.append(f"compile ({s.get('compile_mode', 'default')})")
    if s.get("cuda_graphs"):
        parts.append("CUDA graph")
    return ", ".join(parts)


def _diff(rec: Mapping[str, Any]) -> str:
    d = rec.get("max_abs_diff")
    return "–" if d is None else f"{d:.1e}"


def _ratio(value: float, ref: Mapping[str, Any] | None, key: str) -> str:
    return f"{value / ref[key]:.2f}×" if ref else "–"


def format_table(records: Sequence[Mapping[str, Any]]) -> str:
    """The markdown table of the throughput ``records`` (train and infer), one row each:
    ``× Keras TF`` against Keras on TensorFlow's best record for the same model, task and batch
    size, ``× ORT`` against onnxruntime's, ``max |Δ|`` the row's outputs against Keras's."""
    head = (
        "| framework | mode | model | task | batch | images/s (median) | min – max | × Keras TF "
        "| × ORT | GFLOP/s (% of matmul peak) | max \\|Δ\\| vs Keras | peak memory MiB "
        "| compile s | settings |"
    )
    lines = [head, "|" + "---|" * 14]
    for r in records:
        if r["task"] == "latency":
            continue
        same = {"model": r.get("model"), "task": r["task"], "batch_size": r["batch_size"]}
        keras = best(records, framework=KERAS, **same)
        ort = best(records, framework=ORT, **same)
        flops = _fmt(r["gflop_per_s"]) if "gflop_per_s" in r else "–"
        if r.get("peak_gflop_per_s"):
            flops += f" ({100 * r['gflop_per_s'] / r['peak_gflop_per_s']:.1f}%)"
        lines.append(
            f"| {r['framework']} | {r['mode']} | {r.get('model', '–')} | {r['task']} "
            f"| {r['batch_size']} | {_fmt(r['images_per_s'])} | {_fmt(r['images_per_s_min'])} – "
            f"{_fmt(r['images_per_s_max'])} | {_ratio(r['images_per_s'], keras, 'images_per_s')} "
            f"| {_ratio(r['images_per_s'], ort, 'images_per_s')} | {flops} | {_diff(r)} "
            f"| {r['peak_memory_mb']:,.0f} | {r.get('compile_s', 0):.2f} | {settings_text(r)} |"
        )
    return "\n".join(lines)


def format_latency_table(records: Sequence[Mapping[str, Any]]) -> str:
    """The markdown table of the batch-1 latency ``records``: µs per call (median over the
    rounds, each round a median of many calls), against Keras's ``predict_on_batch`` and
    onnxruntime on the same model."""
    head = (
        "| framework | mode | model | µs per call (median) | min – max | × Keras "
        "predict_on_batch | × ORT | calls per repeat | max \\|Δ\\| vs Keras | settings |"
    )
    lines = [head, "|" + "---|" * 10]
    for r in records:
        if r["task"] != "latency":
            continue
        model = r.get("model")
        keras = best(records, framework=KERAS, mode="predict_on_batch", task="latency", model=model)
        ort = best(records, framework=ORT, task="latency", model=model)
        lines.append(
            f"| {r['framework']} | {r['mode']} | {model} | {_fmt(r['latency_us'])} "
            f"| {_fmt(r['latency_us_min'])} – {_fmt(r['latency_us_max'])} "
            f"| {_ratio(r['latency_us'], keras, 'latency_us')} "
            f"| {_ratio(r['latency_us'], ort, 'latency_us')} | {r.get('calls_per_repeat', '–')} "
            f"| {_diff(r)} | {settings_text(r)} |"
        )
    return "\n".join(lines)


def best(records: Sequence[Mapping[str, Any]], **match: Any) -> Mapping[str, Any] | None:
    """The best record whose fields equal ``match`` (the highest images/s; for latency rows the
    lowest µs per call, which is the same record), or None."""
    found = [r for r in records if all(r.get(k) == v for k, v in match.items())]
    return max(found, key=lambda r: r["images_per_s"]) if found else None


def accuracy_holds(accuracy: Mapping[str, Any]) -> bool:
    """Fast mode's mean test accuracy is at most 2 points below default mode's."""
    return bool(accuracy["difference_points"] >= -ACCURACY_TOLERANCE_POINTS)


def _bound(
    ours: Mapping[str, Any],
    ref: Mapping[str, Any],
    target: float,
    gemm: Mapping[str, float] | None,
) -> str:
    """For a missed target: how close the row is to the limit (its arithmetic rate against the
    best matmul's) and the rate the target needs."""
    if gemm is None or "gflop_per_s" not in ref or "gflop_per_s" not in ours:
        return ""
    dtype = "bf16" if ours.get("settings", {}).get("autocast") == "bfloat16" else "fp32"
    peak = gemm[dtype]
    needed = (
        target
        * ref["gflop_per_s"]
        * ours["gflop_per_s"]
        / ours["images_per_s"]
        / (ref["gflop_per_s"] / ref["images_per_s"])
    )  # the target's images/s at this row's FLOPs per image
    verdict = "more than" if needed > peak else "within"
    return (
        f"; the row runs at {_fmt(ours['gflop_per_s'])} GFLOP/s "
        f"({100 * ours['gflop_per_s'] / peak:.0f}% of the best {dtype} matmul here, "
        f"{_fmt(peak)} GFLOP/s); the target needs {_fmt(needed)} GFLOP/s, {verdict} it"
    )


def _ratio_line(
    name: str,
    ours: Mapping[str, Any] | None,
    ref: Mapping[str, Any] | None,
    target: float,
    gemm: Mapping[str, float] | None,
    accuracy: Mapping[str, Any] | None = None,
    *,
    needs_accuracy: bool = False,
) -> str:
    """One target line: ``ours`` against ``ref`` in images/s, the target, met or not."""
    if ours is None or ref is None:
        return f"- {name}: not measured"
    x = ours["images_per_s"] / ref["images_per_s"]
    met = x >= target
    verdict = "met" if met else "NOT met"
    if needs_accuracy:
        if accuracy is None:
            verdict += " for speed; accuracy not checked (run with --accuracy)"
        elif not accuracy_holds(accuracy):
            verdict = f"NOT met: accuracy {accuracy['difference_points']:+.2f} points"
        else:
            verdict += f", accuracy {accuracy['difference_points']:+.2f} points"
    return (
        f"- {name}: {_fmt(ours['images_per_s'])} / {_fmt(ref['images_per_s'])} img/s = "
        f"**{x:.2f}×** (target ≥ {target:g}×): {verdict}"
        + (_bound(ours, ref, target, gemm) if not met else "")
    )


def _latency_line(
    name: str,
    ours: Mapping[str, Any] | None,
    ref: Mapping[str, Any] | None,
    target: float,
    gemm: Mapping[str, float] | None,
) -> str:
    """One latency target line: µs per call against ``ref``'s, at most ``target`` times it."""
    if ours is None or ref is None:
        return f"- {name}: not measured"
    x = ours["latency_us"] / ref["latency_us"]
    met = x <= target
    return (
        f"- {name}: {_fmt(ours['latency_us'])} / {_fmt(ref['latency_us'])} µs = **{x:.2f}×** "
        f"(target ≤ {target:g}×): {'met' if met else 'NOT met'}"
        + ("" if met else _bound(ours, ref, 1 / target, gemm))
    )


def _epoch_line(fast: Mapping[str, Any], accuracy: Mapping[str, Any] | None) -> str:
    """Fast mode's 50,000-image epoch on the GPU against the 50 ms target."""
    epoch_ms = 1000 * CIFAR10_TRAIN_IMAGES / fast["images_per_s"]
    how = (
        "measured epochs of 50,000 images"
        if fast["images_per_repeat"] == CIFAR10_TRAIN_IMAGES
        else f"from repeats of {fast['images_per_repeat']:,} images"
    )
    verdict = "met" if epoch_ms <= EPOCH_TARGET_MS else "NOT met"
    if accuracy is not None and not accuracy_holds(accuracy):
        verdict = "NOT met (accuracy)"
    return (
        f"- fast train, one 50,000-image epoch on the GPU: **{epoch_ms:.1f} ms** "
        f"({how}; target ≤ 50 ms): {verdict}"
    )


def target_report(
    records: Sequence[Mapping[str, Any]],
    small_batch: int,
    accuracy: Mapping[str, Any] | None = None,
    gemm: Mapping[str, float] | None = None,
    model: str | None = None,
) -> list[str]:
    """Issue 15's targets for ``model`` (default: the records' first), each as a line: the
    measured ratio, the target, met or not.

    The default path (what ``model(x)`` and ``fit`` do unasked) against Keras on TensorFlow's
    best mode and onnxruntime: inference at the large batch, batch-1 latency, training at
    ``small_batch``; fast mode's training against Keras's best ``fit`` at any batch. Fast
    mode's target holds only with its accuracy: without ``accuracy`` (``--accuracy``) it is
    reported as speed alone, and says that the accuracy was not checked. With ``gemm``
    (GFLOP/s of the best matmul, per dtype) a missed target also says how close the row is to
    that limit and what arithmetic rate the target needs.
    """
    model = model or (records[0].get("model") if records else None)
    ours = {"framework": "torch_cnn", "mode": "default", "model": model}
    train = best(records, **ours, task="train", batch_size=small_batch)
    infer = best(records, **ours, task="infer")
    latency = best(records, **ours, task="latency")
    same = {"model": model, "task": "infer", "batch_size": infer["batch_size"] if infer else None}
    # With the accuracy check, fast mode is the recipe it checked (its batch), not any row.
    batch = {"batch_size": accuracy["fast_settings"]["batch_size"]} if accuracy else {}
    fast = best(records, framework="torch_cnn", mode="fast", model=model, task="train", **batch)
    keras_fit = {"framework": KERAS, "model": model, "task": "train"}
    lines = [
        _ratio_line(
            "default inference vs Keras-TF predict (same batch, its best mode)",
            infer,
            best(records, framework=KERAS, **same),
            INFER_VS_KERAS,
            gemm,
        ),
        _ratio_line(
            "default inference vs onnxruntime (Keras's ONNX export, same batch)",
            infer,
            best(records, framework=ORT, **same),
            INFER_VS_ORT,
            gemm,
        ),
        _latency_line(
            "default batch-1 latency vs Keras-TF predict_on_batch",
            latency,
            best(records, framework=KERAS, mode="predict_on_batch", model=model, task="latency"),
            LATENCY_VS_KERAS,
            gemm,
        ),
        _latency_line(
            "default batch-1 latency vs onnxruntime",
            latency,
            best(records, framework=ORT, model=model, task="latency"),
            LATENCY_VS_ORT,
            gemm,
        ),
        _ratio_line(
            f"default train @{small_batch} vs Keras-TF fit @{small_batch} (its best mode, "
            "steps_per_execution included)",
            train,
            best(records, **keras_fit, batch_size=small_batch),
            TRAIN_VS_KERAS,
            gemm,
        ),
        _ratio_line(
            f"fast train (batch {fast['batch_size'] if fast else '?'}) vs Keras-TF's best fit "
            "(any batch, any mode)",
            fast,
            best(records, **keras_fit),
            FAST_TRAIN_VS_KERAS,
            gemm,
            accuracy,
            needs_accuracy=True,
        ),
    ]
    if fast is not None and fast["device"] == "cuda":
        lines.append(_epoch_line(fast, accuracy))
    return lines


def compiled_lines(
    records: Sequence[Mapping[str, Any]], model: str, gemm: Mapping[str, float] | None = None
) -> list[str]:
    """The opt-in ``torch.compile`` switch (mode ``compiled``) against the inference targets."""
    ours = best(records, framework="torch_cnn", mode="compiled", model=model, task="infer")
    if ours is None:
        return []
    same = {"model": model, "task": "infer", "batch_size": ours["batch_size"]}
    return [
        _ratio_line(
            "compiled (opt-in torch.compile, float32) inference vs Keras-TF predict",
            ours,
            best(records, framework=KERAS, **same),
            INFER_VS_KERAS,
            gemm,
        ),
        _ratio_line(
            "compiled (opt-in torch.compile, float32) inference vs onnxruntime",
            ours,
            best(records, framework=ORT, **same),
            INFER_VS_ORT,
            gemm,
        ),
    ]


def converted_lines(records: Sequence[Mapping[str, Any]], main: str) -> list[str]:
    """For each other model (the converted ones): torch_cnn's default against Keras-TF and
    onnxruntime, inference and batch-1 latency (no targets: reported as measured)."""
    lines = []
    for model in dict.fromkeys(r.get("model") for r in records):
        if model == main:
            continue
        ours = {"framework": "torch_cnn", "mode": "default", "model": model}
        infer = best(records, **ours, task="infer")
        latency = best(records, **ours, task="latency")
        parts = []
        for label, ref_fw in (("Keras-TF", KERAS), ("onnxruntime", ORT)):
            ref = best(records, framework=ref_fw, model=model, task="infer")
            if infer and ref:
                parts.append(
                    f"inference {infer['images_per_s'] / ref['images_per_s']:.2f}× {label}"
                )
            mode = {"mode": "predict_on_batch"} if ref_fw == KERAS else {}
            ref = best(records, framework=ref_fw, model=model, task="latency", **mode)
            if latency and ref:
                parts.append(
                    f"batch-1 latency {latency['latency_us'] / ref['latency_us']:.2f}× {label}'s"
                )
        if parts:
            lines.append(f"- {model} (converted with from_keras): " + ", ".join(parts))
    return lines


def format_accuracy(acc: Mapping[str, Any]) -> list[str]:
    """The accuracy check's lines (``accuracy.accuracy_check``'s result), after a blank line."""
    p, f = acc["default"], acc["fast"]
    diff = acc["difference_points"]
    verdict = "met" if accuracy_holds(acc) else "NOT met"
    fast_text = settings_text({"framework": "torch_cnn", "settings": acc["fast_settings"]})
    return [
        "",
        f"Accuracy (test split, {acc['num_test']:,} images; {acc['epochs']} epochs on "
        f"{acc['num_train']:,} training images from `{acc['data_dir']}`; seeds "
        f"{', '.join(map(str, acc['seeds']))}; mean ± sd):",
        f"- default (fit's defaults, batch 32): {100 * p['mean']:.2f} ± {100 * p['sd']:.2f}% "
        f"({statistics.mean(p['seconds']):.1f} s per run)",
        f"- fast (batch {acc['fast_settings']['batch_size']}, {fast_text}): "
        f"{100 * f['mean']:.2f} ± {100 * f['sd']:.2f}% ({statistics.mean(f['seconds']):.1f} s per run)",
        f"- fast − default: **{diff:+.2f} points** (target: within 2 points below): {verdict}",
    ]


def _provenance(
    records: Sequence[Mapping[str, Any]],
    config: RunConfig,
    info: Mapping[str, Any],
    command: str,
    flops_per_image: int | Mapping[str, int],
) -> list[str]:
    """The report's heading and its bullet list: date, command, machine, versions, method."""
    if not isinstance(flops_per_image, int):
        flops_per_image = flops_per_image[config.model]
    v = dict(info["versions"])
    for rec in records:
        v.update(rec.get("versions", {}))
    peak = info["cpu_peak"]
    load = info["load_average"]
    lines = [
        f"### `{config.model}` on {info['device']}",
        "",
        f"- Date: {info['date']}; command: `{command}`",
        f"- Machine: {info['cpu']}, {info['logical_cpus']} logical CPUs, {info['threads']} "
        f"intra-op threads for every framework; bf16 compute: {'yes' if info['bf16'] else 'no'}"
        + (f"; 1-minute load average {load[0]:.2f} at the start" if load else "")
        + (f", {end[0]:.2f} at the end" if (end := info.get("load_average_end")) else ""),
        "- Versions: " + ", ".join(f"{k} {val}" for k, val in sorted(v.items())),
        f"- Each row: median (min – max) over {config.repeats} interleaved rounds (every "
        "framework's rows timed once per round, the Keras and onnxruntime ones in a fresh "
        f"process each round), a repeat being {config.images_per_repeat:,} random images "
        "(rounded up to whole batches) or, for batch-1 latency, the median of many calls "
        f"(about {LATENCY_REPEAT_S:g} s of them); warm-up ({config.warmup_steps} batches, "
        "twice) and compilation excluded, compile s is the first call. Peak memory: process "
        "RSS peak on the CPU (framework runtime included), allocator peak on CUDA.",
    ]
    if inputs := info.get("prepared_inputs"):
        lines.append(
            "- Same weights everywhere: Keras's seeded model, saved as `.keras` (the Keras "
            "processes load it), exported by Keras to ONNX (onnxruntime) and ported or "
            f"converted by torch_cnn; max |Δ| is each row's output on {inputs} against Keras "
            "on TensorFlow's `predict_on_batch` (float32 parity bar: 1e-5)."
        )
    else:
        lines.append(
            "- No shared weights (they need Keras on TensorFlow): torch_cnn's seeded models, "
            "no max |Δ| against Keras."
        )
    if gemm := info.get("gemm_gflops"):
        lines.append(
            f"- Best matmul measured here (2048² @ 2048², torch.mm): fp32 "
            f"{_fmt(gemm['fp32'])} GFLOP/s, bf16 {_fmt(gemm['bf16'])} GFLOP/s."
        )
    if peak.get("fp32_gflops"):
        lines.append(
            f"- Peak estimate from the CPU's flags and clock (for reference; the % column is "
            f"against the measured matmul): fp32 {peak['fp32_gflops']:,.0f} GFLOP/s, "
            f"bf16 {peak['bf16_gflops']:,.0f} GFLOP/s = {peak['basis']}. Training counts "
            f"3× the forward FLOPs ({flops_per_image / 1e6:.2f} MFLOP per image)."
        )
    return lines


def format_report(
    records: Sequence[Mapping[str, Any]],
    notes: Sequence[str],
    config: RunConfig,
    info: Mapping[str, Any],
    command: str,
    *,
    flops_per_image: int | Mapping[str, int],
    extra: Sequence[str] = (),
    accuracy: Mapping[str, Any] | None = None,
) -> str:
    """The markdown the benchmark prints: provenance, the tables, the targets, notes.

    ``info`` is ``hardware.machine``'s description (plus ``load_average_end``);
    ``flops_per_image`` the forward pass's (``hardware.forward_flops``), per model.
    """
    lines = _provenance(records, config, info, command, flops_per_image)
    lines += ["", "Throughput:", "", format_table(records)]
    if any(r["task"] == "latency" for r in records):
        lines += ["", "Batch-1 latency:", "", format_latency_table(records)]
    lines += ["", f"Targets (issue 15, defined for {config.model}):"]
    lines += target_report(
        records, config.small_batch, accuracy, info.get("gemm_gflops"), config.model
    )
    if switch := compiled_lines(records, config.model, info.get("gemm_gflops")):
        lines += ["", "The opt-in compiled path against the same inference targets:", *switch]
    if converted := converted_lines(records, config.model):
        lines += ["", "Converted models (no targets):", *converted]
    if notes:
        lines += ["", "Notes:", *(f"- {n}" for n in notes)]
    lines += extra
    return "\n".join(lines) + "\n"


def readme_key(config: RunConfig) -> str:
    """Which README block a run fills: ``model_cifar10 cpu``."""
    return f"{config.model} {config.torch_device.type}"


def write_readme_section(path: str | Path, key: str, report: str) -> None:
    r"""Put ``report`` between ``<!-- bench KEY start -->`` and ``<!-- bench KEY end -->``.

    Everything else in the file stays as it was; the file is replaced atomically. Without
    both markers (once each, in order) nothing is written and ``ValueError`` says what is
    missing.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = Path(d) / "README.md"
    ...     _ = p.write_text("a\n<!-- bench m cpu start -->\nold\n<!-- bench m cpu end -->\nb\n")
    ...     write_readme_section(p, "m cpu", "new\n")
    ...     p.read_text()
    'a\n<!-- bench m cpu start -->\nnew\n<!-- bench m cpu end -->\nb\n'
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    start, end = f"<!-- bench {key} start -->", f"<!-- bench {key} end -->"
    i, j = text.find(start), text.find(end)
    if text.count(start) != 1 or text.count(end) != 1 or j < i:
        raise ValueError(
            f"{path} needs the lines {start!r} and {end!r}, once each and in that order, "
            f"around the block the benchmark writes; found {text.count(start)} and "
            f"{text.count(end)}"
        )
    body = report if report.endswith("\n") else report + "\n"
    atomic_write_text(path, text[: i + len(start)] + "\n" + body + text[j:])
