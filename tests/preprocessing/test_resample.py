"""Tests of spectralnn.preprocessing.resample."""

import numpy as np
import pytest
from astropy import units as u
from astropy.io import fits
from astropy.table import QTable
from astropy.tests.helper import assert_quantity_allclose
from numpy.testing import assert_allclose, assert_array_equal
from specutils import Spectrum

from spectralnn.batch import FLUX_UNIT, SpectrumBatch
from spectralnn.errors import (
    BatchItemWarning,
    InvalidSpectrumError,
    WavelengthCoverageError,
)
from spectralnn.flags import Flag
from spectralnn.preprocessing.resample import (
    log_wavelength_grid,
    pixel_edges,
    resample,
)


def _source_integral(wave, flux, lo, hi):
    """∫ f dλ of the piecewise-constant source from lo to hi (independent code)."""
    edges = pixel_edges(wave)
    cumulative = np.concatenate([[0.0], np.cumsum(flux * np.diff(edges))])
    return np.interp(hi, edges, cumulative) - np.interp(lo, edges, cumulative)


# ------------------------------------------------------------------- grids
def test_log_grid_covers_ends_with_constant_step():
    grid = log_wavelength_grid(3650.3 * u.AA, 9123.7 * u.AA, dloglam=1e-4)
    assert grid.unit == u.AA
    assert grid[0] <= 3650.3 * u.AA < grid[1]
    assert grid[-2] < 9123.7 * u.AA <= grid[-1]
    assert_allclose(np.diff(np.log10(grid.value)), 1e-4, rtol=1e-8)


def test_log_grid_on_sdss_pixels(sdss_wave):
    # a range that starts and ends on SDSS pixels gives exactly those pixels
    grid = log_wavelength_grid(sdss_wave[10] * u.AA, sdss_wave[500] * u.AA)
    assert_allclose(grid.value, sdss_wave[10:501], rtol=1e-12)


def test_log_grid_units_and_errors():
    grid = log_wavelength_grid(0.4 * u.micron, 0.5 * u.micron, dloglam=1e-3)
    assert grid[0] <= 4000 * u.AA and grid[-1] >= 5000 * u.AA
    with pytest.raises(ValueError, match="dloglam"):
        log_wavelength_grid(4000 * u.AA, 5000 * u.AA, dloglam=0)
    with pytest.raises(u.UnitsError, match="needs a unit"):
        log_wavelength_grid(4000, 5000)


def test_pixel_edges_midpoints():
    assert_allclose(pixel_edges(np.array([[1.0, 2.0, 4.0]])), [[0.5, 1.5, 3.0, 5.0]])


# --------------------------------------------------------- flux conservation
@pytest.mark.parametrize(
    "target",
    [
        # coarser log grid, step not a multiple of the source step
        10.0 ** (3.5600 + 2.7e-4 * np.arange(1400)),
        # linear grid of 2.5 Å
        np.arange(3700.0, 8800.0, 2.5),
    ],
    ids=["coarser-log", "linear"],
)
def test_flux_conserved(quasar_batch_arrays, target):
    wave, flux, _ = quasar_batch_arrays
    # uniform ivar: the weighted mean is then the plain overlap-weighted mean
    batch = SpectrumBatch(wave * u.AA, flux * FLUX_UNIT, ivar=np.ones_like(flux))
    out = resample(batch, target * u.AA)
    edges = pixel_edges(target)
    good = ~out.mask[0]
    assert good.sum() > 0.95 * target[(target > wave[0]) & (target < wave[-1])].size
    first, last = np.flatnonzero(good)[[0, -1]]
    # whole covered range, and random runs of whole target bins (incl. lines)
    rng = np.random.default_rng(1)
    runs = [(first, last + 1)] + [
        tuple(sorted(rng.integers(first, last + 1, 2) + [0, 1])) for _ in range(20)
    ]
    for a, b in runs:
        resampled = np.sum(out.flux[:, a:b] * np.diff(edges)[a:b], axis=1)
        source = np.array([_source_integral(wave, f, edges[a], edges[b]) for f in flux])
        # exact in exact arithmetic; 1e-6 leaves room only for round-off
        assert_allclose(resampled, source, rtol=1e-6)


