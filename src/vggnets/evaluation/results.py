"""The results of an evaluation shaped like the paper's tables: a Markdown table, and a JSON document with the details."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..io.output import write_text
from .datasets import LabeledImages
from .evaluate import Evaluation

__all__ = ["markdown_table", "results_document", "write_results"]


def markdown_table(evaluation: Evaluation) -> str:
    """One row per model and protocol: scales, top-1/top-5 error, top-1 accuracy, images, failures, seconds."""
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


def results_document(
    evaluation: Evaluation, dataset: LabeledImages, weights: Sequence[tuple[str, str]]
) -> dict[str, Any]:
    """JSON-ready results: the dataset, the models and their ``weights`` ((model, weights) pairs), the rows,
    per-class accuracy and most frequent confusions of each row, the class names, the failures, the wall time."""
    shown = [r for r in evaluation.runs if not r.hidden]
    return {
        "dataset": {"source": dataset.source, "images": len(dataset), "problems": list(dataset.problems)},
        "models": [{"model": m, "weights": w} for m, w in weights],
        "rows": [r.row() for r in shown],
        "per_class_accuracy": [
            [None if math.isnan(v) else round(v, 4) for v in r.metrics.per_class_accuracy().tolist()]
            for r in shown
        ],
        "top_confusions": [
            [
                {"true": dataset.classes[t], "predicted": dataset.classes[p], "count": c}
                for t, p, c in r.metrics.top_confusions()
            ]
            for r in shown
        ],
        "classes": list(dataset.classes),
        "failures": [{"file": f, "error": e} for f, e in evaluation.failures],
        "wall_seconds": round(evaluation.wall_seconds, 3),
    }


def write_results(
    path: str | Path,
    evaluation: Evaluation,
    dataset: LabeledImages,
    weights: Sequence[tuple[str, str]],
    *,
    overwrite: bool = False,
    produced_by: dict[str, Any] | None = None,
) -> Path:
    """Write :func:`results_document` as indented JSON, atomically; an existing file is replaced only with
    ``overwrite``. ``produced_by`` (what made the file: version, command, options) is stored with the results."""
    document = results_document(evaluation, dataset, weights)
    if produced_by is not None:
        document = {"produced_by": produced_by, **document}
    return write_text(path, json.dumps(document, indent=2) + "\n", overwrite=overwrite)
