"""Tests of spectralnn.simulate.forest."""

import numpy as np
import pytest

from spectralnn.simulate import (
    forest_transmission,
    mean_forest_transmission,
    simulate_quasars,
    tau_eff_lya,
)

LYA = 1215.6701


def test_tau_eff_fg08_values():
    # Faucher-Giguere et al. 2008, eq. 8: 0.0018 (1+z)^3.92
    np.testing.assert_allclose(
        tau_eff_lya([2.0, 3.0, 4.0]), 0.0018 * np.array([3.0, 4.0, 5.0]) ** 3.92
    )
    # Becker et al. 2013 at z = 3.5: 0.751 - 0.132
    np.testing.assert_allclose(tau_eff_lya(3.5, model="B13"), 0.619)
    with pytest.raises(ValueError, match="FG08"):
        tau_eff_lya(3.0, model="xx")


@pytest.mark.parametrize("z", [2.0, 3.0, 4.0])
def test_mean_transmission_matches_tau_eff(z):
    # pixels with Lya absorption redshifts z +- 0.05, in front of quasars at
    # z + 0.1 (no Lyb forest there); 400 sightlines of ~100 correlated pixels
    # give the mean to < 1 %, well inside the 5 % requirement
    wave = np.arange(LYA * (1 + z - 0.05), LYA * (1 + z + 0.05), 0.8)
    rng = np.random.default_rng(int(10 * z))
    normals = rng.standard_normal((2, 400, wave.size))
    t = forest_transmission(wave, np.full(400, z + 0.1), normals)
    expected = np.mean(np.exp(-tau_eff_lya(wave / LYA - 1)))
    assert abs(t.mean() / expected - 1) < 0.05
    # line-to-line scatter: neither a constant screen nor pure noise
    assert 0.1 < t.std() < 0.5


def test_forest_pixel_distribution_evolves():
    wave = np.arange(3700.0, 6500.0, 1.0)
    normals = np.random.default_rng(1).standard_normal((2, 50, wave.size))
    t = forest_transmission(wave, np.full(50, 4.4), normals)
    low = (wave > LYA * 3.0) & (wave < LYA * 3.1)  # z_abs ~ 2
    high = (wave > LYA * 5.2) & (wave < LYA * 5.3)  # z_abs ~ 4.2
    # mostly transmitted at z~2, mostly dark at z~4.2, saturated pixels exist
    assert np.median(t[:, low]) > 0.8
    assert np.median(t[:, high]) < 0.5
    assert np.mean(t[:, high] < 0.05) > 0.05


def test_redward_of_lya_untouched():
    wave = np.arange(3600.0, 9000.0, 1.0)
    normals = np.random.default_rng(2).standard_normal((2, 3, wave.size))
    t = forest_transmission(wave, np.array([2.5, 3.0, 3.5]), normals)
    for row, z in enumerate([2.5, 3.0, 3.5]):
        assert np.all(t[row, wave > LYA * (1 + z)] == 1.0)
    m = mean_forest_transmission(wave, np.array([3.0]))
    assert np.all(m[0, wave > LYA * 4.0] == 1.0)


@pytest.mark.parametrize("z", [2.0, 3.0, 4.0])
def test_simulated_quasars_follow_tau_eff(z):
    # the forest inside simulate_quasars: noiseless spectra with a random
    # forest over those with its mean (same seed: everything else identical)
    kw = dict(seed=7, noiseless=True, z_range=(z + 0.15, z + 0.3), survey="BOSS")
    with_forest = simulate_quasars(60, forest=True, **kw)
    mean_only = simulate_quasars(60, forest=False, **kw)
    wave = with_forest.wavelength
    sel = (wave > LYA * (1 + z - 0.05)) & (wave < LYA * (1 + z + 0.05))
    ok = mean_only.flux[:, sel] > 0
    realised = with_forest.flux[:, sel][ok] / mean_only.flux[:, sel][ok]
    realised *= mean_forest_transmission(wave[sel], with_forest.meta["z"])[ok]
    # the Lyb forest also covers these pixels for these quasars, so the
    # realised mean is compared with the mean transmission actually applied
    expected = mean_forest_transmission(wave[sel], with_forest.meta["z"])[ok]
    assert abs(realised.mean() / expected.mean() - 1) < 0.05
