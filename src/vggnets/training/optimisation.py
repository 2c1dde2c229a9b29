"""The optimiser of a recipe (SGD, weight decay by parameter group) and its learning-rate schedules."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from .recipes import Recipe, get_recipe


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
