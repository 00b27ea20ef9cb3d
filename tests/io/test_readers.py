"""Tests of spectralnn.io.readers."""

import warnings

import numpy as np
import pytest
from specutils import Spectrum, SpectrumList

from spectralnn import SpectrumBatch
from spectralnn.batch import as_batch
from spectralnn.errors import BatchItemWarning, SpectrumFileError
from spectralnn.flags import Flag
from spectralnn.io import identify_format, read_spectra, read_spectrum


def _truncated_copy(src, dst, fraction=0.5):
    data = src.read_bytes() if hasattr(src, "read_bytes") else open(src, "rb").read()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


def test_identify_and_read_each_format(sdss_file, desi_file, tmp_path):
    assert identify_format(sdss_file[0]) == "sdss"
    assert identify_format(desi_file[0]) == "desi"
    assert isinstance(read_spectrum(sdss_file[0]), Spectrum)
    spectra = read_spectrum(desi_file[0])
    assert isinstance(spectra, SpectrumList) and len(spectra) == 3
    assert spectra[1].meta["object_id"] == "DESI_101"
    with pytest.raises(ValueError, match="format must be one of"):
        read_spectrum(sdss_file[0], format="hdf5")


@pytest.mark.parametrize("fraction", [0.0, 0.02, 0.5, 0.9])
def test_truncated_file_raises_naming_it(sdss_file, tmp_path, fraction):
    bad = _truncated_copy(sdss_file[0], tmp_path / "cut.fits", fraction)
    with pytest.raises(SpectrumFileError, match="cut.fits"):
        read_spectrum(bad)


def test_missing_and_foreign_files(tmp_path):
    with pytest.raises(SpectrumFileError, match="nothere.fits: no such file"):
        read_spectrum(tmp_path / "nothere.fits")
    junk = tmp_path / "junk.fits"
    junk.write_bytes(b"not a fits file" * 300)
    with pytest.raises(SpectrumFileError, match="junk.fits.*not a readable FITS"):
        read_spectrum(junk)
    table = tmp_path / "table.fits"
    from astropy.table import Table

    Table({"a": [1, 2]}).write(table)
    with pytest.raises(SpectrumFileError, match="table.fits: unknown spectrum format"):
        read_spectrum(table)


def test_read_spectra_aligns_sdss_log_grids(tmp_path, sdss_factory):
    # the second file starts 30 pixels (3e-3 in log10) later on the same grid
    a = sdss_factory(tmp_path / "spec-1-1-1.fits", loglam0=3.6)
    b = sdss_factory(tmp_path / "spec-2-2-2.fits", loglam0=3.603, z=1.0, seed=3)
    batch = read_spectra([a[0], b[0]])
    assert batch.n_pixels == 230
    np.testing.assert_allclose(batch.flux[0, :200], a[2], rtol=1e-6)
    np.testing.assert_allclose(batch.flux[1, 30:], b[2], rtol=1e-6)
    assert batch.mask[1, :30].all() and batch.mask[0, 200:].all()
    np.testing.assert_allclose(batch.meta["z"], [0.5, 1.0], rtol=1e-6)


def test_read_spectra_flags_a_corrupt_file(tmp_path, sdss_factory, desi_file):
    good = [sdss_factory(tmp_path / f"spec-{i}.fits", seed=i)[0] for i in range(2)]
    bad = _truncated_copy(good[0], tmp_path / "broken.fits")
    paths = [good[0], bad, tmp_path / "absent.fits", good[1]]
    with pytest.warns(BatchItemWarning, match="could not be read") as record:
        batch = read_spectra(paths)
    assert len(record) == 2
    assert len(batch) == 4
    flags = batch.flags
    assert [bool(f & Flag.READ_ERROR) for f in flags] == [False, True, True, False]
    assert list(batch.meta["source"]) == [
        "spec-0.fits",
        "broken.fits",
        "absent.fits",
        "spec-1.fits",
    ]
    assert batch.mask[1:3].all() and not batch.ivar[1:3].any()
    assert not batch.mask[[0, 3]].all(axis=1).any()
    assert "broken.fits" in batch.meta["read_error"][1]
    assert batch.meta["read_error"][0] == ""
    assert batch.meta["z"][0] == pytest.approx(0.5, rel=1e-6)
    assert np.isnan(batch.meta["z"][1])
    with pytest.raises(SpectrumFileError, match="broken.fits"):
        read_spectra(paths, on_error="raise")


def test_read_spectra_all_failed(tmp_path):
    with (
        pytest.warns(BatchItemWarning),
        pytest.raises(SpectrumFileError, match="none of the 1 files"),
    ):
        read_spectra([tmp_path / "a.fits"])


def test_desi_targets_become_rows(desi_file, sdss_file):
    batch = read_spectra([desi_file[0]])
    assert isinstance(batch, SpectrumBatch) and len(batch) == 3
    assert list(batch.meta["object_id"]) == ["DESI_100", "DESI_101", "DESI_102"]


def test_as_batch_reads_paths(sdss_file):
    batch = as_batch([str(sdss_file[0])])
    assert batch.meta["object_id"][0] == "SDSS_1234-55555-12"


def test_real_mixed_sdss_and_boss(real_data):
    files = [
        real_data / "sdss/lowz_broadline_agn/sdss_legacy/spec-2015-53819-0143.fits",
        real_data / "sdss/lowz_broadline_agn/boss_repeat/spec-10247-58162-0218.fits",
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        batch = read_spectra(files)
    # one log grid covering both (BOSS reaches 3597-10332 A, SDSS 3803-9192 A)
    assert batch.wavelength[0] == pytest.approx(3597, abs=1)
    assert batch.wavelength[-1] == pytest.approx(10332, abs=2)
    np.testing.assert_allclose(np.diff(np.log10(batch.wavelength)), 1e-4, rtol=1e-3)
    # same object, two epochs: the pipeline redshifts agree (MANIFEST: 0.4476, 0.4471)
    assert list(batch.meta["instrument"]) == ["SDSS", "BOSS"]
    assert abs(batch.meta["z"][0] - batch.meta["z"][1]) < 1e-3
    assert np.isnan(batch.meta["ebv"][0]) and batch.meta["ebv"][1] > 0
    # the SDSS spectrum's pixels are copied unchanged into the aligned grid
    spec = read_spectrum(files[0])
    start = np.argmin(np.abs(batch.wavelength - spec.spectral_axis.value[0]))
    np.testing.assert_allclose(
        batch.flux[0, start : start + len(spec.flux)], spec.flux.value, rtol=1e-6
    )


def test_real_ph957_via_read_spectrum(real_data):
    spec = read_spectrum(real_data / "other/keck_esi_ph957/PH957_f.fits")
    assert spec.meta["error_source"] == "PH957_e.fits"
    assert 3811 < spec.spectral_axis.value[0] < 3812
