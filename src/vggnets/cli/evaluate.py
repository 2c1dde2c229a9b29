"""``vggnets evaluate``: the paper's evaluation protocols on a labelled dataset, as a paper-shaped table and JSON."""

from __future__ import annotations

import argparse
import sys

from .common import (
    add_engine_options,
    add_model_options,
    add_quiet_option,
    add_runtime_options,
    add_scale_options,
    add_subcommand,
    check_runtime_options,
    load_classifier,
    make_predictor,
    parse_scales,
    provenance,
    require_at_least,
    run_fingerprint,
    show_progress,
    uses_engine,
    weights_identity,
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
Unreadable images are skipped and counted. The progress bar counts network inputs (multicrop runs 150
per image over 3 scales), with their rate and the time left. --output is checked before any work, never
replaced without --force, and records what produced it (version, command options, models and weights);
the table is printed before it is written, so a full disk loses only the file.

Under `torchrun --nproc-per-node=K -m vggnets evaluate ...` each process evaluates its share of the
units of --unit-size images and rank 0 adds up the streaming counts (every protocol and ensemble row,
failed images included: the metrics of one process; the seconds column sums the processes' compute
time). With --output each finished unit is committed to OUTPUT.parts and a rerun skips it.
Exit code: 0 all images evaluated, 1 some images could not be read, 2 nothing was run or the
--output file could not be written (under torchrun 0 once the results are written)."""
EPILOG = """\
examples:
  vggnets evaluate imagenet/val --model vgg16 --protocol center,dense,multiscale --flip
  vggnets evaluate val_flat/ --labels val.txt --protocol all --limit 1000 --output results.json
  vggnets evaluate imagenet/val --ensemble vgg16,vgg19 --protocol multiscale --flip
  torchrun --nproc-per-node=8 -m vggnets evaluate imagenet/val --protocol multicrop -o mc.json"""


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
    p.add_argument(
        "-o", "--output", default=None, metavar="FILE", help="also write the results as JSON to this file"
    )
    p.add_argument("--force", action="store_true", help="replace an existing --output file")
    add_engine_options(p)
    add_scale_options(p)
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
    """Load the models, stream the data once through every run, print the table, write JSON."""
    from ..core.configs import MODELS
    from ..errors import VggnetsError
    from ..io.output import check_output
    from ..scale.ranks import join

    names = parse_protocols(args.protocol)
    scales = parse_scales(args.scales)
    require_at_least(args.limit, 1, "--limit")
    require_at_least(args.unit_size, 1, "--unit-size")
    device = check_runtime_options(args)
    if args.output:
        check_output(args.output, overwrite=args.force)
    weights = parse_ensemble(args.ensemble, "DEFAULT") if args.ensemble else [(args.model, args.weights)]
    for name, _ in weights:
        if name not in MODELS:
            raise VggnetsError(f"unknown model {name!r} in --ensemble; choose from {', '.join(MODELS)}.")
    with join(device) as ranks:
        return _run(args, ranks, names, scales, weights)


def _run(args: argparse.Namespace, ranks, names: list[str], scales, weights: list[tuple[str, str]]) -> int:
    """The evaluation in this process; under torchrun each process evaluates its share of the units and rank 0
    merges the counts, prints the table and writes the JSON."""
    from ..evaluation.evaluate import Member, build_runs, evaluate, open_for_models
    from ..evaluation.protocols import EngineCenter
    from ..evaluation.results import markdown_table, write_results

    device = ranks.device
    if uses_engine(args) and any(n != "center" for n in names):
        ranks.say(
            "vggnets evaluate: note: --precision/--compile apply to the center protocol; the dense, multi-scale "
            "and multi-crop protocols run the eager fp32 model (their input sizes vary per image)."
        )
    loaded = [(n, load_classifier(n, w, device, progress=show_progress(args))) for n, w in weights]
    members = [Member(n, clf.model, clf.transform) for n, clf in loaded]
    dataset = open_for_models(
        args.data, members, scales, labels=args.labels, devkit_meta=args.devkit_meta, limit=args.limit
    )
    for problem in dataset.problems:
        ranks.say(f"vggnets evaluate: warning: {problem}")

    def engine_center(member: Member) -> EngineCenter:
        return EngineCenter(make_predictor(member.model, member.transform, args, device), member.model)

    runs = build_runs(
        members,
        names,
        scales,
        num_classes=len(dataset.classes),
        flip=args.flip,
        batch_size=args.batch_size,
        center=engine_center if uses_engine(args) else None,
    )
    parts = None
    if ranks.launched:
        evaluation, parts = _evaluate_on_ranks(args, ranks, runs, dataset, loaded, names, scales)
        if evaluation is None:
            return 0
    else:
        evaluation = evaluate(
            runs, dataset, batch_size=args.batch_size, workers=args.workers, progress=show_progress(args)
        )
    print(markdown_table(evaluation), flush=True)  # first: a file that cannot be written loses nothing else
    for path, error in evaluation.failures:
        print(f"vggnets evaluate: skipped {path}: {error}", file=sys.stderr)
    if args.output:
        resolved = [(m, str(clf.weights)) for m, clf in loaded]
        write_results(args.output, evaluation, dataset, resolved, overwrite=args.force,
                      produced_by=provenance(args))  # fmt: skip
    if parts is not None and not args.keep_parts:
        parts.remove()
    return 1 if evaluation.failures and not ranks.launched else 0


def _evaluate_on_ranks(args: argparse.Namespace, ranks, runs, dataset, loaded, names, scales):
    """(the merged evaluation on rank 0, None elsewhere; the parts folder or None): every process evaluates its
    share of the units, committed to OUTPUT.parts with --output (a rerun skips them) or gathered by rank 0."""
    import hashlib
    import time

    from ..evaluation.evaluate import evaluate_slices, merged_evaluation
    from ..scale.jobs import Progress, open_parts, run_units
    from ..scale.parts import describe_files, parts_folder
    from ..scale.records import EVALUATION
    from ..scale.shards import make_units, unit_size

    start = time.perf_counter()
    size = unit_size(args.unit_size, args.batch_size)
    parts = None
    if args.output:
        targets = hashlib.sha256(",".join(map(str, dataset.targets)).encode()).hexdigest()[:32]
        fingerprint = run_fingerprint(
            args, describe_files(s.path for s in dataset.samples), ranks.device, size, **{"targets": targets,
            "classes": len(dataset.classes), "--protocol": names, "--scales": list(scales), "--flip": args.flip,
            "models": [[n, weights_identity(clf.weights)] for n, clf in loaded]},
        )  # fmt: skip
        parts = open_parts(ranks, parts_folder(args.output), fingerprint, marker=".pt", restart=args.force)

    def work(units):
        slices = [(unit.start, unit.stop) for unit in units]
        return evaluate_slices(runs, dataset, slices, batch_size=args.batch_size, workers=args.workers,
                               progress=show_progress(args) and ranks.is_main)  # fmt: skip

    progress = Progress()
    done = run_units(ranks, make_units(len(dataset), size), work, parts=parts, codec=EVALUATION,
                     progress=progress)  # fmt: skip
    if not ranks.is_main:
        for _ in done:  # the other ranks take part in the collectives and yield nothing
            pass
        return None, parts
    evaluation = merged_evaluation(runs, (state for _, state in done))
    evaluation.wall_seconds = time.perf_counter() - start
    if progress.resumed:
        ranks.say(
            f"vggnets evaluate: resumed: {len(progress.resumed)} of {progress.units} units were done before"
        )
    return evaluation, parts
