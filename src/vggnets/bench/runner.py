"""Run the benchmark: the engine against torchvision's fp32 eager VGG, in one process, on the same inputs.

:func:`run_benchmark` is what ``vggnets benchmark`` and ``benchmarks/engine_speed.py`` run. For the baseline (the code on
PyTorch Hub's VGG page: ``torchvision.models.vgg16()``, float NCHW input, eager) and for each engine path it records
images/s at the batch size, batch-1 latency p50/p99, peak memory, cold and warm time to first prediction, achieved
GFLOP/s against this machine's measured matmul peak for the path's dtype, and agreement with fp32 on real photos.
With an image folder it also runs end to end (files -> labels) for the Hub-page script and for our pipeline. The
instruments are in :mod:`.measure`, the rows, table and plot in :mod:`.report`.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import VggnetsError
from ..inference.calibration import fill_batch, load_calibration_images
from ..inference.graph import CropUint8, InputSpec, input_spec
from ..inference.plan import PRECISIONS
from .measure import PeakMemory, Timings, agreement, flops_per_image, fresh_compile_caches, sync, time_calls
from .ratios import peer_ratios
from .report import describe_run, finish_rows, make_row

TORCHVISION_BUILDERS = ("vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn")


def parse_precisions(text: str) -> list[str]:
    """'fp32,int8' -> ['fp32', 'int8'], each one of the engine's precisions."""
    precisions = [p.strip() for p in text.split(",") if p.strip()]
    unknown = [p for p in precisions if p not in PRECISIONS]
    if unknown or not precisions:
        raise VggnetsError(f"unknown precision {', '.join(unknown) or text!r}; choose from fp32, bf16, int8.")
    return precisions


# ------------------------------------------------------------------------------------------------- inputs and models


def photo_crops(
    folder: str | Path | None, image_size: int, resize_size: int, limit: int = 256
) -> torch.Tensor:
    """uint8 center crops of the photos in ``folder`` (default: the bundled photos)."""
    return load_calibration_images(folder, CropUint8(resize_size, image_size), limit=limit)


def normalize(crops: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 crops -> the float, mean/std-normalised NCHW batch a plain PyTorch user feeds the model."""
    m = torch.tensor(mean).view(1, -1, 1, 1)
    s = torch.tensor(std).view(1, -1, 1, 1)
    return (crops.float() / 255 - m) / s


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


@dataclass
class Setup:
    """The inputs and settings every path of one benchmark shares."""

    batch_u8: torch.Tensor
    crops: torch.Tensor
    spec: InputSpec
    batch_size: int
    iterations: int
    latency_iterations: int
    device: torch.device
    flops: float = 0.0
    peaks: dict[str, float | None] = field(default_factory=dict)
    backend: str = "torch"  # who runs our paths (optimize's backend; the peers are measured separately)

    def engine(self, model: nn.Module, precision: str, compile: bool | str, *, warmup: bool = True) -> Any:
        """``vggnets.optimize`` for this benchmark's batch size, input size and normalisation."""
        from ..inference.engine import optimize

        return optimize(
            model,
            precision,
            device=self.device,
            compile=compile,
            batch_size=self.batch_size,
            image_size=self.spec.image_size,
            mean=self.spec.mean,
            std=self.spec.std,
            resize_size=self.spec.resize_size,
            warmup=warmup,
            backend=self.backend,
        )


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
    peers: Sequence[str] = (),
    backend: str = "torch",
) -> dict[str, Any]:
    """Run the baseline, each precision of the engine (through ``backend``) and the ``peers`` (``vggnets.bench.peers``)
    at those precisions; return a JSON-ready report (see ``ROW_KEYS``)."""
    from ..models.builders import build

    say = log or (lambda _msg: None)
    dev = torch.device(device)
    if measure_peaks:
        say("measuring the peaks (matmul and convolution primitives)")
    report = describe_run(
        model,
        batch_size=batch_size,
        image_size=image_size,
        width=width,
        device=dev,
        measure_peaks=measure_peaks,
    )
    torch.manual_seed(0)
    ours = build(model, weights=weights, width=width).eval()
    state = ours.state_dict()
    spec = input_spec(weights, image_size=image_size)
    crops = photo_crops(images, spec.image_size, spec.resize_size)
    s = Setup(fill_batch(crops, batch_size), crops, spec, batch_size, iterations, latency_iterations, dev)
    s.flops, s.peaks, s.backend = flops_per_image(ours, image_size), report.get("peaks") or {}, backend
    report.update(agreement_images=len(crops), gflop_per_image=s.flops / 1e9)

    say("baseline: building and timing")
    base_row, reference = measure_baseline(model, state, width, s)
    report["baseline"] = base_row.pop("label")
    rows, skipped = measure_rows(ours, precisions, compile, peers, s, reference, say)
    report["rows"] = finish_rows([base_row, *rows])
    if peers:
        report.update(peer_ratios=peer_ratios(report["rows"]), peers_skipped=skipped)

    if images is not None and end_to_end:
        say("end to end on the image folder")
        model_only = {r["path"]: r["images_per_s"] for r in report["rows"]}
        report["end_to_end"] = run_end_to_end(
            images, ours, state, model, width, precisions[-1], compile, s, model_only=model_only
        )
    return report


