"""Tests of spectralnn.io.desi."""

import numpy as np
import pytest
from astropy import units as u
from astropy.tests.helper import assert_quantity_allclose

from spectralnn.batch import FLUX_UNIT
from spectralnn.errors import InvalidSpectrumError, SpectralNNWarning, SpectrumFileError
from spectralnn.flags import Flag
from spectralnn.io import merge_arms, read_desi_coadd


def test_merge_arms_weighted_mean_in_overlap():
    wb, wr = 5000 + 0.8 * np.arange(10), 5000 + 0.8 * np.arange(6, 16)
    fb, fr = np.full((2, 10), 1.0), np.full((2, 10), 4.0)
    ib, ir = np.full((2, 10), 1.0), np.full((2, 10), 3.0)
    mr = np.zeros((2, 10), bool)
    mr[1, 0] = True  # a bad R pixel in the overlap: B alone decides there
    mb = np.zeros((2, 10), bool)
    wave, flux, ivar, mask = merge_arms([wb, wr], [fb, fr], [ib, ir], [mb, mr])
    assert wave.shape == (16,)
    np.testing.assert_allclose(np.diff(wave), 0.8)
    # overlap pixels 6-9: (1*1 + 3*4) / (1 + 3) = 3.25, ivar 1 + 3
    np.testing.assert_allclose(flux[0, 6:10], 3.25)
    np.testing.assert_allclose(ivar[0, 6:10], 4.0)
    assert flux[1, 6] == 1.0 and ivar[1, 6] == 1.0
    np.testing.assert_allclose(flux[0, :6], 1.0)
    np.testing.assert_allclose(flux[0, 10:], 4.0)
    assert not mask.any()


def test_merge_arms_masks_pixels_no_arm_covers_well():
    w = np.arange(4.0)
    _, flux, ivar, mask = merge_arms(
        [w], [np.array([[1.0, np.nan, 3.0, 4.0]])], [np.array([[1.0, 1.0, 0.0, 1.0]])]
    )
    np.testing.assert_array_equal(mask, [[False, True, True, False]])
    assert np.all(np.isfinite(flux)) and ivar[0, 1] == 0


def test_merge_arms_refuses_off_lattice_arms():
    with pytest.raises(InvalidSpectrumError, match="off the common wavelength lattice"):
        merge_arms(
            [np.arange(5.0), np.arange(3.5, 8.5)],
            [np.ones((1, 5))] * 2,
            [np.ones((1, 5))] * 2,
        )
    with pytest.raises(InvalidSpectrumError, match="common step"):
        merge_arms(
            [np.arange(5.0), np.arange(0, 10.0, 2)],
            [np.ones((1, 5))] * 2,
            [np.ones((1, 5))] * 2,
        )


def test_synthetic_coadd(desi_file):
    path, truth = desi_file
    batch = read_desi_coadd(path)
    assert len(batch) == 3 and batch.flux_unit == FLUX_UNIT
    # B 3600-3680, R 3672-3752, Z 3744-3791.2 on one 0.8 A lattice: 240 pixels
    assert batch.n_pixels == 240
    assert_quantity_allclose(batch.spectral_axis[[0, -1]], [3600.0, 3791.2] * u.AA)
    wb, fb, ib, _ = truth["B"]
    wr, fr, ir, _ = truth["R"]
    # B-R overlap: pixels 90-100; ivar-weighted mean with weights 1 and 3
    expected = (fb[:, 90:101] * 1.0 + fr[:, :11] * 3.0) / 4.0
    np.testing.assert_allclose(batch.flux[:, 90:101], expected, rtol=1e-6)
    np.testing.assert_allclose(batch.ivar[:, 90:101], 4.0)
    np.testing.assert_allclose(batch.flux[:, :90], fb[:, :90], rtol=1e-6)
    meta = batch.meta
    np.testing.assert_array_equal(meta["targetid"], [100, 101, 102])
    assert list(meta["object_id"]) == ["DESI_100", "DESI_101", "DESI_102"]
    assert list(meta["objtype"]) == ["TGT"] * 3
    np.testing.assert_allclose(meta["ebv"], 0.03, rtol=1e-6)
    assert list(meta["survey"]) == ["sv3"] * 3
    np.testing.assert_array_equal(meta["fiberstatus"], 0)


def test_select_targets_and_rows(desi_file):
    path, truth = desi_file
    batch = read_desi_coadd(path, targets=[102, 100])
    np.testing.assert_array_equal(batch.meta["targetid"], [102, 100])
    np.testing.assert_allclose(batch.flux[0, :90], truth["B"][1][2, :90], rtol=1e-6)
    assert list(read_desi_coadd(path, rows=[1]).meta["targetid"]) == [101]
    with pytest.raises(KeyError, match="999"):
        read_desi_coadd(path, targets=[999])


