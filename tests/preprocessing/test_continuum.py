"""Tests of spectralnn.preprocessing.continuum."""

import numpy as np
import pytest
from astropy import units as u
from astropy.tests.helper import assert_quantity_allclose
from specutils import Spectrum

from spectralnn import SpectrumBatch
from spectralnn.batch import FLUX_UNIT
from spectralnn.errors import InvalidSpectrumError, SpectralUnitsError
from spectralnn.flags import Flag
from spectralnn.preprocessing.continuum import (
    continuum_powerlaw,
    continuum_robust,
    normalize_continuum,
    subtract_continuum,
)


def powerlaw_batch(n=200, amp=5.0, slope=-1.5, noise=0.1, seed=0, frame="rest"):
    rng = np.random.default_rng(seed)
    wave = 1300.0 * 10 ** (1e-4 * np.arange(7000))  # 1300-6500 A
    model = amp * (wave / 3000.0) ** slope
    flux = model + noise * rng.standard_normal((n, wave.size))
    ivar = np.full(flux.shape, noise**-2)
    return SpectrumBatch(wave * u.AA, flux * FLUX_UNIT, ivar, frame=frame), model


def test_powerlaw_recovers_slope_and_amplitude_with_honest_errors():
    batch, _ = powerlaw_batch()
    cont = continuum_powerlaw(batch, wavelength0=3000 * u.AA)
    slope = cont.meta["continuum_slope"]
    amp = cont.meta["continuum_amplitude"]
    # 200 realisations: the mean is unbiased to a few standard errors
    err_slope = np.mean(cont.meta["continuum_slope_err"])
    assert abs(np.mean(slope) + 1.5) < 4 * err_slope / np.sqrt(len(batch))
    assert_quantity_allclose(np.mean(amp), 5.0 * FLUX_UNIT, rtol=1e-3)
    # quoted errors agree with the scatter (20%: 200 samples give ~5% on a std)
    assert np.std(slope) == pytest.approx(err_slope, rel=0.2)
    assert_quantity_allclose(
        np.std(amp), np.mean(cont.meta["continuum_amplitude_err"]), rtol=0.2
    )
    assert np.all(cont.meta["flags"] == 0)


def test_powerlaw_clips_absorption_and_ignores_masked_pixels():
    batch, model = powerlaw_batch(n=3, noise=0.02)
    flux = batch.flux.copy()
    wave = batch.wavelength
    trough = (wave > 2000) & (wave < 2100)  # inside the 1970-2400 window
    flux[:, trough] *= 0.3
    spike = (wave > 5200) & (wave < 5210)
    flux[:, spike] = 1e6  # garbage, but masked
    mask = np.broadcast_to(spike, flux.shape)
    dirty = SpectrumBatch(
        wave * u.AA, flux * FLUX_UNIT, batch.ivar, mask=mask, frame="rest"
    )
    cont = continuum_powerlaw(dirty, wavelength0=3000 * u.AA)
    # the absorption is clipped: slope within 0.01 (errors are ~0.001)
    np.testing.assert_allclose(cont.meta["continuum_slope"], -1.5, atol=0.01)
    good = ~cont.mask[0]
    np.testing.assert_allclose(cont.flux[0, good], model[good], rtol=0.01)


def test_powerlaw_observed_frame_shifts_windows():
    batch, model = powerlaw_batch(n=2, noise=0.02)
    z = np.array([0.5, 1.0])
    wave_obs = batch.wavelength[None, :] * (1 + z[:, None])
    obs = SpectrumBatch(
        wave_obs * u.AA,
        batch.flux / (1 + z[:, None]) * FLUX_UNIT,
        batch.ivar * (1 + z[:, None]) ** 2,
        frame="observed",
    )
    cont = continuum_powerlaw(obs, z=z, wavelength0=3000 * u.AA)
    np.testing.assert_allclose(cont.meta["continuum_slope"], -1.5, atol=0.01)
    assert_quantity_allclose(
        cont.meta["continuum_amplitude"], 5.0 / (1 + z) * FLUX_UNIT, rtol=0.01
    )


def test_powerlaw_flags_rows_without_windows():
    wave = np.linspace(1216, 1270, 200)  # no continuum window with 10 pixels
    batch = SpectrumBatch(
        wave * u.AA,
        np.ones((2, 200)),
        np.ones((2, 200)),
        flux_unit=FLUX_UNIT,
        frame="rest",
    )
    cont = continuum_powerlaw(batch)
    flags = np.asarray(cont.meta["flags"])
    assert np.all(flags & Flag.OUT_OF_COVERAGE)
    assert np.all(flags & Flag.FIT_FAILED)
    assert np.all(np.isnan(cont.meta["continuum_slope"]))
    assert cont.mask.all()


