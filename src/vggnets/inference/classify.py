"""Batched top-k classification of image files: decode, preprocess, run the model, keep going past bad files."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..errors import ImageError


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


@dataclass
class EncodedJpeg:
    """A JPEG's bytes, passed undecoded from the loader to a batched decoder on the model's device."""

    data: torch.Tensor


#: A loader item: (position in the file list, preprocessed tensor or undecoded JPEG or None, error or None).
Item = tuple[int, "torch.Tensor | EncodedJpeg | None", "str | None"]


class ImageFiles(Dataset):
    """Files -> (position, preprocessed tensor or None, error or None); decoding errors become values, not exceptions.

    With ``encoded_jpegs``, a JPEG that a batched decoder can take is passed on as :class:`EncodedJpeg` instead (see
    :func:`decode_batch`); every other file is decoded here as usual.
    """

    def __init__(
        self,
        files: Sequence[Path],
        transform: Callable[[torch.Tensor], torch.Tensor],
        max_pixels: int | None,
        encoded_jpegs: bool = False,
    ):
        self.files = list(files)
        self.transform = transform
        self.max_pixels = max_pixels
        self.encoded_jpegs = encoded_jpegs

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> Item:
        return self.load(i, encoded_jpegs=self.encoded_jpegs)

    def load(self, i: int, *, encoded_jpegs: bool) -> Item:
        """File ``i``: decoded and preprocessed, or (``encoded_jpegs``) a JPEG's bytes; an error as a value."""
        from ..io.images import read_jpeg_or_image

        try:
            image, encoded = read_jpeg_or_image(
                self.files[i], max_pixels=self.max_pixels, keep_jpeg=encoded_jpegs
            )
            if encoded:
                return i, EncodedJpeg(image), None
            return i, self.prepare(image), None
        except ImageError as exc:
            return i, None, str(exc)

    def prepare(self, image: torch.Tensor) -> torch.Tensor:
        """The size check, then ``transform``; on whatever device ``image`` is on."""
        self._check_resized_size(image)
        return self.transform(image)

    def _check_resized_size(self, image: torch.Tensor) -> None:
        """Refuse extreme aspect ratios before the preset upsamples them (see data.check_resized_size)."""
        from ..io.images import check_resized_size

        resize = getattr(self.transform, "resize_size", None)
        if resize:
            check_resized_size(image, resize[0], self.max_pixels)


def decode_batch(batch: list[Item], dataset: ImageFiles, device: torch.device | str) -> list[Item]:
    """Decode a batch's :class:`EncodedJpeg` items in one call on ``device`` and preprocess them there; an image the
    batched decoder refuses is decoded on the CPU instead (which also gives unreadable files their usual message)."""
    from ..io.images import decode_jpegs

    encoded = [(pos, i, x.data) for pos, (i, x, _) in enumerate(batch) if isinstance(x, EncodedJpeg)]
    if not encoded:
        return batch
    out = list(batch)
    decoded = decode_jpegs([data for _, _, data in encoded], device)
    for (pos, i, _), image in zip(encoded, decoded, strict=True):
        if image is None:
            out[pos] = dataset.load(i, encoded_jpegs=False)
            continue
        try:
            out[pos] = (i, dataset.prepare(image), None)
        except ImageError as exc:
            out[pos] = (i, None, str(exc))
    return out


def _collate(items: list[Item]) -> list[Item]:
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
    decode_device: torch.device | str | None = None,
) -> Iterator[Prediction]:
    """Yield one :class:`Prediction` per file, in order. Unreadable files yield a prediction with ``error`` set.

    ``model`` is a module taking ``transform``'s output, or an engine :class:`~vggnets.inference.engine.Predictor` (then pass
    ``transform=predictor.preprocess``: uint8 crops, normalised inside the predictor's graph). ``decode_device``
    (e.g. the CUDA device): JPEGs are read by the loader but decoded there, a batch per call (nvJPEG), and
    preprocessed there; other formats are decoded by the loader as usual.
    """
    if isinstance(model, nn.Module):
        model.eval()
    k = min(topk, len(labels))
    dataset = ImageFiles(files, transform, max_pixels, encoded_jpegs=decode_device is not None)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=_collate,
    )
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(files), unit="img", desc="classify", leave=False)
    for batch in loader:
        if decode_device is not None:
            batch = decode_batch(batch, dataset, decode_device)
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
