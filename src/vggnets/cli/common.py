"""Options and helpers shared by several subcommands."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import VggnetsError

FORMATS = ("table", "json", "csv")


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """--model and --weights, with the defaults of every subcommand that runs a model."""
    from ..core.configs import MODELS

    parser.add_argument(
        "--model",
        default=None,
        choices=list(MODELS),
        metavar="NAME",
        help="model name (default: the model a `vggnets train` checkpoint given as --weights records, else vgg16; "
        "see `vggnets models`)",
    )
    parser.add_argument(
        "--weights",
        default="DEFAULT",
        metavar="W",
        help="DEFAULT, a member such as IMAGENET1K_V1 or VGG16_Weights.IMAGENET1K_V1, or a .pth/.pt/.safetensors "
        "state_dict path (default: DEFAULT)",
    )


def add_subcommand(
    sub: argparse._SubParsersAction, name: str, *, help: str, description: str, epilog: str | None = None
) -> argparse.ArgumentParser:
    """A subcommand parser whose description and examples keep their line breaks."""
    return sub.add_parser(
        name,
        help=help,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def add_runtime_options(
    parser: argparse.ArgumentParser,
    *,
    batch_size: int,
    workers: int | None,
    batch_help: str,
    workers_help: str | None = None,
) -> None:
    """--batch-size, --workers and --device for subcommands that run a model over images."""
    parser.add_argument(
        "-b", "--batch-size", type=int, default=batch_size, help=f"{batch_help} (default: {batch_size})"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=workers,
        help=workers_help
        or (
            f"decoding worker processes (default: {workers}; 0 = in-process)"
            if workers is not None
            else "decoding worker processes (default: 0 = in-process; 1 with the fast engine and more than one "
            "batch, so decoding overlaps the model)"
        ),
    )
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")


def check_runtime_options(args: argparse.Namespace) -> torch.device:
    """Validate --batch-size and --workers, and resolve --device."""
    require_at_least(args.batch_size, 1, "--batch-size")
    require_at_least(args.workers, 0, "--workers", " (0 decodes in-process)")
    return resolve_device(args.device)


def add_quiet_option(parser: argparse.ArgumentParser) -> None:
    """--quiet: no progress bars."""
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def show_progress(args: argparse.Namespace) -> bool:
    """Progress bars only on an interactive terminal, and never with --quiet."""
    return not getattr(args, "quiet", False) and sys.stderr.isatty()


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when available, then MPS, else CPU; other names are checked before use."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise VggnetsError(f"'{name}' is not a device name; use auto, cpu, cuda, cuda:N or mps.") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise VggnetsError(
            f"--device {name} was asked for, but no CUDA GPU is available here; use --device cpu."
        )
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise VggnetsError(
            f"--device {name} was asked for, but this machine has {torch.cuda.device_count()} CUDA GPU(s) "
            "(numbered from 0); use --device cuda or a smaller index."
        )
    if device.type == "mps" and not (
        getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    ):
        raise VggnetsError(f"--device {name} was asked for, but MPS is not available here; use --device cpu.")
    if device.type == "meta":
        raise VggnetsError("--device meta holds no data and cannot classify; use auto, cpu, cuda or mps.")
    return device


@dataclass
class LoadedClassifier:
    """A model ready to classify, with the preprocessing and class names of its weights."""

    model: torch.nn.Module
    weights: object  # a WeightsEnum member or the Path of a user's state_dict
    transform: (
        torch.nn.Module
    )  # vggnets.core.transforms.ImageClassification: .mean, .std, .resize_size, .crop_size
    categories: list[str] | None


def load_classifier(
    model_name: str, weights_arg: str, device: torch.device, *, progress: bool
) -> LoadedClassifier:
    """Build a model with weights that have a trained classifier, with the preprocessing and class names the weights
    carry (published presets, or what a `vggnets train` checkpoint records; ImageNet's otherwise)."""
    from ..models.builders import build
    from ..models.meta import weights_categories, weights_preprocessing
    from ..models.weights import WeightsEnum

    weights = resolve_weights_option(model_name, weights_arg)
    if isinstance(weights, WeightsEnum) and weights.meta.get("categories") is None:
        raise VggnetsError(
            f"{weights} has no trained classifier (only its convolutional features are valid), so it cannot "
            "classify images; use DEFAULT or IMAGENET1K_V1, or use it as a feature extractor."
        )
    model = build(model_name, weights=weights, progress=progress).to(device).eval()
    categories = weights_categories(weights, model.num_classes)
    return LoadedClassifier(model, weights, weights_preprocessing(weights), categories)


def settle_model(args: argparse.Namespace) -> None:
    """Fill ``--model`` when it was not given: the architecture a checkpoint given as ``--weights`` records, else
    vgg16 (for subcommands with --weights whose --model defaults to None; `convert` recognises the model from the
    file's shapes instead)."""
    if getattr(args, "model", "") is not None or not hasattr(args, "weights"):
        return
    from ..models.meta import default_model

    args.model = default_model(None, getattr(args, "weights", None))


def resolve_weights_option(model_name: str, weights_arg: object):
    """``--weights`` as an enum member, a file Path or None; a weights name for a model that has none published is
    refused in command-line words (``--weights FILE``)."""
    from ..errors import WeightsError
    from ..models.weights import CHECKPOINT_SUFFIXES, WEIGHTS, resolve_weights

    text = None if weights_arg is None else str(weights_arg)
    names_a_file = text is not None and (
        Path(text).expanduser().exists() or Path(text).suffix.lower() in CHECKPOINT_SUFFIXES or os.sep in text
    )
    if text is not None and not names_a_file and model_name not in WEIGHTS:
        raise WeightsError(
            f"No pretrained weights are published for {model_name} (a configuration of the paper that no one "
            f"released weights for), so --weights {text} cannot be found; pass --weights FILE with a checkpoint "
            f"of {model_name} (`vggnets train --model {model_name}` makes one), or choose a model with published "
            f"weights: {', '.join(WEIGHTS)}."
        )
    return resolve_weights(model_name, weights_arg)


def provenance(args: argparse.Namespace, **extra: object) -> dict:
    """What produced a written file, for its metadata: the vggnets version, the command and its options (plus
    ``extra``, such as the resolved weights), JSON-ready."""
    from ..version import __version__

    def plain(value: object) -> object:
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value if isinstance(value, (int, float, str, bool, type(None))) else str(value)

    options = {k: plain(v) for k, v in vars(args).items() if k not in ("run", "command")}
    return {"vggnets": __version__, "command": getattr(args, "command", None), "options": options, **extra}


def require_at_least(value: int | None, minimum: int, option: str, hint: str = "") -> None:
    """A one-line usage error for a numeric option below its minimum (None means 'not given')."""
    if value is not None and value < minimum:
        raise VggnetsError(f"{option} must be at least {minimum}{hint}, got {value}.")


def collect_inputs(paths: list[str], *, recursive: bool) -> list[Path | tuple[str, str]]:
    """Each input expanded in the order given: image files (each kept once, at its first position) or an
    (input, message) pair for an input that matches nothing."""
    from ..io.images import collect_images

    entries: list[Path | tuple[str, str]] = []
    seen: set[str] = set()
    for item in paths:
        files, problems = collect_images([item], recursive=recursive)
        entries += problems
        for f in files:
            key = os.path.normcase(os.path.abspath(f))  # as collect_images de-duplicates within one input
            if key not in seen:
                seen.add(key)
                entries.append(f)
    return entries


def add_engine_options(parser: argparse.ArgumentParser) -> None:
    """--precision, --compile and --calibration: run the model through the fast inference engine (vggnets.inference.engine)."""
    group = parser.add_argument_group(
        "fast inference engine",
        "With --precision or --compile the model runs through vggnets.inference.engine: batch norm folded, uint8 input "
        "normalised inside the graph, channels-last, compiled and cached (the first run compiles, later runs load "
        "the cached engine). Without them the plain eager model runs with the weights' exact float preprocessing.",
    )
    group.add_argument(
        "--precision",
        choices=("fp32", "bf16", "int8"),
        default=None,
        help="fp32, bf16 (needs AVX-512 BF16/AMX or a GPU, else fp32 with a warning) or int8 (CPU, torchao)",
    )
    group.add_argument(
        "--compile",
        choices=("auto", "aot", "jit", "none"),
        default=None,
        help="auto (default with --precision: cached AOTInductor package on CPU, torch.compile on GPU), aot, jit "
        "(torch.compile with freezing) or none (eager)",
    )
    group.add_argument(
        "--calibration",
        type=Path,
        default=None,
        metavar="DIR",
        help="images to calibrate int8 on (default: the photos bundled with vggnets)",
    )
    add_backend_option(group, default=None)


def add_backend_option(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup, *, default: str | None
) -> None:
    """--backend: who runs the engine's graph (vggnets.inference.backends)."""
    from ..inference.backends import BACKEND_CHOICES

    parser.add_argument(
        "--backend",
        choices=BACKEND_CHOICES,
        default=default,
        help="torch (our compiled kernels), onnxruntime or openvino (our ONNX export run by that runtime on the CPU; "
        "pip install 'vggnets[peers]'), or auto (the fastest installed one for the precision on this CPU kind)"
        + (f" (default: {default})" if default else " (default: auto)"),
    )


def uses_engine(args: argparse.Namespace) -> bool:
    """True when --precision, --compile or --backend asked for the fast inference engine."""
    return (
        args.precision is not None or args.compile is not None or getattr(args, "backend", None) is not None
    )


def make_predictor(
    model: torch.nn.Module, transform: torch.nn.Module, args: argparse.Namespace, device: torch.device
):
    """The engine Predictor for a loaded model, with the preprocessing of its weights; warnings go to stderr once."""
    import warnings

    from ..inference.engine import EngineWarning, optimize

    compile_mode = {None: True, "auto": True, "none": False}.get(args.compile, args.compile)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", EngineWarning)
        predictor = optimize(
            model,
            args.precision or "fp32",
            device=device,
            compile=compile_mode,
            batch_size=args.batch_size,
            image_size=transform.crop_size[0],
            resize_size=transform.resize_size[0],
            mean=transform.mean,
            std=transform.std,
            calibration=args.calibration,
            backend=getattr(args, "backend", None) or "auto",
        )
    for w in caught:
        if issubclass(w.category, EngineWarning):
            print(f"vggnets {args.command}: warning: {w.message}", file=sys.stderr)
    return predictor


def parse_scales(text: str | None) -> tuple[int, ...]:
    """'256,384,512' -> (256, 384, 512); every scale at least 224 (the crop and fc6's receptive field)."""
    from ..errors import VggnetsError

    if text is None:
        return (256, 384, 512)
    try:
        scales = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise VggnetsError(
            f"--scales must be comma-separated integers such as 256,384,512, got {text!r}."
        ) from None
    if not scales or min(scales) < 224:
        raise VggnetsError(f"every scale must be at least 224 pixels (the crop size), got {text!r}.")
    return scales


def add_scale_options(parser: argparse.ArgumentParser, *, always: bool = False) -> None:
    """--unit-size and --keep-parts: the committed units of a run (resumable under torchrun; ``always``: also in one
    process)."""
    where = "" if always else " under torchrun"
    group = parser.add_argument_group(
        "units and parts",
        f"The inputs are cut into units of --unit-size images. With --output, each finished unit is written{where} "
        "to a part file in the folder OUTPUT.parts beside the output; a rerun of the same command skips the "
        "committed units (a run with other inputs, model, weights or options is refused, and --force discards its "
        "parts), and the parts are merged into OUTPUT in input order, then removed. Run it on many processes with "
        "`torchrun --nproc-per-node=K -m vggnets ...` (one shard of the units each).",
    )
    group.add_argument(
        "--unit-size",
        type=int,
        default=None,
        metavar="N",
        help="images per committed unit (default: 256, rounded up to a multiple of --batch-size)",
    )
    group.add_argument("--keep-parts", action="store_true", help="keep OUTPUT.parts after a successful merge")


def weights_identity(weights: object) -> str:
    """The weights for a run's fingerprint: the member's name, or a file's path, size and modification time."""
    path = weights if isinstance(weights, Path) else None
    if path is None:
        return str(weights)
    try:
        stat = path.stat()
    except OSError:
        return str(path)
    return f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"


def run_fingerprint(
    args: argparse.Namespace, inputs: dict, device: torch.device, unit: int, **settings: object
) -> dict:
    """What makes a run's results: the command, the vggnets version, the inputs (:func:`vggnets.scale.parts.describe_files`),
    the device kind, the unit size, the batch size, the fast-engine options and ``settings`` (by option name)."""
    from ..version import __version__

    return {
        "command": args.command,
        "vggnets": __version__,
        "inputs": inputs,
        "device": device.type,
        "--batch-size": args.batch_size,
        "--unit-size": unit,
        "--precision": getattr(args, "precision", None),
        "--compile": getattr(args, "compile", None),
        "--calibration": None if getattr(args, "calibration", None) is None else str(args.calibration),
        **({"--backend": args.backend} if getattr(args, "backend", None) else {}),
        **settings,
    }
