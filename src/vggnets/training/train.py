"""Training and fine-tuning: the paper's recipe and torchvision's, as a small loop made of reusable pieces.

The pieces, each usable on its own:

- :class:`Recipe` and :data:`RECIPES` (``"paper"``, ``"torchvision"``): hyper-parameters and augmentation as data;
- :func:`make_optimizer`, :func:`make_scheduler` (:class:`PlateauDecay` for the paper, ``StepLR`` for torchvision);
- :func:`train_transforms`, :func:`eval_transforms` (``torchvision.transforms.v2``), :class:`PCALighting`;
- :func:`make_loaders` (an ImageFolder tree with ``train/`` and ``val/``, or a seeded ``val_split``; unreadable images
  skipped with a warning by :class:`SkipUnreadable`; the global batch split over ``world_size`` processes);
- :func:`train_one_epoch` (optional tqdm bar), :func:`evaluate_epoch`;
- :func:`init_distributed` (``torchrun``'s environment: nccl on CUDA, gloo on CPU), :func:`unwrap` (the plain model
  inside DistributedDataParallel / ``torch.compile``);
- :func:`save_checkpoint` (atomic), :func:`load_checkpoint`, :func:`rng_state`, :func:`set_rng_state`;
- :func:`init_from_a` (the paper's initialisation of deeper nets from a trained net A), :func:`freeze`;
- :func:`fit`: the loop, writing ``last.pth`` (everything needed to resume), ``best.pth`` (model state_dict only,
  loadable with ``vggnets.vgg11(weights=path)``) and ``metrics.csv``; in a process group only rank 0 writes.

The ``vggnets train`` command (:mod:`vggnets.cli.train`) puts these together; :mod:`vggnets.curves` draws the
learning curves.

Documented choices:

- Weight decay: the paper's recipe decays only weights (conv and FC kernels); biases and BatchNorm parameters get none
  ([paper 3.1] "weight decay ... on weights"; Caffe's VGG prototxt gives biases ``decay_mult: 0``). torchvision's
  recipe decays every parameter, as its reference ``train.py`` does by default (``--norm-weight-decay`` unset).
- Learning-rate schedule of the paper: divide by 10 when validation accuracy has not improved (by more than
  ``threshold``) for more than ``patience`` epochs (ReduceLROnPlateau's rule, mode "max"), at most ``max_drops`` = 3
  times; after the last drop the rate stays put. Implemented explicitly in :class:`PlateauDecay`.
- Preprocessing of the paper: subtract the mean RGB only, on the [0, 255] scale, i.e. ``Normalize(mean, std=1/255)`` of
  [0, 1] tensors. Fine-tuning torchvision's published weights expects mean/std normalisation: use the torchvision
  recipe, or ``dataclasses.replace(recipe, std=IMAGENET_STD)``.
- Gradient accumulation divides each micro-batch loss by ``accumulate``; a last, incomplete group at the end of an epoch
  is still stepped (with a proportionally smaller gradient).
- Unreadable images (corrupt, truncated, not images) are skipped, each named once on stderr, rather than stopping a
  long run; a batch whose images are all unreadable is skipped. Missing folders and empty class folders are errors.
- Distributed: the training order is a ``DistributedSampler``'s even with one process, so K processes with batch B/K
  take the same global batches as one process with batch B; validation counts are summed over processes, so every
  process sees the same accuracy and the plateau schedule drops the rate on all of them at once.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import os
import random
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from ..convert.files import read_weights
from ..errors import ArchitectureMismatchError, CheckpointError, DatasetError

Amp = Literal["bf16", "fp16"] | None

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: The paper's mean RGB (123.68, 116.779, 103.939) on the [0, 1] scale.
PAPER_MEAN = (123.68 / 255, 116.779 / 255, 103.939 / 255)
#: std that turns [0, 1] tensors back to the [0, 255] scale: the paper subtracts the mean only.
PAPER_STD = (1 / 255, 1 / 255, 1 / 255)

#: AlexNet PCA colour noise, eigen-decomposition of ImageNet RGB pixels in [0, 1] (fb.resnet.torch).
PCA_EIGVAL = (0.2175, 0.0188, 0.0045)
PCA_EIGVEC = (
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)


@dataclass(frozen=True)
class Recipe:
    """Hyper-parameters of a training recipe. Change one with ``dataclasses.replace(RECIPES["paper"], lr=1e-3)``."""

    name: str
    lr: float
    weight_decay: float
    decay_biases: bool  # False: no decay on biases and BatchNorm parameters
    schedule: Literal["plateau", "step"]
    epochs: int
    momentum: float = 0.9
    batch_size: int = 256
    lr_factor: float = 0.1
    patience: int = 2  # plateau: epochs without improvement tolerated before a drop
    max_drops: int = 3  # plateau: at most this many drops
    threshold: float = 1e-4  # plateau: minimum improvement of the validation accuracy
    step_size: int = 30  # step: epochs between drops
    crop: int = 224
    scale: tuple[int, int] = (256, 256)  # paper: S (fixed when equal) or the jitter range [Smin, Smax]
    resize: int = 256  # evaluation: smaller side before the centre crop
    random_resized_crop: bool = False  # torchvision: RandomResizedCrop instead of rescale + random crop
    hflip: bool = True
    pca_std: float = 0.0  # std of the PCA colour noise coefficients (0: off)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    init: str = "torchvision"  # init scheme for models built from scratch with this recipe


RECIPES: dict[str, Recipe] = {
    # [paper 3.1]; 74 epochs = 370K iterations of 256 images
    "paper": Recipe(
        name="paper",
        lr=1e-2,
        weight_decay=5e-4,
        decay_biases=False,
        schedule="plateau",
        epochs=74,
        pca_std=0.1,
        mean=PAPER_MEAN,
        std=PAPER_STD,
        init="paper",
    ),
    # torchvision's reference recipe for its VGG weights (use lr=0.1 for the _bn models)
    "torchvision": Recipe(
        name="torchvision",
        lr=1e-2,
        weight_decay=1e-4,
        decay_biases=True,
        schedule="step",
        epochs=90,
        random_resized_crop=True,
    ),
}


def get_recipe(recipe: Recipe | str) -> Recipe:
    """A recipe by name (or the recipe itself)."""
    if isinstance(recipe, Recipe):
        return recipe
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; choose one of: {', '.join(RECIPES)}")
    return RECIPES[recipe]


# ---------------------------------------------------------------------------------------------------------- optimiser


def parameter_groups(model: nn.Module, weight_decay: float, *, decay_biases: bool) -> list[dict[str, Any]]:
    """Trainable parameters split into decayed and undecayed groups.

    With ``decay_biases=False`` only conv and FC weights (tensors of 2 or more dimensions) are decayed; biases and
    BatchNorm weights (1-d) are not. Frozen parameters (``requires_grad=False``) are left out.
    """
    decay, no_decay = [], []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        (decay if decay_biases or p.dim() > 1 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def make_optimizer(model: nn.Module, recipe: Recipe | str, lr: float | None = None) -> torch.optim.SGD:
    """SGD with the recipe's momentum and weight decay (on weights only where the recipe says so)."""
    recipe = get_recipe(recipe)
    groups = parameter_groups(model, recipe.weight_decay, decay_biases=recipe.decay_biases)
    return torch.optim.SGD(groups, lr=recipe.lr if lr is None else lr, momentum=recipe.momentum)


