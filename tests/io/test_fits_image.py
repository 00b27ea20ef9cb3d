"""Tests of spectralnn.io.fits_image."""

import numpy as np
import pytest
from astropy import units as u
from astropy.io import fits
from astropy.nddata import StdDevUncertainty
from astropy.tests.helper import assert_quantity_allclose

from spectralnn.errors import SpectralNNWarning, SpectrumFileError
from spectralnn.io import read_fits_image_spectrum


def _write(path, data, **cards):
    hdu = fits.PrimaryHDU(np.asarray(data, dtype=np.float32))
    for key, value in cards.items():
        hdu.header[key.replace("_", "-") if key == "DC_FLAG" else key] = value
    hdu.writeto(path)
    return path


def test_linear_grid_and_sibling_error_file(tmp_path):
    flux = np.arange(1.0, 11.0)
    cards = dict(
        CRVAL1=5000.0, CDELT1=2.0, CRPIX1=3.0, CTYPE1="LINEAR", BUNIT="erg/cm2/s/A"
    )
    _write(tmp_path / "obj_f.fits", flux, **cards)
    err = np.full(10, 0.5)
    err[4] = 0.0  # zero error: a bad pixel
    _write(tmp_path / "obj_e.fits", err, **cards)
    spec = read_fits_image_spectrum(tmp_path / "obj_f.fits")
    # pixel p (1-based) is at CRVAL1 + CDELT1 * (p - CRPIX1): 4996 for p = 1
    assert_quantity_allclose(spec.spectral_axis, (4996.0 + 2.0 * np.arange(10)) * u.AA)
    assert spec.flux.unit == u.erg / u.cm**2 / u.s / u.AA  # 'A' is Angstrom here
    assert isinstance(spec.uncertainty, StdDevUncertainty)
    np.testing.assert_array_equal(spec.mask, np.arange(10) == 4)
    assert spec.meta["error_source"] == "obj_e.fits"
    assert (
        read_fits_image_spectrum(tmp_path / "obj_f.fits", error=None).uncertainty
        is None
    )


def test_error_file_on_another_grid_is_refused(tmp_path):
    _write(tmp_path / "a_f.fits", np.ones(10), CRVAL1=5000.0, CDELT1=2.0, BUNIT="Jy")
    _write(tmp_path / "a_e.fits", np.ones(10), CRVAL1=5001.0, CDELT1=2.0, BUNIT="Jy")
    with pytest.raises(SpectrumFileError, match="a_e.fits.*not on the grid"):
        read_fits_image_spectrum(tmp_path / "a_f.fits")


def test_no_bunit_is_dimensionless_with_warning(tmp_path):
    path = _write(tmp_path / "x.fits", np.ones(5), CRVAL1=4000.0, CDELT1=1.0)
    with pytest.warns(SpectralNNWarning, match="no BUNIT"):
        spec = read_fits_image_spectrum(path)
    assert spec.flux.unit == u.dimensionless_unscaled
    assert read_fits_image_spectrum(path, flux_unit=u.Jy).flux.unit == u.Jy


def test_standard_wcs_log(tmp_path):
    # FITS paper III WAVE-LOG: lambda = CRVAL1 * exp(CDELT1 / CRVAL1 * (p - CRPIX1))
    path = _write(
        tmp_path / "w.fits",
        np.ones(5),
        CRVAL1=5000.0,
        CDELT1=5000.0 * 1e-3,
        CRPIX1=1.0,
        CTYPE1="WAVE-LOG",
        CUNIT1="Angstrom",
        BUNIT="Jy",
    )
    spec = read_fits_image_spectrum(path)
    assert_quantity_allclose(
        spec.spectral_axis, 5000 * np.exp(1e-3 * np.arange(5)) * u.AA, rtol=1e-10
    )


def test_not_a_1d_image(tmp_path):
    path = tmp_path / "img.fits"
    fits.PrimaryHDU(np.ones((4, 4))).writeto(path)
    with pytest.raises(SpectrumFileError, match="img.fits.*not a 1-D spectrum"):
        read_fits_image_spectrum(path)


def test_real_keck_esi_ph957(real_data):
    folder = real_data / "other/keck_esi_ph957"
    spec = read_fits_image_spectrum(
        folder / "PH957_f.fits", flux_unit=u.dimensionless_unscaled
    )
    # DC-FLAG = 1: log-linear; MANIFEST gives 3812-10932 A and 21059 pixels
    assert len(spec.flux) == 21059
    assert_quantity_allclose(
        spec.spectral_axis[[0, -1]], [3811.51, 10931.57] * u.AA, atol=0.01 * u.AA
    )
    dlog = np.diff(np.log10(spec.spectral_axis.value))
    np.testing.assert_allclose(dlog, 2.172975688579e-05, rtol=1e-6)
    # continuum-normalised: median 0.985 (MANIFEST); errors from PH957_e.fits
    assert np.median(spec.flux.value) == pytest.approx(0.985, abs=0.001)
    assert spec.meta["error_source"] == "PH957_e.fits"
    good = ~spec.mask
    assert np.median(spec.uncertainty.array[good]) == pytest.approx(0.017, abs=0.002)
    assert spec.meta["ra"] == pytest.approx(15.13917, abs=1e-4)  # 01:00:33.40
    assert spec.meta["dec"] == pytest.approx(13.00278, abs=1e-4)  # +13:00:10.0
