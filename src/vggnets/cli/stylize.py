"""``vggnets stylize``: neural style transfer of one content image with one or more style images, written as a picture."""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

from ..errors import VggnetsError
from .common import (
    add_quiet_option,
    add_subcommand,
    provenance,
    require_at_least,
    resolve_device,
    resolve_weights_option,
    show_progress,
)

HELP = "neural style transfer: CONTENT painted in the manner of STYLE (Gatys et al., VGG19)"
DESCRIPTION = """\
Optimise an image so that its VGG19 features match CONTENT at conv4_2 and the Gram matrices of STYLE at
conv1_1 ... conv5_1 (Gatys, Ecker & Bethge 2016; the PyTorch tutorial's recipe: ImageNet normalisation,
content weight 1, style weight 1e6, L-BFGS, initialised from the content). Several STYLE images are blended
(--style-blend weights, equal by default). A step is one forward and backward pass of the network; the
progress bar shows the weighted losses. 300 steps at 512 px took 40-60 minutes on a shared 2-core CPU
(the README's measurements): try --size 256 there, or a GPU.

The output's format follows its suffix (.png, .jpg, .webp, .bmp, .tif). --save-every N also writes the image
every N steps beside the output, as NAME_0050.png ...; --json prints the loss of every step. A PNG
output records the command and its options (a "vggnets" text chunk; a JPEG's comment). Nothing is
overwritten without --force, a missing output folder is created, and everything (images, weights, the
output folder, existing output and frames) is checked before the optimisation starts. Exit code: 0 written, 2 nothing written (bad input, options or weights)."""
EPILOG = """\
examples:
  vggnets stylize photo.jpg starry_night.jpg -o photo_starry.png
  vggnets stylize photo.jpg starry_night.jpg --size 256 --steps 200 --device cpu -o small.png
  vggnets stylize photo.jpg wave.jpg scream.jpg --style-blend 0.7,0.3 --preserve-color -o blend.png
  vggnets stylize photo.jpg wave.jpg --init noise --seed 0 --pool avg --save-every 50 -o frames/out.png
  vggnets stylize photo.jpg wave.jpg --optimizer adam --lr 0.02 --steps 500 --json -o out.png > losses.json
  vggnets stylize photo.jpg wave.jpg --weights my_vgg19.pth --content-layers relu4_2 -o out.png

Weights: DEFAULT is torchvision's pretrained VGG19, downloaded once into $TORCH_HOME/hub/checkpoints
(offline: VGGNETS_WEIGHTS_MIRROR, or --weights /path/to/file.pth with any VGG weights file)."""

