"""``vggnets benchmark``: the fast inference engine against torchvision's fp32 eager VGG, in one process."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .common import (
    add_backend_option,
    add_quiet_option,
    add_subcommand,
    provenance,
    require_at_least,
    resolve_weights_option,
)

HELP = "measure the fast inference engine against torchvision fp32 eager (images/s, latency, agreement)"
DESCRIPTION = """\
Run, in one process and on the same inputs, torchvision's VGG in plain fp32 eager mode (the code on PyTorch Hub's
VGG page: the baseline a user starts from) and the vggnets inference engine at each --precision, and print:
images/s at the batch size and the speed-up over the baseline, batch-1 latency p50/p99, peak memory, cold and warm
time to first prediction (empty compile caches, then the cached engine), achieved GFLOP/s and the fraction of this
machine's peak for the path's dtype (the best of the convolution primitives at VGG16's conv3/conv4 shapes and of
matmul, measured here), and agreement with the fp32 logits on real photos (top-1, max abs logit difference, cosine).
The CPU model, its kind and whether it has AMX are printed with the figures: speed-ups differ a lot between CPUs.

With --peers onnxruntime,openvino (pip install 'vggnets[peers]') the peer runtimes run our own ONNX export of the
same model and weights in the same process, measured the same way: ONNX Runtime fp32 and int8 (QDQ from its static
quantizer, calibrated on the images our int8 path is calibrated on), OpenVINO fp32, bf16 (its precision hint) and
int8 (the same QDQ model); a table then gives ours / the best peer at each precision. A peer that is not installed
is skipped with one line.

Weights are random (seeded, the same for every path) unless --weights is given; with random weights the logits
have small margins, so agreement is best read as their cosine. With --images DIR it also runs end to end (files on disk -> top-5 labels) for the Hub
page's script (PIL + torchvision transforms + fp32 eager) and for `vggnets classify` with the engine.

