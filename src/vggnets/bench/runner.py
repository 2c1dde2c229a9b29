"""Measure the inference engine against torchvision's fp32 eager VGG, in one process, on the same inputs.

:func:`run_benchmark` is what ``vggnets benchmark`` and ``benchmarks/engine_speed.py`` run. For the baseline (the code on
PyTorch Hub's VGG page: ``torchvision.models.vgg16()``, float NCHW input, eager) and for each engine path it records
images/s at the batch size, batch-1 latency p50/p99, peak memory, cold and warm time to first prediction, achieved
GFLOP/s against this machine's measured matmul peak for the path's dtype, and agreement with fp32 on real photos.
With an image folder it also runs end to end (files -> labels) for the Hub-page script and for our pipeline.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import statistics
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

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

TORCHVISION_BUILDERS = ("vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn")


# ------------------------------------------------------------------------------------------------- measurement tools


class PeakMemory:
    """Peak memory while a block runs: CUDA allocator peak on a GPU, else resident set size sampled every 5 ms
    (the increase over the RSS when the block started, after returning freed memory to the OS)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak_mib = 0.0

    def __enter__(self) -> PeakMemory:
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
            return self
        _release_free_memory()
        self._start = self._peak = _rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self._peak = max(self._peak, _rss_bytes())

    def __exit__(self, *exc: Any) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_mib = (torch.cuda.max_memory_allocated(self.device) - self._start) / 2**20
            return
        self._stop.set()
        self._thread.join()
        self._peak = max(self._peak, _rss_bytes())
        self.peak_mib = (self._peak - self._start) / 2**20


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _release_free_memory() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(fn: Callable[[], Any], iterations: int, device: torch.device) -> list[float]:
    """Wall-clock seconds of ``iterations`` calls of ``fn`` (after one untimed call)."""
    fn()
    _sync(device)
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return times


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def agreement(logits: torch.Tensor, reference: torch.Tensor) -> dict[str, float]:
    """Top-1 agreement, max abs logit difference and cosine similarity (min, mean) of logits against the reference."""
    logits, reference = logits.float(), reference.float()
    cos = torch.nn.functional.cosine_similarity(logits, reference, dim=1)
    return {
        "top1_agreement": (logits.argmax(1) == reference.argmax(1)).float().mean().item(),
        "max_abs_logit_diff": (logits - reference).abs().max().item(),
        "cosine_min": cos.min().item(),
        "cosine_mean": cos.mean().item(),
    }


def flops_per_image(model: nn.Module, image_size: int) -> float:
    """FLOPs (2 x multiply-accumulates) of one forward pass at ``image_size``, counted by torch's FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    probe = torch.zeros(1, 3, image_size, image_size, device="meta")
    meta_model = _meta_copy(model)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        meta_model(probe)
    return float(counter.get_total_flops())


def _meta_copy(model: nn.Module) -> nn.Module:
    import copy

    clone = copy.deepcopy(model).eval()
    return clone.to("meta")


@contextlib.contextmanager
def fresh_compile_caches() -> Iterator[Path]:
    """Point inductor's and the engine's caches at an empty temporary folder (a true cold start), then restore."""
    saved = {k: os.environ.get(k) for k in ("TORCHINDUCTOR_CACHE_DIR", "VGGNETS_ENGINE_CACHE")}
    with tempfile.TemporaryDirectory(prefix="vggnets-bench-") as folder:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(Path(folder) / "inductor")
        os.environ["VGGNETS_ENGINE_CACHE"] = str(Path(folder) / "engine")
        try:
            yield Path(folder)
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


# ------------------------------------------------------------------------------------------------- inputs and models


def photo_crops(
    folder: str | Path | None, image_size: int, resize_size: int, limit: int = 256
) -> torch.Tensor:
    """uint8 center crops of the photos in ``folder`` (default: the bundled photos)."""
    from ..inference.engine import CropUint8, load_calibration_images

    return load_calibration_images(folder, CropUint8(resize_size, image_size), limit=limit)


def normalize(crops: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 crops -> the float, mean/std-normalised NCHW batch a plain PyTorch user feeds the model."""
    m = torch.tensor(mean).view(1, -1, 1, 1)
    s = torch.tensor(std).view(1, -1, 1, 1)
    return (crops.float() / 255 - m) / s


def fill_batch(crops: torch.Tensor, size: int) -> torch.Tensor:
    """``size`` images from ``crops``, repeating them as needed."""
    reps = (size + len(crops) - 1) // len(crops)
    return crops.repeat(reps, 1, 1, 1)[:size].contiguous()