#: Output suffixes and the Pillow format that writes them.
FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".webp": "WEBP",
    ".bmp": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
}


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the subcommand."""
    p = add_subcommand(sub, "stylize", help=HELP, description=DESCRIPTION, epilog=EPILOG)
    add_file_arguments(p)
    add_optimisation_arguments(p)
    add_loss_arguments(p)
    add_image_arguments(p)
    add_model_arguments(p)
    p.add_argument(
        "--save-every", type=int, default=None, metavar="N", help="also write the image every N steps"
    )
    p.add_argument("--json", action="store_true", help="print the settings and every step's losses as JSON")
    add_quiet_option(p)
    p.set_defaults(run=run)


def add_file_arguments(p: argparse.ArgumentParser) -> None:
    """CONTENT, STYLE..., --output and --force."""
    p.add_argument("content", metavar="CONTENT", help="the content image")
    p.add_argument("styles", nargs="+", metavar="STYLE", help="one or more style images")
    p.add_argument("-o", "--output", required=True, help="output image (.png, .jpg, .webp, .bmp, .tif)")
    p.add_argument("--force", action="store_true", help="overwrite the output and frames if they exist")


def add_optimisation_arguments(p: argparse.ArgumentParser) -> None:
    """The sizes, the number of steps and the optimiser."""
    p.add_argument("--size", type=int, default=512, help="long side of the output in pixels (default: 512)")
    p.add_argument(
        "--style-size", type=int, default=None, help="long side of the style images (default: --size)"
    )
    p.add_argument("--steps", type=int, default=300, help="optimisation steps (default: 300)")
    p.add_argument("--optimizer", choices=("lbfgs", "adam"), default="lbfgs", help="lbfgs (default) or adam")
    p.add_argument(
        "--lr", type=float, default=None, help="learning rate (default: 1 for lbfgs, 0.02 for adam)"
    )


def add_loss_arguments(p: argparse.ArgumentParser) -> None:
    """The loss weights, the style blend and the layers."""
    p.add_argument("--content-weight", type=float, default=1.0, help="content weight (default: 1)")
    p.add_argument("--style-weight", type=float, default=1e6, help="style weight (default: 1e6)")
    p.add_argument("--tv-weight", type=float, default=0.0, help="total-variation weight (default: 0, off)")
    p.add_argument(
        "--style-blend",
        default=None,
        metavar="W1,W2,...",
        help="one weight per style image, e.g. 0.7,0.3 (default: equal; normalised to sum to 1)",
    )
    p.add_argument(
        "--content-layers", default="conv4_2", metavar="L1,...", help="content layers (default: conv4_2)"
    )
    p.add_argument(
        "--style-layers",
        default="conv1_1,conv2_1,conv3_1,conv4_1,conv5_1",
        metavar="L1,...",
        help="style layers (default: conv1_1,conv2_1,conv3_1,conv4_1,conv5_1)",
    )
    p.add_argument(
        "--style-layer-weights",
        default=None,
        metavar="W1,...",
        help="one weight per style layer (default: 1 each)",
    )


def add_image_arguments(p: argparse.ArgumentParser) -> None:
    """The start image, the colours and the pooling."""
    p.add_argument(
        "--init", choices=("content", "noise"), default="content", help="start image (default: content)"
    )
    p.add_argument("--seed", type=int, default=None, help="seed of the noise start image")
    p.add_argument(
        "--preserve-color",
        action="store_true",
        help="keep the content's colours: the result's luminance with the content's chroma",
    )
    p.add_argument(
        "--pool",
        choices=("max", "avg"),
        default="max",
        help="max (default) or avg: average pooling in place of max pooling, as in the paper",
    )


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """--model, --weights, --device and --precision (VGG19 by default, not the other subcommands' VGG16)."""
    from ..core.configs import MODELS

    p.add_argument(
        "--model",
        default="vgg19",
        choices=list(MODELS),
        metavar="NAME",
        help="model name (default: vgg19; see `vggnets models`)",
    )
    p.add_argument(
        "--weights",
        default="DEFAULT",
        metavar="W",
        help="DEFAULT (pretrained), a member such as VGG19_Weights.IMAGENET1K_V1, or a .pth/.pt/.safetensors "
        "weights file (default: DEFAULT)",
    )
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    p.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16"),
        default="auto",
        help="auto (default: bf16 autocast on CUDA, fp32 elsewhere), fp32 or bf16",
    )


@dataclass
class Parsed:
    """The options that are parsed from text: the style blend, the style layer weights and the layer lists."""

    blend: list[float] | None
    layer_weights: list[float] | None
    content_layers: list[str]
    style_layers: list[str]


def parse_floats(text: str | None, option: str) -> list[float] | None:
    """'0.7,0.3' -> [0.7, 0.3]; every value finite and >= 0."""
    if text is None:
        return None
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise VggnetsError(
            f"{option} must be comma-separated numbers such as 0.7,0.3, got {text!r}."
        ) from None
    if not values or not all(math.isfinite(v) and v >= 0 for v in values):
        raise VggnetsError(f"{option} must be comma-separated finite numbers >= 0, got {text!r}.")
    return values


def parse_layers(text: str, option: str) -> list[str]:
    layers = [v.strip() for v in text.split(",") if v.strip()]
    if not layers and option == "--style-layers":
        raise VggnetsError("--style-layers needs at least one layer, such as conv1_1,conv2_1.")
    return layers