def test_fallback_without_bunit_warns(tmp_path, desi_factory):
    path, truth = desi_factory(tmp_path / "stripped.fits", bunit=False, fibermap=False)
    with pytest.warns(SpectralNNWarning, match="no BUNIT"):
        batch = read_desi_coadd(path)
    assert batch.flux_unit == FLUX_UNIT
    assert list(batch.meta["object_id"]) == [f"stripped.fits[{i}]" for i in range(3)]
    assert "targetid" not in batch.meta.colnames
    np.testing.assert_allclose(batch.flux[:, :90], truth["B"][1][:, :90], rtol=1e-6)
    with (
        pytest.raises(SpectrumFileError, match="no FIBERMAP"),
        pytest.warns(SpectralNNWarning, match="no BUNIT"),
    ):
        read_desi_coadd(path, targets=[1])


def test_not_desi(sdss_file):
    with pytest.raises(SpectrumFileError, match="not a DESI"):
        read_desi_coadd(sdss_file[0])


def test_real_coadd_with_redrock(real_data):
    folder = real_data / "desi/fastspecfit"
    batch = read_desi_coadd(
        folder / "coadd-4-80613-thru20210324.fits",
        redrock=folder / "redrock-4-80613-thru20210324.fits",
    )
    row = batch.meta[0]
    assert row["targetid"] == 39633345008634465
    assert row["class"] == "GALAXY" and row["zwarning"] == 0
    assert row["z"] == pytest.approx(0.36874, abs=1e-5)  # MANIFEST label
    assert row["fiberstatus"] == 0 and row["objtype"] == "TGT"
    assert_quantity_allclose(batch.spectral_axis[[0, -1]], [3600.0, 9824.0] * u.AA)
    np.testing.assert_allclose(np.diff(batch.wavelength), 0.8, atol=1e-6)


def _arm(spectra, band):
    return next(s for s in spectra if s.meta["band"] == band)


def test_real_overlap_is_ivar_weighted_and_continuous(real_data):
    from specutils import SpectrumList

    path = real_data / "desi/specutils_sv3_dark_26065/coadd-sv3-dark-26065.fits"
    batch = read_desi_coadd(path)
    arms = SpectrumList.read(path, format="DESI coadd")
    b, r = _arm(arms, "b"), _arm(arms, "r")
    wave = batch.wavelength
    # the B-R overlap, 5760-5800 A: check against the arms read by specutils
    wb, wr = b.spectral_axis.value, r.spectral_axis.value
    lo, hi = wr[0] - 0.4, wb[-1] + 0.4  # half a pixel of margin
    in_b, in_r, ov = (wb >= lo), (wr <= hi), (wave >= lo) & (wave <= hi)
    assert in_b.sum() == in_r.sum() == ov.sum() == 51
    ib = np.where(b.mask[:, in_b], 0, b.uncertainty.array[:, in_b])
    ir = np.where(r.mask[:, in_r], 0, r.uncertainty.array[:, in_r])
    fb, fr = b.flux.value[:, in_b], r.flux.value[:, in_r]
    den = ib + ir
    good = den > 0
    expected = np.where(good, (ib * fb + ir * fr) / np.where(good, den, 1), 0)
    np.testing.assert_allclose(batch.flux[:, ov][good], expected[good], rtol=1e-5)
    np.testing.assert_allclose(batch.ivar[:, ov], den, rtol=1e-6)
    # continuity for the two science targets (fiberstatus 0) across both
    # overlaps: the ivar-weighted mean flux 40 A on either side and inside agree
    # within 4 sigma of their statistical errors (8 comparisons: a 4-sigma
    # fluctuation has probability < 1e-3; continua change little over 80 A)
    for i in np.flatnonzero(batch.meta["fiberstatus"] == 0):
        for edges in ((5720, 5760, 5800, 5840), (7480, 7520, 7620, 7660)):
            means = []
            for lo, hi in zip(edges[:-1], edges[1:], strict=False):
                sel = (wave >= lo) & (wave < hi) & batch.good[i]
                iv = batch.ivar[i, sel]
                means.append(
                    (np.average(batch.flux[i, sel], weights=iv), 1 / np.sqrt(iv.sum()))
                )
            for (m1, e1), (m2, e2) in zip(means[:-1], means[1:], strict=False):
                assert abs(m1 - m2) < 4 * np.hypot(e1, e2), (i, edges, means)


def test_real_stripped_quasarnp_coadd(real_data):
    with pytest.warns(SpectralNNWarning, match="no BUNIT"):
        batch = read_desi_coadd(real_data / "desi/quasarnp/test_coadd.fits")
    assert len(batch) == 25 and batch.n_pixels == 7781
    # fibre 11 has no data (QuasarNP drops it); all others have some
    assert batch.flags[11] & Flag.NO_DATA
    assert not np.any(np.delete(batch.flags, 11) & Flag.NO_DATA)