def test_powerlaw_needs_redshift_for_observed_frame():
    batch, _ = powerlaw_batch(n=1, frame="observed")
    cont = continuum_powerlaw(batch)
    assert cont.meta["flags"][0] & Flag.NO_REDSHIFT
    with pytest.raises(SpectralUnitsError, match="unit"):
        continuum_powerlaw(batch, z=0.1, windows=np.array([[2000, 2100]]))


def test_powerlaw_single_spectrum_matches_batch():
    batch, _ = powerlaw_batch(n=3)
    cont = continuum_powerlaw(batch)
    spec = batch.to_spectrum(1)
    single = continuum_powerlaw(SpectrumBatch.from_spectrum(spec).copy(frame="rest"))
    np.testing.assert_allclose(
        single.meta["continuum_slope"][0], cont.meta["continuum_slope"][1], rtol=1e-6
    )
    # a Spectrum in gives a Spectrum out
    assert isinstance(continuum_powerlaw(spec, z=0.0), Spectrum)


@pytest.mark.parametrize("method", ["median", "spline"])
def test_robust_continuum_ignores_lines_and_masks(method):
    rng = np.random.default_rng(1)
    wave = np.linspace(4000, 7000, 3000)
    smooth = 3 + np.sin(wave / 800.0)
    lines = 20 * np.exp(-0.5 * ((wave - 5000) / 4) ** 2) - 2 * np.exp(
        -0.5 * ((wave - 6000) / 3) ** 2
    )
    flux = smooth + lines + 0.05 * rng.standard_normal((5, wave.size))
    mask = np.zeros(flux.shape, dtype=bool)
    mask[:, 1000:1020] = True
    flux[:, 1000:1020] = 1e5
    batch = SpectrumBatch(
        wave * u.AA, flux, np.full(flux.shape, 400.0), mask=mask, flux_unit=u.one
    )
    cont = continuum_robust(batch, method=method, width=151)
    # the smooth continuum is recovered to 2% (noise per point ~0.05/sqrt(150))
    np.testing.assert_allclose(
        cont.flux[:, 100:-100], np.broadcast_to(smooth[100:-100], (5, 2800)), rtol=0.02
    )


def test_robust_continuum_width_units():
    wave = 10 ** (3.6 + 1e-4 * np.arange(500))
    batch = SpectrumBatch(wave * u.AA, np.ones(500), np.ones(500), flux_unit=u.one)
    a = continuum_robust(batch, width=2000 * u.km / u.s)
    assert np.allclose(a.flux, 1.0)
    with pytest.raises(ValueError, match="method"):
        continuum_robust(batch, method="mean")
    with pytest.raises(ValueError, match="3 pixels"):
        continuum_robust(batch, width=1)


def test_subtract_and_normalize_propagate_ivar():
    wave = np.arange(1.0, 6.0) * u.AA
    batch = SpectrumBatch(wave, np.full(5, 4.0), np.full(5, 1.0), flux_unit=FLUX_UNIT)
    cont = batch.copy(flux=np.full((1, 5), 2.0), ivar=np.full((1, 5), 4.0))
    sub = subtract_continuum(batch, cont)
    np.testing.assert_allclose(sub.flux, 2.0)
    np.testing.assert_allclose(sub.ivar, 1 / (1 + 0.25))  # variances add
    norm = normalize_continuum(batch, cont)
    assert norm.flux_unit == u.dimensionless_unscaled
    np.testing.assert_allclose(norm.flux, 2.0)
    # var = 1/4 + 2^2 * 0.25 / 4 = 0.5
    np.testing.assert_allclose(norm.ivar, 2.0)
    masked = cont.copy(mask=np.array([[True, False, False, False, False]]))
    assert normalize_continuum(batch, masked).mask[0, 0]
    with pytest.raises(InvalidSpectrumError, match="grid"):
        subtract_continuum(
            batch,
            SpectrumBatch(
                np.arange(2.0, 7.0) * u.AA, np.ones(5), np.ones(5), flux_unit=FLUX_UNIT
            ),
        )


def test_subtract_continuum_of_spectrum_returns_spectrum():
    batch, _ = powerlaw_batch(n=1, noise=0.02)
    spec = batch.to_spectrum(0)
    cont = continuum_powerlaw(batch)
    out = subtract_continuum(spec, cont)
    assert isinstance(out, Spectrum)
    good = ~out.mask
    assert abs(np.mean(out.flux.value[good])) < 0.01
