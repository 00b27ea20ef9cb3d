"""Tests of spectralnn.simulate.instrument (and the photometry it uses)."""

import numpy as np
import pytest

from spectralnn.errors import WavelengthCoverageError
from spectralnn.simulate import SURVEYS, observe, survey_grid, synthetic_photometry
from spectralnn.simulate.instrument import SKY_LINES, convolve_lsf


def ab_flat(wave, mag):
    """f_lambda (1e-17 units) of a source flat in f_nu with AB magnitude ``mag``."""
    return 3631e-23 * 10 ** (-0.4 * mag) * 2.99792458e18 / wave**2 / 1e-17


@pytest.mark.parametrize("name", list(SURVEYS))
def test_grid_range_and_step(name):
    s = SURVEYS[name]
    wave = survey_grid(name)
    assert wave[0] >= s.wave_min * (1 - 1e-9) and wave[-1] <= s.wave_max * (1 + 1e-9)
    if s.grid == "log10":
        np.testing.assert_allclose(np.diff(np.log10(wave)), 1e-4, rtol=1e-6)
        # aligned on integer multiples of 1e-4 (SDSS/BOSS convention)
        k = np.log10(wave) / 1e-4
        np.testing.assert_allclose(k, np.round(k), atol=1e-6)
    else:
        np.testing.assert_allclose(np.diff(wave), s.step, rtol=1e-9)
    # the last pixel is within one step of the end of the range
    last_step = wave[-1] - wave[-2]
    assert s.wave_max - wave[-1] < last_step + 1e-6


def test_resolution_ranges():
    # R anchors quoted in the module docstring
    np.testing.assert_allclose(
        SURVEYS["DESI"].resolution_at([3600, 9824]), [2000, 5500]
    )
    r = SURVEYS["SDSS"].resolution_at(survey_grid("SDSS"))
    assert 1800 <= r.min() and r.max() <= 2200
    r = SURVEYS["4MOST"].resolution_at(survey_grid("4MOST"))
    assert 4000 <= r.min() and r.max() <= 7500


def test_lsf_conserves_flux_and_sets_width():
    wave = survey_grid("SDSS")
    sigma = SURVEYS["SDSS"].lsf_sigma(wave)
    flux = np.zeros((1, wave.size))
    i = 1500
    flux[0, i] = 1.0
    out = convolve_lsf(wave, flux, sigma)
    width = np.gradient(wave)
    # integrated flux conserved to 1e-3 (pixel widths vary by 1e-4 over the kernel)
    np.testing.assert_allclose(np.sum(out * width), width[i], rtol=1e-3)
    # second moment is sigma (plus the pixel's own top-hat width^2/12)
    mean = np.sum(out[0] * width * wave) / np.sum(out[0] * width)
    var = np.sum(out[0] * width * (wave - mean) ** 2) / np.sum(out[0] * width)
    np.testing.assert_allclose(np.sqrt(var), sigma[i], rtol=0.1)
    # a constant stays constant, edges included
    np.testing.assert_allclose(convolve_lsf(wave, np.ones((1, wave.size)), sigma), 1.0)


@pytest.mark.parametrize("name", ["SDSS", "DESI"])
def test_ivar_matches_drawn_noise(name):
    wave = survey_grid(name)
    truth = np.tile(ab_flat(wave, 19.5), (40, 1))
    flux, ivar, mask = observe(
        wave, truth, survey=name, rng=3, sky=False, wiggles=False, bad_pixels=False
    )
    pull = (flux - truth) * np.sqrt(ivar)
    # 40 x ~5000 pixels: the std of a unit normal is known to ~0.2 %
    assert abs(np.std(pull) - 1.0) < 0.01
    assert abs(np.mean(pull)) < 0.01


def test_requested_snr_reached():
    wave = survey_grid("BOSS")
    truth = np.tile(ab_flat(wave, 20.0), (5, 1))
    snr = np.array([2.0, 5.0, 10.0, 20.0, 50.0])
    flux, ivar, mask = observe(
        wave, truth, survey="BOSS", snr=snr, rng=1, wiggles=False, bad_pixels=False
    )
    np.testing.assert_allclose(np.median(truth * np.sqrt(ivar), axis=1), snr, rtol=1e-6)
    # and the noise really has that size: S/N per pixel from the scatter of
    # 100 realisations (std known to 7 % per pixel, the median to much better)
    truth = np.tile(ab_flat(wave, 20.0), (100, 1))
    flux, _, _ = observe(
        wave,
        truth,
        survey="BOSS",
        snr=7.0,
        rng=2,
        sky=False,
        wiggles=False,
        bad_pixels=False,
    )
    measured = np.median(truth[0] / np.std(flux - truth, axis=0))
    np.testing.assert_allclose(measured, 7.0, rtol=0.03)


