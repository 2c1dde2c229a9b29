"""Class activation maps of image files, batch by batch: each cropped as its weights expect, explained, written as files.

Images are decoded and preprocessed as :class:`vggnets.core.transforms.ImageClassification` does (resize, center crop,
normalise); the map of each image is blended over its crop and written as a PNG (and, when asked, as a float32 ``.npy``
of the crop's size). torchvision and numpy are imported when the files are read, not with this module.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from .cam import TargetArg, explain
from .overlay import DEFAULT_COLORMAP, overlay, save_png

__all__ = ["explain_files"]


def explain_files(
    model: nn.Module,
    transform: nn.Module,
    files: Sequence[Path],
    outputs: Sequence[Mapping[str, Path]],
    labels: Sequence[str],
    *,
    layer: str,
    target: TargetArg = None,
    method: str = "gradcam",
    topk: int = 5,
    batch_size: int = 8,
    alpha: float = 0.5,
    colormap: str = DEFAULT_COLORMAP,
    keep_overlays: bool = False,
    overwrite: bool = False,
    metadata: dict | None = None,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> tuple[dict[int, dict], list[tuple[Tensor, str]]]:
    """Explain ``files`` in batches of ``batch_size``; returns (a record per file position, [(overlay, caption)]).

    ``transform``: the weights' preprocessing (``resize_size``, ``crop_size``, ``interpolation``, ``antialias``,
    ``mean``, ``std``). ``outputs[i]`` names the files written for ``files[i]``: ``"overlay"`` (the PNG, with
    ``metadata`` in its ``vggnets`` text chunk) and optionally ``"map"`` (the ``.npy``). A record lists the file, the
    explained target, the ``topk`` predictions and the files written, or the error of an image that cannot be read
    (the others are still explained). With ``keep_overlays`` every overlay is returned with a caption (for a grid).
    """
    from tqdm import tqdm

    records: dict[int, dict] = {}
    overlays: list[tuple[Tensor, str]] = []
    with tqdm(total=len(files), desc="explain", unit="img", file=sys.stderr, disable=not progress) as bar:
        for start in range(0, len(files), batch_size):
            positions = range(start, min(start + batch_size, len(files)))
            crops, inputs, kept = _decode(files, positions, transform, records)
            if inputs:
                result = explain(model, torch.stack(inputs).to(device), layer, target, method)
                probs = result.probabilities().cpu()
                top = probs.topk(min(topk, probs.shape[1]), dim=1)
                for j, i in enumerate(kept):
                    heat = result.maps[j].cpu()
                    picture = overlay(crops[j], heat, alpha=alpha, colormap=colormap)
                    _write(picture, heat, outputs[i], overwrite=overwrite, metadata=metadata)
                    t = int(result.targets[j])
                    records[i] = _record(
                        files[i], outputs[i], labels, t, probs[j], top.values[j], top.indices[j]
                    )
                    if keep_overlays:
                        overlays.append((picture, _caption(records[i], files[i])))
            bar.update(len(positions))
    return records, overlays


def _decode(
    files: Sequence[Path], positions: range, transform: nn.Module, records: dict[int, dict]
) -> tuple[list[Tensor], list[Tensor], list[int]]:
    """(uint8 crops, normalised inputs, their file positions) of the readable files; the others get an error record."""
    from torchvision.transforms import functional as TF

    from ..errors import ImageError
    from ..io.images import read_image

    crops, inputs, kept = [], [], []
    for i in positions:
        try:
            image = read_image(files[i])
        except ImageError as exc:
            records[i] = {"file": str(files[i]), "error": str(exc)}
            continue
        resized = TF.resize(
            image, transform.resize_size, interpolation=transform.interpolation, antialias=transform.antialias
        )
        crop = TF.center_crop(resized, transform.crop_size)
        crops.append(crop)
        inputs.append(
            TF.normalize(TF.convert_image_dtype(crop, torch.float32), transform.mean, transform.std)
        )
        kept.append(i)
    return crops, inputs, kept


def _write(
    picture: Tensor, heat: Tensor, paths: Mapping[str, Path], *, overwrite: bool, metadata: dict | None
) -> None:
    """The overlay as a PNG, and the map as a float32 .npy when ``paths`` names one."""
    import numpy as np

    from ..io.output import atomic_write

    save_png(picture, paths["overlay"], overwrite=overwrite, metadata=metadata)
    if "map" in paths:
        array = heat.numpy().astype(np.float32)
        atomic_write(paths["map"], lambda tmp: _save_npy(tmp, array), overwrite=overwrite)


def _save_npy(path: Path, array) -> None:
    import numpy as np

    with open(path, "wb") as f:  # a file object: np.save adds no suffix
        np.save(f, array)


def _caption(record: dict, file: Path) -> str:
    """The grid caption of an explained image: its target's label and probability, and the file's name."""
    target = record["target"]
    return f"{target['label']} {100 * target['probability']:.1f}%  {file.name}"


def _record(
    file: Path,
    paths: Mapping[str, Path],
    labels: Sequence[str],
    target: int,
    probs: Tensor,
    top_values: Tensor,
    top_indices: Tensor,
) -> dict:
    """What was explained for one image: its target, its ranked predictions and the files written."""
    return {
        "file": str(file),
        "target": {"index": target, "label": labels[target], "probability": float(probs[target])},
        "predictions": [
            {"rank": r + 1, "index": int(k), "label": labels[int(k)], "probability": float(p)}
            for r, (p, k) in enumerate(zip(top_values, top_indices))
        ],
        "overlay": str(paths["overlay"]),
        "map": str(paths["map"]) if "map" in paths else None,
        "error": None,
    }
