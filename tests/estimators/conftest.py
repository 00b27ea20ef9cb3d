"""Toy quasar spectra whose 'black-hole mass' is a function of a line width."""

import numpy as np
import pytest
from astropy import units as u

from spectralnn import SpectrumBatch
from spectralnn.batch import FLUX_UNIT

HBETA = 4862.68
C_KMS = 299792.458

#: a small rest-frame grid around Hβ keeps the toy networks fast
TOY_PREPROCESSING = {
    "steps": ["rest_frame", "resample", "normalize"],
    "grid": {"start": 4600.0, "stop": 5200.0, "dloglam": 5e-4},
    "normalization": "median",
    "channels": ["flux", "mask"],
    "min_good_fraction": 0.5,
}
#: tiny residual network: trains in a few seconds on one CPU core
TOY_OPTIONS = {"filters": 8, "stages": 2, "dense_units": 16, "dropout": 0.0}


def toy_log_mbh(fwhm_kms):
    """The toy truth: a virial-like law log M = 8 + 2 log10(FWHM / 3000 km/s)."""
    return 8.0 + 2.0 * np.log10(fwhm_kms / 3000.0)


def make_toy_batch(n, *, seed=0, noise=0.05):
    """Observed-frame spectra of a broad Hβ line with random FWHM, z and amplitude."""
    rng = np.random.default_rng(seed)
    wave = 4000.0 * 10 ** (1e-4 * np.arange(2400))  # 4000-6900 Å
    z = rng.uniform(0.1, 0.3, n)
    fwhm = 10 ** rng.uniform(np.log10(1500), np.log10(8000), n)
    amplitude = rng.uniform(1.0, 3.0, n)
    sigma = fwhm / 2.3548 / C_KMS * HBETA
    rest = wave[None, :] / (1 + z[:, None])
    model = 1.0 + amplitude[:, None] * np.exp(-0.5 * ((rest - HBETA) / sigma[:, None]) ** 2)
    flux = (model + noise * rng.standard_normal(model.shape)) * 5.0
    ivar = np.full(flux.shape, 1.0 / (5.0 * noise) ** 2)
    meta = {"z": z, "object_id": np.arange(n)}
    from astropy.table import QTable

    batch = SpectrumBatch(wave * u.AA, flux * FLUX_UNIT, ivar, meta=QTable(meta))
    return batch, toy_log_mbh(fwhm)


@pytest.fixture(scope="session")
def toy_data():
    """(batch, log_mbh) of 400 toy training spectra."""
    return make_toy_batch(400, seed=1)


@pytest.fixture(scope="session")
def toy_test_data():
    """(batch, log_mbh) of 100 independent toy spectra."""
    return make_toy_batch(100, seed=2)


@pytest.fixture(scope="session")
def trained_estimator(toy_data):
    """A tiny MassEstimator trained once on the toy problem (shared, do not refit)."""
    from spectralnn.estimators import MassEstimator

    est = MassEstimator("resnet1d", preprocessing=TOY_PREPROCESSING,
                        architecture_options=TOY_OPTIONS, virial=False)
    batch, y = toy_data
    # the NLL sits on a plateau for a few epochs (the variance absorbs the
    # error first) before the mean learns: a patient early stop is needed
    est.fit(batch, y, epochs=40, batch_size=32, patience=20, seed=0)
    return est


@pytest.fixture(scope="session")
def make_toy():
    """The toy-spectrum factory `make_toy_batch(n, seed=...)`."""
    return make_toy_batch


@pytest.fixture(scope="session")
def toy_settings():
    """Keyword arguments of a small MassEstimator for the toy spectra."""
    return {"preprocessing": TOY_PREPROCESSING, "architecture_options": TOY_OPTIONS,
            "virial": False}