class PlateauDecay:
    """Multiply the learning rate by ``factor`` when a metric (validation accuracy, higher is better) has not improved
    by more than ``threshold`` for more than ``patience`` epochs, at most ``max_drops`` times. Call :meth:`step` once
    per epoch with the metric. Resumable through :meth:`state_dict` / :meth:`load_state_dict`.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        *,
        factor: float = 0.1,
        patience: int = 2,
        max_drops: int = 3,
        threshold: float = 1e-4,
    ) -> None:
        self.optimizer = optimizer
        self.factor = factor
        self.patience = patience
        self.max_drops = max_drops
        self.threshold = threshold
        self.best = -math.inf
        self.bad_epochs = 0
        self.drops = 0

    def step(self, metric: float) -> bool:
        """Record one epoch's metric; returns True when the learning rate was divided this time."""
        if metric > self.best + self.threshold:
            self.best = metric
            self.bad_epochs = 0
            return False
        self.bad_epochs += 1
        if self.bad_epochs > self.patience and self.drops < self.max_drops:
            for group in self.optimizer.param_groups:
                group["lr"] *= self.factor
            self.drops += 1
            self.bad_epochs = 0
            return True
        return False

    def state_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "optimizer"}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.__dict__.update(state)


Scheduler = PlateauDecay | torch.optim.lr_scheduler.LRScheduler