--output and --plot are checked before the run, never replaced without --force, and the JSON records what
produced it (version, options); the table is printed before the files are written, so a full disk loses
only the files. Exit code: 0 measured and written, 2 nothing was run or a file could not be written."""
EPILOG = """\
examples:
  vggnets benchmark                                      vgg16, batch 16, fp32/bf16/int8 on this machine
  vggnets benchmark --precision int8 --images photos/ --output bench.json --plot bench.png
  vggnets benchmark --model vgg11 --width 0.25 --iterations 2      a quick look with a narrow network
  vggnets benchmark --device cuda --batch-size 256 --precision bf16
  vggnets benchmark --peers onnxruntime,openvino         ours and the peer runtimes side by side"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the subcommand."""
    from ..core.configs import MODELS

    p = add_subcommand(sub, "benchmark", help=HELP, description=DESCRIPTION, epilog=EPILOG)
    p.add_argument("--model", default="vgg16", choices=list(MODELS), metavar="NAME", help="default: vgg16")
    p.add_argument(
        "--weights",
        default=None,
        metavar="W",
        help="pretrained weights (DEFAULT, a member name or a file); default: random weights, seeded",
    )
    p.add_argument(
        "--width", type=float, default=1.0, help="channel width multiplier (default: 1, the paper's)"
    )
    p.add_argument("-b", "--batch-size", type=int, default=16, help="images per batch (default: 16)")
    p.add_argument("--image-size", type=int, default=224, help="crop size in pixels (default: 224)")
    p.add_argument(
        "--precision",
        default="fp32,bf16,int8",
        help="comma-separated engine precisions to measure (default: fp32,bf16,int8)",
    )
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    p.add_argument(
        "--compile",
        choices=("auto", "aot", "jit", "none"),
        default="auto",
        help="engine compilation (default: auto = cached AOTInductor on CPU, torch.compile on GPU)",
    )
    add_backend_option(p, default="torch")
    p.add_argument(
        "--peers",
        default=None,
        metavar="LIST",
        help="also measure these peer runtimes on our ONNX export: onnxruntime, openvino (comma-separated) or all",
    )
    p.add_argument(
        "--images", type=Path, default=None, metavar="DIR", help="also run end to end on these images"
    )
    p.add_argument("--iterations", type=int, default=5, help="timed batches per path (default: 5)")
    p.add_argument(
        "--latency-iterations", type=int, default=20, help="timed batch-1 calls per path (default: 20)"
    )
    p.add_argument("--no-peaks", action="store_true", help="skip measuring the peaks (saves a few seconds)")
    p.add_argument("--output", type=Path, default=None, help="write the report as JSON to this file")
    p.add_argument(
        "--plot", type=Path, default=None, help="write a bar chart of images/s to this PNG (matplotlib)"
    )
    p.add_argument("--force", action="store_true", help="replace --output/--plot files that already exist")
    p.add_argument(
        "--format", choices=("table", "json"), default="table", help="stdout: table (default) or json"
    )
    add_quiet_option(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Check every option before the long run, benchmark, print and write the report."""
    from ..bench.report import format_report, plot_report, write_json
    from ..bench.runner import run_benchmark

    precisions = _check_options(args)
    device = _device(args.device)
    weights = None
    if args.weights is not None:
        weights = resolve_weights_option(args.model, args.weights)

    log = (
        (lambda msg: print(f"vggnets benchmark: {msg}", file=sys.stderr, flush=True))
        if not args.quiet
        else None
    )
    report = run_benchmark(
        args.model,
        batch_size=args.batch_size,
        precisions=precisions,
        device=device,
        compile={"auto": True, "none": False}.get(args.compile, args.compile),
        weights=weights,
        width=args.width,
        image_size=args.image_size,
        images=args.images,
        iterations=args.iterations,
        latency_iterations=args.latency_iterations,
        measure_peaks=not args.no_peaks,
        log=log,
        peers=args.peer_list,
        backend=args.backend,
    )
    report["weights"] = str(weights) if weights is not None else "random (seed 0)"
    report["produced_by"] = provenance(args)
    # the tables first, flushed: a file that cannot be written loses nothing else
    print(json.dumps(report, indent=2) if args.format == "json" else format_report(report), flush=True)
    if args.output is not None:
        write_json(report, args.output, overwrite=args.force)
    if args.plot is not None:
        plot_report(report, args.plot, overwrite=args.force)
    return 0


def _check_options(args: argparse.Namespace) -> list[str]:
    """Every option checked before the long run; returns the precisions to measure."""
    from ..bench.peers import parse_peers
    from ..bench.report import require_matplotlib
    from ..bench.runner import parse_precisions
    from ..errors import VggnetsError
    from ..io.output import check_output

    require_at_least(args.batch_size, 1, "--batch-size")
    require_at_least(args.iterations, 1, "--iterations")
    require_at_least(args.latency_iterations, 1, "--latency-iterations")
    require_at_least(args.image_size, 32, "--image-size", " (five 2x2 poolings)")
    if not 0 < args.width <= 1:
        raise VggnetsError(f"--width must be in (0, 1], got {args.width}.")
    precisions = parse_precisions(args.precision)
    args.peer_list = parse_peers(args.peers)
    if args.images is not None and not args.images.is_dir():
        raise VggnetsError(f"--images {args.images} is not a directory of images.")
    if args.plot is not None:
        require_matplotlib()
    for path, option in ((args.output, "--output"), (args.plot, "--plot")):
        if path is not None:
            check_output(path, overwrite=args.force, option=option)
    if args.output is not None and args.plot is not None and args.output.resolve() == args.plot.resolve():
        raise VggnetsError("--output and --plot name the same file; give each its own.")
    return precisions


def _device(name: str) -> str:
    from ..errors import VggnetsError
    from .common import resolve_device

    if name == "auto":
        raise VggnetsError("--device must be named for a benchmark: cpu, cuda or cuda:N.")
    device = resolve_device(name)
    if device.type not in ("cpu", "cuda"):
        raise VggnetsError(f"--device {name}: the engine benchmarks cpu and cuda devices.")
    return str(device)