def test_identity_resampling(quasar_batch_arrays):
    wave, flux, ivar = quasar_batch_arrays
    batch = SpectrumBatch(wave * u.AA, flux * FLUX_UNIT, ivar=ivar)
    out = resample(batch, wave * u.AA)
    # same bins: the overlap matrix is the identity
    assert_allclose(out.flux, flux, rtol=1e-12)
    assert_allclose(out.ivar, ivar, rtol=1e-12)
    assert not out.mask.any()


def test_doubling_pixel_width_averages_pairs():
    wave = np.arange(1000.0, 1100.0)  # 1 Å pixels
    flux = np.arange(100.0) ** 2
    ivar = np.linspace(1.0, 3.0, 100)
    batch = SpectrumBatch(wave * u.AA, flux, ivar, flux_unit=u.one)
    out = resample(batch, (wave[::2] + 0.5) * u.AA)
    # each 2 Å target pixel covers exactly two source pixels
    f0, f1, i0, i1 = flux[::2], flux[1::2], ivar[::2], ivar[1::2]
    assert_allclose(out.flux[0], (i0 * f0 + i1 * f1) / (i0 + i1), rtol=1e-12)
    assert_allclose(out.ivar[0], i0 + i1, rtol=1e-12)


# ------------------------------------------------------------------ masking
def test_masked_pixels_do_not_contribute(quasar_batch_arrays):
    wave, flux, ivar = quasar_batch_arrays
    mask = np.zeros(flux.shape, dtype=bool)
    mask[:, 1000:1010] = True
    mask[1, 2000:2003] = True
    target = np.arange(3700.0, 8800.0, 3.0) * u.AA
    garbage = flux.copy()
    garbage[mask] = 1e8
    a = resample(SpectrumBatch(wave * u.AA, flux * FLUX_UNIT, ivar, mask), target)
    b = resample(SpectrumBatch(wave * u.AA, garbage * FLUX_UNIT, ivar, mask), target)
    assert_allclose(a.flux, b.flux, rtol=1e-12)
    assert_allclose(a.ivar, b.ivar, rtol=1e-12)
    # zero ivar without a mask acts the same way
    zero_ivar = np.where(mask, 0.0, ivar)
    c = resample(SpectrumBatch(wave * u.AA, garbage * FLUX_UNIT, zero_ivar), target)
    assert_allclose(c.flux, a.flux, rtol=1e-12)
    assert np.all(np.abs(a.flux) < 100)


def test_empty_and_uncovered_target_pixels(quasar_batch_arrays):
    wave, flux, ivar = quasar_batch_arrays
    mask = np.zeros(flux.shape, dtype=bool)
    mask[:, 1000:1100] = True  # a gap of ~300 Å
    batch = SpectrumBatch(wave * u.AA, flux * FLUX_UNIT, ivar, mask)
    target = np.arange(3000.0, 9500.0, 4.0)
    out = resample(batch, target * u.AA)
    tgt_edges = pixel_edges(target)
    src_edges = pixel_edges(wave)
    inside_gap = (tgt_edges[:-1] > src_edges[1000]) & (tgt_edges[1:] < src_edges[1100])
    beyond = (tgt_edges[:-1] < src_edges[0]) | (tgt_edges[1:] > src_edges[-1])
    assert inside_gap.sum() > 20 and beyond.sum() > 100
    for empty in (inside_gap, beyond):
        assert np.all(out.ivar[:, empty] == 0)
        assert np.all(out.mask[:, empty])
        assert np.all(out.flux[:, empty] == 0)
    # everything else is fully covered by some unmasked data
    rest = ~inside_gap & ~beyond
    touches_gap = (tgt_edges[1:] > src_edges[1000]) & (tgt_edges[:-1] < src_edges[1100])
    assert not out.mask[:, rest & ~touches_gap].any()


def test_partly_covered_edge_bin_is_masked():
    wave = np.arange(1000.0, 1010.0)  # source covers 999.5-1009.5
    batch = SpectrumBatch(wave * u.AA, np.ones(10), np.ones(10), flux_unit=u.one)
    # first target bin 998-1000 is only half covered: masked, not extrapolated
    out = resample(batch, np.arange(999.0, 1010.0, 2.0) * u.AA)
    assert_array_equal(out.mask[0], [True, False, False, False, False, True])