def make_scheduler(optimizer: torch.optim.Optimizer, recipe: Recipe | str) -> Scheduler:
    """The recipe's schedule: :class:`PlateauDecay` (paper) or ``StepLR`` (torchvision)."""
    recipe = get_recipe(recipe)
    if recipe.schedule == "plateau":
        return PlateauDecay(
            optimizer,
            factor=recipe.lr_factor,
            patience=recipe.patience,
            max_drops=recipe.max_drops,
            threshold=recipe.threshold,
        )
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=recipe.step_size, gamma=recipe.lr_factor)


def step_scheduler(scheduler: Scheduler, val_acc: float) -> None:
    """Advance a schedule by one epoch (the plateau schedule needs the validation accuracy)."""
    if isinstance(scheduler, PlateauDecay):
        scheduler.step(val_acc)
    else:
        scheduler.step()


# --------------------------------------------------------------------------------------------------------- transforms


class PCALighting(nn.Module):
    """AlexNet's PCA colour noise: add ``eigvec @ (alpha * eigval)`` to every pixel, ``alpha ~ N(0, std)`` drawn per
    image and channel from torch's global RNG. Works on float tensors in [0, 1] shaped (3, H, W) or (N, 3, H, W).
    """

    def __init__(
        self,
        std: float = 0.1,
        eigval: Sequence[float] = PCA_EIGVAL,
        eigvec: Sequence[Sequence[float]] = PCA_EIGVEC,
    ) -> None:
        super().__init__()
        self.std = std
        self.register_buffer("eigval", torch.tensor(eigval, dtype=torch.float32), persistent=False)
        self.register_buffer("eigvec", torch.tensor(eigvec, dtype=torch.float32), persistent=False)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        if self.std == 0:
            return img
        if not img.is_floating_point() or img.shape[-3] != 3:
            raise ValueError(
                f"PCALighting expects float RGB tensors (..., 3, H, W), got {img.dtype} {tuple(img.shape)}"
            )
        batch = img.shape[:-3]
        alpha = torch.randn(*batch, 3) * self.std
        rgb = (alpha * self.eigval) @ self.eigvec.T  # (..., 3): eigvec @ (alpha * eigval) for each image
        return img + rgb.to(img.dtype)[..., :, None, None]

    def extra_repr(self) -> str:
        return f"std={self.std}"


def train_transforms(
    recipe: Recipe | str, crop: int | None = None, scale: int | tuple[int, int] | None = None
):
    """Training augmentation of a recipe (``torchvision.transforms.v2``), from a PIL image or uint8 tensor.

    Paper: isotropic rescale of the smaller side to S (``scale`` an int) or to S uniform in [Smin, Smax] (a pair),
    random ``crop`` x ``crop`` crop, horizontal flip, PCA colour noise, normalisation. torchvision: RandomResizedCrop
    (scale 0.08-1, ratio 3/4-4/3), horizontal flip, normalisation.
    """
    from torchvision.transforms import v2

    recipe = get_recipe(recipe)
    crop = recipe.crop if crop is None else crop
    scale = recipe.scale if scale is None else scale
    smin, smax = (scale, scale) if isinstance(scale, int) else scale
    steps: list[Callable] = [v2.ToImage()]
    if recipe.random_resized_crop:
        steps.append(v2.RandomResizedCrop(crop, antialias=True))
    else:
        if smin == smax:
            steps.append(v2.Resize(smin, antialias=True))
        else:
            steps.append(v2.RandomShortestSize(list(range(smin, smax + 1)), antialias=True))
        steps.append(v2.RandomCrop(crop))
    if recipe.hflip:
        steps.append(v2.RandomHorizontalFlip())
    steps.append(v2.ToDtype(torch.float32, scale=True))
    if recipe.pca_std > 0:
        steps.append(PCALighting(recipe.pca_std))
    steps.append(v2.Normalize(list(recipe.mean), list(recipe.std)))
    return v2.Compose(steps)


def eval_transforms(recipe: Recipe | str, crop: int | None = None, resize: int | None = None):
    """Validation preprocessing: resize the smaller side, centre crop, normalise with the recipe's statistics."""
    from torchvision.transforms import v2

    recipe = get_recipe(recipe)
    crop = recipe.crop if crop is None else crop
    resize = recipe.resize if resize is None else resize
    return v2.Compose(
        [
            v2.ToImage(),
            v2.Resize(resize, antialias=True),
            v2.CenterCrop(crop),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(list(recipe.mean), list(recipe.std)),
        ]
    )


