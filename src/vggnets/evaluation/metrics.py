"""Streaming classification metrics: top-k accuracy and error, per-class accuracy, confusion counts.

:class:`ClassificationMetrics` accumulates integer counts batch by batch, so its memory is O(K^2) (the
confusion matrix, int64) whatever the number of images, and accumulators of shards of a dataset (processes,
machines, models of an ensemble evaluated separately) combine exactly with :meth:`~ClassificationMetrics.merge`.

Conventions: the paper (Simonyan & Zisserman) reports top-1 and top-5 **error** in percent; torchvision
reports **accuracy** in percent; ``error(k) == 100 - accuracy(k)``. Images that could not be read are counted
separately (:meth:`~ClassificationMetrics.add_failed`) and are not part of either.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

__all__ = ["ClassificationMetrics"]


class ClassificationMetrics:
    """Streaming top-k accuracy/error, per-class accuracy and confusion counts; memory O(K^2) (int64), independent of N.

    A sample is correct at k when its target is among the k classes that ``torch.topk(scores, k)`` returns.
    Scores may be posteriors or logits (any monotonic transform gives the same result). Ties follow
    ``torch.topk``: exactly k classes are returned even when scores are equal, and which of the tied classes
    are returned is not specified (so a constant score vector gives top-k accuracy k/K on classes that are
    equally represented, neither 0 nor 100%); NaN scores rank above every number. ``k`` larger than the
    number of classes K is clamped to K (top-K accuracy is 100%).

    Per class the accumulator keeps how often the target came at each position of the top-``max(topk)``
    list, so accuracy is available for every k up to ``max(topk)``, overall and per class; the confusion
    matrix counts (true class, top-1 prediction) pairs.
    """

    def __init__(self, num_classes: int, topk: Sequence[int] = (1, 5)) -> None:
        if int(num_classes) < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        ks = tuple(int(k) for k in topk)
        if not ks or min(ks) < 1:
            raise ValueError(f"topk must be positive integers, got {tuple(topk)}")
        self.num_classes = int(num_classes)
        self.topk = tuple(dict.fromkeys(ks))
        #: Longest top-k list computed (at least 1 for the confusion matrix; at most K).
        self.maxk = min(max(*self.topk, 1), self.num_classes)
        # _ranks[c, j]: samples of true class c whose target is at position j (0-based) of the top-maxk list;
        # j == maxk: not in it.
        self._ranks = torch.zeros(self.num_classes, self.maxk + 1, dtype=torch.int64)
        self._confusion = torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64)
        self._failed = 0

    # -- accumulation ------------------------------------------------------------------------------------

    @torch.no_grad()
    def update(self, scores: Tensor, targets: Tensor | Sequence[int]) -> None:
        """Add a batch: ``scores`` (N, K) posteriors or logits (any device), ``targets`` (N,) class indices."""
        scores = torch.as_tensor(scores)
        targets = torch.as_tensor(targets)
        k = self.num_classes
        if scores.ndim != 2 or scores.shape[1] != k:
            raise ValueError(f"scores must have shape (N, {k}), got {tuple(scores.shape)}")
        if targets.ndim != 1 or targets.shape[0] != scores.shape[0]:
            raise ValueError(
                f"targets must have shape ({scores.shape[0]},) to match scores {tuple(scores.shape)}, "
                f"got {tuple(targets.shape)}"
            )
        if targets.dtype == torch.bool or targets.is_floating_point() or targets.is_complex():
            raise ValueError(f"targets must be integer class indices, got dtype {targets.dtype}")
        n = scores.shape[0]
        if n == 0:
            return
        targets = targets.to("cpu", torch.int64)
        low, high = int(targets.min()), int(targets.max())
        if low < 0 or high >= k:
            raise ValueError(f"targets must lie in 0 .. {k - 1}, got values from {low} to {high}")
        top = scores.detach().topk(self.maxk, dim=1, largest=True, sorted=True).indices.to("cpu")
        hits = top == targets[:, None]
        position = torch.where(hits.any(1), hits.to(torch.int64).argmax(1), self.maxk)
        ones = torch.ones(n, dtype=torch.int64)
        self._ranks.view(-1).index_add_(0, targets * (self.maxk + 1) + position, ones)
        self._confusion.view(-1).index_add_(0, targets * k + top[:, 0], ones)

    def add_failed(self, n: int = 1) -> None:
        """Count ``n`` images that could not be read: reported, excluded from accuracy and error."""
        if int(n) < 0:
            raise ValueError(f"n must be 0 or more, got {n}")
        self._failed += int(n)

    def merge(self, other: ClassificationMetrics) -> None:
        """Add another accumulator's counts (shards of a dataset: processes, machines, chunks)."""
        if not isinstance(other, ClassificationMetrics):
            raise TypeError(f"can only merge ClassificationMetrics, got {type(other).__name__}")
        if other.num_classes != self.num_classes or other.maxk != self.maxk:
            raise ValueError(
                f"cannot merge metrics of {other.num_classes} classes up to top-{other.maxk} into metrics of "
                f"{self.num_classes} classes up to top-{self.maxk}"
            )
        self._ranks += other._ranks
        self._confusion += other._confusion
        self._failed += other._failed

    def state(self) -> dict[str, Any]:
        """The counts as plain data (tensors and numbers): for part files and for sending between processes;
        :meth:`from_state` makes an accumulator of them again."""
        return {
            "num_classes": self.num_classes,
            "topk": list(self.topk),
            "ranks": self._ranks.clone(),
            "confusion": self._confusion.clone(),
            "failed": self._failed,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ClassificationMetrics:
        """The accumulator whose :meth:`state` is ``state``."""
        metrics = cls(int(state["num_classes"]), tuple(state["topk"]))
        ranks, confusion = torch.as_tensor(state["ranks"]), torch.as_tensor(state["confusion"])
        if ranks.shape != metrics._ranks.shape or confusion.shape != metrics._confusion.shape:
            raise ValueError(
                f"a state of shapes {tuple(ranks.shape)} and {tuple(confusion.shape)} does not fit metrics of "
                f"{metrics.num_classes} classes up to top-{metrics.maxk}"
            )
        metrics._ranks.copy_(ranks)
        metrics._confusion.copy_(confusion)
        metrics._failed = int(state["failed"])
        return metrics

    def reset(self) -> None:
        """Forget every count."""
        self._ranks.zero_()
        self._confusion.zero_()
        self._failed = 0

    # -- results -----------------------------------------------------------------------------------------

    @property
    def count(self) -> int:
        """Images scored (excluding failed ones)."""
        return int(self._ranks.sum())

    @property
    def failed(self) -> int:
        """Images that could not be read."""
        return self._failed

    def _hits(self, k: int) -> Tensor:
        """(K,) int64: samples of each true class whose target is in the top-k (k clamped to K)."""
        k = int(k)
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        if k >= self.num_classes:  # every class is in the top-K
            return self._ranks.sum(1)
        if k > self.maxk:
            raise ValueError(
                f"top-{k} is not tracked (up to top-{self.maxk}); create ClassificationMetrics with topk including {k}"
            )
        return self._ranks[:, :k].sum(1)

    def accuracy(self, k: int = 1) -> float:
        """Top-k accuracy in percent (torchvision's convention); NaN before any image."""
        hits = int(self._hits(k).sum())
        count = self.count
        return 100.0 * hits / count if count else math.nan

    def error(self, k: int = 1) -> float:
        """Top-k error in percent (the paper's convention): ``100 - accuracy(k)``; NaN before any image."""
        return 100.0 - self.accuracy(k)

    def per_class_accuracy(self, k: int = 1) -> Tensor:
        """(K,) float64 top-k accuracy of each true class in percent; NaN for classes without samples."""
        hits = self._hits(k).to(torch.float64)
        totals = self._ranks.sum(1).to(torch.float64)
        return torch.where(totals > 0, 100.0 * hits / totals.clamp(min=1), torch.nan)

    def mean_per_class_accuracy(self, k: int = 1) -> float:
        """Mean of :meth:`per_class_accuracy` over the classes that have samples; NaN before any image."""
        values = self.per_class_accuracy(k)
        present = values[~values.isnan()]
        return float(present.mean()) if present.numel() else math.nan

    def class_counts(self) -> Tensor:
        """(K,) int64 number of scored samples of each true class."""
        return self._ranks.sum(1)

    def confusion(self) -> Tensor:
        """(K, K) int64 counts (a copy): rows = true class, columns = top-1 prediction."""
        return self._confusion.clone()

    def top_confusions(self, n: int = 20) -> list[tuple[int, int, int]]:
        """The ``n`` most frequent mistakes as (true class, predicted class, count), most frequent first."""
        off = self._confusion.clone()
        off.fill_diagonal_(0)
        counts, flat = off.flatten().topk(min(n, off.numel()))
        k = off.shape[1]
        return [(int(i) // k, int(i) % k, int(c)) for c, i in zip(counts, flat, strict=True) if c > 0]

    def summary(self) -> dict[str, Any]:
        """JSON-ready numbers: images, failed, top-k accuracy and error (%) for each k of ``topk``,
        mean per-class (top-1) accuracy. Undefined values (no image scored) are None."""
        out: dict[str, Any] = {"images": self.count, "failed": self.failed}
        for k in self.topk:
            out[f"top{k}_acc"] = _finite(self.accuracy(k))
        for k in self.topk:
            out[f"top{k}_err"] = _finite(self.error(k))
        out["mean_per_class_acc"] = _finite(self.mean_per_class_accuracy())
        return out

    def __repr__(self) -> str:
        shown = ", ".join(f"top{k} {self.accuracy(k):.2f}%" for k in self.topk)
        return f"ClassificationMetrics({self.num_classes} classes, {self.count} images, {self.failed} failed, {shown})"


def _finite(value: float) -> float | None:
    return None if math.isnan(value) else value
