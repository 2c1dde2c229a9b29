"""Tests for vggnets.evaluation.metrics.ClassificationMetrics: hand-computed cases, streaming, merging, edge cases."""

from __future__ import annotations

import json
import math

import pytest
import torch

from vggnets.evaluation.metrics import ClassificationMetrics

# Four samples over K = 4 classes; rows are scores, the target's rank is noted.
SCORES = torch.tensor(
    [
        [0.70, 0.10, 0.15, 0.05],  # target 0: rank 1 (top-1 correct), prediction 0
        [0.10, 0.20, 0.60, 0.10],  # target 1: rank 2, prediction 2
        [0.05, 0.30, 0.25, 0.40],  # target 2: rank 3, prediction 3
        [0.40, 0.30, 0.20, 0.10],  # target 3: rank 4, prediction 0
    ]
)
TARGETS = torch.tensor([0, 1, 2, 3])


def test_hand_computed_topk():
    m = ClassificationMetrics(4, topk=(1, 2, 3))
    m.update(SCORES, TARGETS)
    assert m.count == 4 and m.failed == 0
    assert m.accuracy(1) == 25.0 and m.error(1) == 75.0
    assert m.accuracy(2) == 50.0 and m.error(2) == 50.0
    assert m.accuracy(3) == 75.0
    assert m.accuracy(4) == m.accuracy(9) == 100.0  # k >= K: every target is in the top-K


def test_topk_larger_than_classes_is_clamped():
    m = ClassificationMetrics(3)  # default topk (1, 5): top-5 becomes top-3
    m.update(torch.tensor([[0.1, 0.5, 0.4], [0.9, 0.05, 0.05], [0.2, 0.3, 0.5]]), torch.tensor([2, 0, 0]))
    assert m.accuracy(5) == m.accuracy(3) == m.accuracy(100) == 100.0
    assert m.error(5) == 0.0
    assert m.accuracy(1) == pytest.approx(100 / 3)
    assert m.accuracy(2) == pytest.approx(200 / 3)  # sample 0 at rank 2, sample 2 at rank 3
    assert m.summary()["top5_acc"] == 100.0


def test_untracked_k_and_bad_arguments():
    m = ClassificationMetrics(10, topk=(1, 5))
    m.update(torch.randn(3, 10), torch.tensor([1, 2, 3]))
    m.accuracy(4)  # every k up to max(topk) is available
    with pytest.raises(ValueError, match="top-6 is not tracked"):
        m.accuracy(6)
    with pytest.raises(ValueError):
        m.accuracy(0)
    with pytest.raises(ValueError, match=r"shape \(N, 10\)"):
        m.update(torch.randn(3, 9), torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="targets must have shape"):
        m.update(torch.randn(3, 10), torch.tensor([1, 2]))
    with pytest.raises(ValueError, match=r"0 \.\. 9"):
        m.update(torch.randn(2, 10), torch.tensor([1, 10]))
    with pytest.raises(ValueError, match="integer"):
        m.update(torch.randn(2, 10), torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError):
        ClassificationMetrics(0)
    with pytest.raises(ValueError):
        ClassificationMetrics(5, topk=(0,))
    with pytest.raises(ValueError):
        m.add_failed(-1)
    assert m.count == 3  # failed updates changed nothing


def test_per_class_accuracy_and_confusion():
    m = ClassificationMetrics(5, topk=(1, 2))
    scores = torch.tensor(
        [
            [0.9, 0.1, 0.0, 0.0, 0.0],  # t0 -> 0
            [0.2, 0.8, 0.0, 0.0, 0.0],  # t0 -> 1 (rank 2)
            [0.1, 0.9, 0.0, 0.0, 0.0],  # t1 -> 1
            [0.0, 0.0, 0.0, 0.3, 0.7],  # t3 -> 4 (rank 2)
        ]
    )
    m.update(scores, torch.tensor([0, 0, 1, 3]))
    per_class = m.per_class_accuracy()
    assert per_class.dtype == torch.float64 and per_class.shape == (5,)
    assert per_class[0] == 50.0 and per_class[1] == 100.0 and per_class[3] == 0.0
    assert math.isnan(per_class[2]) and math.isnan(per_class[4])  # classes without samples
    assert m.per_class_accuracy(2)[[0, 1, 3]].tolist() == [100.0, 100.0, 100.0]
    assert m.mean_per_class_accuracy() == pytest.approx(50.0)  # (50 + 100 + 0) / 3
    assert m.class_counts().tolist() == [2, 1, 0, 1, 0]
    expected = torch.zeros(5, 5, dtype=torch.int64)
    expected[0, 0] = expected[0, 1] = expected[1, 1] = expected[3, 4] = 1
    confusion = m.confusion()
    assert confusion.dtype == torch.int64 and torch.equal(confusion, expected)
    assert int(confusion.sum()) == m.count
    assert confusion.sum(1).tolist() == m.class_counts().tolist()
    assert int(confusion.diag().sum()) == round(m.accuracy(1) * m.count / 100)
    confusion[0, 0] = 99  # a copy
    assert m.confusion()[0, 0] == 1


