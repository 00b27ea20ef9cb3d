"""Tests of spectralnn.preprocessing.redshift."""

import numpy as np
import pytest
from astropy import units as u
from astropy.table import QTable
from astropy.tests.helper import assert_quantity_allclose
from numpy.testing import assert_allclose, assert_array_equal
from specutils import Spectrum

from spectralnn.batch import FLUX_UNIT, SpectrumBatch
from spectralnn.errors import BatchItemWarning, InvalidSpectrumError
from spectralnn.flags import Flag
from spectralnn.preprocessing.redshift import (
    MIN_REDSHIFT,
    rest_frame_batch,
    to_observed_frame,
    to_rest_frame,
)
from spectralnn.preprocessing.resample import pixel_edges


@pytest.fixture
def batch(quasar_batch_arrays):
    wave, flux, ivar = quasar_batch_arrays
    meta = QTable({"z": [0.3, 0.3, 1.2, 0.05]})
    return SpectrumBatch(wave * u.AA, flux * FLUX_UNIT, ivar, meta=meta)


def test_rest_frame_shift_and_scaling(batch, quasar_model):
    rest = to_rest_frame(batch)
    z = np.array([0.3, 0.3, 1.2, 0.05])
    assert rest.frame == "rest"
    assert not rest.shared_grid
    assert_allclose(rest.wavelength, batch.wavelength[None, :] / (1 + z)[:, None])
    assert_allclose(rest.flux, batch.flux * (1 + z)[:, None])
    assert_allclose(rest.ivar, batch.ivar / (1 + z)[:, None] ** 2)
    assert_allclose(rest.meta["z"], z)
    # ∫ f dλ over each whole spectrum is unchanged (photons are conserved)
    before = np.sum(batch.flux * np.diff(pixel_edges(batch.wavelength)), axis=1)
    after = np.sum(rest.flux * np.diff(pixel_edges(rest.wavelength), axis=1), axis=1)
    assert_allclose(after, before, rtol=1e-12)
    # a line at its rest wavelength: [O III] 5008 peak of the z=0.3 model
    peak = rest.wavelength[0][np.argmax(quasar_model(batch.wavelength))]
    assert abs(peak - 5008.24) < 2.0  # within one 1.5 Å pixel


def test_same_redshift_keeps_shared_grid(batch):
    rest = to_rest_frame(batch, z=0.5)
    assert rest.shared_grid
    assert_allclose(rest.wavelength, batch.wavelength / 1.5)
    assert_allclose(rest.meta["z"], 0.5)


def test_round_trip(batch):
    back = to_observed_frame(to_rest_frame(batch))
    assert back.frame == "observed"
    assert_allclose(back.wavelength_2d, batch.wavelength_2d, rtol=1e-14)
    assert_allclose(back.flux, batch.flux, rtol=1e-14)
    assert_allclose(back.ivar, batch.ivar, rtol=1e-14)
    assert_array_equal(back.mask, batch.mask)


def test_single_spectrum_round_trip(batch):
    spectrum = batch.to_spectrum(2)
    rest = to_rest_frame(spectrum)
    assert isinstance(rest, Spectrum)
    assert rest.meta["frame"] == "rest"
    assert_quantity_allclose(rest.spectral_axis, spectrum.spectral_axis / 2.2)
    assert_quantity_allclose(rest.flux, spectrum.flux * 2.2)
    # the frame travels with the Spectrum: a second shift is refused
    with pytest.raises(InvalidSpectrumError, match="already in the rest frame"):
        to_rest_frame(rest)
    back = to_observed_frame(rest)
    assert back.meta["frame"] == "observed"
    assert_quantity_allclose(back.flux, spectrum.flux, rtol=1e-14)
    assert_quantity_allclose(back.spectral_axis, spectrum.spectral_axis, rtol=1e-14)


@pytest.mark.parametrize("bad_z", [np.nan, -0.5, None])
def test_invalid_redshift_single_raises(quasar_batch_arrays, bad_z):
    wave, flux, ivar = quasar_batch_arrays
    spectrum = Spectrum(flux=flux[0] * FLUX_UNIT, spectral_axis=wave * u.AA)
    with pytest.raises(InvalidSpectrumError, match="redshift"):
        to_rest_frame(spectrum, z=bad_z)


