"""Multiply-accumulate counts of a forward pass, against the paper's table (vggnets.core.configs.gmacs)."""

from __future__ import annotations

import pytest
import torch

from vggnets.core import configs
from vggnets.core.vgg import VGG, make_features
from vggnets.evaluation.cost import network_gmacs


def test_network_gmacs_matches_the_table() -> None:
    for name, spec in configs.MODELS.items():
        with torch.device("meta"):
            model = VGG(make_features(spec.layers, batch_norm=spec.batch_norm), init_weights="pytorch")
        assert network_gmacs(model, 224, 224) == pytest.approx(configs.gmacs(name), rel=1e-12)
        assert network_gmacs(model, 224, 224, dense=True) == pytest.approx(configs.gmacs(name), rel=1e-12)