def measure_rows(
    model: nn.Module,
    precisions: Sequence[str],
    compile: bool | str,
    peers: Sequence[str],
    s: Setup,
    reference: torch.Tensor,
    say: Callable[[str], None],
) -> tuple[list[dict[str, Any]], list[str]]:
    """Our engine at each precision, then each peer at the precisions it runs; and a line per peer skipped."""
    from .peers import measure_peers

    rows: list[dict[str, Any]] = []
    done: dict[tuple[str, str], dict[str, Any]] = {}
    for precision in precisions:
        rows.append(measure_engine(model, precision, compile, s, reference, done, say))
    if not peers:
        return rows, []
    peer_rows, skipped = measure_peers(model, peers, precisions, s, reference, say)
    return rows + peer_rows, skipped


def measure_baseline(
    model: str, state: dict[str, torch.Tensor], width: float, s: Setup
) -> tuple[dict[str, Any], torch.Tensor]:
    """Time the baseline; returns its row (with a ``label``) and its logits on the photos (the fp32 reference)."""
    start = time.perf_counter()
    with PeakMemory(s.device) as mem, torch.inference_mode():
        base, label = baseline_model(model, state, width)
        base = base.to(s.device)
        batch = normalize(s.batch_u8, s.spec.mean, s.spec.std).to(s.device)
        base(batch[:1])
        sync(s.device)
        first = time.perf_counter() - start
        throughput = time_calls(lambda: base(batch), s.iterations, s.device)
        latency = time_calls(lambda: base(batch[:1]), s.latency_iterations, s.device)
        photos = normalize(s.crops, s.spec.mean, s.spec.std).to(s.device)
        reference = torch.cat([base(c) for c in photos.split(s.batch_size)]).float().cpu()
    timings = Timings(throughput, latency, mem.peak_mib, cold=first, warm=first)
    row = make_row("baseline", "fp32", "none", timings, s.batch_size, s.flops, s.peaks)
    row.update(agreement(reference, reference), label=label)
    return row, reference


def measure_engine(
    model: nn.Module,
    precision: str,
    compile: bool | str,
    s: Setup,
    reference: torch.Tensor,
    done: dict[tuple[str, str], dict[str, Any]],
    say: Callable[[str], None],
) -> dict[str, Any]:
    """Build the engine for ``precision`` from empty caches (cold), time it, rebuild it from the warm caches.

    A precision that runs as a path already measured (a fallback: see ``done``) is reported as that path, not built
    again.
    """
    from ..inference.plan import plan

    planned = plan(precision, s.device, compile)
    if planned[:2] in done:
        say(f"{precision}: runs as {planned[0]} here (see the notes), as measured above")
        return dict(done[planned[:2]], path=f"ours {precision}", warnings=planned[3])
    say(f"{precision}: building (cold caches)")
    with warnings.catch_warnings(), fresh_compile_caches():
        warnings.simplefilter("ignore")  # the engine's warnings are kept in predictor.info.warnings
        with PeakMemory(s.device) as mem:
            start = time.perf_counter()
            predictor = s.engine(model, precision, compile)
            predictor(s.batch_u8[:1])
            cold = time.perf_counter() - start
            say(f"{precision}: timing")
            throughput = time_calls(lambda: predictor(s.batch_u8), s.iterations, s.device)
            latency = time_calls(lambda: predictor(s.batch_u8[:1]), s.latency_iterations, s.device)
            logits = predictor(s.crops)
        say(f"{precision}: building again (warm caches)")
        start = time.perf_counter()
        s.engine(model, precision, compile, warmup=False)(s.batch_u8[:1])
        warm = time.perf_counter() - start
    info = predictor.info
    timings = Timings(throughput, latency, mem.peak_mib, cold=cold, warm=warm)
    row = make_row(f"ours {precision}", info.precision, info.compile, timings, s.batch_size, s.flops, s.peaks)
    row.update(agreement(logits, reference), warnings=list(info.warnings))
    done[(info.precision, info.compile)] = row
    return row


# ------------------------------------------------------------------------------------------------- end to end


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
    model in a worker). Compile time is excluded (the predictor is built before the clock starts). ``model_only``
    holds each path's model-only images/s."""
    from torchvision import transforms as T

    from ..io.images import collect_images

    files, _ = collect_images([str(folder)], recursive=True)
    spec = s.spec
    preprocess = T.Compose(
        [
            T.Resize(spec.resize_size),
            T.CenterCrop(spec.image_size),
            T.ToTensor(),
            T.Normalize(spec.mean, spec.std),
        ]
    )
    base_seconds = hub_page_script(
        files, baseline_model(model, state, width)[0], preprocess, s.batch_size, s.device
    )
    predictor = s.engine(ours, precision, compile)
    ours_seconds, failed = classify_seconds(predictor, files, s)
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


def classify_seconds(predictor: Any, files: Sequence[Path], s: Setup) -> tuple[float, int]:
    """Seconds for ``vggnets`` to label ``files`` with ``predictor`` (top-5; decoding in a worker, or batched on the
    GPU when the model runs there), and how many files failed."""
    from ..inference.classify import classify_files

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
    return time.perf_counter() - start, sum(1 for r in results if r.error)


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
    sync(device)
    return time.perf_counter() - start
