"""Tests of the global template redshift search (spectralnn.preprocessing.redshift_scan)."""

import numpy as np
import pytest
from astropy import units as u

from spectralnn import SpectrumBatch
from spectralnn.errors import InvalidSpectrumError
from spectralnn.flags import Flag
from spectralnn.preprocessing.redshift_scan import _quadratic_solve, scan_redshift

C_KMS = 299792.458


def test_quadratic_solve_matches_linear_algebra():
    rng = np.random.default_rng(0)
    m = rng.normal(size=(5, 7, 4, 4))
    a = m @ np.swapaxes(m, -1, -2) + 4 * np.eye(4)
    b = rng.normal(size=(5, 7, 4))
    expected = np.einsum("...i,...i->...", b, np.linalg.solve(a, b[..., None])[..., 0])
    np.testing.assert_allclose(_quadratic_solve(a, b), expected, rtol=1e-10)


def test_finds_quasar_redshifts_over_the_whole_range():
    from spectralnn.simulate import simulate_quasars

    batch = simulate_quasars(24, seed=31, z_range=(0.15, 4.8), snr_range=(8, 30),
                             bal_fraction=0.0)
    table = scan_redshift(batch, spectype="QSO")
    z = np.asarray(batch.meta["z"])
    dv = np.abs(table["z"] - z) / (1 + z) * C_KMS
    # no guess at all, z from 0 to 5.8 searched: within 1000 km/s (3 steps)
    assert np.mean(dv < 1000) >= 22 / 24
    assert np.all(table["dchi2"][dv < 1000] > 0)


def test_finds_galaxy_redshifts():
    from spectralnn.simulate import simulate_galaxies

    batch = simulate_galaxies(16, seed=32, z_range=(0.02, 0.65), snr=15.0)
    table = scan_redshift(batch, spectype="GALAXY")
    z = np.asarray(batch.meta["z"])
    dv = np.abs(table["z"] - z) / (1 + z) * C_KMS
    assert np.mean(dv < 300) >= 15 / 16


def test_no_coverage_is_flagged_and_others_go_on():
    from spectralnn.simulate import simulate_galaxies

    batch = simulate_galaxies(3, seed=33, z_range=(0.1, 0.3), snr=20.0)
    batch.mask[1] = True  # nothing usable in the second spectrum
    table = scan_redshift(batch, spectype=["GALAXY"] * 3)
    assert np.isnan(table["z"][1]) and table["flags"][1] & Flag.OUT_OF_COVERAGE
    z = np.asarray(batch.meta["z"])
    assert np.all(np.abs(table["z"][[0, 2]] - z[[0, 2]]) < 0.002)


def test_bad_inputs():
    wave = np.linspace(4000, 9000, 200) * u.AA
    batch = SpectrumBatch(wave, np.ones((2, 200)), np.ones((2, 200)), flux_unit=u.one)
    with pytest.raises(ValueError, match="unknown spectype"):
        scan_redshift(batch, spectype="PLANET")
    rest = SpectrumBatch(wave, np.ones((1, 200)), np.ones((1, 200)), flux_unit=u.one,
                         frame="rest")
    with pytest.raises(InvalidSpectrumError, match="observed-frame"):
        scan_redshift(rest, spectype="QSO")