def test_invalid_redshift_batch_flags(batch):
    z = np.array([0.3, np.nan, -0.2, 0.05])
    with pytest.warns(BatchItemWarning, match="2 spectra have no valid redshift"):
        rest = to_rest_frame(batch, z=z)
    for i in (1, 2):
        assert rest.flags[i] & Flag.NO_REDSHIFT
        assert rest.mask[i].all() and not rest.ivar[i].any()
        assert np.isnan(rest.meta["z"][i])
    assert rest.flags[0] == 0 and not rest.mask[0].any()
    assert_allclose(rest.flux[3], batch.flux[3] * 1.05)


def test_small_negative_redshift_accepted(batch):
    # a blueshifted star (-300 km/s) is a valid redshift
    rest = to_rest_frame(batch, z=-0.001)
    assert_allclose(rest.wavelength, batch.wavelength / 0.999)
    assert MIN_REDSHIFT < -0.001


def test_observed_frame_needs_rest(batch):
    with pytest.raises(InvalidSpectrumError, match="already in the observed frame"):
        to_observed_frame(batch, z=0.3)


def test_rest_frame_batch_on_common_grid(batch, quasar_model):
    grid = np.arange(3000.0, 5000.0, 2.0) * u.AA
    out = rest_frame_batch(batch, grid)
    assert out.shared_grid and out.frame == "rest"
    assert_allclose(out.wavelength, grid.value)
    # the noise-free model at rest, resampled, matches the data within the noise
    z = np.array([0.3, 0.3, 1.2, 0.05])
    obs_edges = pixel_edges(batch.wavelength)
    for i in (0, 3):
        good = ~out.mask[i]
        assert good.sum() > 100
        model_rest = quasar_model(grid.value * (1 + z[i]), z=0.3) * (1 + z[i])
        pulls = (out.flux[i] - model_rest)[good] * np.sqrt(out.ivar[i][good])
        # broad lines are smooth on 2 Å: pulls are unit-normal apart from the
        # model's curvature within a pixel
        assert abs(np.std(pulls) - 1) < 0.1
        covered = (grid.value * (1 + z[i]) > obs_edges[0]) & (
            grid.value * (1 + z[i]) < obs_edges[-1])
        assert good.sum() >= covered.sum() - 2
    # z=1.2 spectrum covers rest 1636-4045 Å only
    assert out.mask[2][grid.value > 4100].all()


def test_rest_frame_batch_default_grid(batch):
    out = rest_frame_batch(batch)
    rest = to_rest_frame(batch)
    assert out.wavelength[0] <= rest.wavelength.min()
    assert out.wavelength[-1] >= rest.wavelength.max()
    assert_allclose(np.diff(np.log10(out.wavelength)), 1e-4, rtol=1e-6)


def test_spectrum1d_chain_keeps_frame():
    # the deprecated Spectrum1D name still works, and the frame survives a chain
    # of Spectrum -> Spectrum steps (it travels in spectrum.meta['frame'])
    from astropy.nddata import InverseVariance
    from astropy.utils.exceptions import AstropyDeprecationWarning
    from specutils import Spectrum1D

    from spectralnn.preprocessing import deredden, resample

    wave = np.linspace(5000.0, 6000.0, 200) * u.AA
    with pytest.warns(AstropyDeprecationWarning):
        spectrum = Spectrum1D(flux=np.ones(200) * FLUX_UNIT, spectral_axis=wave,
                              uncertainty=InverseVariance(np.ones(200) / FLUX_UNIT**2),
                              meta={"z": 0.1, "ebv": 0.0})
    rest = resample(to_rest_frame(deredden(spectrum)), np.arange(4600, 5400, 10) * u.AA)
    assert isinstance(rest, Spectrum)
    assert rest.meta["frame"] == "rest"
    assert rest.meta["z"] == 0.1
    # flat f_lambda = 1 observed is 1.1 in the rest frame
    assert_allclose(rest.flux.value[~rest.mask], 1.1, rtol=1e-12)
