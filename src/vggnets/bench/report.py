"""The benchmark's report: the machine it ran on, a row of figures per path, the Markdown table, the plot, the JSON file.

A report is a JSON-ready dict; :data:`ROW_KEYS` are the keys of each of its rows (stable: scripts read them).
"""

from __future__ import annotations

import contextlib
import json
import statistics
from pathlib import Path
from typing import Any

import torch

from ..errors import MissingDependencyError
from ..io.output import atomic_write, write_text
from .measure import Timings, device_peaks, percentile
from .peaks import format_peaks, machine_peaks
from .ratios import PEER_RUNTIMES, format_peers

#: Keys of each row in the JSON output (stable: scripts read them).
ROW_KEYS = (
    "path",
    "precision",
    "compile",
    "images_per_s",
    "speedup",
    "latency_p50_ms",
    "latency_p99_ms",
    "latency_speedup",
    "peak_memory_mib",
    "cold_first_prediction_s",
    "warm_first_prediction_s",
    "gflops",
    "peak_fraction",
    "top1_agreement",
    "max_abs_logit_diff",
    "cosine_min",
    "cosine_mean",
    "warnings",
)

#: The matmul peak each precision's achieved GFLOP/s is compared with.
PEAK_OF_PRECISION = {"fp32": "fp32_gflops", "bf16": "bf16_gflops", "int8": "int8_gops"}


def describe_run(
    model: str, *, batch_size: int, image_size: int, width: float, device: torch.device, measure_peaks: bool
) -> dict[str, Any]:
    """The head of a report: the settings, the device and CPU, versions, threads and (when asked) the measured matmul
    peaks of the device and the peak reference "of peak" is measured against (best of conv and matmul primitives)."""
    from ..inference.machine import describe_cpu
    from ..version import __version__

    report: dict[str, Any] = {
        "model": model,
        "batch_size": batch_size,
        "image_size": image_size,
        "width": width,
        "device": _device_name(device),
        "cpu": describe_cpu(),
        "versions": {"torch": torch.__version__, "vggnets": __version__, **_optional_versions()},
        "threads": torch.get_num_threads(),
    }
    if measure_peaks:
        report["matmul_peaks"] = device_peaks(device)
        report["peaks"] = machine_peaks(device, report["matmul_peaks"])
    return report


def _device_name(device: torch.device) -> str:
    if device.type == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_name(device)
    return "cpu"


def _optional_versions() -> dict[str, str]:
    """Installed versions, read from package metadata (importing torchao would cost seconds and print noise)."""
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for name in ("torchvision", "torchao"):
        with contextlib.suppress(PackageNotFoundError):
            versions[name] = version(name)
    return versions


def make_row(
    path: str,
    precision: str,
    compile_mode: str,
    timings: Timings,
    batch_size: int,
    flops: float,
    peaks: dict[str, float | None],
) -> dict[str, Any]:
    """The figures of one path (speed-ups, agreement and warnings are added by the caller)."""
    ips = batch_size / statistics.median(timings.throughput)
    gflops = ips * flops / 1e9
    peak = peaks.get(PEAK_OF_PRECISION[precision])
    return {
        "path": path,
        "precision": precision,
        "compile": compile_mode,
        "images_per_s": ips,
        "latency_p50_ms": 1000 * percentile(timings.latency, 50),
        "latency_p99_ms": 1000 * percentile(timings.latency, 99),
        "peak_memory_mib": timings.peak_mib,
        "cold_first_prediction_s": timings.cold,
        "warm_first_prediction_s": timings.warm,
        "gflops": gflops,
        "peak_fraction": gflops / peak if peak else None,
        "warnings": [],
    }


