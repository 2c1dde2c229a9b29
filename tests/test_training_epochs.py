"""vggnets.training.epochs: gradient accumulation, frozen BatchNorm and unreadable batches in a training pass."""

from __future__ import annotations

import torch

import vggnets
import vggnets.training as T


def _tiny(seed: int = 0, name: str = "vgg11_bn") -> torch.nn.Module:
    torch.manual_seed(seed)
    return vggnets.build(name, width=0.125, num_classes=10)


def test_accumulation_matches_big_batch() -> None:
    torch.manual_seed(0)
    x, y = torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))
    models = []
    for _ in range(2):  # no dropout, no BN: the forward pass does not depend on the batch split
        torch.manual_seed(1)
        models.append(vggnets.build("vgg11", width=0.125, num_classes=10, dropout=0.0))
    opt_a = T.make_optimizer(models[0], "paper")
    opt_b = T.make_optimizer(models[1], "paper")
    T.train_one_epoch(models[0], [(x, y)], opt_a)
    T.train_one_epoch(models[1], [(x[:8], y[:8]), (x[8:], y[8:])], opt_b, accumulate=2)
    for a, b in zip(models[0].parameters(), models[1].parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_frozen_batchnorm_keeps_running_statistics() -> None:
    model = _tiny(0, "vgg11_bn")
    T.freeze(model, "features")
    before = {k: v.clone() for k, v in model.features.state_dict().items()}
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    T.train_one_epoch(model, [(x, y), None], T.make_optimizer(model, "paper"))  # None: an unreadable batch
    for k, v in model.features.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert model.classifier.training and not model.features[1].training
