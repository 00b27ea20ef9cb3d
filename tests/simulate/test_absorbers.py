"""Tests of spectralnn.simulate.absorbers, spectralnn.simulate.bal and the
Voigt profiles of spectralnn.physics.voigt they use."""

import numpy as np
import pytest
from astropy import units as u
from astropy.tests.helper import assert_quantity_allclose
from scipy import special

from spectralnn.physics import damped_equivalent_width, tau_voigt, voigt_profile
from spectralnn.simulate import simulate_quasars
from spectralnn.simulate.absorbers import (
    _DLA_SHARE,
    absorber_tau,
    dla_incidence,
    draw_absorbers,
    n_uniforms,
    sample_log_nhi,
)
from spectralnn.simulate.bal import bal_transmission, balnicity_index

LYA = 1215.6701


def test_voigt_profile_matches_scipy_and_limits():
    x = np.linspace(-20, 20, 401)
    np.testing.assert_allclose(
        voigt_profile(x, 1.3, 0.7), special.voigt_profile(x, 1.3, 0.7), rtol=1e-10
    )
    # pure Gaussian limit
    gauss = np.exp(-0.5 * (x / 2.0) ** 2) / (2.0 * np.sqrt(2 * np.pi))
    np.testing.assert_allclose(voigt_profile(x, 2.0, 0.0), gauss, atol=1e-12)


@pytest.mark.parametrize("log_nhi", [20.3, 21.0, 22.0])
def test_dla_equivalent_width_damped_limit(log_nhi):
    # W = (lambda0^2/c) sqrt(N (pi e^2/m_e c) f Gamma / pi) (damped curve of
    # growth, see spectralnn.physics.voigt); the numerical integral over
    # +-3000 A observed agrees within 5 % (the Doppler core adds < 1 %)
    z = 2.5
    wave = np.linspace(LYA * (1 + z) - 3000, LYA * (1 + z) + 3000, 600001)
    w_obs = np.trapezoid(1 - np.exp(-tau_voigt(wave, z, log_nhi, 20.0)), wave)
    assert_quantity_allclose(
        w_obs / (1 + z) * u.AA, damped_equivalent_width(log_nhi), rtol=0.05
    )


def test_damped_width_value():
    # log N = 20.3 -> W_rest ~ 10 A (the classical DLA threshold EW)
    assert_quantity_allclose(damped_equivalent_width(20.3), 10.34 * u.AA, rtol=1e-3)


def test_absorber_tau_window_is_exact_enough():
    # absorber_tau evaluates each Voigt profile only where tau > ~1e-4: the
    # transmission must equal the full calculation to 1e-3 everywhere
    from spectralnn.physics import lyman_limit_tau

    z = 2.8
    wave = np.arange(3600.0, 10000.0, 0.5)
    absorbers = {
        "dla_z": np.array([[z], [z]]),
        "dla_log_nhi": np.array([[21.5], [19.6]]),
        "dla_b": np.array([[30.0], [20.0]]),
    }
    tau = absorber_tau(wave, absorbers)
    for row, logn, b in ((0, 21.5, 30.0), (1, 19.6, 20.0)):
        full = lyman_limit_tau(wave, z, logn)
        for line in ("Lya", "Lyb", "Lyg"):
            full = full + tau_voigt(wave, z, logn, b, line)
        assert np.max(np.abs(np.exp(-tau[row]) - np.exp(-full))) < 1e-3
    # Lyb is there too: saturated at its centre
    i = np.argmin(np.abs(wave - 1025.7223 * (1 + z)))
    assert tau[0, i] > 100


def test_column_density_distribution():
    x = sample_log_nhi(np.random.default_rng(0).random(200000))
    assert 19.5 <= x.min() and x.max() <= 22.5
    # the share of DLAs (>= 20.3) among 19.5-22.5 absorbers, within 3 sigma
    share = np.mean(x >= 20.3)
    assert abs(share - _DLA_SHARE) < 3 * np.sqrt(_DLA_SHARE * (1 - _DLA_SHARE) / x.size)
    # f(N) ~ N^-1.27 below the knee: dN/dlogN falls by 10^-0.27 per dex
    n1 = np.sum((x >= 19.6) & (x < 19.8))
    n2 = np.sum((x >= 20.6) & (x < 20.8))
    expected = 10**-0.27 * np.exp(-(10 ** (20.7 - 21.26) - 10 ** (19.7 - 21.26)))
    assert abs(n2 / n1 / expected - 1) < 0.05