class SkipUnreadable(torch.utils.data.Dataset):
    """A dataset of ``(image, label)`` samples whose unreadable images give ``None`` instead of raising; each such file
    is reported once per process on stderr. Batch with :func:`collate_readable`, which leaves them out.
    """

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset
        self.classes = dataset.classes
        self.skipped: set[str] = set()

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        try:
            return self.dataset[index]
        except (OSError, ValueError, SyntaxError) as exc:  # PIL: UnidentifiedImageError, truncated files, ...
            path = str(self.dataset.samples[index][0])
            if path not in self.skipped:
                self.skipped.add(path)
                reason = type(exc).__name__ if path in str(exc) else str(exc)
                print(
                    f"vggnets: warning: skipping unreadable image {path} ({reason})",
                    file=sys.stderr,
                    flush=True,
                )
            return None


def collate_readable(batch: list[Any]) -> Any:
    """``default_collate`` of the readable samples of a batch; None when none of them could be read."""
    batch = [sample for sample in batch if sample is not None]
    return torch.utils.data.default_collate(batch) if batch else None


class StridedSampler(torch.utils.data.Sampler):
    """Indices ``rank, rank + world_size, ...``: every sample exactly once over all processes (no padding), for
    validation whose counts are then summed over processes."""

    def __init__(self, length: int, rank: int = 0, world_size: int = 1) -> None:
        self.indices = range(rank, length, world_size)

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def image_folder(root: str | Path, transform: Callable | None = None) -> SkipUnreadable:
    """A torchvision ImageFolder over ``root`` (one folder per class) with unreadable images skipped; a missing
    folder, a tree without class folders or a class folder without images is a :class:`DatasetError`."""
    from torchvision.datasets import ImageFolder
    from torchvision.datasets.folder import IMG_EXTENSIONS

    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"the dataset folder {root} does not exist (or is not a folder).")
    classes = sorted(d.name for d in os.scandir(root) if d.is_dir())
    if not classes:
        raise DatasetError(
            f"{root} has no class folders: an ImageFolder tree holds one folder of images per class "
            "(root/CLASS/image.png), and training needs root/train/ and root/val/ such trees, or --val-split."
        )
    empty = [c for c in classes if not any(_is_image(f, IMG_EXTENSIONS) for f in (root / c).rglob("*"))]
    if empty:
        raise DatasetError(
            f"the class folder(s) {', '.join(empty)} of {root} hold no images ({', '.join(IMG_EXTENSIONS)}); "
            "add images or remove the folder(s)."
        )
    return SkipUnreadable(ImageFolder(str(root), transform=transform))


def _is_image(path: Path, suffixes: tuple[str, ...]) -> bool:
    return path.suffix.lower() in suffixes and path.is_file()