def test_streaming_equals_one_shot_and_merge():
    torch.manual_seed(0)
    k, n = 20, 1000
    scores = torch.randn(n, k)
    targets = torch.randint(0, k, (n,))
    one = ClassificationMetrics(k)
    one.update(scores, targets)
    streamed = ClassificationMetrics(k)
    for start in range(0, n, 37):
        streamed.update(scores[start : start + 37], targets[start : start + 37])
    streamed.update(scores[:0], targets[:0])  # an empty batch changes nothing
    assert streamed.summary() == one.summary()
    assert torch.equal(streamed.confusion(), one.confusion())
    merged = ClassificationMetrics(k)
    shard = ClassificationMetrics(k)
    merged.update(scores[:400], targets[:400])
    shard.update(scores[400:], targets[400:])
    shard.add_failed(2)
    merged.merge(shard)
    assert merged.count == n and merged.failed == 2
    assert torch.equal(merged.confusion(), one.confusion())
    assert merged.accuracy(5) == one.accuracy(5)
    # against a direct computation
    top5 = scores.topk(5, 1).indices
    assert one.accuracy(1) == pytest.approx(100 * (top5[:, 0] == targets).float().mean().item())
    assert one.accuracy(5) == pytest.approx(100 * (top5 == targets[:, None]).any(1).float().mean().item())
    with pytest.raises(ValueError, match="cannot merge"):
        merged.merge(ClassificationMetrics(k + 1))
    with pytest.raises(TypeError):
        merged.merge("not metrics")


def test_failed_images_are_counted_not_scored():
    m = ClassificationMetrics(4)
    m.add_failed()
    m.add_failed(2)
    assert m.failed == 3 and m.count == 0
    assert math.isnan(m.accuracy(1)) and math.isnan(m.error(5))
    summary = m.summary()
    assert summary == {
        "images": 0,
        "failed": 3,
        "top1_acc": None,
        "top5_acc": None,
        "top1_err": None,
        "top5_err": None,
        "mean_per_class_acc": None,
    }
    m.update(SCORES, TARGETS)
    assert m.failed == 3 and m.count == 4 and m.accuracy(1) == 25.0  # failures are not in the denominator
    m.reset()
    assert m.count == 0 and m.failed == 0


def test_summary_is_json_ready_and_follows_the_conventions():
    m = ClassificationMetrics(4)
    m.update(SCORES, TARGETS)
    summary = m.summary()
    assert list(summary) == [
        "images",
        "failed",
        "top1_acc",
        "top5_acc",
        "top1_err",
        "top5_err",
        "mean_per_class_acc",
    ]
    assert summary["top1_err"] == 100 - summary["top1_acc"] == 75.0
    assert summary["top5_acc"] == 100.0  # top-5 clamped to K = 4
    assert summary["mean_per_class_acc"] == 25.0
    json.dumps(summary, allow_nan=False)
    assert "25.00%" in repr(m)


def test_ties_follow_torch_topk():
    # Constant scores: topk returns exactly k of the tied classes, so over one sample per class, top-k is k/K.
    k = 8
    m = ClassificationMetrics(k, topk=(1, 3))
    m.update(torch.zeros(k, k), torch.arange(k))
    assert m.accuracy(1) == 100 / k
    assert m.accuracy(3) == 300 / k
    predicted = m.confusion().sum(0)
    assert predicted.count_nonzero() == 1  # one (unspecified) class is every sample's top-1 prediction


def test_logits_posteriors_and_devices_agree():
    torch.manual_seed(1)
    logits = torch.randn(50, 7, dtype=torch.float64)
    targets = torch.randint(0, 7, (50,))
    a, b, c = (ClassificationMetrics(7) for _ in range(3))
    a.update(logits, targets)
    b.update(logits.softmax(1).float(), targets.int())
    c.update(logits.half(), targets.tolist())
    assert a.summary() == b.summary()
    assert c.count == 50
    if torch.cuda.is_available():
        d = ClassificationMetrics(7)
        d.update(logits.cuda(), targets.cuda())
        assert d.summary() == a.summary()


def test_memory_is_independent_of_the_number_of_images():
    m = ClassificationMetrics(1000)
    before = [t.numel() for t in (m._ranks, m._confusion)]
    for _ in range(3):
        m.update(torch.randn(64, 1000), torch.randint(0, 1000, (64,)))
    assert [t.numel() for t in (m._ranks, m._confusion)] == before == [1000 * 6, 1000 * 1000]
    assert m.count == 192 and int(m.confusion().sum()) == 192


def test_top_confusions_lists_the_most_frequent_mistakes():
    m = ClassificationMetrics(3, topk=(1,))
    scores = torch.eye(3)[[1, 1, 2, 0, 0]]  # predictions 1, 1, 2, 0, 0
    m.update(scores, torch.tensor([0, 0, 0, 0, 1]))  # truths
    assert m.top_confusions() == [(0, 1, 2), (0, 2, 1), (1, 0, 1)]
    assert m.top_confusions(1) == [(0, 1, 2)]
