"""vggnets.training.data: unreadable samples left out of batches, validation split over processes without padding."""

from __future__ import annotations

import torch

import vggnets.training as T


def test_collate_readable_leaves_out_unreadable_samples() -> None:
    sample = (torch.zeros(3, 2, 2), 1)
    images, labels = T.collate_readable([sample, None, sample])
    assert images.shape == (2, 3, 2, 2) and labels.tolist() == [1, 1]
    assert T.collate_readable([None, None]) is None


def test_strided_sampler_covers_every_sample_once() -> None:
    parts = [list(T.StridedSampler(10, rank, 3)) for rank in range(3)]
    assert parts == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]
    assert sorted(i for part in parts for i in part) == list(range(10))
    assert len(T.StridedSampler(10, 1, 3)) == 3