def make_loaders(
    root: str | Path,
    recipe: Recipe | str,
    *,
    batch_size: int | None = None,
    workers: int = 0,
    val_split: float | None = None,
    seed: int = 0,
    train_transform: Callable | None = None,
    val_transform: Callable | None = None,
    rank: int = 0,
    world_size: int = 1,
) -> tuple[torch.utils.data.DataLoader, torch.utils.data.DataLoader]:
    """Train and validation loaders over an ImageFolder tree: ``root/train`` and ``root/val``, or, with ``val_split``,
    one tree (``root/train`` when it exists, else ``root``) split at random (seeded) into ``1 - val_split`` /
    ``val_split``.

    ``batch_size`` (default: the recipe's) is the global batch: with ``world_size`` processes each loads
    ``batch_size // world_size``. The training order is a ``DistributedSampler``'s (seeded by ``seed`` and the epoch,
    also with one process), so K processes see, step by step, the same global batches as one process. Validation is
    split over the processes without padding. Unreadable images are skipped with a warning (see
    :class:`SkipUnreadable`).
    """
    from torch.utils.data.distributed import DistributedSampler

    recipe = get_recipe(recipe)
    root = Path(root)
    train_tf = train_transform or train_transforms(recipe)
    val_tf = val_transform or eval_transforms(recipe)
    if not root.is_dir():
        raise DatasetError(f"the dataset folder {root} does not exist (or is not a folder).")
    if val_split is None:
        if not (root / "train").is_dir() or not (root / "val").is_dir():
            raise DatasetError(
                f"{root} needs train/ and val/ subfolders (each with one folder of images per class), or pass "
                "a validation fraction (--val-split 0.1) to split one ImageFolder tree."
            )
        train_set = image_folder(root / "train", train_tf)
        val_set = image_folder(root / "val", val_tf)
        if train_set.classes != val_set.classes:
            only_train = sorted(set(train_set.classes) - set(val_set.classes))
            only_val = sorted(set(val_set.classes) - set(train_set.classes))
            raise DatasetError(
                f"train/ and val/ of {root} have different class folders (only in train/: "
                f"{', '.join(only_train) or 'none'}; only in val/: {', '.join(only_val) or 'none'}); "
                "both need the same classes."
            )
        classes = train_set.classes
    else:
        if not 0 < val_split < 1:
            raise ValueError(f"val_split must be in (0, 1), got {val_split}")
        source = root / "train" if (root / "train").is_dir() else root
        full_train = image_folder(source, train_tf)
        full_val = image_folder(source, val_tf)
        order = torch.randperm(len(full_train), generator=torch.Generator().manual_seed(seed)).tolist()
        n_val = max(1, int(round(len(order) * val_split)))
        train_set = torch.utils.data.Subset(full_train, order[n_val:])
        val_set = torch.utils.data.Subset(full_val, order[:n_val])
        classes = full_train.classes
    bs = batch_size or recipe.batch_size
    if bs % world_size:
        raise ValueError(f"the batch size {bs} is not divisible by the {world_size} processes")
    common = {
        "batch_size": bs // world_size,
        "num_workers": workers,
        "persistent_workers": workers > 0,
        "collate_fn": collate_readable,
    }
    sampler = DistributedSampler(train_set, num_replicas=world_size, rank=rank, shuffle=True, seed=seed)
    train_loader = torch.utils.data.DataLoader(train_set, sampler=sampler, **common)
    val_loader = torch.utils.data.DataLoader(
        val_set, sampler=StridedSampler(len(val_set), rank, world_size), **common
    )
    train_loader.classes = val_loader.classes = classes  # type: ignore[attr-defined]
    return train_loader, val_loader


# ---------------------------------------------------------------------------------------------------------- the loop


def _device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _autocast(device: torch.device, amp: Amp):
    if amp not in (None, "bf16", "fp16"):
        raise ValueError(f"amp must be None, 'bf16' or 'fp16', not {amp!r}")
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype, enabled=amp is not None)


def train_one_epoch(
    model: nn.Module,
    loader: Iterable,
    optimizer: torch.optim.Optimizer,
    *,
    accumulate: int = 1,
    amp: Amp = None,
    scaler: torch.amp.GradScaler | None = None,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    channels_last: bool = False,
    progress: bool = False,
    desc: str = "train",
) -> dict[str, float]:
    """One pass over ``loader`` with an optimiser step every ``accumulate`` batches.

    Returns ``loss`` (mean per image), ``acc`` (top-1 on the augmented batches), ``images``, ``steps``, ``seconds``.
    ``progress`` shows a tqdm bar (loss, accuracy, images/s, ETA); batches that are None (every image unreadable) are
    skipped. BatchNorm layers whose parameters are all frozen (:func:`freeze`) run in eval mode: their running
    statistics stay those of the pretrained model. A DistributedDataParallel model all-reduces gradients only on the last batch of each group.
    """
    if accumulate < 1:
        raise ValueError(f"accumulate must be >= 1, got {accumulate}")
    loss_fn = loss_fn or nn.functional.cross_entropy
    device = _device_of(model)
    model.train()
    for m in model.modules():  # frozen BatchNorm normalises with its running statistics and keeps them
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and not any(
            p.requires_grad for p in m.parameters()
        ):
            m.eval()
    optimizer.zero_grad(set_to_none=True)
    bar = _progress_bar(loader, desc) if progress else None
    start = time.perf_counter()
    total_loss, correct, images, steps, pending = 0.0, 0, 0, 0, 0
    for batch in bar if bar is not None else loader:
        if batch is None:
            continue
        x, y = _to_device(batch, device, channels_last)
        last_of_group = pending + 1 == accumulate
        sync = nullcontext() if last_of_group or not hasattr(model, "no_sync") else model.no_sync()
        with sync:
            with _autocast(device, amp):
                logits = model(x)
                loss = loss_fn(logits, y)
            backward = loss / accumulate
            (scaler.scale(backward) if scaler is not None else backward).backward()
        pending += 1
        if last_of_group:
            steps += _optimizer_step(optimizer, scaler)
            pending = 0
        total_loss += loss.item() * len(y)
        correct += (logits.argmax(1) == y).sum().item()
        images += len(y)
        if bar is not None:
            rate = images / max(time.perf_counter() - start, 1e-9)
            bar.set_postfix(
                loss=f"{total_loss / images:.4f}", acc=f"{correct / images:.4f}", img_s=f"{rate:.0f}"
            )
    if pending:
        steps += _optimizer_step(optimizer, scaler)
    if bar is not None:
        bar.close()
    seconds = time.perf_counter() - start
    return {
        "loss": total_loss / max(images, 1),
        "acc": correct / max(images, 1),
        "images": images,
        "steps": steps,
        "seconds": seconds,
    }