def frame_path(output: Path, step: int) -> Path:
    """Where --save-every writes the image of ``step``: NAME_0050.png beside NAME.png."""
    return output.with_name(f"{output.stem}_{step:04d}{output.suffix}")


def check_suffix(output: Path) -> None:
    """The output's suffix chooses its format: refuse one that no writer here handles."""
    if output.suffix.lower() not in FORMATS:
        raise VggnetsError(
            f"--output must end in {', '.join(sorted(set(FORMATS)))} (the format follows the suffix), got "
            f"{output.name!r}."
        )


def save_image(path: Path, image, *, overwrite: bool, produced_by: dict | None = None) -> None:
    """Write a float (3, H, W) image in [0, 1] atomically, in the format of the suffix; a PNG records
    ``produced_by`` (JSON in a ``vggnets`` text chunk), a JPEG in its comment."""
    from PIL import Image, PngImagePlugin

    from ..features.style import to_uint8
    from ..io.output import atomic_write

    pixels = to_uint8(image).permute(1, 2, 0).numpy()
    fmt = FORMATS[path.suffix.lower()]
    options: dict = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
    if produced_by is not None and fmt == "PNG":
        info = PngImagePlugin.PngInfo()
        info.add_text("vggnets", json.dumps(produced_by))
        options["pnginfo"] = info
    elif produced_by is not None and fmt == "JPEG":
        options["comment"] = json.dumps(produced_by)
    atomic_write(
        path, lambda tmp: Image.fromarray(pixels).save(tmp, format=fmt, **options), overwrite=overwrite
    )


def check_options(args: argparse.Namespace) -> Parsed:
    """The numeric options in range, and the ones given as text parsed; VggnetsError in the option's words."""
    require_at_least(args.steps, 1, "--steps")
    require_at_least(args.size, 16, "--size", " (conv5_1 needs 16 pixels on the short side)")
    require_at_least(args.style_size, 16, "--style-size")
    require_at_least(args.save_every, 1, "--save-every")
    for option in ("content_weight", "style_weight", "tv_weight"):
        value = getattr(args, option)
        if not (math.isfinite(value) and value >= 0):
            raise VggnetsError(f"--{option.replace('_', '-')} must be a finite number >= 0, got {value}.")
    if args.lr is not None and not (math.isfinite(args.lr) and args.lr > 0):
        raise VggnetsError(f"--lr must be a finite number > 0, got {args.lr}.")
    blend = parse_floats(args.style_blend, "--style-blend")
    if blend is not None and len(blend) != len(args.styles):
        raise VggnetsError(
            f"--style-blend has {len(blend)} weights for {len(args.styles)} style images; give one per style."
        )
    if blend is not None and sum(blend) <= 0:
        raise VggnetsError("--style-blend weights must not all be 0.")
    return Parsed(
        blend=blend,
        layer_weights=parse_floats(args.style_layer_weights, "--style-layer-weights"),
        content_layers=parse_layers(args.content_layers, "--content-layers"),
        style_layers=parse_layers(args.style_layers, "--style-layers"),
    )


