"""Batched top-k classification of image files: decode, preprocess, run the model, keep going past bad files."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .errors import ImageError


@dataclass
class Prediction:
    """The top-k classes of one image, or the reason it could not be classified."""

    file: str
    indices: list[int] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    probabilities: list[float] = field(default_factory=list)
    error: str | None = None

    def to_dict(self) -> dict:
        """A JSON-ready record with a stable layout."""
        ranked = [
            {"rank": r + 1, "index": i, "label": lab, "probability": p}
            for r, (i, lab, p) in enumerate(zip(self.indices, self.labels, self.probabilities))
        ]
        return {"file": self.file, "predictions": ranked, "error": self.error}


class ImageFiles(Dataset):
    """Files -> (position, preprocessed tensor or None, error or None); decoding errors become values, not exceptions."""

    def __init__(
        self, files: Sequence[Path], transform: Callable[[torch.Tensor], torch.Tensor], max_pixels: int | None
    ):
        self.files = list(files)
        self.transform = transform
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor | None, str | None]:
        from .data import read_image

        try:
            image = read_image(self.files[i], max_pixels=self.max_pixels)
            self._check_resized_size(image)
            return i, self.transform(image), None
        except ImageError as exc:
            return i, None, str(exc)

    def _check_resized_size(self, image: torch.Tensor) -> None:
        """Refuse extreme aspect ratios before the preset upsamples them (see data.check_resized_size)."""
        from .data import check_resized_size

        resize = getattr(self.transform, "resize_size", None)
        if resize:
            check_resized_size(image, resize[0], self.max_pixels)


def _collate(
    items: list[tuple[int, torch.Tensor | None, str | None]],
) -> list[tuple[int, torch.Tensor | None, str | None]]:
    return items


def class_names(categories: Sequence[str] | None, num_classes: int) -> list[str]:
    """Labels for the model's outputs: the weights' categories, or ``class <i>`` when there are none."""
    if categories is not None and len(categories) == num_classes:
        return list(categories)
    return [f"class {i}" for i in range(num_classes)]


@torch.inference_mode()
def classify_files(
    model: nn.Module,
    files: Sequence[Path],
    *,
    transform: Callable[[torch.Tensor], torch.Tensor],
    labels: Sequence[str],
    topk: int = 5,
    batch_size: int = 16,
    device: torch.device | str = "cpu",
    workers: int = 0,
    max_pixels: int | None = None,
    progress: bool = False,
) -> Iterator[Prediction]:
    """Yield one :class:`Prediction` per file, in order. Unreadable files yield a prediction with ``error`` set.

    ``model`` is a module taking ``transform``'s output, or an engine :class:`~vggnets.engine.Predictor` (then pass
    ``transform=predictor.preprocess``: uint8 crops, normalised inside the predictor's graph).
    """
    if isinstance(model, nn.Module):
        model.eval()
    k = min(topk, len(labels))
    loader = DataLoader(
        ImageFiles(files, transform, max_pixels),
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=_collate,
    )
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(files), unit="img", desc="classify", leave=False)
    for batch in loader:
        good = [(i, x) for i, x, _ in batch if x is not None]
        results: dict[int, Prediction] = {
            i: Prediction(str(files[i]), error=err) for i, x, err in batch if x is None
        }
        if good:
            x = torch.stack([t for _, t in good]).to(device)
            probs = model(x).float().softmax(dim=1)
            top_p, top_i = probs.topk(k, dim=1)
            for (i, _), p_row, i_row in zip(good, top_p.tolist(), top_i.tolist()):
                results[i] = Prediction(str(files[i]), i_row, [labels[j] for j in i_row], p_row)
        for i, _, _ in batch:
            yield results[i]
        if bar is not None:
            bar.update(len(batch))
    if bar is not None:
        bar.close()
