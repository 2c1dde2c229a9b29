"""Model surgery for training: the paper's initialisation of deeper nets from net A, and freezing layers."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from ..convert.files import read_weights
from ..errors import ArchitectureMismatchError

#: The layers of net A that initialise deeper nets [paper 3.1]: the first four convolutions ...
A_CONVS = ("conv1_1", "conv2_1", "conv3_1", "conv3_2")
#: ... and the three fully-connected layers.
FC_LAYERS = ("classifier.0", "classifier.3", "classifier.6")


def conv_names(features: nn.Sequential) -> dict[str, int]:
    """``{"conv1_1": index, ...}``: the paper's names of the convolutions of ``features`` (block number counts the
    max-pools, layer number counts convolutions inside the block)."""
    names, block, layer = {}, 1, 0
    for i, m in enumerate(features):
        if isinstance(m, nn.MaxPool2d):
            block, layer = block + 1, 0
        elif isinstance(m, nn.Conv2d):
            layer += 1
            names[f"conv{block}_{layer}"] = i
    return names


def init_from_a(model: nn.Module, a_state: Mapping[str, torch.Tensor] | str | Path) -> list[str]:
    """Copy a trained net A's first four convolutions and three FC layers into ``model`` (B, C, D, E, or their
    ``_bn``/width variants), in place; the other layers keep their (random) initialisation.

    A's convolutions are, in order, conv1_1, conv2_1, conv3_1 and conv3_2; they go to the same-named layers of
    ``model`` (REFERENCE 4.1). fc6 and fc7 must match in shape; fc8 is skipped when the class counts differ. Returns the
    copied state_dict keys. ``a_state`` is a state_dict or the path of one.
    """
    if not isinstance(a_state, Mapping):
        a_state = read_weights(a_state, what="net A weights")
    pairs = _a_layer_pairs(a_state, conv_names(model.features))
    own = model.state_dict()
    copied = []
    with torch.no_grad():
        for src, dst in pairs:
            if src not in a_state:
                raise ArchitectureMismatchError(f"net A state_dict lacks {src}")
            if a_state[src].shape != own[dst].shape:
                if dst.startswith("classifier.6"):
                    continue  # a different number of classes: keep the new head
                raise ArchitectureMismatchError(
                    f"cannot initialise {dst} {tuple(own[dst].shape)} from net A's {src} {tuple(a_state[src].shape)}"
                )
            own[dst].copy_(a_state[src])
            copied.append(dst)
    return copied


def _a_layer_pairs(a_state: Mapping[str, torch.Tensor], targets: dict[str, int]) -> list[tuple[str, str]]:
    """(net A key, model key) of every tensor :func:`init_from_a` copies."""
    a_convs = sorted(
        (
            k
            for k, v in a_state.items()
            if k.startswith("features.") and k.endswith(".weight") and v.dim() == 4
        ),
        key=lambda k: int(k.split(".")[1]),
    )
    if len(a_convs) < 4:
        raise ArchitectureMismatchError(
            f"net A state_dict has {len(a_convs)} convolutions, expected at least 4"
        )
    pairs: list[tuple[str, str]] = []
    for a_key, name in zip(a_convs[:4], A_CONVS, strict=True):
        prefix_a, prefix_b = a_key[: -len(".weight")], f"features.{targets[name]}"
        pairs += [(f"{prefix_a}.weight", f"{prefix_b}.weight"), (f"{prefix_a}.bias", f"{prefix_b}.bias")]
    pairs += [(f"{fc}.{p}", f"{fc}.{p}") for fc in FC_LAYERS for p in ("weight", "bias")]
    return pairs


def freeze(model: nn.Module, part: str | None) -> None:
    """Stop training a part of the model (``"features"`` for fine-tuning only the classifier); None freezes nothing."""
    if part is None:
        return
    module = model.get_submodule(part)
    for p in module.parameters():
        p.requires_grad_(False)