def _progress_bar(loader: Iterable, desc: str):
    from tqdm import tqdm

    return tqdm(loader, desc=desc, unit="batch", leave=False, dynamic_ncols=True, file=sys.stderr)


def _to_device(batch: Sequence[torch.Tensor], device: torch.device, channels_last: bool):
    images, targets = batch
    x = images.to(device, non_blocking=True)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, targets.to(device, non_blocking=True)


def _optimizer_step(optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None) -> int:
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return 1


@torch.no_grad()
def evaluate_epoch(
    model: nn.Module, loader: Iterable, *, amp: Amp = None, channels_last: bool = False
) -> dict:
    """Validation pass: ``loss`` (mean cross-entropy), ``acc`` (top-1), ``top5``, ``images``, ``seconds``."""
    device = _device_of(model)
    model.eval()
    start = time.perf_counter()
    total_loss, correct, correct5, images = 0.0, 0, 0, 0
    for batch in loader:
        if batch is None:
            continue
        x, y = _to_device(batch, device, channels_last)
        with _autocast(device, amp):
            logits = model(x)
        logits = logits.float()
        total_loss += nn.functional.cross_entropy(logits, y, reduction="sum").item()
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        correct += (top[:, 0] == y).sum().item()
        correct5 += (top == y[:, None]).any(1).sum().item()
        images += len(y)
    n = max(images, 1)
    return {
        "loss": total_loss / n,
        "acc": correct / n,
        "top5": correct5 / n,
        "images": images,
        "seconds": time.perf_counter() - start,
    }


# ------------------------------------------------------------------------------------------------------- checkpoints


def save_checkpoint(path: str | Path, state: Any) -> Path:
    """``torch.save`` to a temporary file in the same folder, then rename over ``path``: readers see the old file or
    the complete new one, never a partial file. The temporary file is removed if saving fails.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (tensors and plain Python data only: weights_only)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is reported the same way
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc


def rng_state() -> dict[str, Any]:
    """RNG states of torch (CPU and CUDA), numpy and Python's random, as tensors and plain data (weights_only safe)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "python": [version, list(internal), gauss],
    }


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


# --------------------------------------------------------------------------------------------- initialisation, freeze


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


#: The layers of net A that initialise deeper nets [paper 3.1]: the first four convolutions ...
A_CONVS = ("conv1_1", "conv2_1", "conv3_1", "conv3_2")
#: ... and the three fully-connected layers.
FC_LAYERS = ("classifier.0", "classifier.3", "classifier.6")


def init_from_a(model: nn.Module, a_state: Mapping[str, torch.Tensor] | str | Path) -> list[str]:
    """Copy a trained net A's first four convolutions and three FC layers into ``model`` (B, C, D, E, or their
    ``_bn``/width variants), in place; the other layers keep their (random) initialisation.

    A's convolutions are, in order, conv1_1, conv2_1, conv3_1 and conv3_2; they go to the same-named layers of
    ``model`` (REFERENCE 4.1). fc6 and fc7 must match in shape; fc8 is skipped when the class counts differ. Returns the
    copied state_dict keys. ``a_state`` is a state_dict or the path of one.
    """
    if not isinstance(a_state, Mapping):
        a_state = read_weights(a_state, what="net A weights")
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
    targets = conv_names(model.features)
    pairs: list[tuple[str, str]] = []
    for a_key, name in zip(a_convs[:4], A_CONVS, strict=True):
        prefix_a, prefix_b = a_key[: -len(".weight")], f"features.{targets[name]}"
        pairs += [(f"{prefix_a}.weight", f"{prefix_b}.weight"), (f"{prefix_a}.bias", f"{prefix_b}.bias")]
    pairs += [(f"{fc}.{p}", f"{fc}.{p}") for fc in FC_LAYERS for p in ("weight", "bias")]

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


