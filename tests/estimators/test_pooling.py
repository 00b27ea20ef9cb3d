"""Learned pooling of per-epoch masses (EpochPooling) against the IVW mean."""

import numpy as np
import pytest

from spectralnn.errors import ModelFileError
from spectralnn.estimators.pooling import EpochPooling, inverse_variance_mean

pytest.importorskip("keras")


def _objects(n, rng):
    """Per-epoch masses whose quoted errors miss two things the IVW mean trusts."""
    truth = rng.normal(8.5, 0.4, n)
    n_ep = rng.integers(2, 7, n)
    e = int(n_ep.max())
    quoted = rng.uniform(0.05, 0.2, (n, e))
    snr = rng.uniform(2.0, 30.0, (n, e))
    # low-S/N epochs scatter twice as much as quoted; every object has an
    # error shared by its epochs (0.08 dex)
    true_sd = np.where(snr < 6, 2.0 * quoted, quoted)
    shared = rng.normal(0.0, 0.08, n)[:, None]
    m = truth[:, None] + shared + rng.normal(0.0, 1.0, (n, e)) * true_sd
    pad = np.arange(e)[None, :] >= n_ep[:, None]
    m[pad] = np.nan
    quoted[pad] = np.nan
    snr[pad] = np.nan
    return m, quoted, snr, truth


def test_inverse_variance_mean_ignores_padding():
    m, e = inverse_variance_mean([[8.0, 9.0, np.nan]], [[0.1, 0.2, np.nan]])
    assert m[0] == pytest.approx((8.0 / 0.01 + 9.0 / 0.04) / (1 / 0.01 + 1 / 0.04))
    assert e[0] == pytest.approx((1 / 0.01 + 1 / 0.04) ** -0.5)
    m, e = inverse_variance_mean([[np.nan]], [[np.nan]])
    assert np.isnan(m[0]) and np.isnan(e[0])


def test_pooling_beats_ivw_and_is_calibrated():
    rng = np.random.default_rng(3)
    train = _objects(4000, rng)
    test = _objects(2000, rng)
    pool = EpochPooling().fit(*train, epochs=80, seed=1)
    m, s, snr, truth = test
    ivw, ivw_err = inverse_variance_mean(m, s)
    pooled, pooled_err = pool.predict(m, s, snr)
    rmse_ivw = np.sqrt(np.mean((ivw - truth) ** 2))
    rmse_pool = np.sqrt(np.mean((pooled - truth) ** 2))
    # it learns to down-weight the noisy low-S/N epochs (the shared error
    # sets a floor both share: measured 0.107 vs 0.110 dex) ...
    assert rmse_pool < 0.99 * rmse_ivw
    # ... and the shared error the quoted ones miss: IVW intervals are too
    # narrow, the pooled ones cover ~68 %
    cover_ivw = np.mean(np.abs(ivw - truth) < ivw_err)
    cover_pool = np.mean(np.abs(pooled - truth) < pooled_err)
    assert cover_ivw < 0.55
    assert 0.62 < cover_pool < 0.74
    # the result does not depend on the order of the epochs
    perm = rng.permutation(m.shape[1])
    again, _ = pool.predict(m[:, perm], s[:, perm], snr[:, perm])
    np.testing.assert_allclose(again, pooled, atol=1e-5)


def test_pooling_save_load_roundtrip(tmp_path):
    from spectralnn.estimators import MassEstimator

    rng = np.random.default_rng(4)
    pool = EpochPooling(units=8, attention_units=4).fit(*_objects(300, rng), epochs=2, seed=0)
    meta = dict(MassEstimator(virial=False).metadata)
    meta["name"] = "x-pooling"
    path = pool.save(tmp_path / "x-pooling", meta)
    back = EpochPooling.load(path)
    m, s, snr, _ = _objects(5, rng)
    np.testing.assert_allclose(back.predict(m, s, snr)[0], pool.predict(m, s, snr)[0],
                               atol=1e-6)
    with pytest.raises(ModelFileError):
        EpochPooling().predict(m, s, snr)
