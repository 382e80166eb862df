"""The benchmark's markdown: the table, issue 6's targets, the accuracy lines, the whole report,
and the README block it is written into.

Formatting only, on records (dicts as ``--json`` writes them): no torch at run time.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.common import atomic_write_text

if TYPE_CHECKING:
    from benchmarks.torch_side import RunConfig

ACCURACY_TOLERANCE_POINTS = 2.0  # fast mode may lose at most this much test accuracy
CIFAR10_TRAIN_IMAGES = 50_000
EPOCH_TARGET_MS = 50.0  # fast mode's CIFAR-10 epoch on one GPU


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def settings_text(rec: Mapping[str, Any]) -> str:
    """The table's ``settings`` cell: what a record ran with, in a few words."""
    s = rec.get("settings", {})
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
        parts.append("channels_last")
    if "optimizer" in s:
        parts.append(f"{s['optimizer']} lr {s['lr']:.2g}")
    if s.get("compile"):
        parts.append(f"compile ({s.get('compile_mode', 'default')})")
    if s.get("cuda_graphs"):
        parts.append("CUDA graph")
    return ", ".join(parts)


def best(records: Sequence[Mapping[str, Any]], **match: Any) -> Mapping[str, Any] | None:
    """The fastest record whose fields equal ``match``, or None."""
    found = [r for r in records if all(r.get(k) == v for k, v in match.items())]
    return max(found, key=lambda r: r["images_per_s"]) if found else None


def format_table(records: Sequence[Mapping[str, Any]]) -> str:
    """The markdown table of ``records``: one row each, ``× Keras TF`` against Keras on
    TensorFlow's best record for the same task and batch size."""
    head = (
        "| framework | mode | task | batch | images/s (median) | min – max | × Keras TF "
        "| GFLOP/s (% of matmul peak) | peak memory MiB | compile s | settings |"
    )
    lines = [head, "|" + "---|" * 11]
    for r in records:
        ref = best(
            records, framework="keras_tensorflow", task=r["task"], batch_size=r["batch_size"]
        )
        ratio = f"{r['images_per_s'] / ref['images_per_s']:.2f}×" if ref else "–"
        flops = _fmt(r["gflop_per_s"]) if "gflop_per_s" in r else "–"
        if r.get("peak_gflop_per_s"):
            flops += f" ({100 * r['gflop_per_s'] / r['peak_gflop_per_s']:.1f}%)"
        lines.append(
            f"| {r['framework']} | {r['mode']} | {r['task']} | {r['batch_size']} "
            f"| {_fmt(r['images_per_s'])} | {_fmt(r['images_per_s_min'])} – "
            f"{_fmt(r['images_per_s_max'])} | {ratio} | {flops} | {r['peak_memory_mb']:,.0f} "
            f"| {r.get('compile_s', 0):.2f} | {settings_text(r)} |"
        )
    return "\n".join(lines)


def accuracy_holds(accuracy: Mapping[str, Any]) -> bool:
    """Fast mode's mean test accuracy is at most 2 points below parity mode's."""
    return bool(accuracy["difference_points"] >= -ACCURACY_TOLERANCE_POINTS)


