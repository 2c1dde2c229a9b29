"""What a model's state_dict looks like: expected shapes, the architecture a checkpoint fits, layout checks, key order."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from ..errors import ArchitectureMismatchError
from .configs import MODELS
from .vgg import HEAD_KEYS, construct


def expected_shapes(name: str, *, num_classes: int = 1000, width: float = 1.0) -> dict[str, torch.Size]:
    """state_dict key -> tensor shape of a model, computed on the meta device (no memory)."""
    with torch.device("meta"):
        model = construct(MODELS[name], num_classes, 0.5, width, "pytorch")
    return {k: v.shape for k, v in model.state_dict().items()}


def guess_architecture(state_dict: dict[str, torch.Tensor]) -> list[str]:
    """Names of the models whose layout matches a state_dict (ignoring fc8's size and BN step counters)."""

    def layout(shapes: dict[str, torch.Size]) -> set[tuple[str, tuple[int, ...]]]:
        return {
            (k, tuple(s))
            for k, s in shapes.items()
            if k not in HEAD_KEYS and not k.endswith("num_batches_tracked")
        }

    found = layout({k: v.shape for k, v in state_dict.items()})
    width = file_width(state_dict)
    return [name for name in MODELS if layout(expected_shapes(name, width=width)) == found]


def file_width(state_dict: Mapping[str, torch.Tensor]) -> float:
    """Width multiplier of a checkpoint, read from conv1_1 (every configuration starts with 64 channels)."""
    conv1 = state_dict.get("features.0.weight")
    return conv1.shape[0] / 64 if conv1 is not None and conv1.dim() == 4 else 1.0


def file_num_classes(state_dict: Mapping[str, torch.Tensor]) -> int:
    """Number of classes of a checkpoint, read from fc8 (1000 when it has no 2-D fc8)."""
    head = state_dict.get(HEAD_KEYS[0])
    return head.shape[0] if head is not None and head.dim() == 2 else 1000


def natural_key(key: str) -> list:
    """Sort key that orders ``features.2`` before ``features.10``."""
    return [int(part) if part.isdigit() else part for part in key.split(".")]


def check_layout(
    model: nn.Module, state_dict: dict[str, torch.Tensor], name: str, source: str, *, skip_head: bool
) -> None:
    """Raise ArchitectureMismatchError listing missing, unexpected and wrongly shaped tensors."""
    want = {k: v.shape for k, v in model.state_dict().items()}
    optional = {k for k in want if k.endswith("num_batches_tracked")} | (
        set(HEAD_KEYS) if skip_head else set()
    )
    missing = sorted(set(want) - set(state_dict) - optional, key=natural_key)
    unexpected = sorted(set(state_dict) - set(want), key=natural_key)
    wrong = [
        f"{k} (file {tuple(state_dict[k].shape)}, model {tuple(want[k])})"
        for k in sorted(set(want) & set(state_dict), key=natural_key)
        if k not in optional and state_dict[k].shape != want[k]
    ]
    if not (missing or unexpected or wrong):
        return

    def show(label: str, items: list[str]) -> str:
        more = f" ... and {len(items) - 8} more" if len(items) > 8 else ""
        return f" {label} ({len(items)}): {', '.join(items[:8])}{more}." if items else ""

    guesses = guess_architecture(state_dict)
    hint = (
        f" The file looks like a checkpoint for {' or '.join(guesses)}: build that model instead."
        if guesses
        else " It does not match any VGG configuration; check that it is a VGG state_dict."
    )
    raise ArchitectureMismatchError(
        f"The checkpoint {source} does not fit the {name} architecture."
        + show("Missing tensors", missing)
        + show("Unexpected tensors", unexpected)
        + show("Wrong shapes", wrong)
        + hint
    )
