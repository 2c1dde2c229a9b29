"""vggnets.training.optimisation: parameter groups with and without decay, plateau and step schedules."""

from __future__ import annotations

import pytest
import torch

import vggnets
import vggnets.training as T


def _tiny(seed: int = 0, name: str = "vgg11_bn") -> torch.nn.Module:
    torch.manual_seed(seed)
    return vggnets.build(name, width=0.125, num_classes=10)


def test_plateau_drops_at_most_three_times() -> None:
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=1e-2)
    sched = T.make_scheduler(opt, "paper")
    assert isinstance(sched, T.PlateauDecay)
    lrs = []
    for acc in [0.1, 0.2, 0.3] + [0.3] * 30:
        sched.step(acc)
        lrs.append(opt.param_groups[0]["lr"])
    assert sched.drops == 3
    assert lrs[:5] == [1e-2] * 5  # improving, then patience 2: two flat epochs tolerated
    assert lrs[5] == pytest.approx(1e-3)
    assert lrs[-1] == pytest.approx(1e-5)
    # improvement resets the patience
    sched2 = T.PlateauDecay(torch.optim.SGD([param], lr=1.0), patience=2)
    for acc in [0.5, 0.5, 0.5, 0.6, 0.6, 0.6]:
        assert not sched2.step(acc)
    assert sched2.step(0.6)
    restored = T.PlateauDecay(torch.optim.SGD([param], lr=1.0))
    restored.load_state_dict(sched.state_dict())
    assert restored.drops == 3 and restored.best == 0.3


def test_step_schedule_torchvision() -> None:
    param = torch.nn.Parameter(torch.zeros(1))
    opt = T.make_optimizer(torch.nn.Linear(2, 2), "torchvision")
    sched = T.make_scheduler(torch.optim.SGD([param], lr=1e-2), "torchvision")
    assert isinstance(sched, torch.optim.lr_scheduler.StepLR) and sched.step_size == 30
    assert len(opt.param_groups) == 1 and opt.param_groups[0]["weight_decay"] == 1e-4


def test_no_weight_decay_on_biases_paper() -> None:
    model = _tiny(0, "vgg11_bn")
    opt = T.make_optimizer(model, "paper")
    decayed, plain = opt.param_groups
    assert decayed["weight_decay"] == 5e-4 and plain["weight_decay"] == 0.0
    assert all(p.dim() > 1 for p in decayed["params"])
    assert all(p.dim() == 1 for p in plain["params"])
    assert len(decayed["params"]) + len(plain["params"]) == len(list(model.parameters()))
    assert opt.param_groups[0]["momentum"] == 0.9 and opt.param_groups[0]["lr"] == 1e-2
    T.freeze(model, "features")
    opt = T.make_optimizer(model, "paper", lr=1e-3)
    assert sum(len(g["params"]) for g in opt.param_groups) == 6  # fc6, fc7, fc8 weights and biases
    assert opt.param_groups[0]["lr"] == 1e-3
