"""Options and helpers shared by several subcommands."""

from __future__ import annotations

import argparse
import sys

import torch

from ..errors import VggnetsError

FORMATS = ("table", "json", "csv")


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """--model and --weights, with the defaults of every subcommand that runs a model."""
    from ..configs import MODELS

    parser.add_argument(
        "--model",
        default="vgg16",
        choices=list(MODELS),
        metavar="NAME",
        help="model name (default: vgg16; see `vggnets models`)",
    )
    parser.add_argument(
        "--weights",
        default="DEFAULT",
        metavar="W",
        help="DEFAULT, a member such as IMAGENET1K_V1 or VGG16_Weights.IMAGENET1K_V1, or a .pth/.pt/.safetensors "
        "state_dict path (default: DEFAULT)",
    )


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
