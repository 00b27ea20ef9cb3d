"""Shared fixtures: seeded synthetic spectra and the real-data folder."""

from pathlib import Path

import numpy as np
import pytest
from astropy import units as u

from spectralnn.batch import FLUX_UNIT

#: ../shared/data/real beside the project checkout (absent on a user's machine)
REAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"


def pytest_configure(config):
    config.option.astropy_header = True


@pytest.fixture(scope="session")
def real_data():
    """Path of the shared real-spectra folder; skips when it is absent."""
    if not (REAL_DATA / "MANIFEST.md").exists():
        pytest.skip(
            f"real survey spectra not available: {REAL_DATA} is absent (it exists "
            "only on the developers' machines beside the checkout)"
        )
    return REAL_DATA


def gaussian_line_spectrum(
    *,
    center=5000.0,
    sigma=8.0,
    amplitude=10.0,
    continuum=2.0,
    noise=0.05,
    n_spectra=1,
    dloglam=1e-4,
    lo=4600.0,
    hi=5400.0,
    seed=0,
):
    """Flat continuum plus one Gaussian line on a log-lambda grid, with noise."""
    rng = np.random.default_rng(seed)
    n_pix = int(np.log10(hi / lo) / dloglam)
    wave = lo * 10 ** (dloglam * np.arange(n_pix))
    model = continuum + amplitude * np.exp(-0.5 * ((wave - center) / sigma) ** 2)
    flux = model + noise * rng.standard_normal((n_spectra, n_pix))
    ivar = np.full((n_spectra, n_pix), 1.0 / noise**2)
    return wave * u.AA, flux * FLUX_UNIT, ivar


@pytest.fixture
def line_spectrum():
    """(wavelength, flux, ivar) of one noisy Gaussian line on a flat continuum."""
    return gaussian_line_spectrum()
