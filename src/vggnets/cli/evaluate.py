"""``vggnets evaluate``: the paper's evaluation protocols on a labelled dataset, as a paper-shaped table and JSON."""

from __future__ import annotations

import argparse
import json
import sys
from functools import partial
from pathlib import Path

from .common import (
    add_engine_options,
    add_model_options,
    add_quiet_option,
    add_runtime_options,
    add_subcommand,
    check_runtime_options,
    load_classifier,
    make_predictor,
    parse_scales,
    require_at_least,
    show_progress,
    uses_engine,
)

HELP = "top-1/top-5 error with the paper's protocols (center, dense, multi-scale, multi-crop, ensembles)"
DESCRIPTION = """\
Evaluate one model, or an ensemble, on a labelled dataset with the paper's protocols (arXiv 1409.1556, 3.2):

  center           torchvision's protocol: resize 256, center crop 224 (the published accuracies)
  dense            the whole image at one scale Q through the fully-convolutional net (fc6 as a 7x7
                   conv), class scores averaged over the score map; --flip adds the mirrored image
  multiscale       dense at every scale of --scales, posteriors averaged (paper Table 4)
  multicrop        5x5 grid of 224 crops x 2 flips per scale: 50 per scale, 150 over 3 scales
  dense+multicrop  the average of multiscale and multicrop (paper Table 5)

Several protocols (comma-separated, or "all") run in one pass over the data, one table row each.
--ensemble averages the posteriors of several models (paper Table 6) and adds one row per protocol.
Scales: --scales is the multi-scale set (default 256,384,512, the paper's for scale-jittered models;
use S-32,S,S+32 for a model trained at fixed S); dense uses its middle scale.

DATA is an ImageFolder tree (class folders named by WordNet id such as n01440764, or by class index),
or a flat directory of images with --labels: Caffe's val.txt ("file index"), a CSV "file,label", or
one label per line in sorted file order (the ILSVRC2012 devkit's ground truth needs --devkit-meta).
Unreadable images are skipped and counted. Exit code: 0 all images evaluated, 1 some images could
not be read, 2 nothing was run."""
EPILOG = """\
examples:
  vggnets evaluate imagenet/val --model vgg16 --protocol center,dense,multiscale --flip
  vggnets evaluate val_flat/ --labels val.txt --protocol all --limit 1000 --output results.json
  vggnets evaluate imagenet/val --ensemble vgg16,vgg19 --protocol multiscale --flip"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the subcommand."""
    from ..evaluation.protocols import PROTOCOLS

    p = add_subcommand(sub, "evaluate", help=HELP, description=DESCRIPTION, epilog=EPILOG)
    p.add_argument("data", metavar="DATA", help="ImageFolder tree, or a flat image directory with --labels")
    add_model_options(p)
    p.add_argument(
        "--protocol",
        default="center",
        help=f"comma-separated protocols, or 'all' ({', '.join(PROTOCOLS)}; default: center)",
    )
    p.add_argument("--scales", default=None, help="comma-separated image scales Q (default: 256,384,512)")
    p.add_argument(
        "--flip", action="store_true", help="dense protocols also average the horizontally flipped image"
    )
    p.add_argument(
        "--ensemble",
        default=None,
        metavar="M1,M2",
        help="average these models (each NAME for its DEFAULT weights, or NAME=WEIGHTS); replaces --model",
    )
    p.add_argument(
        "--labels",
        default=None,
        help="ground-truth file for a flat directory (val.txt, CSV, or one per line)",
    )
    p.add_argument(
        "--devkit-meta", default=None, help="the ILSVRC2012 devkit's data/meta.mat, to map its class ids"
    )
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N images (sorted order)")
    add_runtime_options(p, batch_size=16, workers=1, batch_help="images per protocol call")
    p.add_argument("--output", default=None, help="also write the results as JSON to this file")
    add_engine_options(p)
    add_quiet_option(p)
    p.set_defaults(run=run)


def parse_protocols(text: str) -> list[str]:
    """'all' or a comma-separated list of known protocol names, in the order given, each once."""
    from ..errors import VggnetsError
    from ..evaluation.protocols import PROTOCOLS

    names = list(PROTOCOLS) if text.strip() == "all" else [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in PROTOCOLS]
    if unknown or not names:
        raise VggnetsError(
            f"unknown protocol {', '.join(unknown) or text!r}; choose from {', '.join(PROTOCOLS)} or all."
        )
    return list(dict.fromkeys(names))


def parse_ensemble(text: str, default_weights: str) -> list[tuple[str, str]]:
    """'vgg16,vgg19=/path.pth' -> [("vgg16", DEFAULT), ("vgg19", "/path.pth")]."""
    members = []
    for item in (t.strip() for t in text.split(",")):
        if item:
            name, _, weights = item.partition("=")
            members.append((name.strip(), weights.strip() or default_weights))
    return members