# ------------------------------------------------------ uncertainty (ivar)
@pytest.mark.parametrize("per_row", [False, True], ids=["shared-grid", "per-row-grids"])
def test_ivar_matches_monte_carlo_scatter(per_row):
    rng = np.random.default_rng(7)
    n, m = 3000, 400
    wave = 10.0 ** (3.6 + 1e-4 * np.arange(m))
    sigma = 0.5 + 0.4 * np.sin(np.arange(m) / 7.0) ** 2  # pixel-to-pixel varying noise
    flux = 3.0 + sigma * rng.standard_normal((n, m))
    ivar = np.broadcast_to(1 / sigma**2, (n, m))
    if per_row:
        wave = wave[None, :] * (1 + rng.uniform(0, 0.01, n))[:, None]
    batch = SpectrumBatch(wave * u.AA, flux, ivar, flux_unit=u.one)
    target = np.arange(4100.0, 4300.0, 2.3)  # ~2.3 source pixels, not aligned
    out = resample(batch, target * u.AA)
    good = ~out.mask
    pulls = (out.flux - 3.0) * np.sqrt(out.ivar)
    if not per_row:
        # scatter across realisations of each pixel vs. the predicted sigma;
        # 3000 draws give a 1.3% error on each scatter: allow 5% per pixel
        assert good.all()
        ratio = np.std(pulls, axis=0)
        assert_allclose(ratio, 1.0, atol=0.05)
        assert abs(np.mean(ratio) - 1) < 0.01
    else:
        # each row has its own grid: pool the normalised residuals
        assert good.mean() > 0.9
        assert abs(np.std(pulls[good]) - 1) < 0.01
    assert abs(np.mean(pulls[good])) < 0.02  # no bias


# --------------------------------------------------- batches and Spectrum
def test_batch_and_single_spectrum_agree(quasar_batch_arrays):
    wave, flux, ivar = quasar_batch_arrays
    mask = np.zeros(flux.shape, dtype=bool)
    mask[2, 300:320] = True
    batch = SpectrumBatch(wave * u.AA, flux * FLUX_UNIT, ivar, mask)
    target = np.arange(3700.0, 8800.0, 3.0) * u.AA
    out = resample(batch, target)
    for i in range(len(batch)):
        single = resample(batch.to_spectrum(i), target)
        assert isinstance(single, Spectrum)
        assert_quantity_allclose(single.spectral_axis, target)
        assert_quantity_allclose(single.flux, out.flux[i] * FLUX_UNIT, rtol=1e-6)
        assert_allclose(single.uncertainty.array, out.ivar[i], rtol=1e-6)
        assert_array_equal(single.mask, out.mask[i])


def test_per_row_grids_equal_per_spectrum(quasar_batch_arrays):
    wave, flux, ivar = quasar_batch_arrays
    z = np.array([0.0, 0.1, 0.37, 0.05])
    waves = wave[None, :] / (1 + z)[:, None]
    mask = np.zeros(flux.shape, dtype=bool)
    mask[1, 500:540] = True
    mask[3, ::17] = True
    batch = SpectrumBatch(waves * u.AA, flux * FLUX_UNIT, ivar, mask)
    assert not batch.shared_grid
    target = 10.0 ** (3.40 + 2e-4 * np.arange(2500)) * u.AA
    out = resample(batch, target)
    assert out.shared_grid
    for i in range(len(batch)):
        one = SpectrumBatch(waves[i] * u.AA, flux[i] * FLUX_UNIT, ivar[i], mask[i])
        ref = resample(one, target)  # shared-grid (sparse matrix) code path
        assert_array_equal(out.mask[i], ref.mask[0])
        assert_allclose(out.flux[i], ref.flux[0], rtol=1e-9, atol=1e-12)
        assert_allclose(out.ivar[i], ref.ivar[0], rtol=1e-9)


