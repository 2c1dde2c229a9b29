"""``vggnets explain``: Grad-CAM heat maps over images, with each image's top-k predictions, written to a folder."""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from pathlib import Path

from ..explain.cam import METHODS
from .common import (
    FORMATS,
    add_model_options,
    add_quiet_option,
    add_subcommand,
    collect_inputs,
    load_classifier,
    provenance,
    require_at_least,
    resolve_device,
    show_progress,
)

HELP = "Grad-CAM heat maps: where in each image the network finds the class it predicts"
DESCRIPTION = """\
Explain a VGG's predictions with class activation maps (Grad-CAM and variants, as pytorch-grad-cam computes
them). Each image is preprocessed as its weights expect (resize 256, center crop 224, like `vggnets classify`);
the map of the target class at --layer is resized to the crop, scaled to [0, 1] and blended over it.

Per image, OUTPUT gets NAME.cam.png (the overlay) and, with --save-maps, NAME.cam.npy (the map, float32,
the crop's size, values in [0, 1]); --grid adds grid.png with every overlay and its caption; explain.json
lists each image's top-k predictions, its target and the files written, and what produced them (the PNGs
carry the same record in a `vggnets` text chunk). The same results are printed (--format).
Nothing is overwritten without --force. An image that cannot be read is reported and the others are still
explained. Exit code: 0 all explained, 1 some images failed, 2 nothing was run (bad options, weights, or a
missing optional dependency: the overlays need matplotlib, pip install 'vggnets[explain]')."""
EPILOG = """\
examples:
  vggnets explain examples/images/ -o cams/                    Grad-CAM of the top class at relu5_3 (VGG16)
  vggnets explain cat.jpg -o cams/ --target 285 --grid         explain class 285 (Egyptian cat) instead
  vggnets explain cat.jpg -o cams/ --target top2 --method gradcam++ --layer pool5
  vggnets explain photos/ -r -o cams/ --model vgg19_bn --save-maps --force
  vggnets explain x.png -o cams/ --model vgg11 --weights finetuned.pth --target 3

Layers are named as in the paper for every configuration (conv5_3, relu5_3, pool5, bn5_3 on BN models, ...);
the default is the last ReLU (relu5_3 on VGG16, relu5_2 on VGG11/13, relu5_4 on VGG19)."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the subcommand."""
    p = add_subcommand(sub, "explain", help=HELP, description=DESCRIPTION, epilog=EPILOG)
    p.add_argument("paths", nargs="+", metavar="IMAGES", help="image files, directories or glob patterns")
    p.add_argument(
        "-o", "--output", required=True, metavar="DIR", help="folder for the files (created if needed)"
    )
    add_model_options(p)
    p.add_argument("--layer", default=None, help="named layer (default: the last ReLU, relu5_3 on VGG16)")
    p.add_argument("--method", default="gradcam", choices=METHODS, help="CAM method (default: gradcam)")
    p.add_argument(
        "--target",
        default="top1",
        metavar="CLASS",
        help="class to explain: top1 (default, each image's top class), topK (its K-th), a class index or an "
        "exact category name such as 'tabby'",
    )
    p.add_argument("-k", "--topk", type=int, default=5, help="predictions listed per image (default: 5)")
    p.add_argument("--save-maps", action="store_true", help="also write each map as NAME.cam.npy")
    p.add_argument("--grid", action="store_true", help="also write grid.png with every overlay")
    p.add_argument(
        "--alpha", type=float, default=0.5, help="weight of the heat map in the overlay (default: 0.5)"
    )
    p.add_argument("--colormap", default="jet", help="matplotlib colormap of the heat map (default: jet)")
    p.add_argument("-r", "--recursive", action="store_true", help="also read images in subdirectories")
    p.add_argument("--format", choices=FORMATS[:2], default="table", help="table (default) or json on stdout")
    p.add_argument("-b", "--batch-size", type=int, default=8, help="images per forward pass (default: 8)")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    p.add_argument("--force", action="store_true", help="overwrite existing output files")
    add_quiet_option(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Check everything, then explain the images batch by batch; return 0, or 1 if any image failed."""
    from ..errors import VggnetsError

    check_options(args)
    device = resolve_device(args.device)
    entries = collect_inputs(args.paths, recursive=args.recursive)
    if not entries:
        raise VggnetsError("no input images were given.")
    files = [e for e in entries if isinstance(e, Path)]
    outputs = plan_outputs(
        files, Path(args.output), save_maps=args.save_maps, grid=args.grid, force=args.force
    )

    records: dict[int, dict] = {}
    overlays: list[tuple[object, str]] = []
    weights, layer = args.weights, args.layer
    if files:
        from ..explain import explain_files

        loaded, layer, labels, target = load_model(args, device)
        weights = loaded.weights
        records, overlays = explain_files(
            loaded.model,
            loaded.transform,
            files,
            outputs["files"],
            labels,
            layer=layer,
            target=target,
            method=args.method,
            topk=args.topk,
            batch_size=args.batch_size,
            alpha=args.alpha,
            colormap=args.colormap,
            keep_overlays=args.grid,
            overwrite=args.force,
            metadata=provenance(args, weights=str(loaded.weights), layer=layer),
            device=device,
            progress=show_progress(args),
        )
    doc = write_report(args, outputs, _in_input_order(entries, records), overlays, weights, layer)
    return print_report(args, doc)


def check_options(args: argparse.Namespace) -> None:
    """The numeric options and the colormap (matplotlib present, the name known), before any work."""
    from ..errors import VggnetsError
    from ..explain import colormap_table

    require_at_least(args.topk, 1, "--topk")
    require_at_least(args.batch_size, 1, "--batch-size")
    if not 0.0 <= args.alpha <= 1.0:
        raise VggnetsError(f"--alpha must be between 0 and 1, got {args.alpha}.")
    try:
        colormap_table(args.colormap)  # matplotlib present, colormap known: before any work
    except ValueError as exc:
        raise VggnetsError(f"--colormap: {exc}.") from None


def load_model(args: argparse.Namespace, device) -> tuple[object, str, list[str], str | int]:
    """(the loaded classifier, the checked --layer, the class names, the resolved --target)."""
    from ..errors import VggnetsError
    from ..explain import cam_layers, default_layer
    from ..inference.classify import class_names

    loaded = load_classifier(args.model, args.weights, device, progress=show_progress(args))
    model = loaded.model
    names = cam_layers(model)
    layer = args.layer or default_layer(model)
    if layer not in names:
        close = difflib.get_close_matches(layer, names, n=3)
        hint = f" Did you mean {' or '.join(close)}?" if close else ""
        raise VggnetsError(
            f"--layer {layer} is not a layer of {args.model}'s convolutional part.{hint} Choose one of: "
            f"{', '.join(names)}."
        )
    labels = class_names(loaded.categories, model.num_classes)
    return loaded, layer, labels, resolve_target(args.target, labels)


def write_report(
    args: argparse.Namespace, outputs: dict, results: list[dict], overlays: list, weights, layer: str | None
) -> dict:
    """Write the grid (with --grid and something explained) and explain.json; return the document written."""
    grid_path = None
    if args.grid and overlays:
        from ..explain import grid, save_png

        grid_path = save_png(
            grid([o for o, _ in overlays], [c for _, c in overlays]),
            outputs["grid"],
            overwrite=args.force,
            metadata=provenance(args, weights=str(weights)),
        )
    doc = {
        "produced_by": provenance(args, weights=str(weights)),
        "model": args.model,
        "weights": str(weights),
        "layer": layer,
        "method": args.method,
        "target": args.target,
        "results": results,
        "grid": str(grid_path) if grid_path else None,
    }
    from ..io.output import write_text

    write_text(outputs["json"], json.dumps(doc, indent=2) + "\n", overwrite=args.force)
    return doc


def print_report(args: argparse.Namespace, doc: dict) -> int:
    """The results on stdout (--format), the errors on stderr; 0, or 1 if any input failed."""
    results = doc["results"]
    if args.format == "json":
        json.dump(doc, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        write_table(doc)
    failed = [r for r in results if r.get("error")]
    if args.format != "table":
        for r in failed:
            print(f"vggnets explain: error: {r['error']}", file=sys.stderr)
    if failed:
        print(f"vggnets explain: {len(failed)} of {len(results)} inputs failed", file=sys.stderr)
    return 1 if failed else 0


def plan_outputs(files: list[Path], folder: Path, *, save_maps: bool, grid: bool, force: bool) -> dict:
    """Every path this run will write, checked before any work: a unique NAME per file, nothing overwritten unless
    ``force``, a folder that exists (or is created) and takes files."""
    from ..errors import VggnetsError
    from ..io.output import check_output

    if folder.exists() and not folder.is_dir():
        raise VggnetsError(f"--output {folder} is a file; give a folder (it is created if needed).")
    used: dict[str, int] = {}
    per_file: list[dict[str, Path]] = []
    for f in files:
        stem = f.stem
        used[stem] = used.get(stem, 0) + 1
        name = stem if used[stem] == 1 else f"{stem}-{used[stem]}"
        paths = {"overlay": folder / f"{name}.cam.png"}
        if save_maps:
            paths["map"] = folder / f"{name}.cam.npy"
        per_file.append(paths)
    planned = {
        "files": per_file,
        "json": folder / "explain.json",
        "grid": folder / "grid.png" if grid else None,
    }
    targets = [p for paths in per_file for p in paths.values()] + [planned["json"]]
    if grid:
        targets.append(planned["grid"])
    existing = [p for p in targets if p.exists()]
    if existing and not force:
        shown = ", ".join(str(p) for p in existing[:3]) + (
            f" and {len(existing) - 3} more" if len(existing) > 3 else ""
        )
        raise VggnetsError(
            f"{shown} already exist{'s' if len(existing) == 1 else ''}; pass --force to replace them."
        )
    check_output(planned["json"], overwrite=force)
    return planned


def resolve_target(text: str, labels: list[str]) -> str | int:
    """--target as 'topK' or a class index; category names are looked up (exact, case-insensitive)."""
    from ..errors import VggnetsError

    value = text.strip()
    low = value.lower()
    if low.startswith("top") and low[3:].isdigit():
        if not 1 <= int(low[3:]) <= len(labels):
            raise VggnetsError(f"--target {value}: K must be between 1 and {len(labels)}.")
        return low
    if value.lstrip("-").isdigit():
        index = int(value)
        if not 0 <= index < len(labels):
            raise VggnetsError(
                f"--target {index} is out of range: the model has {len(labels)} classes (0 to {len(labels) - 1})."
            )
        return index
    matches = [i for i, lab in enumerate(labels) if lab.lower() == low]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise VggnetsError(
            f"--target {value!r} names {len(matches)} classes ({', '.join(map(str, matches))}); give the index."
        )
    close = difflib.get_close_matches(low, [lab.lower() for lab in labels], n=3)
    hint = f" Close names: {', '.join(close)}." if close else ""
    raise VggnetsError(
        f"--target {value!r} is neither top1/topK, a class index, nor a category name of this model.{hint}"
    )


def _in_input_order(entries: list, records: dict[int, dict]) -> list[dict]:
    """One record per input entry, in the order given; inputs that matched nothing carry their message."""
    out, position = [], 0
    for e in entries:
        if isinstance(e, Path):
            out.append(records[position])
            position += 1
        else:
            out.append({"file": e[0], "error": e[1]})
    return out


def write_table(doc: dict) -> None:
    """Per image: the overlay written, the target, then the ranked predictions; or the error."""
    out = sys.stdout
    print(f"{doc['method']} on {doc['layer']} of {doc['model']} ({doc['weights']})\n", file=out)
    for r in doc["results"]:
        if r.get("error"):
            print(f"{r['file']}\n  error: {r['error']}\n", file=out)
            continue
        t = r["target"]
        print(f"{r['file']} -> {r['overlay']}", file=out)
        print(f"  explains: {t['index']} {t['label']} ({100 * t['probability']:.2f}%)", file=out)
        width = max(len(p["label"]) for p in r["predictions"])
        for p in r["predictions"]:
            print(f"  {p['rank']}. {p['label']:<{width}}  {100 * p['probability']:6.2f}%", file=out)
        print(file=out)
    if doc.get("grid"):
        print(f"grid: {doc['grid']}", file=out)
