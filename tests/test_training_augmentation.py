"""vggnets.training.augmentation: PCA colour noise statistics, transform shapes and the paper's mean subtraction."""

from __future__ import annotations

import torch

import vggnets.training as T


def test_pca_lighting_statistics() -> None:
    torch.manual_seed(0)
    out = T.PCALighting(0.1)(torch.zeros(20000, 3, 2, 2))
    shift = out[:, :, 0, 0]
    assert torch.equal(out, shift[:, :, None, None].expand_as(out))  # the same colour added to every pixel
    eigval, eigvec = torch.tensor(T.PCA_EIGVAL), torch.tensor(T.PCA_EIGVEC)
    expected = eigvec @ torch.diag((0.1 * eigval) ** 2) @ eigvec.T
    torch.testing.assert_close(torch.cov(shift.T), expected, atol=2e-5, rtol=0.05)
    torch.testing.assert_close(shift.mean(0), torch.zeros(3), atol=1e-3, rtol=0)
    single = T.PCALighting(0.1)(torch.zeros(3, 4, 4))
    assert single.shape == (3, 4, 4)


def test_train_transforms_shapes() -> None:
    img = torch.randint(0, 256, (3, 300, 400), dtype=torch.uint8)
    for name in ("paper", "torchvision"):
        assert T.train_transforms(name)(img).shape == (3, 224, 224)
        assert T.eval_transforms(name)(img).shape == (3, 224, 224)
    jitter = T.train_transforms("paper", scale=(256, 512))
    assert jitter(img).shape == (3, 224, 224)
    names = [type(t).__name__ for t in T.train_transforms("paper").transforms]
    assert "PCALighting" in names and "RandomHorizontalFlip" in names
    # paper: mean subtraction on the [0, 255] scale
    grey = torch.full((3, 256, 256), 124, dtype=torch.uint8)
    out = T.eval_transforms("paper")(grey)
    torch.testing.assert_close(
        out[:, 0, 0], torch.tensor([124 - 123.68, 124 - 116.779, 124 - 103.939]), atol=1e-4, rtol=0
    )