def _bound(
    ours: Mapping[str, Any],
    ref: Mapping[str, Any],
    target: float,
    gemm: Mapping[str, float] | None,
) -> str:
    """For a missed target: the arithmetic rate it needs against the best matmul's."""
    if gemm is None or "gflop_per_s" not in ref:
        return ""
    dtype = "bf16" if ours.get("settings", {}).get("autocast") == "bfloat16" else "fp32"
    needed = target * ref["gflop_per_s"]
    verdict = "more than" if needed > gemm[dtype] else "within"
    return (
        f"; it needs {_fmt(needed)} GFLOP/s, {verdict} the {_fmt(gemm[dtype])} GFLOP/s of "
        f"the best {dtype} matmul on this machine"
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
) -> list[str]:
    """Issue 6's targets, each as a line: the measured ratio, the target, met or not.

    Fast mode's targets hold only with its accuracy: without ``accuracy`` (``--accuracy``)
    they are reported as speed alone, and say that the accuracy was not checked. With
    ``gemm`` (GFLOP/s of the best matmul, per dtype) a missed target also says what
    arithmetic rate it needs against what the hardware does at best.
    """
    keras = "keras_tensorflow"
    parity_train = best(
        records, framework="torch_cnn", mode="parity", task="train", batch_size=small_batch
    )
    infer = best(records, framework="torch_cnn", mode="parity", task="infer")
    keras_infer = (
        best(records, framework=keras, task="infer", batch_size=infer["batch_size"])
        if infer
        else None
    )
    # With the accuracy check, fast mode is the recipe it checked (its batch), not any row.
    batch = {"batch_size": accuracy["fast_settings"]["batch_size"]} if accuracy else {}
    fast = best(records, framework="torch_cnn", mode="fast", task="train", **batch)
    lines = [
        _ratio_line(
            f"parity train @{small_batch} vs Keras-TF fit @{small_batch} (its best mode)",
            parity_train,
            best(records, framework=keras, task="train", batch_size=small_batch),
            2,
            gemm,
        ),
        _ratio_line(
            "parity inference vs Keras-TF predict (same batch, its best mode)",
            infer,
            keras_infer,
            3,
            gemm,
        ),
        _ratio_line(
            f"fast train (batch {fast['batch_size'] if fast else '?'}) vs Keras-TF's best fit "
            "(any batch, any mode)",
            fast,
            best(records, framework=keras, task="train"),
            3,
            gemm,
            accuracy,
            needs_accuracy=True,
        ),
    ]
    if fast is not None and fast["device"] == "cuda":
        lines.append(_epoch_line(fast, accuracy))
    return lines


def format_accuracy(acc: Mapping[str, Any]) -> list[str]:
    """The accuracy check's lines (``accuracy.accuracy_check``'s result), after a blank line."""
    p, f = acc["parity"], acc["fast"]
    diff = acc["difference_points"]
    verdict = "met" if accuracy_holds(acc) else "NOT met"
    fast_text = settings_text({"framework": "torch_cnn", "settings": acc["fast_settings"]})
    return [
        "",
        f"Accuracy (test split, {acc['num_test']:,} images; {acc['epochs']} epochs on "
        f"{acc['num_train']:,} training images from `{acc['data_dir']}`; seeds "
        f"{', '.join(map(str, acc['seeds']))}; mean ± sd):",
        f"- parity (fit defaults, batch 32): {100 * p['mean']:.2f} ± {100 * p['sd']:.2f}% "
        f"({statistics.mean(p['seconds']):.1f} s per run)",
        f"- fast (batch {acc['fast_settings']['batch_size']}, {fast_text}): "
        f"{100 * f['mean']:.2f} ± {100 * f['sd']:.2f}% ({statistics.mean(f['seconds']):.1f} s per run)",
        f"- fast − parity: **{diff:+.2f} points** (target: within 2 points below): {verdict}",
    ]


def _provenance(
    records: Sequence[Mapping[str, Any]],
    config: RunConfig,
    info: Mapping[str, Any],
    command: str,
    flops_per_image: int,
) -> list[str]:
    """The report's heading and its bullet list: date, command, machine, versions, method."""
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
        f"- Each row: median (min – max) over {config.repeats} repeats of "
        f"{config.images_per_repeat:,} random images (rounded up to whole batches); warm-up "
        f"({config.warmup_steps} batches, twice) and compilation excluded, compile s is the "
        "first call. Peak memory: process RSS peak on the CPU (framework runtime included), "
        "allocator peak on CUDA.",
    ]
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
    flops_per_image: int,
    extra: Sequence[str] = (),
    accuracy: Mapping[str, Any] | None = None,
) -> str:
    """The markdown the benchmark prints: provenance, the table, the targets, notes.

    ``info`` is ``hardware.machine``'s description (plus ``load_average_end``);
    ``flops_per_image`` the forward pass's (``hardware.forward_flops``).
    """
    lines = _provenance(records, config, info, command, flops_per_image)
    lines += ["", format_table(records), "", "Targets (issue 6, defined for model_cifar10):"]
    lines += target_report(records, config.small_batch, accuracy, info.get("gemm_gflops"))
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