def finish_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows with their speed-ups over the first (the baseline), keeping exactly :data:`ROW_KEYS`."""
    base_ips, base_lat = rows[0]["images_per_s"], rows[0]["latency_p50_ms"]
    for row in rows:
        row["speedup"] = row["images_per_s"] / base_ips
        row["latency_speedup"] = base_lat / row["latency_p50_ms"]
    return [{k: row.get(k) for k in ROW_KEYS} for row in rows]


def _fmt(value: Any, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def format_report(report: dict[str, Any]) -> str:
    """The report as text: machine lines, then a Markdown table (ready for notes and the README)."""
    from ..inference.machine import format_cpu

    cpu = dict(report["cpu"], measured_peaks=report.get("matmul_peaks"))
    lines = [
        f"vggnets benchmark: {report['model']}"
        + (f" (width {report['width']:g})" if report["width"] != 1 else "")
        + f", batch {report['batch_size']}, {report['image_size']}x{report['image_size']}, device {report['device']}, "
        f"{report['threads']} threads, torch {report['versions']['torch']}"
        + (f", torchao {report['versions']['torchao']}" if "torchao" in report["versions"] else ""),
        format_cpu(cpu) if report["device"] == "cpu" else f"GPU: {report['device']}",
        *filter(None, [format_peaks(report.get("peaks"))]),
        f"baseline: {report['baseline']}; {report['gflop_per_image']:.3g} GFLOP per image; agreement measured on "
        f"{report['agreement_images']} real photos against the baseline's fp32 logits",
        "",
        "| path | runs as | img/s | speed-up | batch-1 p50 / p99 ms | latency speed-up | peak MiB | first prediction "
        "cold / warm s | GFLOP/s | of peak | top-1 agree | max abs diff | cosine min |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [_table_row(r) for r in report["rows"]]
    lines += format_peers(report)
    e2e = report.get("end_to_end")
    if e2e:
        fraction = e2e["fraction_of_model_only"]
        lines += [
            "",
            f"end to end, {e2e['images']} files -> top-5 labels: Hub-page script {e2e['baseline_images_per_s']:.2f} "
            f"img/s, vggnets {e2e['ours_precision']} {e2e['ours_images_per_s']:.2f} img/s = "
            f"**{e2e['speedup']:.2f}x**"
            + (f"; {100 * fraction:.0f}% of the model-only img/s" if fraction else ""),
        ]
    notes = sorted({w for r in report["rows"] for w in r["warnings"]})
    if notes:
        lines += ["", "notes:"] + [f"- {w}" for w in notes]
    return "\n".join(lines)


def _table_row(r: dict[str, Any]) -> str:
    return (
        f"| {r['path']} | {r['precision']}, {'' if r['compile'] in PEER_RUNTIMES else 'compile '}{r['compile']} | "
        f"{r['images_per_s']:.2f} | "
        f"**{r['speedup']:.2f}x** | {r['latency_p50_ms']:.1f} / {r['latency_p99_ms']:.1f} | "
        f"{r['latency_speedup']:.2f}x | {r['peak_memory_mib']:.0f} | "
        f"{r['cold_first_prediction_s']:.1f} / {r['warm_first_prediction_s']:.1f} | {r['gflops']:.0f} | "
        f"{_fmt(r['peak_fraction'] and 100 * r['peak_fraction'], '.0f')}{'%' if r['peak_fraction'] else ''} | "
        f"{100 * r['top1_agreement']:.0f}% | {r['max_abs_logit_diff']:.3g} | {r['cosine_min']:.5f} |"
    )


def require_matplotlib() -> None:
    """Raise a one-line error when matplotlib (needed by :func:`plot_report`) is not installed."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise MissingDependencyError(
            "--plot needs matplotlib: pip install matplotlib (or pip install 'vggnets[fast]')."
        ) from None


def write_json(report: dict[str, Any], path: str | Path, *, overwrite: bool = False) -> Path:
    """Write the report as indented JSON, atomically."""
    return write_text(path, json.dumps(report, indent=2) + "\n", overwrite=overwrite)


def plot_report(report: dict[str, Any], path: str | Path, *, overwrite: bool = False) -> Path:
    """A bar chart of images/s per path, annotated with the speed-up over the baseline (matplotlib), written
    atomically in the format of ``path``'s extension (PNG without one)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["rows"]
    names = [r["path"] for r in rows]
    values = [r["images_per_s"] for r in rows]
    fig, ax = plt.subplots(figsize=(1.6 * len(rows) + 2, 4))
    bars = ax.bar(names, values, color=["#888888"] + ["#2b6cb0"] * (len(rows) - 1))
    for bar, row in zip(bars, rows):
        ax.annotate(
            f"{row['speedup']:.1f}x",
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            ha="center",
            va="bottom",
        )
    cpu = report["cpu"]["model_name"] if report["device"] == "cpu" else report["device"]
    ax.set_ylabel(f"images/s at batch {report['batch_size']}")
    ax.set_title(
        f"{report['model']} on {cpu} ({report['cpu']['kind'] if report['device'] == 'cpu' else 'GPU'})"
    )
    fig.tight_layout()
    image_format = Path(path).suffix.lstrip(".").lower() or "png"
    try:
        return atomic_write(
            path, lambda tmp: fig.savefig(tmp, dpi=120, format=image_format), overwrite=overwrite
        )
    finally:
        plt.close(fig)