def freeze(model: nn.Module, part: str | None) -> None:
    """Stop training a part of the model (``"features"`` for fine-tuning only the classifier); None freezes nothing."""
    if part is None:
        return
    module = model.get_submodule(part)
    for p in module.parameters():
        p.requires_grad_(False)


# ------------------------------------------------------------------------------------------------------- distributed


@dataclass(frozen=True)
class Distributed:
    """This process's place in a ``torchrun`` job (rank 0 of 1 without one)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_type: str) -> Distributed:
    """Join the process group that ``torchrun`` describes in the environment (RANK, WORLD_SIZE, LOCAL_RANK,
    MASTER_ADDR, MASTER_PORT): nccl for CUDA, gloo otherwise. Without torchrun (WORLD_SIZE unset or 1) it does nothing.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Distributed()
    import torch.distributed as dist

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device_type == "cuda":
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    return Distributed(dist.get_rank(), dist.get_world_size(), local_rank)


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model inside DistributedDataParallel and ``torch.compile`` wrappers: its state_dict has the plain keys
    (no ``module.`` or ``_orig_mod.`` prefixes)."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod
        else:
            return model


def _sum_over_processes(values: list[float], device: torch.device) -> list[float]:
    if not _distributed():
        return values
    total = torch.tensor(values, dtype=torch.float64, device=device)
    torch.distributed.all_reduce(total)
    return total.tolist()


def _rng_states() -> list[dict[str, Any]]:
    """Every process's RNG states (a collective call when distributed)."""
    if not _distributed():
        return [rng_state()]
    states: list[Any] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(states, rng_state())
    return states


# ----------------------------------------------------------------------------------------------------------- fit

METRIC_FIELDS = (
    "epoch",
    "lr",
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "val_top5",
    "seconds",
    "images_per_s",
)


