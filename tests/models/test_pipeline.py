"""Tests of spectralnn.models.pipeline."""

import numpy as np
import pytest
from astropy import units as u
from astropy.table import Table

from spectralnn import SpectrumBatch
from spectralnn.flags import Flag
from spectralnn.models.pipeline import Pipeline, validate_preprocessing


def test_grid_is_log_lambda():
    pipe = Pipeline({"steps": ["resample"],
                     "grid": {"start": 4000.0, "stop": 5000.0, "dloglam": 1e-3}})
    steps = np.diff(np.log10(pipe.grid.to_value(u.AA)))
    np.testing.assert_allclose(steps, 1e-3, rtol=1e-9)
    assert pipe.grid[0] == 4000 * u.AA and pipe.grid[-1] <= 5000 * u.AA


def test_validation_errors():
    with pytest.raises(ValueError, match="unknown preprocessing steps"):
        validate_preprocessing({"steps": ["smooth"]})
    with pytest.raises(ValueError, match="unknown preprocessing keys"):
        validate_preprocessing({"steps": [], "colour": "blue"})
    with pytest.raises(ValueError, match="0 < start < stop"):
        validate_preprocessing({"steps": [], "grid": {"start": 5, "stop": 4, "dloglam": 1}})
    with pytest.raises(ValueError, match="channels"):
        validate_preprocessing({"steps": [], "channels": ["colour"]})


def test_observed_wavelength_channel_follows_redshift():
    # a rest-frame model sees, in this channel, where each rest-frame pixel
    # fell in the observed frame: λ_obs = λ_rest (1 + z)
    wave = np.linspace(3600, 9000, 400) * u.AA
    batch = SpectrumBatch(wave, np.ones((2, 400)), np.ones((2, 400)), flux_unit=u.one,
                          meta=Table({"z": [2.0, 3.0]}))
    pipe = Pipeline({"steps": ["rest_frame", "resample"],
                     "grid": {"start": 1000.0, "stop": 1500.0, "dloglam": 1e-3},
                     "channels": ["flux", "observed_wavelength"]})
    result = pipe(batch)
    channel = result.inputs[:, :, 1].astype(float)
    observed = 10 ** (channel * 0.2 + 3.8)
    rest = pipe.grid.to_value(u.AA)
    np.testing.assert_allclose(observed[0], rest * 3.0, rtol=1e-5)
    np.testing.assert_allclose(observed[1], rest * 4.0, rtol=1e-5)


def test_normalisation_channels_and_flags():
    wave = np.linspace(4000, 5000, 50) * u.AA
    flux = np.vstack([np.full(50, 4.0), np.full(50, -1.0), np.full(50, 2.0)])
    mask = np.zeros((3, 50), bool)
    mask[2, :40] = True  # only 20 % of the pixels left
    batch = SpectrumBatch(wave, flux, np.ones((3, 50)), mask=mask, flux_unit=u.one)
    result = Pipeline({"steps": ["normalize"], "channels": ["flux", "mask", "ivar"]})(batch)
    assert result.inputs.shape == (3, 50, 3) and result.inputs.dtype == np.float32
    np.testing.assert_allclose(result.inputs[0, :, 0], 1.0)  # divided by its median
    assert result.usable.tolist() == [True, False, False]
    assert result.flags[1] & Flag.FIT_FAILED  # no positive continuum
    assert result.flags[2] & Flag.OUT_OF_COVERAGE
    assert not result.inputs[1:].any()  # unusable rows are zeros
    np.testing.assert_array_equal(batch.flux, flux)  # input untouched
