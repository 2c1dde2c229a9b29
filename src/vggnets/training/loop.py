"""fit: the epochs of a training run, resumable, writing ``last.pth``, ``best.pth`` and ``metrics.csv``."""

from __future__ import annotations

import csv
import dataclasses
import io
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..core.vgg import device_of
from ..errors import ArchitectureMismatchError, CheckpointError
from ..io.output import write_text
from ..io.record import attach_record
from .checkpoints import (
    load_checkpoint,
    model_record,
    rng_state,
    save_checkpoint,
    set_rng_state,
    state_dict_mismatch,
)
from .distributed import Distributed, current_process, gather_over_processes, sum_over_processes, unwrap
from .epochs import Amp, evaluate_epoch, train_one_epoch
from .optimisation import Scheduler, make_optimizer, make_scheduler, step_scheduler
from .recipes import Recipe, get_recipe

#: The columns of ``metrics.csv``, one row per epoch.
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


@dataclass
class _Run:
    """The state of a run that ``last.pth`` keeps: the plain model, optimiser, schedule, AMP scaler and progress."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Scheduler
    scaler: torch.amp.GradScaler | None
    epoch: int = 0
    step: int = 0
    best_acc: float = -1.0
    history: list[dict[str, float]] = field(default_factory=list)


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
    process = current_process()
    log = log if process.is_main else None
    run = _start(model, recipe, lr=lr, amp=amp, channels_last=channels_last)
    last = output_dir / "last.pth"
    if resume and last.is_file():
        _resume(run, last, process, device_of(model))
        if log:
            log(
                f"resumed from {last} at epoch {run.epoch} (step {run.step}, best val acc {run.best_acc:.4f})"
            )
    if process.is_main:
        output_dir.mkdir(parents=True, exist_ok=True)
    passes = {"accumulate": accumulate, "amp": amp, "channels_last": channels_last}
    passes["progress"] = progress and process.is_main
    for epoch in range(run.epoch, epochs):
        row, steps = _train_and_validate(model, train_loader, val_loader, run, epoch, epochs, **passes)
        improved = _record(run, row, steps)
        rngs = gather_over_processes(rng_state())  # collective: every process takes part
        if not process.is_main:
            continue
        _save(run, output_dir, improved=improved, recipe=recipe, rngs=rngs, extra=extra)
        if log:
            log(_epoch_line(row, epochs))
        if on_epoch is not None:
            on_epoch(run.history)
    return run.history


def _start(model: nn.Module, recipe: Recipe, *, lr: float | None, amp: Amp, channels_last: bool) -> _Run:
    """A new run: the model in channels-last memory if asked, the recipe's optimiser and schedule, fp16's scaler."""
    if channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, recipe, lr)
    scaler = torch.amp.GradScaler(device_of(model).type) if amp == "fp16" else None
    return _Run(unwrap(model), optimizer, make_scheduler(optimizer, recipe), scaler)


def _record(run: _Run, row: dict[str, float], steps: int) -> bool:
    """Count a finished epoch in ``run`` and step the schedule; True when its validation accuracy is the best yet."""
    # the same accuracy on every process: the schedules stay in step
    step_scheduler(run.scheduler, row["val_acc"])
    improved = row["val_acc"] > run.best_acc
    run.epoch, run.step = int(row["epoch"]), run.step + steps
    run.best_acc = max(run.best_acc, row["val_acc"])
    run.history.append(row)
    return improved


def _resume(run: _Run, last: Path, process: Distributed, device: torch.device) -> None:
    """Restore ``run`` from ``last.pth`` (this process's RNG states when it has them, rank 0's otherwise)."""
    state = load_checkpoint(last, map_location=device)
    mismatch = state_dict_mismatch(run.model.state_dict(), state["model"])
    if mismatch:
        raise ArchitectureMismatchError(
            f"{last} holds a model of another architecture than the one being trained ({mismatch}); resume "
            "with the run's own model options, or choose another output folder. Nothing was overwritten."
        )
    run.model.load_state_dict(state["model"])
    try:
        run.optimizer.load_state_dict(state["optimizer"])
    except ValueError as exc:
        raise CheckpointError(
            f"the optimizer state in {last} does not fit (were other layers frozen?): {exc}"
        ) from exc
    run.scheduler.load_state_dict(state["scheduler"])
    if run.scaler is not None and state.get("scaler"):
        run.scaler.load_state_dict(state["scaler"])
    run.epoch, run.step, run.best_acc = state["epoch"], state["step"], state["best_acc"]
    run.history = list(state["history"])
    ranks = state.get("rng_ranks") or [state["rng"]]
    set_rng_state(ranks[process.rank] if len(ranks) == process.world_size else state["rng"])


def _train_and_validate(
    model: nn.Module,
    train_loader: Iterable,
    val_loader: Iterable,
    run: _Run,
    epoch: int,
    epochs: int,
    *,
    accumulate: int,
    amp: Amp,
    channels_last: bool,
    progress: bool,
) -> tuple[dict[str, float], int]:
    """One epoch of training and validation: its metric row (summed over processes) and its optimiser steps."""
    sampler = getattr(train_loader, "sampler", None)
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)  # DistributedSampler
    lr = run.optimizer.param_groups[0]["lr"]
    train = train_one_epoch(
        model,
        train_loader,
        run.optimizer,
        accumulate=accumulate,
        amp=amp,
        scaler=run.scaler,
        channels_last=channels_last,
        progress=progress,
        desc=f"epoch {epoch + 1}/{epochs}",
    )
    val = evaluate_epoch(model, val_loader, amp=amp, channels_last=channels_last)
    t_loss, t_correct, t_images, v_loss, v_correct, v_correct5, v_images = sum_over_processes(
        [
            train["loss"] * train["images"],
            train["acc"] * train["images"],
            train["images"],
            val["loss"] * val["images"],
            val["acc"] * val["images"],
            val["top5"] * val["images"],
            val["images"],
        ],
        device_of(model),
    )
    row = {
        "epoch": epoch + 1,
        "lr": lr,
        "train_loss": t_loss / max(t_images, 1),
        "train_acc": t_correct / max(t_images, 1),
        "val_loss": v_loss / max(v_images, 1),
        "val_acc": v_correct / max(v_images, 1),
        "val_top5": v_correct5 / max(v_images, 1),
        "seconds": train["seconds"] + val["seconds"],
        "images_per_s": t_images / max(train["seconds"], 1e-9),
    }
    return row, train["steps"]


def _save(
    run: _Run,
    output_dir: Path,
    *,
    improved: bool,
    recipe: Recipe,
    rngs: list[dict[str, Any]],
    extra: Mapping[str, Any] | None,
) -> None:
    """Write the epoch's files: ``best.pth`` when the accuracy improved, ``last.pth`` and ``metrics.csv``."""
    weights = attach_record(run.model.state_dict(), model_record(run.model, recipe, extra))
    if improved:
        save_checkpoint(output_dir / "best.pth", weights)
    save_checkpoint(
        output_dir / "last.pth",
        {
            "model": weights,
            "optimizer": run.optimizer.state_dict(),
            "scheduler": run.scheduler.state_dict(),
            "scaler": run.scaler.state_dict() if run.scaler is not None else None,
            "epoch": run.epoch,
            "step": run.step,
            "best_acc": run.best_acc,
            "history": run.history,
            "recipe": dataclasses.asdict(recipe),
            "rng": rngs[0],
            "rng_ranks": rngs,
            "extra": dict(extra or {}),
        },
    )
    write_metrics(output_dir / "metrics.csv", run.history)


def _epoch_line(row: Mapping[str, float], epochs: int) -> str:
    return (
        f"epoch {row['epoch']}/{epochs} lr {row['lr']:.2e} train loss {row['train_loss']:.4f} "
        f"acc {row['train_acc']:.4f} | val loss {row['val_loss']:.4f} acc {row['val_acc']:.4f} "
        f"top-5 {row['val_top5']:.4f} | {row['images_per_s']:.0f} img/s {row['seconds']:.1f}s"
    )


def write_metrics(path: str | Path, history: list[dict[str, float]]) -> Path:
    """Rewrite metrics.csv from the full history (atomically, so a resumed run never duplicates rows)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=METRIC_FIELDS, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(history)
    return write_text(path, buffer.getvalue(), overwrite=True)