def run(args: argparse.Namespace) -> int:
    """Build the runs, stream the data once, print the table, write JSON."""
    from ..core.configs import MODELS
    from ..errors import VggnetsError
    from ..evaluation.datasets import open_dataset
    from ..evaluation.evaluate import ProtocolRun, evaluate, markdown_table
    from ..evaluation.metrics import ClassificationMetrics
    from ..evaluation.protocols import Average, EngineCenter, make_protocol
    from ..io.images import check_resized_size

    names = parse_protocols(args.protocol)
    scales = parse_scales(args.scales)
    require_at_least(args.limit, 1, "--limit")
    device = check_runtime_options(args)
    members = parse_ensemble(args.ensemble, "DEFAULT") if args.ensemble else [(args.model, args.weights)]
    for name, _ in members:
        if name not in MODELS:
            raise VggnetsError(f"unknown model {name!r} in --ensemble; choose from {', '.join(MODELS)}.")

    if uses_engine(args) and any(n != "center" for n in names):
        print(
            "vggnets evaluate: note: --precision/--compile apply to the center protocol; the dense, multi-scale "
            "and multi-crop protocols run the eager fp32 model (their input sizes vary per image).",
            file=sys.stderr,
        )
    loaded = [load_classifier(n, w, device, progress=show_progress(args)) for n, w in members]
    num_classes = {c.model.num_classes for c in loaded}
    if len(num_classes) > 1:
        raise VggnetsError(
            f"the ensemble's models have different numbers of classes ({sorted(num_classes)})."
        )
    largest = max([*scales, *(c.transform.resize_size[0] for c in loaded)])
    dataset = open_dataset(
        args.data,
        labels=args.labels,
        devkit_meta=args.devkit_meta,
        num_classes=num_classes.pop(),
        limit=args.limit,
        transform=partial(check_resized_size, short_side=largest),  # runs in the workers
    )
    if len(dataset) == 0:
        raise VggnetsError(f"no labelled images were found in {args.data}.")
    for problem in dataset.problems:
        print(f"vggnets evaluate: warning: {problem}", file=sys.stderr)

    def new_run(model: str, protocol, parts=(), hidden=False) -> ProtocolRun:
        return ProtocolRun(
            model, protocol, ClassificationMetrics(len(dataset.classes)), parts=list(parts), hidden=hidden
        )

    dense_scale = sorted(scales)[len(scales) // 2]
    rows: list[ProtocolRun] = []
    per_model: dict[str, list[ProtocolRun]] = {}
    for (name, _), clf in zip(members, loaded, strict=True):
        common = {"mean": clf.transform.mean, "std": clf.transform.std, "batch_size": args.batch_size}

        def single(kind: str, clf=clf, common=common, name=name) -> ProtocolRun:
            if kind == "center" and uses_engine(args):
                return new_run(
                    name, EngineCenter(make_predictor(clf.model, clf.transform, args, device), clf.model)
                )
            chosen = (dense_scale,) if kind == "dense" else scales
            return new_run(name, make_protocol(kind, clf.model, scales=chosen, flip=args.flip, **common))

        made = {kind: single(kind) for kind in names if kind != "dense+multicrop"}
        if "dense+multicrop" in names:
            parts = [made.get(k) or single(k) for k in ("multiscale", "multicrop")]
            for part in parts:
                part.hidden = part.hidden or all(part is not r for r in made.values())
            made["dense+multicrop"] = new_run(
                name, Average([p.protocol for p in parts], name="dense+multicrop"), parts=parts
            )
        per_model[name] = [made[k] for k in names]
        rows += per_model[name]
    if len(members) > 1:
        label = "+".join(name for name, _ in members)
        for i, kind in enumerate(names):
            parts = [runs[i] for runs in per_model.values()]
            rows.append(new_run(label, Average([p.protocol for p in parts], name=kind), parts=parts))

    evaluation = evaluate(
        rows, dataset, batch_size=args.batch_size, workers=args.workers, progress=show_progress(args)
    )
    print(markdown_table(evaluation))
    for path, error in evaluation.failures:
        print(f"vggnets evaluate: skipped {path}: {error}", file=sys.stderr)
    if args.output:
        write_json(Path(args.output), evaluation, dataset, members)
    return 1 if evaluation.failures else 0


def write_json(path: Path, evaluation, dataset, members) -> None:
    """Rows, per-class accuracy, failures and the dataset description; written atomically."""
    import math
    import os

    doc = {
        "dataset": {"source": dataset.source, "images": len(dataset), "problems": list(dataset.problems)},
        "models": [{"model": m, "weights": w} for m, w in members],
        "rows": [r.row() for r in evaluation.runs if not r.hidden],
        "per_class_accuracy": [
            [None if math.isnan(v) else round(v, 4) for v in r.metrics.per_class_accuracy().tolist()]
            for r in evaluation.runs
            if not r.hidden
        ],
        "top_confusions": [
            [
                {"true": dataset.classes[t], "predicted": dataset.classes[p], "count": c}
                for t, p, c in r.metrics.top_confusions()
            ]
            for r in evaluation.runs
            if not r.hidden
        ],
        "classes": list(dataset.classes),
        "failures": [{"file": f, "error": e} for f, e in evaluation.failures],
        "wall_seconds": round(evaluation.wall_seconds, 3),
    }
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    os.replace(tmp, path)