def test_snr_follows_magnitude():
    wave = survey_grid("SDSS")
    truth = np.stack([ab_flat(wave, 18.0), ab_flat(wave, 21.0)])
    _, ivar, _ = observe(wave, truth, survey="SDSS", rng=0, bad_pixels=False)
    snr = np.median(truth * np.sqrt(ivar), axis=1)
    assert snr[0] > 5 * snr[1]
    # SDSS design: (S/N)^2 ~ 15-25 per pixel at g = 20.2 (York et al. 2000)
    g = np.abs(wave - 4825) < 300
    _, ivar, _ = observe(
        wave, ab_flat(wave, 20.2), survey="SDSS", rng=0, bad_pixels=False
    )
    snr_g = np.median((ab_flat(wave, 20.2) * np.sqrt(ivar))[0, g])
    assert 3.0 < snr_g < 6.0


def test_magnitude_rescaling():
    wave = survey_grid("SDSS")
    truth = np.ones((2, wave.size))
    flux, ivar, mask = observe(
        wave,
        truth,
        survey="SDSS",
        magnitude=[19.0, 20.0],
        rng=0,
        sky=False,
        wiggles=False,
        bad_pixels=False,
    )
    mags = synthetic_photometry(wave, flux)["r"]
    np.testing.assert_allclose(mags, [19.0, 20.0], atol=0.02)


def test_sky_lines_raise_noise_and_residuals():
    wave = survey_grid("SDSS")
    truth = np.tile(ab_flat(wave, 20.0), (60, 1))
    flux, ivar, mask = observe(
        wave, truth, survey="SDSS", rng=5, wiggles=False, bad_pixels=False
    )
    near = np.abs(wave - SKY_LINES[3, 0]) < 2.0  # [O I] 5577
    far = (wave > 5000) & (wave < 5400)
    assert np.median(ivar[:, near]) < 0.5 * np.median(ivar[:, far])
    pull = (flux - truth) * np.sqrt(ivar)
    assert abs(np.std(pull[:, far]) - 1) < 0.05
    assert np.std(pull[:, near]) > 1.05  # sky-subtraction residuals


def test_reddening_dims_blue_more():
    wave = survey_grid("SDSS")
    truth = np.ones((1, wave.size))
    red, _, _ = observe(
        wave, truth, ebv=0.1, snr=1e6, rng=0, sky=False, wiggles=False, bad_pixels=False
    )
    # G23, R_V=3.1: A_V = 0.31; A(4000)/A_V ~ 1.4, A(9000)/A_V ~ 0.5
    a = -2.5 * np.log10(red[0, [10, -10]])
    assert 0.38 < a[0] < 0.48 and 0.12 < a[1] < 0.2


def test_bad_pixels_masked():
    wave = survey_grid("SDSS")
    flux, ivar, mask = observe(wave, np.ones((200, wave.size)), rng=2, snr=10)
    assert mask.any()
    assert np.all(ivar[mask] == 0) and np.all(ivar[~mask] > 0)
    assert mask.mean() < 0.01


def test_deterministic_and_batch_independent():
    wave = survey_grid("DESI")
    truth = np.ones((3, wave.size))
    a = observe(wave, truth, survey="DESI", rng=7, snr=5)
    b = observe(wave, truth, survey="DESI", rng=7, snr=5)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    # per-spectrum generators: the same row comes out in any batch
    seeds = [np.random.SeedSequence(11).spawn(3)[i] for i in range(3)]
    full = observe(wave, truth, survey="DESI", rng=list(seeds), snr=5)
    part = observe(wave, truth[1:], survey="DESI", rng=list(seeds[1:]), snr=5)
    np.testing.assert_array_equal(full[0][1:], part[0])


def test_out_of_range_raises():
    wave = np.linspace(3000, 9000, 100)
    with pytest.raises(WavelengthCoverageError, match="SDSS range"):
        observe(wave, np.ones(100), survey="SDSS")
    with pytest.raises(KeyError, match="known surveys"):
        survey_grid("HST")


def test_photometry_flat_fnu():
    wave = np.linspace(3000, 11000, 8001)
    mags = synthetic_photometry(wave, ab_flat(wave, 18.3))
    for band in "ugriz":
        np.testing.assert_allclose(mags[band], 18.3, atol=1e-6)
