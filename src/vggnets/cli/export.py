"""``vggnets export``: write a model as ONNX, TorchScript, a torch.export program or safetensors, checked against PyTorch."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .common import (
    add_model_options,
    add_quiet_option,
    add_subcommand,
    provenance,
    resolve_weights_option,
    show_progress,
)

HELP = "export a model to ONNX, TorchScript, torch.export or safetensors (verified)"
DESCRIPTION = """\
Export a model and check the file: it is loaded back with its runtime (onnxruntime on CPU, torch.jit.load,
torch.export.load, or vggnets.build(weights=FILE) for safetensors) and compared with PyTorch on seeded random
images. The summary gives the largest absolute difference of the logits; fp32 must be within 1e-4, fp16 and bf16
within 1e-2 and 6e-2 of the largest logit (at least 1). A file that fails the check is not written.

--input-size is the export size (square); the batch is always dynamic. `dynamic` also makes height and width
dynamic (checked at 224x224 and 256x320); for ONNX this needs --dense. --dense exports the fully-convolutional
view (fc6 as a 7x7 convolution, sizes >= 224): output class score maps (N, K, H/32-6, W/32-6) named `scores`
instead of `logits` (N, K). ONNX files take `images` (N, 3, H, W), normalised as for the weights; fp16 files take
and return float16. bf16 ONNX cannot run in onnxruntime on CPU: it needs --no-verify.
The export runs on the CPU. ONNX needs `pip install 'vggnets[onnx]'` (onnx, onnxscript, onnxruntime).
The options and the output path are checked before the model is loaded; the output is written atomically, an
existing file is only replaced with --force, and the file records what produced it (vggnets version, model,
weights, options: safetensors metadata, ONNX metadata_props, vggnets.json inside TorchScript/torch.export archives).
Exit code: 0 written (and verified), 2 nothing was written."""
EPILOG = """\
examples:
  vggnets export --model vgg16 --format onnx -o vgg16.onnx
  vggnets export --model vgg16 --format onnx --dense --input-size dynamic -o vgg16_dense.onnx
  vggnets export --model vgg16 --format onnx --precision fp16 --input-size 384 -o vgg16_384_fp16.onnx
  vggnets export --model vgg19_bn --format exported --input-size dynamic -o vgg19_bn.pt2
  vggnets export --weights finetuned.pth --format safetensors -o finetuned.safetensors --json"""


def input_size(text: str) -> int | str:
    """argparse type: a side in pixels, or 'dynamic'."""
    if text.strip().lower() == "dynamic":
        return "dynamic"
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number of pixels (e.g. 224) or 'dynamic', got {text!r}"
        ) from None


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the subcommand."""
    from ..export import FORMATS, PRECISIONS

    p = add_subcommand(sub, "export", help=HELP, description=DESCRIPTION, epilog=EPILOG)
    add_model_options(p)
    p.add_argument("--format", required=True, choices=FORMATS, help="output format")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="file to write")
    p.add_argument(
        "--input-size",
        type=input_size,
        default=224,
        metavar="N|dynamic",
        help="square input side for the export, or 'dynamic' (default: 224)",
    )
    p.add_argument("--dense", action="store_true", help="export the fully-convolutional view (score maps)")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32", help="fp32 (default), fp16 or bf16")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset version (default: the exporter's)")
    p.add_argument(
        "--no-verify", action="store_true", help="do not load the file back and compare with PyTorch"
    )
    p.add_argument("--force", action="store_true", help="replace FILE if it exists")
    p.add_argument("--json", action="store_true", help="print a JSON record instead of the summary line")
    add_quiet_option(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Check the options and the output, build the model on the CPU, export it, print the report."""
    from ..errors import VggnetsError
    from ..export import export_model
    from ..export.arguments import check_options, check_output
    from ..models.builders import build
    from ..models.weights import WeightsEnum

    check_options(args.format, args.input_size, args.dense, args.precision, not args.no_verify)
    check_output(Path(args.output).expanduser(), args.format, args.force)
    weights = resolve_weights_option(args.model, args.weights)
    if (
        isinstance(weights, WeightsEnum)
        and weights.meta.get("categories") is None
        and args.format != "safetensors"
    ):
        raise VggnetsError(
            f"{weights} has no trained classifier (only its convolutional features are valid; the classifier holds "
            "NaN), so the exported model could not be checked; use DEFAULT or IMAGENET1K_V1, or --format "
            "safetensors to convert the weights."
        )
    model = build(args.model, weights=weights, progress=show_progress(args)).eval()
    report = export_model(
        model,
        args.output,
        format=args.format,
        input_size=args.input_size,
        dense=args.dense,
        precision=args.precision,
        verify=not args.no_verify,
        opset=args.opset,
        overwrite=args.force,
        metadata={"weights": str(weights), "produced_by": json.dumps(provenance(args))},
    )
    if args.json:
        print(json.dumps({"model": args.model, "weights": str(weights), **report.as_dict()}))
    else:
        print(f"{args.model}: {report.summary()}")
    return 0
