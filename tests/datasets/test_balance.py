import numpy as np

from spectralnn.datasets import balanced_indices, class_weights, sample_weights


def test_class_weights_equalise_totals():
    labels = np.array(["QSO"] * 70 + ["GALAXY"] * 20 + ["STAR"] * 10)
    w = class_weights(labels)
    totals = {k: w[k] * np.sum(labels == k) for k in w}
    assert np.allclose(list(totals.values()), 100 / 3)
    s = sample_weights(labels)
    assert np.isclose(s.mean(), 1.0)


def test_balanced_indices():
    labels = np.array([0] * 95 + [1] * 5)
    idx = balanced_indices(labels, 4000, seed=1)
    # each class half of the draws; binomial sd 0.008
    assert abs(np.mean(labels[idx] == 1) - 0.5) < 0.04
    sub = balanced_indices(labels, 100, seed=1, indices=np.arange(50, 100))
    assert sub.min() >= 50