def fit(
    model: nn.Module,
    train_loader: Iterable,
    val_loader: Iterable,
    recipe: Recipe | str,
    *,
    epochs: int | None = None,
    output_dir: str | Path,
    resume: bool = False,
    lr: float | None = None,
    accumulate: int = 1,
    amp: Amp = None,
    channels_last: bool = False,
    log: Callable[[str], None] | None = print,
    extra: Mapping[str, Any] | None = None,
    progress: bool = False,
    on_epoch: Callable[[list[dict[str, float]]], None] | None = None,
) -> list[dict[str, float]]:
    """Train ``model`` for ``epochs`` (default: the recipe's), validating after each epoch; returns the metric rows.

    Writes into ``output_dir``: ``last.pth`` after every epoch (model, optimizer, scheduler, AMP scaler, epoch, step,
    best accuracy, metric history, RNG states: what ``resume=True`` restores), ``best.pth`` (the model state_dict of
    the best validation accuracy so far) and ``metrics.csv`` (one row per epoch). With ``resume=True`` and an existing
    ``last.pth``, training continues after its epoch, up to ``epochs`` in total. ``extra`` is stored in ``last.pth``
    (e.g. the model name and arguments). The model must already be on its device; it may be wrapped in
    DistributedDataParallel and/or ``torch.compile``: checkpoints hold the plain model's state_dict. In a process
    group, metrics are summed over the processes and only rank 0 writes files, logs and calls ``on_epoch`` (with
    the history, after each epoch's files are written).
    """
    recipe = get_recipe(recipe)
    epochs = recipe.epochs if epochs is None else epochs
    output_dir = Path(output_dir)
    is_main = not _distributed() or torch.distributed.get_rank() == 0
    if not is_main:
        log = None
    plain = unwrap(model)
    device = _device_of(model)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, recipe, lr)
    scheduler = make_scheduler(optimizer, recipe)
    scaler = torch.amp.GradScaler(device.type) if amp == "fp16" else None

    start_epoch, step, best_acc, history = 0, 0, -1.0, []
    last = output_dir / "last.pth"
    if resume and last.is_file():
        state = load_checkpoint(last, map_location=device)
        mismatch = _mismatch(plain.state_dict(), state["model"])
        if mismatch:
            raise ArchitectureMismatchError(
                f"{last} holds a model of another architecture than the one being trained ({mismatch}); resume "
                "with the run's own model options, or choose another output folder. Nothing was overwritten."
            )
        plain.load_state_dict(state["model"])
        try:
            optimizer.load_state_dict(state["optimizer"])
        except ValueError as exc:
            raise CheckpointError(
                f"the optimizer state in {last} does not fit (were other layers frozen?): {exc}"
            ) from exc
        scheduler.load_state_dict(state["scheduler"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        start_epoch, step, best_acc = state["epoch"], state["step"], state["best_acc"]
        history = list(state["history"])
        ranks = state.get("rng_ranks") or [state["rng"]]
        world = torch.distributed.get_world_size() if _distributed() else 1
        rank = torch.distributed.get_rank() if _distributed() else 0
        set_rng_state(ranks[rank] if len(ranks) == world else state["rng"])
        if log:
            log(f"resumed from {last} at epoch {start_epoch} (step {step}, best val acc {best_acc:.4f})")
    if is_main:
        output_dir.mkdir(parents=True, exist_ok=True)

    for epoch in range(start_epoch, epochs):
        sampler = getattr(train_loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)  # DistributedSampler
        current_lr = optimizer.param_groups[0]["lr"]
        train = train_one_epoch(
            model,
            train_loader,
            optimizer,
            accumulate=accumulate,
            amp=amp,
            scaler=scaler,
            channels_last=channels_last,
            progress=progress and is_main,
            desc=f"epoch {epoch + 1}/{epochs}",
        )
        val = evaluate_epoch(model, val_loader, amp=amp, channels_last=channels_last)
        t_loss, t_correct, t_images, v_loss, v_correct, v_correct5, v_images = _sum_over_processes(
            [
                train["loss"] * train["images"],
                train["acc"] * train["images"],
                train["images"],
                val["loss"] * val["images"],
                val["acc"] * val["images"],
                val["top5"] * val["images"],
                val["images"],
            ],
            device,
        )
        val_acc = v_correct / max(v_images, 1)
        step += train["steps"]
        step_scheduler(scheduler, val_acc)  # the same value on every process: the schedules stay in step
        row = {
            "epoch": epoch + 1,
            "lr": current_lr,
            "train_loss": t_loss / max(t_images, 1),
            "train_acc": t_correct / max(t_images, 1),
            "val_loss": v_loss / max(v_images, 1),
            "val_acc": val_acc,
            "val_top5": v_correct5 / max(v_images, 1),
            "seconds": train["seconds"] + val["seconds"],
            "images_per_s": t_images / max(train["seconds"], 1e-9),
        }
        history.append(row)
        improved = val_acc > best_acc
        best_acc = max(best_acc, val_acc)
        rngs = _rng_states()  # collective: every process takes part
        if not is_main:
            continue
        if improved:
            save_checkpoint(output_dir / "best.pth", plain.state_dict())
        save_checkpoint(
            last,
            {
                "model": plain.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict() if scaler is not None else None,
                "epoch": epoch + 1,
                "step": step,
                "best_acc": best_acc,
                "history": history,
                "recipe": dataclasses.asdict(recipe),
                "rng": rngs[0],
                "rng_ranks": rngs,
                "extra": dict(extra or {}),
            },
        )
        _write_metrics(output_dir / "metrics.csv", history)
        if log:
            log(
                f"epoch {epoch + 1}/{epochs} lr {current_lr:.2e} train loss {row['train_loss']:.4f} "
                f"acc {row['train_acc']:.4f} | val loss {row['val_loss']:.4f} acc {val_acc:.4f} "
                f"top-5 {row['val_top5']:.4f} | {row['images_per_s']:.0f} img/s {row['seconds']:.1f}s"
            )
        if on_epoch is not None:
            on_epoch(history)
    return history


def _mismatch(own: Mapping[str, torch.Tensor], other: Mapping[str, torch.Tensor]) -> str:
    """A one-line description of how two state_dicts differ in keys and shapes ("" when they fit)."""
    problems = [f"missing {k}" for k in own if k not in other]
    problems += [f"unexpected {k}" for k in other if k not in own]
    problems += [
        f"{k} {tuple(other[k].shape)} in the checkpoint, {tuple(v.shape)} here"
        for k, v in own.items()
        if k in other and other[k].shape != v.shape
    ]
    more = f" and {len(problems) - 3} more" if len(problems) > 3 else ""
    return "; ".join(problems[:3]) + more


def _write_metrics(path: Path, history: list[dict[str, float]]) -> None:
    """Rewrite metrics.csv from the full history (atomically, so a resumed run never duplicates rows)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=METRIC_FIELDS, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(history)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(buffer.getvalue())
    os.replace(tmp, path)