def run(args: argparse.Namespace) -> int:
    """Check everything, optimise, write the image (and frames); print the loss history with --json."""
    from ..io.images import read_image
    from ..io.output import check_output

    parsed = check_options(args)
    output = Path(args.output).expanduser()
    check_suffix(output)
    steps_saved = range(args.save_every, args.steps + 1, args.save_every) if args.save_every else []
    frames = {step: frame_path(output, step) for step in steps_saved}
    check_output(output, overwrite=args.force, sidecars=list(frames.values()), option="-o")
    device = resolve_device(args.device)
    weights = resolve_weights_option(args.model, args.weights)
    content = read_image(args.content)  # unreadable images fail here, before the model is built
    styles = [read_image(path) for path in args.styles]

    progress = show_progress(args)
    transfer = build_transfer(args, parsed, weights, device, progress)
    produced_by = provenance(args, weights=str(weights))
    result = optimise(args, transfer, content, styles, parsed.blend, frames, produced_by, progress)
    produced_by["losses"] = {"first": result.history[0].to_dict(), "last": result.history[-1].to_dict()}
    save_image(output, result.image, overwrite=args.force, produced_by=produced_by)
    if args.json:
        doc = json_report(args, parsed, transfer, result, output, list(frames.values()), str(weights))
        json.dump(doc, sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif not args.quiet:
        last = result.history[-1]
        print(
            f"wrote {output} ({result.image.shape[-1]}x{result.image.shape[-2]}, {args.steps} steps, "
            f"loss {result.history[0].total:.4g} -> {last.total:.4g}, {last.seconds:.1f} s)",
            file=sys.stderr,
        )
    return 0


def build_transfer(args: argparse.Namespace, parsed: Parsed, weights, device, progress: bool):
    """The :class:`~vggnets.features.style.StyleTransfer` the options describe; its refusals (unknown layers, bf16
    where autocast is missing, layer weights that do not fit) as VggnetsError."""
    from ..features.style import StyleTransfer

    try:
        return StyleTransfer(
            args.model,
            weights=weights,
            content_layers=parsed.content_layers,
            style_layers=parsed.style_layers,
            style_layer_weights=parsed.layer_weights,
            pool=args.pool,
            device=device,
            precision=args.precision,
            progress=progress,
        )
    except ValueError as exc:
        raise VggnetsError(f"{exc}.") from None


def optimise(
    args: argparse.Namespace,
    transfer,
    content,
    styles: list,
    blend: list[float] | None,
    frames: dict[int, Path],
    produced_by: dict,
    progress: bool,
):
    """Run the optimisation with a progress bar of the weighted losses (with ``progress``), writing the image of
    each step in ``frames`` as that step ends; an image too small or too elongated for the layers as VggnetsError."""
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=args.steps, unit="step", desc="stylize")

    def after_step(record, image) -> None:
        if bar is not None:
            losses = {
                "total": record.total,
                "content": record.content,
                "style": record.style,
                "tv": record.tv,
            }
            bar.set_postfix({k: f"{v:.4g}" for k, v in losses.items()}, refresh=False)
            bar.update(1)
        if record.step in frames:
            save_image(frames[record.step], image, overwrite=args.force, produced_by=produced_by)

    try:
        return transfer.run(
            content,
            styles,
            size=args.size,
            style_size=args.style_size,
            steps=args.steps,
            optimizer=args.optimizer,
            lr=args.lr,
            content_weight=args.content_weight,
            style_weight=args.style_weight,
            tv_weight=args.tv_weight,
            style_blend=blend,
            init=args.init,
            preserve_color=args.preserve_color,
            seed=args.seed,
            callback=after_step,
        )
    except ValueError as exc:
        raise VggnetsError(f"{exc}.") from None
    finally:
        if bar is not None:
            bar.close()


def json_report(
    args: argparse.Namespace, parsed: Parsed, transfer, result, output: Path, frames: list[Path], weights: str
) -> dict:
    """What --json prints: the files, the model and where it ran, the settings, every step's losses, provenance."""
    return {
        "content": args.content,
        "styles": args.styles,
        "output": str(output),
        "frames": [str(p) for p in frames],
        "size": list(result.image.shape[-2:]),
        "model": args.model,
        "weights": weights,
        "device": str(transfer.device),
        "precision": transfer.precision,
        "settings": {
            "steps": args.steps,
            "optimizer": args.optimizer,
            "lr": args.lr,
            "content_weight": args.content_weight,
            "style_weight": args.style_weight,
            "tv_weight": args.tv_weight,
            "style_blend": parsed.blend,
            "content_layers": parsed.content_layers,
            "style_layers": parsed.style_layers,
            "init": args.init,
            "seed": args.seed,
            "preserve_color": args.preserve_color,
            "pool": args.pool,
        },
        "history": [r.to_dict() for r in result.history],
        "produced_by": provenance(args, weights=weights),
    }