def baseline_model(
    name: str, state_dict: dict[str, torch.Tensor] | None, width: float
) -> tuple[nn.Module, str]:
    """torchvision's builder for ``name`` with the given weights (the Hub page's model), or our own eager model where
    torchvision has no such configuration (or the width is reduced); returns the model and a label."""
    if name in TORCHVISION_BUILDERS and width == 1.0:
        import torchvision.models

        model = getattr(torchvision.models, name)()
        if state_dict is not None:
            model.load_state_dict(state_dict)
        return model.eval(), f"torchvision.models.{name} fp32 eager NCHW"
    from ..models.builders import build

    model = build(name, width=width)
    if state_dict is not None:
        model.load_state_dict(state_dict)
    return model.eval(), f"vggnets {name} fp32 eager NCHW (torchvision has no {name} at this width)"


# ------------------------------------------------------------------------------------------------- the benchmark


def run_benchmark(
    model: str = "vgg16",
    *,
    batch_size: int = 16,
    precisions: Sequence[str] = ("fp32", "bf16", "int8"),
    device: str = "cpu",
    compile: bool | str = True,
    weights: Any = None,
    width: float = 1.0,
    image_size: int = 224,
    images: str | Path | None = None,
    iterations: int = 5,
    latency_iterations: int = 20,
    end_to_end: bool = True,
    measure_peaks: bool = True,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the baseline and each precision of the engine; return a JSON-ready report (see ``ROW_KEYS``)."""
    from ..inference.machine import describe_cpu
    from ..models.builders import build
    from ..version import __version__

    say = log or (lambda _msg: None)
    dev = torch.device(device)
    cpu = describe_cpu()
    report: dict[str, Any] = {
        "model": model,
        "batch_size": batch_size,
        "image_size": image_size,
        "width": width,
        "device": _device_name(dev),
        "cpu": cpu,
        "versions": {"torch": torch.__version__, "vggnets": __version__, **_optional_versions()},
        "threads": torch.get_num_threads(),
    }
    if measure_peaks:
        say("measuring matmul peaks")
        report["matmul_peaks"] = _device_peaks(dev)
    peaks = report.get("matmul_peaks") or {}

    torch.manual_seed(0)
    ours = build(model, weights=weights, width=width).eval()
    state = ours.state_dict()
    mean, std, resize_size = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), round(image_size * 256 / 224)
    if weights is not None and hasattr(weights, "transforms"):
        preset = weights.transforms()
        mean, std, resize_size = preset.mean, preset.std, preset.resize_size[0]
    crops = photo_crops(images, image_size, resize_size)
    report["agreement_images"] = len(crops)
    batch_u8 = fill_batch(crops, batch_size)
    flops = flops_per_image(ours, image_size)
    report["gflop_per_image"] = flops / 1e9

    setup = Setup(
        batch_u8, crops, mean, std, resize_size, image_size, batch_size, iterations, latency_iterations, dev
    )
    say("baseline: building and timing")
    base_row, reference = measure_baseline(model, state, width, setup, flops, peaks)
    report["baseline"] = base_row.pop("label")
    rows: list[dict[str, Any]] = [base_row]
    done: dict[tuple[str, str], dict[str, Any]] = {}
    for precision in precisions:
        row = measure_engine(ours, precision, compile, setup, reference, flops, peaks, done, say)
        rows.append(row)

    base_ips, base_lat = rows[0]["images_per_s"], rows[0]["latency_p50_ms"]
    for row in rows:
        row["speedup"] = row["images_per_s"] / base_ips
        row["latency_speedup"] = base_lat / row["latency_p50_ms"]
    report["rows"] = [{k: row.get(k) for k in ROW_KEYS} for row in rows]

    if images is not None and end_to_end:
        say("end to end on the image folder")
        report["end_to_end"] = run_end_to_end(
            images,
            ours,
            state,
            model,
            width,
            precisions[-1],
            compile,
            setup,
            model_only={r["path"]: r["images_per_s"] for r in report["rows"]},
        )
    return report


@dataclass
class Setup:
    """The inputs and settings every path of one benchmark shares."""

    batch_u8: torch.Tensor
    crops: torch.Tensor
    mean: Sequence[float]
    std: Sequence[float]
    resize_size: int
    image_size: int
    batch_size: int
    iterations: int
    latency_iterations: int
    device: torch.device

    def engine(self, model: nn.Module, precision: str, compile: bool | str, *, warmup: bool = True) -> Any:
        """``vggnets.optimize`` for this benchmark's batch size, input size and normalisation."""
        from ..inference.engine import optimize

        return optimize(
            model,
            precision,
            device=self.device,
            compile=compile,
            batch_size=self.batch_size,
            image_size=self.image_size,
            mean=self.mean,
            std=self.std,
            resize_size=self.resize_size,
            warmup=warmup,
        )


def measure_baseline(
    model: str, state: dict[str, torch.Tensor], width: float, s: Setup, flops: float, peaks: dict[str, Any]
) -> tuple[dict[str, Any], torch.Tensor]:
    """Time the baseline; returns its row (with a ``label``) and its logits on the photos (the fp32 reference)."""
    start = time.perf_counter()
    with PeakMemory(s.device) as mem, torch.inference_mode():
        base, label = baseline_model(model, state, width)
        base = base.to(s.device)
        batch = normalize(s.batch_u8, s.mean, s.std).to(s.device)
        base(batch[:1])
        _sync(s.device)
        first = time.perf_counter() - start
        throughput = time_calls(lambda: base(batch), s.iterations, s.device)
        latency = time_calls(lambda: base(batch[:1]), s.latency_iterations, s.device)
        photos = normalize(s.crops, s.mean, s.std).to(s.device)
        reference = torch.cat([base(c) for c in photos.split(s.batch_size)]).float().cpu()
    row = _row(
        "baseline",
        "fp32",
        "none",
        throughput,
        latency,
        s.batch_size,
        mem.peak_mib,
        first,
        first,
        flops,
        peaks,
    )
    row.update(agreement(reference, reference), label=label)
    return row, reference


def measure_engine(
    model: nn.Module,
    precision: str,
    compile: bool | str,
    s: Setup,
    reference: torch.Tensor,
    flops: float,
    peaks: dict[str, Any],
    done: dict[tuple[str, str], dict[str, Any]],
    say: Callable[[str], None],
) -> dict[str, Any]:
    """Build the engine for ``precision`` from empty caches (cold), time it, rebuild it from the warm caches."""
    from ..inference import engine

    def build(warmup: bool = True):
        return s.engine(model, precision, compile, warmup=warmup)

    planned = engine.plan(precision, s.device, compile)
    if planned[:2] in done:  # a fallback lands on a path already measured: report it, don't build it again
        say(f"{precision}: runs as {planned[0]} here (see the notes), as measured above")
        return dict(done[planned[:2]], path=f"ours {precision}", warnings=planned[3])
    say(f"{precision}: building (cold caches)")
    with warnings.catch_warnings(), fresh_compile_caches():
        warnings.simplefilter("ignore")  # the engine's warnings are kept in predictor.info.warnings
        with PeakMemory(s.device) as mem:
            start = time.perf_counter()
            predictor = build()
            predictor(s.batch_u8[:1])
            cold = time.perf_counter() - start
            info = predictor.info
            key = (info.precision, info.compile)
            say(f"{precision}: timing")
            throughput = time_calls(lambda: predictor(s.batch_u8), s.iterations, s.device)
            latency = time_calls(lambda: predictor(s.batch_u8[:1]), s.latency_iterations, s.device)
            logits = predictor(s.crops)
        say(f"{precision}: building again (warm caches)")
        start = time.perf_counter()
        build(warmup=False)(s.batch_u8[:1])
        warm = time.perf_counter() - start
    row = _row(
        f"ours {precision}",
        info.precision,
        info.compile,
        throughput,
        latency,
        s.batch_size,
        mem.peak_mib,
        cold,
        warm,
        flops,
        peaks,
    )
    row.update(agreement(logits, reference), warnings=list(info.warnings))
    done[key] = row
    return row


def _row(
    path: str,
    precision: str,
    compile_mode: str,
    throughput: list[float],
    latency: list[float],
    batch_size: int,
    peak_mib: float,
    cold: float,
    warm: float,
    flops: float,
    peaks: dict[str, float | None],
) -> dict[str, Any]:
    ips = batch_size / statistics.median(throughput)
    gflops = ips * flops / 1e9
    peak = peaks.get({"fp32": "fp32_gflops", "bf16": "bf16_gflops", "int8": "int8_gops"}[precision])
    return {
        "path": path,
        "precision": precision,
        "compile": compile_mode,
        "images_per_s": ips,
        "latency_p50_ms": 1000 * percentile(latency, 50),
        "latency_p99_ms": 1000 * percentile(latency, 99),
        "peak_memory_mib": peak_mib,
        "cold_first_prediction_s": cold,
        "warm_first_prediction_s": warm,
        "gflops": gflops,
        "peak_fraction": gflops / peak if peak else None,
        "warnings": [],
    }


def run_end_to_end(
    folder: str | Path,
    ours: nn.Module,
    state: dict[str, torch.Tensor],
    model: str,
    width: float,
    precision: str,
    compile: bool | str,
    s: Setup,
    model_only: dict[str, float],
) -> dict[str, Any]:
    """Files on disk -> top-5 labels: the Hub page's script (PIL + torchvision transforms + fp32 eager) against
    ``vggnets`` classification with the engine (torchvision.io decode, uint8 crop, decoding overlapped with the
    model in a worker). Compile time is excluded (the predictor is built before the clock starts)."""
    from torchvision import transforms as T

    from ..inference.classify import classify_files
    from ..io.images import collect_images

    files, _ = collect_images([str(folder)], recursive=True)
    preprocess = T.Compose(
        [T.Resize(s.resize_size), T.CenterCrop(s.image_size), T.ToTensor(), T.Normalize(s.mean, s.std)]
    )
    base_seconds = hub_page_script(
        files, baseline_model(model, state, width)[0], preprocess, s.batch_size, s.device
    )
    predictor = s.engine(ours, precision, compile)
    labels = [str(i) for i in range(predictor.num_classes)]
    start = time.perf_counter()
    results = list(
        classify_files(
            predictor,
            files,
            transform=predictor.preprocess,
            labels=labels,
            batch_size=s.batch_size,
            device=s.device,
            workers=1,
            decode_device=s.device if s.device.type == "cuda" else None,  # nvJPEG, a batch per call
        )
    )
    ours_seconds = time.perf_counter() - start
    failed = sum(1 for r in results if r.error)
    ours_ips = (len(files) - failed) / ours_seconds
    model_ips = model_only.get(f"ours {precision}")
    return {
        "images": len(files),
        "failed": failed,
        "baseline_images_per_s": len(files) / base_seconds,
        "ours_precision": predictor.info.precision,
        "ours_images_per_s": ours_ips,
        "speedup": ours_ips / (len(files) / base_seconds),
        "fraction_of_model_only": ours_ips / model_ips if model_ips else None,
    }


def hub_page_script(
    files: Sequence[Path], model: nn.Module, preprocess: Callable, batch_size: int, device: torch.device
) -> float:
    """Seconds to label ``files`` as PyTorch Hub's VGG page does: PIL, torchvision transforms, fp32 eager, top-5."""
    from PIL import Image

    model = model.to(device)
    start = time.perf_counter()
    for i in range(0, len(files), batch_size):
        batch = torch.stack([preprocess(Image.open(f).convert("RGB")) for f in files[i : i + batch_size]])
        with torch.no_grad():
            torch.nn.functional.softmax(model(batch.to(device)), dim=1).topk(5)
    _sync(device)
    return time.perf_counter() - start


def _device_name(device: torch.device) -> str:
    if device.type == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_name(device)
    return "cpu"


def _device_peaks(device: torch.device) -> dict[str, float | None]:
    if device.type == "cuda":
        return _cuda_peaks(device)
    from ..inference.machine import matmul_peaks

    return matmul_peaks()


def _cuda_peaks(device: torch.device, n: int = 8192) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for key, dtype in (("fp32_gflops", torch.float32), ("bf16_gflops", torch.bfloat16)):
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        times = time_calls(lambda a=a, b=b: a @ b, 10, device)
        out[key] = 2 * n**3 / min(times) / 1e9
    out["int8_gops"] = None
    return out


def _optional_versions() -> dict[str, str]:
    """Installed versions, read from package metadata (importing torchao would cost seconds and print noise)."""
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for name in ("torchvision", "torchao"):
        with contextlib.suppress(PackageNotFoundError):
            versions[name] = version(name)
    return versions


# ------------------------------------------------------------------------------------------------- reporting


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
        f"baseline: {report['baseline']}; {report['gflop_per_image']:.3g} GFLOP per image; agreement measured on "
        f"{report['agreement_images']} real photos against the baseline's fp32 logits",
        "",
        "| path | runs as | img/s | speed-up | batch-1 p50 / p99 ms | latency speed-up | peak MiB | first prediction "
        "cold / warm s | GFLOP/s | of peak | top-1 agree | max abs diff | cosine min |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        lines.append(
            f"| {r['path']} | {r['precision']}, compile {r['compile']} | {r['images_per_s']:.2f} | "
            f"**{r['speedup']:.2f}x** | {r['latency_p50_ms']:.1f} / {r['latency_p99_ms']:.1f} | "
            f"{r['latency_speedup']:.2f}x | {r['peak_memory_mib']:.0f} | "
            f"{r['cold_first_prediction_s']:.1f} / {r['warm_first_prediction_s']:.1f} | {r['gflops']:.0f} | "
            f"{_fmt(r['peak_fraction'] and 100 * r['peak_fraction'], '.0f')}{'%' if r['peak_fraction'] else ''} | "
            f"{100 * r['top1_agreement']:.0f}% | {r['max_abs_logit_diff']:.3g} | {r['cosine_min']:.5f} |"
        )
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


def plot_report(report: dict[str, Any], path: str | Path) -> None:
    """A bar chart of images/s per path, annotated with the speed-up over the baseline (matplotlib)."""
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
    fig.savefig(path, dpi=120)
    plt.close(fig)
