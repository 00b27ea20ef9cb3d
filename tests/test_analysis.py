"""Tests of spectralnn.analysis (the specutils-style door) and spectralnn._regions."""

import numpy as np
import pytest
from astropy import units as u
from astropy.tests.helper import assert_quantity_allclose
from specutils import SpectralRegion

from spectralnn._regions import attach_uncertainty, mask_outside
from spectralnn.analysis import _cached_estimator, black_hole_mass
from spectralnn.batch import as_batch
from spectralnn.datasets import example_spectrum
from spectralnn.errors import BatchItemWarning, ModelFileError
from spectralnn.physics.blackhole import virial_black_hole_mass

#: observed-frame range around Hβ of the example (z = 0.283): the continuum
#: windows 4435-5535 Å rest are 5692-7104 Å observed
HBETA_REGION = SpectralRegion(5600 * u.AA, 7200 * u.AA)


@pytest.fixture(scope="module")
def example():
    return example_spectrum()


def test_virial_mass_recovers_simulation(example):
    mass = black_hole_mass(example, method="virial")
    assert mass.unit == u.dex(u.M_sun)
    assert mass.shape == ()
    assert mass.uncertainty.unit == u.dex and mass.uncertainty_type == "std"
    # the simulation's virial mass (noiseless FWHM and L5100, VP06) is 8.324
    # and the fit gives 8.382 +/- 0.023: besides the statistical error the fit
    # does not model the simulated Fe II / Balmer continuum, which
    # physics.blackhole documents as biasing L5100 by <~0.1 dex (0.05 dex in
    # M, through M ~ L^0.5) and the FWHM by a few per cent; 0.15 dex covers both
    truth = example.meta["truth"]["virial_log_mbh"]
    assert abs(mass.value - truth) < 0.15
    assert 0.005 < mass.uncertainty.value < 0.2
    # same number as the physics function it wraps
    table = virial_black_hole_mass(example)
    assert_quantity_allclose(mass, table["log_mbh"][0], rtol=0)


def test_regions_dispatch(example):
    whole = black_hole_mass(example, method="virial")
    one = black_hole_mass(example, HBETA_REGION, method="virial")
    many = black_hole_mass(example, [HBETA_REGION, HBETA_REGION], method="virial")
    assert isinstance(many, list) and len(many) == 2
    assert all(hasattr(m, "uncertainty") for m in many)
    # the region keeps every pixel the Hβ fit uses: identical result
    assert_quantity_allclose(one, whole, atol=1e-6 * u.dex(u.M_sun))
    # a region in frequency units is the same region
    freq = SpectralRegion((7200 * u.AA).to(u.THz, u.spectral()),
                          (5600 * u.AA).to(u.THz, u.spectral()))
    assert_quantity_allclose(black_hole_mass(example, freq, method="virial"), one,
                             atol=1e-6 * u.dex(u.M_sun))


def test_region_without_the_line_gives_nan_and_warns(example):
    blue = SpectralRegion(3800 * u.AA, 5500 * u.AA)  # Hβ at 6241 Å is outside
    with pytest.warns(BatchItemWarning, match="OUT_OF_COVERAGE"):
        mass = black_hole_mass(example, blue, method="virial")
    assert np.isnan(mass.value)


def test_mask_outside_masks_only_outside(example):
    batch = as_batch(example)
    masked = mask_outside(batch, SpectralRegion(5000 * u.AA, 6000 * u.AA))
    wave = masked.wavelength
    outside = (wave < 5000) | (wave > 6000)
    assert masked.mask[0, outside].all() and (masked.ivar[0, outside] == 0).all()
    np.testing.assert_array_equal(masked.mask[0, ~outside], batch.mask[0, ~outside])
    assert not batch.mask[0, outside].all()  # the input is not modified


def test_several_spectra_give_an_array(example):
    mass = black_hole_mass([example, example], method="virial")
    assert mass.shape == (2,) and mass.uncertainty.shape == (2,)
    assert mass[0] == mass[1]


def test_uncertainty_survives_conversion():
    # the value arrives in another unit: it is converted *before* the
    # uncertainty is attached, so the attribute is still there
    value = np.array([8.0]) * u.dex(u.kg)
    err = np.array([0.1]) * u.dex
    result = attach_uncertainty(value, err, u.dex(u.M_sun), u.dex)
    assert result.unit == u.dex(u.M_sun)
    assert_quantity_allclose(result, (8.0 - np.log10(1.98840987e30)) * u.dex(u.M_sun),
                             rtol=1e-8)
    assert_quantity_allclose(result.uncertainty, 0.1 * u.dex)


def test_bad_arguments(example):
    with pytest.raises(ValueError, match="method must be one of"):
        black_hole_mass(example, method="magic")
    with pytest.raises(TypeError, match="regions must be"):
        black_hole_mass(example, (5000, 6000), method="virial")
    with pytest.raises(ValueError, match="estimator applies"):
        black_hole_mass(example, method="virial", estimator="x.keras")


def test_network_without_default_weights_is_a_clear_error(example, monkeypatch):
    pytest.importorskip("keras")
    from spectralnn.estimators import MassEstimator

    # behave as a fresh install without shipped weights
    monkeypatch.setattr(MassEstimator, "default_model_name", "no-such-model")
    _cached_estimator.cache_clear()
    with pytest.raises(ModelFileError, match="no default weights"):
        black_hole_mass(example)


@pytest.mark.slow  # trains the tiny network (~10 s) unless another test did
def test_network_through_instance_and_path(example, tmp_path):
    pytest.importorskip("keras")
    from tests._tiny_mass_model import save_tiny_mass_model

    est, path = save_tiny_mass_model(tmp_path)
    direct = est.predict(example)
    mass = black_hole_mass(example, estimator=est)
    assert_quantity_allclose(mass, direct["log_mbh"][0], rtol=0)
    assert_quantity_allclose(mass.uncertainty, direct["log_mbh_err"][0], rtol=0)
    # from the saved file (cached after the first load): same numbers, float32 net
    _cached_estimator.cache_clear()
    again = black_hole_mass(example, estimator=path)
    assert_quantity_allclose(again, mass, atol=1e-5 * u.dex(u.M_sun))
    assert black_hole_mass(example, estimator=path) == again  # cached estimator
    assert _cached_estimator.cache_info().hits >= 1
