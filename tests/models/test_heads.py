"""Tests of spectralnn.models.heads and spectralnn.models.layers."""

import math

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from spectralnn.models.heads import GaussianNLL, HeteroscedasticHead, gaussian_nll  # noqa: E402
from spectralnn.models.layers import MaskedAttentionPooling  # noqa: E402


def test_nll_matches_closed_form():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(50, 1))
    mean = rng.normal(size=(50, 1))
    log_var = rng.normal(size=(50, 1))
    expected = 0.5 * (log_var + (y - mean) ** 2 / np.exp(log_var))
    got = np.asarray(gaussian_nll(y.astype("float32"),
                                  np.hstack([mean, log_var]).astype("float32")))
    np.testing.assert_allclose(got, expected[:, 0], rtol=1e-5)
    # the loss class averages the same numbers
    assert float(GaussianNLL()(y, np.hstack([mean, log_var]))) == pytest.approx(
        expected.mean(), rel=1e-5)


def test_nll_minimum_at_true_variance():
    # for residuals of variance s², the expected NLL is minimal at log_var = log s²
    resid = np.random.default_rng(1).normal(scale=0.3, size=(20000, 1))
    grid = np.linspace(-4, 0, 81)
    losses = [float(np.mean(gaussian_nll(resid, np.hstack(
        [np.zeros_like(resid), np.full_like(resid, lv)])))) for lv in grid]
    assert grid[int(np.argmin(losses))] == pytest.approx(math.log(0.09), abs=0.05)


def test_head_loc_scale_and_serialisation():
    head = HeteroscedasticHead(units=2, loc=[8.0, 1.0], scale=[0.5, 2.0])
    x = np.zeros((4, 3), dtype="float32")
    out = np.asarray(head(x))
    assert out.shape == (4, 4)
    # zero input -> the Dense bias (0) -> mean = loc, log_var = 2 log(scale)
    np.testing.assert_allclose(out[0], [8.0, 1.0, 2 * math.log(0.5), 2 * math.log(2.0)],
                               atol=1e-6)
    clone = HeteroscedasticHead.from_config(head.get_config())
    assert clone.loc == head.loc and clone.scale == head.scale
    with pytest.raises(ValueError, match="scale must be positive"):
        HeteroscedasticHead(scale=0.0)


def test_pooling_ignores_padding_and_order():
    rng = np.random.default_rng(2)
    pool = MaskedAttentionPooling(hidden_units=4)
    emb = rng.normal(size=(1, 3, 5)).astype("float32")
    base = np.asarray(pool([emb, np.ones((1, 3), "float32")]))
    padded = np.concatenate([emb, rng.normal(size=(1, 2, 5)).astype("float32")], axis=1)
    with_padding = np.asarray(pool([padded, np.array([[1, 1, 1, 0, 0]], "float32")]))
    shuffled = np.asarray(pool([emb[:, ::-1], np.ones((1, 3), "float32")]))
    np.testing.assert_allclose(with_padding, base, atol=1e-6)
    np.testing.assert_allclose(shuffled, base, atol=1e-6)
