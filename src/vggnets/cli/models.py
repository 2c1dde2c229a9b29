"""``vggnets models``: every configuration with its size, cost, accuracy and whether its weights are cached."""

from __future__ import annotations

import argparse
import json
import math

from .common import add_subcommand

HELP = "list every model: parameters, GMACs, accuracy, cached weights"
EPILOG = """\
Columns: the paper's configuration (Table 1, +BN with batch normalisation), weight layers, parameters, GMACs
for one 224x224 image, ImageNet-1K top-1/top-5 accuracy of the DEFAULT weights, and whether the weights are
already in $TORCH_HOME/hub/checkpoints ("none published": build it untrained or pass --weights FILE).

examples:
  vggnets models
  vggnets models --format json        machine-readable, one record per model
  vggnets download vgg16              fetch a model's weights (then it shows as cached)"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the subcommand."""
    p = add_subcommand(sub, "models", help=HELP, description=HELP + ".", epilog=EPILOG)
    p.add_argument("--format", choices=("table", "json"), default="table", help="table (default) or json")
    p.set_defaults(run=run)


def rows() -> list[dict]:
    """One record per model (default weights' accuracy; None where no weights are published)."""
    from ..core import configs
    from ..models.weights import WEIGHTS

    out = []
    for name, spec in configs.MODELS.items():
        w = WEIGHTS[name].DEFAULT if name in WEIGHTS else None
        metrics = w.meta["_metrics"]["ImageNet-1K"] if w else {}
        out.append(
            {
                "model": name,
                "config": spec.config,
                "batch_norm": spec.batch_norm,
                "weight_layers": spec.depth,
                "params": configs.num_params(name),
                "gmacs": round(configs.gmacs(name), 3),
                "acc@1": metrics.get("acc@1"),
                "acc@5": metrics.get("acc@5"),
                "weights": [str(m) for m in WEIGHTS[name]] if w else [],
                "cached": [str(m) for m in WEIGHTS[name] if m.cached_path()] if w else [],
            }
        )
    return out


def _pct(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.3f}"


def run(args: argparse.Namespace) -> int:
    """Print the table or JSON."""
    data = rows()
    if args.format == "json":
        print(json.dumps(data, indent=2))
        return 0
    header = ("model", "config", "layers", "params", "GMACs", "acc@1", "acc@5", "weights")
    lines = [header]
    for r in data:
        state = "none published" if not r["weights"] else "cached" if r["cached"] else "not cached"
        lines.append(
            (r["model"], r["config"] + (" +BN" if r["batch_norm"] else ""), str(r["weight_layers"]),
             f"{r['params']:,}", f"{r['gmacs']:.3f}", _pct(r["acc@1"]), _pct(r["acc@5"]), state)
        )  # fmt: skip
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for line in lines:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip())
    print("\naccuracy: ImageNet-1K val, single 224 center crop (torchvision's published weights)")
    return 0
