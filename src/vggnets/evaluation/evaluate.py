"""Run the paper's evaluation protocols over a labelled dataset: the runs of models and ensembles, then one pass.

:func:`open_for_models` indexes the dataset for the models, :func:`build_runs` makes one run (a table row) per model
and protocol, plus one per protocol for an ensemble, and :func:`evaluate` streams the data once: every batch of decoded
images is handed to each protocol in turn, and each protocol has its own streaming metrics and its own compute time, so
several protocols cost one decode and give one table (:mod:`vggnets.evaluation.results` presents it).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..errors import VggnetsError
from ..io.images import check_resized_size
from .datasets import LabeledImages, make_loader, open_dataset
from .metrics import ClassificationMetrics
from .protocols import Average, Protocol, make_protocol

if TYPE_CHECKING:
    from ..core.transforms import ImageClassification

#: The combination of multi-scale dense and multi-crop evaluation (paper Table 5), and the protocols it averages.
COMBINED = "dense+multicrop"
COMBINED_PARTS = ("multiscale", "multicrop")


@dataclass
class Member:
    """One model of an evaluation: its name (the table's model column), the module, its weights' preprocessing."""

    name: str
    model: nn.Module
    #: The weights' preset: ``mean`` and ``std`` normalise every protocol's input, ``resize_size`` is the center's.
    transform: ImageClassification


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
    """Stream the dataset once through every protocol; unreadable images are counted as failures in every run.

    With ``progress``, a bar counts network inputs (a crop, a flip, a scale: what costs time), with their rate and an
    estimate of the time left, and shows the images done and the running top-1/top-5 accuracy.
    """
    loader = make_loader(dataset, batch_size, workers)
    result = Evaluation(list(runs))
    ordered = _in_dependency_order(result.runs)
    bar = InputProgress(ordered, len(dataset)) if progress else None
    start = time.perf_counter()
    try:
        for batch in loader:
            good = [(img, target) for _, img, target, _ in batch if img is not None]
            result.failures += [
                (str(dataset.samples[i].path), err or "unreadable") for i, img, _, err in batch if img is None
            ]
            images = [img for img, _ in good]
            targets = torch.tensor([t for _, t in good], dtype=torch.long)
            if bar is not None:
                bar.skip(len(batch) - len(good))
            for run in ordered:
                run.metrics.add_failed(len(batch) - len(good))
                if not images:
                    continue
                if run.parts:
                    run.last = torch.stack([part.last for part in run.parts]).mean(0)
                    run.seconds = sum(part.seconds for part in run.parts)
                else:
                    t0 = time.perf_counter()
                    with bar.counting(run, len(images)) if bar is not None else contextlib.nullcontext():
                        run.last = run.protocol(images)
                    run.seconds += time.perf_counter() - t0
                run.metrics.update(run.last, targets)
            if bar is not None:
                bar.images_done(len(batch), next(r for r in result.runs if not r.hidden).metrics)
    finally:
        if bar is not None:
            bar.close()
    result.wall_seconds = time.perf_counter() - start
    return result


def subset(dataset: LabeledImages, start: int, stop: int) -> LabeledImages:
    """Samples ``start`` .. ``stop - 1`` of ``dataset``, with its classes, decoding and checks."""
    return LabeledImages(
        dataset.samples[start:stop],
        dataset.classes,
        source=dataset.source,
        max_pixels=dataset.max_pixels,
        transform=dataset.transform,
        format=dataset.format,
    )


def evaluate_slices(
    runs: Sequence[ProtocolRun],
    dataset: LabeledImages,
    slices: Iterable[tuple[int, int]],
    *,
    batch_size: int = 16,
    workers: int = 1,
    progress: bool = False,
) -> Iterator[dict[str, Any]]:
    """For each ``(start, stop)`` slice of the dataset, in turn: :func:`evaluate` of those samples with fresh counts,
    yielded as plain data (each row's metric state and compute seconds, the slice's unreadable images), which
    :func:`merged_evaluation` adds up. The counts do not depend on how the dataset is sliced."""
    for start, stop in slices:
        _reset(runs)
        result = evaluate(
            runs, subset(dataset, start, stop), batch_size=batch_size, workers=workers, progress=progress
        )
        yield {
            "metrics": [run.metrics.state() for run in runs],
            "seconds": [run.seconds for run in runs],
            "failures": [list(failure) for failure in result.failures],
        }


def merged_evaluation(
    runs: Sequence[ProtocolRun], states: Iterable[dict[str, Any]], *, wall_seconds: float = 0.0
) -> Evaluation:
    """The evaluation of a whole dataset from the states of its slices (:func:`evaluate_slices`, in dataset order):
    counts added, compute seconds summed, unreadable images in order."""
    result = Evaluation(list(runs), wall_seconds=wall_seconds)
    counts = [ClassificationMetrics(run.metrics.num_classes, run.metrics.topk) for run in runs]
    seconds = [0.0] * len(runs)
    for state in states:  # (computing the states may use the runs' own metrics: they are replaced at the end)
        for i, (metrics, spent) in enumerate(zip(state["metrics"], state["seconds"], strict=True)):
            counts[i].merge(ClassificationMetrics.from_state(metrics))
            seconds[i] += float(spent)
        result.failures += [(str(path), str(error)) for path, error in state["failures"]]
    for run, metrics, spent in zip(runs, counts, seconds, strict=True):
        run.metrics, run.seconds = metrics, spent
    return result


def _reset(runs: Sequence[ProtocolRun]) -> None:
    for run in _in_dependency_order(runs):
        run.metrics.reset()
        run.seconds = 0.0


class InputProgress:
    """A progress bar in network inputs (the unit that costs time: multi-crop runs 150 per image), for the runs of
    one evaluation: its total is images x the inputs per image of every run that calls a model.

    Inputs are counted as the models see them (a forward hook on each model's ``features``), so a long protocol call
    moves the bar while it runs; a protocol whose model has no ``features`` (the fast engine's) counts its inputs
    when its call returns.
    """

    def __init__(self, runs: Sequence[ProtocolRun], images: int) -> None:
        from tqdm import tqdm

        self.calls = [run for run in runs if not run.parts]
        self.per_image = {id(run): int(run.protocol.describe().get("passes") or 1) for run in self.calls}
        self.images, self.done = images, 0
        self.bar = tqdm(
            total=images * sum(self.per_image.values()),
            unit="input",
            unit_scale=True,
            desc="evaluate",
            dynamic_ncols=True,
        )
        self.hooks = []
        hooked: set[int] = set()
        for run in self.calls:
            features = getattr(getattr(run.protocol, "model", None), "features", None)
            if isinstance(features, nn.Module) and id(features) not in hooked:
                hooked.add(id(features))
                self.hooks.append(features.register_forward_hook(self._seen))
        self.bar.set_postfix_str(f"0/{images} images", refresh=False)

    def _seen(self, module: nn.Module, inputs: tuple, output: object) -> None:
        if inputs and isinstance(inputs[0], torch.Tensor) and inputs[0].dim() == 4:
            self.bar.update(inputs[0].shape[0])

    @contextlib.contextmanager
    def counting(self, run: ProtocolRun, images: int) -> Iterator[None]:
        """Around one protocol call on ``images``: afterwards, the bar has moved by exactly its inputs."""
        expected = self.bar.n + self.per_image[id(run)] * images
        yield
        if self.bar.n != expected:
            self.bar.update(expected - self.bar.n)

    def skip(self, images: int) -> None:
        """Unreadable images: their inputs never run."""
        if images:
            self.bar.total -= images * sum(self.per_image.values())
            self.bar.refresh()

    def images_done(self, images: int, metrics: ClassificationMetrics) -> None:
        """After a batch: the images done and the running accuracy of the first row."""
        self.done += images
        text = f"{self.done}/{self.images} images"
        if metrics.count:
            text += f", top1 {metrics.accuracy(1):.1f}% top5 {metrics.accuracy(5):.1f}%"
        self.bar.set_postfix_str(text)

    def close(self) -> None:
        for hook in self.hooks:
            hook.remove()
        self.bar.close()


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


def open_for_models(
    data: str | Path,
    members: Sequence[Member],
    scales: Sequence[int],
    *,
    labels: str | Path | None = None,
    devkit_meta: str | Path | None = None,
    limit: int | None = None,
) -> LabeledImages:
    """The labelled dataset for these models (which must have the same classes), at least one image.

    Each image is checked in the loader's workers against the largest scale it will be resized to (of ``scales`` and
    the members' center resize), so that an image too elongated to resize is a counted failure, not a memory error.
    """
    num_classes = {m.model.num_classes for m in members}
    if len(num_classes) > 1:
        raise VggnetsError(
            f"the ensemble's models have different numbers of classes ({sorted(num_classes)})."
        )
    largest = max([*scales, *(m.transform.resize_size[0] for m in members)])
    dataset = open_dataset(
        data,
        labels=labels,
        devkit_meta=devkit_meta,
        num_classes=num_classes.pop(),
        limit=limit,
        transform=partial(check_resized_size, short_side=largest),  # runs in the workers
    )
    if len(dataset) == 0:
        raise VggnetsError(f"no labelled images were found in {data}.")
    return dataset


@dataclass
class _Plan:
    """The settings shared by every run of :func:`build_runs`."""

    scales: tuple[int, ...]
    flip: bool
    batch_size: int
    num_classes: int
    center: Callable[[Member], Protocol] | None

    def run(self, model: str, protocol: Protocol, parts: Sequence[ProtocolRun] = ()) -> ProtocolRun:
        return ProtocolRun(model, protocol, ClassificationMetrics(self.num_classes), parts=list(parts))

    def single(self, member: Member, kind: str) -> ProtocolRun:
        """A run of one model with one protocol; dense takes the middle of the scales."""
        if kind == "center" and self.center is not None:
            return self.run(member.name, self.center(member))
        chosen = (sorted(self.scales)[len(self.scales) // 2],) if kind == "dense" else self.scales
        common = {"mean": member.transform.mean, "std": member.transform.std, "batch_size": self.batch_size}
        return self.run(
            member.name, make_protocol(kind, member.model, scales=chosen, flip=self.flip, **common)
        )

    def member_runs(self, member: Member, names: Sequence[str]) -> list[ProtocolRun]:
        """One run per protocol name; the combination averages its parts' runs (hidden when not asked for)."""
        made = {kind: self.single(member, kind) for kind in names if kind != COMBINED}
        if COMBINED in names:
            parts = [made.get(k) or self.single(member, k) for k in COMBINED_PARTS]
            for part in parts:
                part.hidden = part.hidden or all(part is not r for r in made.values())
            made[COMBINED] = self.run(member.name, Average([p.protocol for p in parts], name=COMBINED), parts)
        return [made[k] for k in names]


def build_runs(
    members: Sequence[Member],
    names: Sequence[str],
    scales: Sequence[int],
    *,
    num_classes: int,
    flip: bool = False,
    batch_size: int = 16,
    center: Callable[[Member], Protocol] | None = None,
) -> list[ProtocolRun]:
    """The rows of the results: every protocol of ``names`` (see :data:`~vggnets.evaluation.protocols.PROTOCOLS`)
    for every member, in that order, then, for several members, their ensemble (posteriors averaged) per protocol.

    ``scales`` is the multi-scale set; dense runs its middle scale. ``center`` builds a member's center protocol
    instead of :func:`~vggnets.evaluation.protocols.make_protocol` (the fast inference engine's, for example).
    Combinations reuse their parts' posteriors, so each model runs each protocol once per batch.
    """
    plan = _Plan(tuple(scales), flip, batch_size, num_classes, center)
    per_member = [plan.member_runs(member, names) for member in members]
    rows = [run for runs in per_member for run in runs]
    if len(members) > 1:
        label = "+".join(m.name for m in members)
        for i, kind in enumerate(names):
            parts = [runs[i] for runs in per_member]
            rows.append(plan.run(label, Average([p.protocol for p in parts], name=kind), parts))
    return rows
