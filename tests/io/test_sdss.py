"""Tests of spectralnn.io.sdss."""

import numpy as np
import pytest
from astropy import units as u
from astropy.io import fits
from astropy.nddata import InverseVariance
from astropy.tests.helper import assert_quantity_allclose

from spectralnn.batch import FLUX_UNIT
from spectralnn.errors import SpectrumFileError
from spectralnn.io import read_sdss
from spectralnn.io.sdss import BAD_PIXEL_MASK, EXTINCTION_COEFFICIENTS, _ebv_from_extinction


def test_synthetic_spectrum_and_labels(sdss_file):
    path, loglam, flux, ivar, and_mask = sdss_file
    spec = read_sdss(path)
    # the exact float64 grid from COEFF0/COEFF1, equal to the float32 loglam
    # column within its rounding (2e-7 in log10 = 5e-7 relative)
    assert_quantity_allclose(spec.spectral_axis, 10**loglam * u.AA, rtol=1e-12)
    assert_quantity_allclose(
        spec.spectral_axis, 10 ** loglam.astype(np.float32) * u.AA, rtol=1e-6
    )
    assert spec.flux.unit == FLUX_UNIT
    np.testing.assert_allclose(spec.flux.value, flux, rtol=1e-6)
    assert isinstance(spec.uncertainty, InverseVariance)
    np.testing.assert_allclose(spec.uncertainty.array, ivar)
    # bit 4 (MANYBADCOLUMNS) is informational: not masked, but kept in meta
    np.testing.assert_array_equal(spec.mask, (and_mask & BAD_PIXEL_MASK) != 0)
    np.testing.assert_array_equal(spec.meta["and_mask"], and_mask)
    meta = spec.meta
    assert meta["z"] == pytest.approx(0.5, rel=1e-6)
    assert meta["z_err"] == pytest.approx(1e-4, rel=1e-6)
    assert (meta["class"], meta["subclass"]) == ("QSO", "BROADLINE")  # stripped
    assert (meta["plate"], meta["mjd"], meta["fiber"], meta["zwarning"]) == (
        1234,
        55555,
        12,
        4,
    )
    # fibre position from HDU 2, not the primary header's plate centre
    assert (meta["ra"], meta["dec"]) == (10.5, 20.5)
    assert meta["object_id"] == "SDSS_1234-55555-12"
    assert meta["source"] == "spec-1234-55555-0012.fits"
    assert (meta["survey"], meta["instrument"]) == ("boss", "BOSS")
    assert "ebv" not in meta  # a SPECOBJ table has no EXTINCTION column
    # photometry: nanomaggies, errors from the inverse variances (ivar 4 -> 0.5)
    assert meta["spectroflux_g"] == 2.0
    assert meta["spectroflux_g_err"] == 0.5
    assert np.isnan(meta["spectroflux_z_err"])  # ivar 0: unknown error
    assert_quantity_allclose(
        meta["photometry"]["spectroflux"], [1, 2, 3, 4, 5] * u.nanomaggy
    )


def test_spall_ebv_and_instrument(tmp_path, sdss_factory):
    path, *_ = sdss_factory(tmp_path / "spec-1234-55555-0012.fits", spall=True)
    meta = read_sdss(path).meta
    # EXTINCTION was written as 0.05 * SF11 coefficients (float32: 1e-6 relative)
    assert meta["ebv"] == pytest.approx(0.05, rel=1e-5)
    assert meta["instrument"] == "BOSS"  # inferred from RUN2D v5_7_0
    assert meta["label_hdu"] == "SPALL"
    assert "survey" not in meta


@pytest.mark.parametrize("name", ["SF11", "SFD98"])
def test_ebv_from_extinction_both_coefficient_sets(name):
    ext = 0.123 * EXTINCTION_COEFFICIENTS[name]
    assert _ebv_from_extinction(ext) == pytest.approx(0.123, rel=1e-9)


def test_ebv_from_inconsistent_extinction_is_none():
    assert _ebv_from_extinction([0.1, 0.1, 0.1, 0.1, 0.1]) is None


def test_not_an_sdss_file(tmp_path):
    path = tmp_path / "image.fits"
    fits.PrimaryHDU(np.ones(10)).writeto(path)
    with pytest.raises(SpectrumFileError, match="image.fits.*not an SDSS"):
        read_sdss(path)


def test_spectrum_enters_a_batch_with_its_labels(sdss_file):
    from spectralnn import SpectrumBatch

    batch = SpectrumBatch.from_spectrum(read_sdss(sdss_file[0]))
    row = batch.meta[0]
    assert row["object_id"] == "SDSS_1234-55555-12"
    assert row["z"] == pytest.approx(0.5, rel=1e-6)
    assert (row["ra"], row["dec"]) == (10.5, 20.5)
    assert batch.mask[0, 20:23].all() and not batch.mask[0, 10:15].any()
    assert (batch.ivar[0, 20:23] == 0).all()


def test_real_files_match_the_index(real_data, sdss_index):
    """Every SDSS/BOSS file: labels from HDU 2 equal spectra_index.csv."""
    for row in sdss_index:
        spec = read_sdss(real_data / row["path"])
        meta = spec.meta
        # label_z is written with 6 significant digits
        assert meta["z"] == pytest.approx(float(row["label_z"]), rel=1e-5, abs=1e-6), (
            row
        )
        assert meta["class"] == row["label_class"], row["path"]
        assert meta["subclass"] == row["label_subclass"], row["path"]
        assert meta["zwarning"] == int(row["label_zwarning"]), row["path"]
        assert meta["object_id"] == f"SDSS_{row['plate']}-{row['mjd']}-{row['fiber']}"
        assert meta["ra"] == pytest.approx(float(row["ra"]), abs=1e-4)
        assert meta["dec"] == pytest.approx(float(row["dec"]), abs=1e-4)
        assert len(spec.flux) == int(row["npix"])
        assert spec.spectral_axis[0].value == pytest.approx(
            float(row["wave_min"]), abs=0.01
        )
        assert isinstance(spec.uncertainty, InverseVariance)
        assert spec.mask.shape == spec.flux.shape
        if meta["label_hdu"] == "SPALL":
            # DR17 EXTINCTION columns: the SF11 coefficients give one E(B-V) per file
            assert 0 <= meta["ebv"] < 1, row["path"]


def test_real_ivar_and_mask_carried(real_data):
    path = real_data / "sdss/pyqsofit_examples/spec-0332-52367-0639.fits"
    spec = read_sdss(path)
    with fits.open(path) as hdul:
        coadd = hdul[1].data
        np.testing.assert_array_equal(spec.uncertainty.array, coadd["ivar"])
        np.testing.assert_array_equal(spec.mask, (coadd["and_mask"] & BAD_PIXEL_MASK) != 0)
    snr = np.median(
        (spec.flux.value * np.sqrt(spec.uncertainty.array))[spec.uncertainty.array > 0]
    )
    assert snr == pytest.approx(29.26, rel=0.01)  # median_snr of spectra_index.csv
