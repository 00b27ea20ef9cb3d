import numpy as np
import pytest
from astropy import units as u
from astropy.nddata import InverseVariance, StdDevUncertainty
from specutils import Spectrum

from spectralnn import SpectrumBatch
from spectralnn.batch import FLUX_UNIT, as_batch
from spectralnn.errors import (
    InvalidSpectrumError,
    MaskedPixelsWarning,
    SpectralUnitsError,
)
from spectralnn.flags import Flag

WAVE = np.linspace(4000.0, 5000.0, 50) * u.AA


def test_roundtrip_spectrum():
    rng = np.random.default_rng(1)
    flux = rng.normal(5, 1, 50) * FLUX_UNIT
    spec = Spectrum(flux=flux, spectral_axis=WAVE,
                    uncertainty=StdDevUncertainty(np.full(50, 0.5) * FLUX_UNIT),
                    meta={"z": 0.3})
    batch = SpectrumBatch.from_spectrum(spec)
    np.testing.assert_allclose(batch.ivar, 4.0)
    assert batch.meta_column("z")[0] == 0.3
    back = batch.to_spectrum(0)
    assert isinstance(back.uncertainty, InverseVariance)
    np.testing.assert_array_equal(back.flux.value, flux.value)
    assert back.meta["z"] == 0.3


def test_fnu_is_converted_to_flambda():
    spec = Spectrum(flux=np.ones(50) * u.mJy, spectral_axis=WAVE)
    batch = SpectrumBatch.from_spectrum(spec)
    expected = (1 * u.mJy).to(FLUX_UNIT, u.spectral_density(WAVE)).value
    np.testing.assert_allclose(batch.flux[0], expected, rtol=1e-12)
    assert batch.flags[0] & Flag.ESTIMATED_UNCERTAINTY


def test_missing_units():
    with pytest.raises(SpectralUnitsError, match="wavelength has no unit"):
        SpectrumBatch(np.arange(5.0) + 1, np.ones(5), flux_unit=FLUX_UNIT)
    with pytest.raises(SpectralUnitsError, match="flux has no unit"):
        SpectrumBatch(WAVE, np.ones(50))


@pytest.mark.parametrize("wave, match", [
    (np.array([1.0, 3.0, 2.0, 4.0]), "not sorted"),
    (np.array([1.0, 2.0, 2.0, 4.0]), "duplicated"),
])
def test_bad_wavelengths(wave, match):
    with pytest.raises(InvalidSpectrumError, match=match):
        SpectrumBatch(wave * u.AA, np.ones(4), np.ones(4), flux_unit=u.one)


def test_descending_axis_is_reversed():
    b = SpectrumBatch(WAVE[::-1], np.arange(50.0), np.ones(50), flux_unit=u.one)
    assert np.all(np.diff(b.wavelength) > 0)
    assert b.flux[0, 0] == 49.0


def test_invalid_values_raise_for_single_spectrum():
    flux = np.ones(50)
    flux[3] = np.nan
    spec = Spectrum(flux=flux * FLUX_UNIT, spectral_axis=WAVE,
                    uncertainty=InverseVariance(np.ones(50) / FLUX_UNIT**2))
    # specutils masks non-finite flux itself: the pixel is masked, not used
    batch = as_batch(spec)
    assert batch.mask[0, 3] and batch.ivar[0, 3] == 0
    with pytest.raises(InvalidSpectrumError, match="NaN or infinite"):
        SpectrumBatch(WAVE, flux, np.ones(50), flux_unit=FLUX_UNIT, on_invalid="raise")
    neg = Spectrum(flux=np.ones(50) * FLUX_UNIT, spectral_axis=WAVE,
                   uncertainty=InverseVariance(-np.ones(50) / FLUX_UNIT**2))
    with pytest.raises(InvalidSpectrumError, match="negative"):
        as_batch(neg)
    zero = Spectrum(flux=np.ones(50) * FLUX_UNIT, spectral_axis=WAVE,
                    uncertainty=InverseVariance(np.zeros(50) / FLUX_UNIT**2))
    with pytest.raises(InvalidSpectrumError, match="no usable pixel"):
        as_batch(zero)


def test_invalid_values_are_masked_and_flagged_in_a_batch():
    flux = np.ones((3, 50))
    ivar = np.ones((3, 50))
    flux[0, 5] = np.inf
    ivar[1] = 0.0
    ivar[2, 7] = -1.0
    with pytest.warns(MaskedPixelsWarning, match="2 pixels in 2 spectra"):
        b = SpectrumBatch(WAVE, flux, ivar, flux_unit=FLUX_UNIT)
    assert b.mask[0, 5] and b.ivar[0, 5] == 0 and b.flux[0, 5] == 0
    assert b.flags[0] == Flag.MASKED_PIXELS
    assert b.flags[1] == Flag.NO_DATA
    assert b.flags[2] == Flag.MASKED_PIXELS | Flag.NEGATIVE_IVAR


def test_shape_mismatch():
    with pytest.raises(InvalidSpectrumError, match="does not match"):
        SpectrumBatch(WAVE[:10], np.ones(50), flux_unit=u.one)
    with pytest.raises(InvalidSpectrumError, match="ivar shape"):
        SpectrumBatch(WAVE, np.ones((2, 50)), np.ones((3, 50)), flux_unit=u.one)
    # f_nu flux is converted per pixel: the ivar shape is checked first
    with pytest.raises(InvalidSpectrumError, match="ivar shape"):
        SpectrumBatch(WAVE, np.ones((2, 50)) * u.Jy, np.ones((3, 50)))


def test_from_spectra_aligns_log_grids_exactly():
    loglam = 3.55 + 1e-4 * np.arange(300)
    w = 10**loglam * u.AA
    a = Spectrum(flux=np.arange(200.0) * FLUX_UNIT, spectral_axis=w[:200],
                 uncertainty=InverseVariance(np.ones(200) / FLUX_UNIT**2))
    b = Spectrum(flux=np.arange(250.0) * FLUX_UNIT, spectral_axis=w[50:],
                 uncertainty=InverseVariance(np.ones(250) / FLUX_UNIT**2))
    batch = SpectrumBatch.from_spectra([a, b])
    assert batch.flux.shape == (2, 300)
    np.testing.assert_allclose(batch.wavelength, w.value, rtol=1e-12)
    assert batch.mask[0, 200:].all() and not batch.mask[0, :200].any()
    np.testing.assert_array_equal(batch.flux[1, 50:], np.arange(250.0))
    assert (batch.ivar[1, :50] == 0).all()


def test_spectrum1d_is_accepted():
    from specutils import Spectrum1D

    with pytest.warns(Warning):
        s = Spectrum1D(flux=np.ones(50) * FLUX_UNIT, spectral_axis=WAVE)
    assert len(as_batch(s)) == 1