def test_absorber_counts_follow_incidence():
    n = 20000
    u_ = np.random.default_rng(3).random((n, n_uniforms(max_dla=6)))
    zq = np.full(n, 3.5)
    a = draw_absorbers(zq, 2.0, u_, rate=1.0, max_dla=6)
    z_hi = (1 + 3.5) * (1 - 3000 / 299792.458) - 1
    expect = np.mean(dla_incidence(0.5 * (2.0 + z_hi)) * (z_hi - 2.0)) / _DLA_SHARE
    mean = a["n_dla"].mean()
    assert abs(mean - expect) < 4 * np.sqrt(expect / n)
    assert np.nanmax(a["dla_z"]) < z_hi and np.nanmin(a["dla_z"]) >= 2.0
    assert np.all(np.isnan(a["dla_z"]) == (np.arange(6) >= a["n_dla"][:, None]))


def test_dla_in_simulated_spectrum_is_black():
    b = simulate_quasars(
        40, seed=4, z_range=(3.0, 3.5), dla_rate=30.0, noiseless=True, forest=False
    )
    meta = b.meta
    rows = np.flatnonzero((meta["n_dla"] > 0) & (meta["dla1_log_nhi"] > 20.5))
    assert rows.size > 5
    for r in rows:
        centre = LYA * (1 + meta["dla1_z"][r])
        if b.wavelength[0] < centre < b.wavelength[-1]:
            i = np.argmin(np.abs(b.wavelength - centre))
            assert b.flux[r, i] < 1e-3 * np.max(b.flux[r])


def test_lyman_limit_systems_in_truth_table():
    # the truth table lists the Lyman-limit systems (17.2 <= log N < 19.5),
    # as DLA metrics need them to tell a false alarm from a real absorber;
    # a noiseless spectrum without forest is dark below each one's limit
    b = simulate_quasars(60, seed=5, z_range=(3.5, 4.0), noiseless=True, forest=False)
    meta = b.meta
    z1, n1 = np.asarray(meta["lls1_z"], float), np.asarray(meta["lls1_log_nhi"], float)
    has = np.isfinite(z1)
    assert has.sum() > 10 and np.array_equal(has, np.asarray(meta["n_lls"]) >= 1)
    assert np.all((n1[has] >= 17.2) & (n1[has] < 19.5))
    assert np.all(z1[has] < np.asarray(meta["z"], float)[has])
    # optical depth at the Lyman limit is N σ_LL = 10^(log N) 6.3e-18 cm²
    wave = np.asarray(b.wavelength, dtype=float)
    below = 880.0 * (1 + z1)  # τ = 0.9 τ_LL there
    rows = np.flatnonzero(has & (n1 > 18.0) & (np.asarray(meta["n_dla"]) == 0)
                          & (below > wave[0] + 10))
    assert rows.size >= 2
    for r in rows:
        i = np.argmin(np.abs(wave - below[r]))
        above = 920.0 * (1 + z1[r])  # just redward of the limit: no LLS continuum
        j = np.argmin(np.abs(wave - above))
        assert b.flux[r, i] < 0.05 * b.flux[r, j]


def test_balnicity_index_of_box_trough():
    # a black trough from 5000 to 15000 km/s (300 km/s tanh edges); the BI
    # integrand (1 - f/0.9) only counts 2000 km/s after f first drops below
    # 0.9: integrate that directly on a fine grid
    v = np.linspace(0.0, 29000.0, 290001)
    f = 1 - 0.25 * (1 + np.tanh((v - 5000) / 300)) * (1 + np.tanh((15000 - v) / 300))
    v_on = v[np.argmax(f < 0.9)] + 2000.0
    keep = (v > max(v_on, 3000.0)) & (v < 25000.0)
    expected = np.trapezoid(np.clip(1 - f[keep] / 0.9, 0, None), v[keep])
    assert 8000 < expected < 8700  # ~ 15000 - 6670 km/s, less the edges
    bi = balnicity_index(np.array([5000.0]), np.array([15000.0]), np.array([1.0]))
    np.testing.assert_allclose(bi, expected, rtol=0.01)
    # shallow (f > 0.9) or narrow (< 2000 km/s) troughs are not BALs
    bi = balnicity_index(
        np.array([5000.0, 5000.0]), np.array([15000.0, 6000.0]), np.array([0.08, 1.0])
    )
    np.testing.assert_array_equal(bi, [0.0, 0.0])


def test_bal_trough_position():
    v = 8000.0
    rest = np.array([[1549.48 * (1 - v / 299792.458), 1549.48 * 1.01]])
    t = bal_transmission(
        rest, np.array([5000.0]), np.array([12000.0]), np.array([0.7]), ("CIV",)
    )
    np.testing.assert_allclose(t, [[0.3, 1.0]], atol=1e-6)
