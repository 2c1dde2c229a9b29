"""Run the paper's evaluation protocols over a labelled dataset, decoding each image once for all protocols.

One pass over the data: every batch of decoded images is handed to each protocol in turn, and each protocol has its
own streaming metrics and its own compute time, so several protocols cost one decode and give one table.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from .datasets import LabeledImages, make_loader
from .metrics import ClassificationMetrics
from .protocols import Protocol


@dataclass
class ProtocolRun:
    """One row of the results: a protocol (of one model or an ensemble) and its metrics."""

    model: str
    protocol: Protocol
    metrics: ClassificationMetrics
    seconds: float = 0.0
    #: Runs whose posteriors this one averages instead of calling its protocol (ensembles, dense+multicrop):
    #: each part is computed once per batch even when it also has a row of its own.
    parts: list[ProtocolRun] = field(default_factory=list)
    #: A part computed only for a combination, without a row in the table.
    hidden: bool = False
    last: torch.Tensor | None = field(default=None, repr=False)

    def row(self) -> dict:
        """JSON-ready record: model, protocol description, metrics summary, compute seconds, images/s."""
        summary = self.metrics.summary()
        return {
            "model": self.model,
            **self.protocol.describe(),
            **summary,
            "seconds": round(self.seconds, 3),
            "images_per_second": round(summary["images"] / self.seconds, 3) if self.seconds > 0 else None,
        }


@dataclass
class Evaluation:
    """All protocol runs over one dataset, plus the images that could not be read."""

    runs: list[ProtocolRun]
    failures: list[tuple[str, str]] = field(default_factory=list)
    wall_seconds: float = 0.0


def evaluate(
    runs: Sequence[ProtocolRun],
    dataset: LabeledImages,
    *,
    batch_size: int = 16,
    workers: int = 1,
    progress: bool = False,
) -> Evaluation:
    """Stream the dataset once through every protocol; unreadable images are counted as failures in every run."""
    loader = make_loader(dataset, batch_size, workers)
    result = Evaluation(list(runs))
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(dataset), unit="img", desc="evaluate", dynamic_ncols=True)
    start = time.perf_counter()
    for batch in loader:
        good = [(img, target) for _, img, target, _ in batch if img is not None]
        result.failures += [
            (str(dataset.samples[i].path), err or "unreadable") for i, img, _, err in batch if img is None
        ]
        images = [img for img, _ in good]
        targets = torch.tensor([t for _, t in good], dtype=torch.long)
        for run in _in_dependency_order(result.runs):
            run.metrics.add_failed(len(batch) - len(good))
            if not images:
                continue
            if run.parts:
                run.last = torch.stack([part.last for part in run.parts]).mean(0)
                run.seconds = sum(part.seconds for part in run.parts)
            else:
                t0 = time.perf_counter()
                run.last = run.protocol(images)
                run.seconds += time.perf_counter() - t0
            run.metrics.update(run.last, targets)
        if bar is not None:
            first = next(r for r in result.runs if not r.hidden).metrics
            if first.count:
                bar.set_postfix_str(
                    f"top1 {first.accuracy(1):.1f}% top5 {first.accuracy(5):.1f}%", refresh=False
                )
            bar.update(len(batch))
    if bar is not None:
        bar.close()
    result.wall_seconds = time.perf_counter() - start
    return result


def _in_dependency_order(runs: Sequence[ProtocolRun]) -> list[ProtocolRun]:
    """Every run after the parts it averages (parts may be listed anywhere, or only inside a combination)."""
    ordered: list[ProtocolRun] = []

    def visit(run: ProtocolRun) -> None:
        if any(run is seen for seen in ordered):
            return
        for part in run.parts:
            visit(part)
        ordered.append(run)

    for run in runs:
        visit(run)
    return ordered


def markdown_table(evaluation: Evaluation) -> str:
    """The results shaped like the paper's tables: one row per model and protocol."""
    lines = [
        "| model | protocol | scales | top-1 err (%) | top-5 err (%) | top-1 acc (%) | images | failed | seconds |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for run in evaluation.runs:
        if run.hidden:
            continue
        r = run.row()
        scales = ",".join(str(s) for s in r.get("scales") or []) or "-"
        flip = " +flip" if r.get("flip") else ""
        lines.append(
            f"| {r['model']} | {r['protocol']}{flip} | {scales} | {_num(r['top1_err'])} | {_num(r['top5_err'])} "
            f"| {_num(r['top1_acc'])} | {r['images']} | {r['failed']} | {r['seconds']:.1f} |"
        )
    return "\n".join(lines)


def _num(value: float | None) -> str:
    return "-" if value is None or value != value else f"{value:.2f}"
