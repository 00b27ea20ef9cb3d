"""Fixtures of the preprocessing tests: realistic seeded spectra."""

import numpy as np
import pytest

#: SDSS-like log-λ grid: log10(λ/Å) = 3.5563 + 1e-4 k, 3600-8900 Å
SDSS_LOGLAM0 = 3.5563
SDSS_NPIX = 3930


def quasar_model(wave, z=0.3):
    """Power-law continuum plus broad and narrow Gaussian emission lines."""
    wave = np.asarray(wave, dtype=np.float64)
    flux = 5.0 * (wave / 5000.0) ** -1.5
    for rest, sigma, amp in [
        (2798.75, 25.0, 6.0),  # Mg II, broad
        (4862.68, 30.0, 8.0),  # H beta, broad
        (4960.30, 3.0, 7.0),  # [O III], narrow (a few pixels)
        (5008.24, 3.0, 20.0),  # [O III], narrow
        (6564.61, 35.0, 15.0),  # H alpha, broad
    ]:
        centre = rest * (1 + z)
        flux = flux + amp * np.exp(-0.5 * ((wave - centre) / (sigma * (1 + z))) ** 2)
    return flux


@pytest.fixture
def sdss_wave():
    """SDSS-like wavelength grid in Å (plain array)."""
    return 10.0 ** (SDSS_LOGLAM0 + 1e-4 * np.arange(SDSS_NPIX))


@pytest.fixture
def quasar_batch_arrays(sdss_wave):
    """(wave, flux, ivar) of 4 noisy realisations of `quasar_model`, varying noise."""
    rng = np.random.default_rng(42)
    sigma = 0.3 * (1.0 + (sdss_wave / 8000.0) ** 4)  # noisier in the red, as SDSS
    model = quasar_model(sdss_wave)
    flux = model + sigma * rng.standard_normal((4, sdss_wave.size))
    ivar = np.broadcast_to(1.0 / sigma**2, flux.shape).copy()
    return sdss_wave, flux, ivar


@pytest.fixture(name="quasar_model")
def fixture_quasar_model():
    """The noise-free `quasar_model` function."""
    return quasar_model