def test_units_and_meta_kept(quasar_batch_arrays):
    wave, flux, ivar = quasar_batch_arrays
    meta = QTable({"z": [0.3] * 4, "flags": [0, 16, 0, 0]})
    batch = SpectrumBatch(wave * u.AA, flux * FLUX_UNIT, ivar, meta=meta)
    out = resample(batch, np.arange(0.4, 0.8, 3e-4) * u.micron)
    assert out.flux_unit == FLUX_UNIT
    assert_allclose(out.wavelength, np.arange(0.4, 0.8, 3e-4) * 1e4)
    assert_allclose(out.meta["z"], 0.3)
    assert_array_equal(out.flags, [0, 16, 0, 0])
    assert out.frame == "observed"


# ------------------------------------------------------------------ errors
def test_no_overlap_single_raises_batch_flags(quasar_batch_arrays):
    wave, flux, ivar = quasar_batch_arrays
    batch = SpectrumBatch(wave * u.AA, flux * FLUX_UNIT, ivar)
    far = np.arange(10000.0, 11000.0, 5.0) * u.AA
    with pytest.raises(WavelengthCoverageError, match="does not overlap"):
        resample(batch.to_spectrum(0), far)
    waves = np.stack([wave, wave, wave * 1.5, wave])
    batch2 = SpectrumBatch(waves * u.AA, flux * FLUX_UNIT, ivar)
    with pytest.warns(BatchItemWarning, match="1 spectra have no data"):
        out = resample(batch2, np.arange(3700.0, 5000.0, 3.0) * u.AA)
    assert out.flags[2] & Flag.OUT_OF_COVERAGE and out.flags[2] & Flag.NO_DATA
    assert out.flags[0] == 0 and out.mask[2].all() and not out.mask[0].any()


def test_invalid_grid():
    batch = SpectrumBatch(np.arange(1.0, 5.0) * u.AA, np.ones(4), np.ones(4),
                          flux_unit=u.one)
    with pytest.raises(InvalidSpectrumError, match="strictly increasing"):
        resample(batch, np.array([1.0, 2.0, 2.0, 3.0]) * u.AA)
    with pytest.raises(InvalidSpectrumError, match="at least 2 points"):
        resample(batch, [2.0] * u.AA)
    with pytest.raises(u.UnitsError, match="needs a unit"):
        resample(batch, np.array([1.0, 2.0]))


# ---------------------------------------------------------------- real data
def test_real_sdss_quasar_flux_conserved(real_data):
    path = real_data / "sdss" / "pyqsofit_examples" / "spec-0332-52367-0639.fits"
    with fits.open(path) as hdul:
        coadd = hdul[1].data
        wave = 10.0 ** np.asarray(coadd["loglam"], dtype=np.float64)
        flux = np.asarray(coadd["flux"], dtype=np.float64)
        ivar = np.asarray(coadd["ivar"], dtype=np.float64)
    # pixels with ivar 0 are masked (and_mask is left out: it flags half the pixels)
    batch = SpectrumBatch(wave * u.AA, flux * FLUX_UNIT, ivar)
    spectrum = batch.to_spectrum(0)
    good = batch.good[0]
    assert good.mean() > 0.9
    target = log_wavelength_grid(4000 * u.AA, 8000 * u.AA, dloglam=3e-4)
    # uniform weights on the real flux: integral conserved to round-off
    uniform = batch.copy(ivar=np.ones_like(batch.ivar), mask=np.zeros_like(batch.mask))
    out = resample(uniform, target)
    edges = pixel_edges(target.value)
    ok = np.flatnonzero(~out.mask[0])
    a, b = ok[0], ok[-1] + 1
    resampled = np.sum(out.flux[0, a:b] * np.diff(edges)[a:b])
    source = _source_integral(batch.wavelength, batch.flux[0], edges[a], edges[b])
    assert_allclose(resampled, source, rtol=1e-6)
    # real ivar and mask: the weighted mean moves the integral by well under 1%
    weighted = resample(spectrum, target)
    w_ok = ~weighted.mask
    w_integral = np.sum(weighted.flux.value[w_ok] * np.diff(edges)[w_ok])
    assert_allclose(w_integral, np.sum(out.flux[0][w_ok] * np.diff(edges)[w_ok]),
                    rtol=0.01)
