"""One training pass and one validation pass over a loader: mixed precision, gradient accumulation, progress bar.

Gradient accumulation divides each micro-batch loss by ``accumulate``; a last, incomplete group at the end of an epoch
is still stepped (with a proportionally smaller gradient). Batches that are None (every image unreadable) are skipped.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from typing import Literal

import torch
from torch import nn

from ..core.vgg import device_of

Amp = Literal["bf16", "fp16"] | None


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
    skipped. BatchNorm layers whose parameters are all frozen (:func:`vggnets.training.surgery.freeze`) run in eval
    mode: their running statistics stay those of the pretrained model. A DistributedDataParallel model all-reduces
    gradients only on the last batch of each group.
    """
    if accumulate < 1:
        raise ValueError(f"accumulate must be >= 1, got {accumulate}")
    loss_fn = loss_fn or nn.functional.cross_entropy
    device = device_of(model)
    model.train()
    _frozen_batchnorm_to_eval(model)
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
            _show(bar, total_loss / images, correct / images, images / max(time.perf_counter() - start, 1e-9))
    if pending:
        steps += _optimizer_step(optimizer, scaler)
    if bar is not None:
        bar.close()
    n = max(images, 1)
    seconds = time.perf_counter() - start
    return {"loss": total_loss / n, "acc": correct / n, "images": images, "steps": steps, "seconds": seconds}


@torch.no_grad()
def evaluate_epoch(
    model: nn.Module, loader: Iterable, *, amp: Amp = None, channels_last: bool = False
) -> dict:
    """Validation pass: ``loss`` (mean cross-entropy), ``acc`` (top-1), ``top5``, ``images``, ``seconds``."""
    device = device_of(model)
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


def _frozen_batchnorm_to_eval(model: nn.Module) -> None:
    """Frozen BatchNorm normalises with its running statistics and keeps them."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and not any(
            p.requires_grad for p in m.parameters()
        ):
            m.eval()


def _show(bar, loss: float, acc: float, rate: float) -> None:
    bar.set_postfix(loss=f"{loss:.4f}", acc=f"{acc:.4f}", img_s=f"{rate:.0f}")


def _autocast(device: torch.device, amp: Amp):
    if amp not in (None, "bf16", "fp16"):
        raise ValueError(f"amp must be None, 'bf16' or 'fp16', not {amp!r}")
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype, enabled=amp is not None)


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
