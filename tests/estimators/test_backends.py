"""The same saved .keras model gives the same numbers under TensorFlow and JAX.

Keras 3 models are backend-agnostic: a model trained and saved under the
default TensorFlow backend must load and predict under ``KERAS_BACKEND=jax``
(a separate process: the backend is fixed at the first Keras import). Skipped
when JAX is not installed (it is not a dependency).
"""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from spectralnn.datasets import write_dataset
from tests.estimators.conftest import make_toy_batch

pytest.importorskip("keras")
pytestmark = pytest.mark.skipif(importlib.util.find_spec("jax") is None,
                                reason="JAX is not installed")

_JAX_SCRIPT = """
import json, sys
import keras
from spectralnn.datasets import read_dataset
from spectralnn.estimators import MassEstimator
assert keras.backend.backend() == "jax", keras.backend.backend()
est = MassEstimator.load(sys.argv[1], virial=False)
table = est.predict(read_dataset(sys.argv[2]))
json.dump({"log_mbh": table["log_mbh"].value.tolist(),
           "log_mbh_err": table["log_mbh_err"].value.tolist()}, sys.stdout)
"""


@pytest.mark.slow  # a JAX subprocess (~10 s) and, unless cached, the tiny training
def test_tensorflow_model_predicts_the_same_under_jax(tmp_path):
    import keras

    from tests._tiny_mass_model import save_tiny_mass_model

    assert keras.backend.backend() == "tensorflow"
    est, model_path = save_tiny_mass_model(tmp_path)
    batch, _ = make_toy_batch(12, seed=7)
    data = write_dataset(batch, tmp_path / "toy.h5")
    expected = est.predict(batch)

    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    result = subprocess.run(
        [sys.executable, "-c", _JAX_SCRIPT, str(model_path), str(data)],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    got = json.loads(result.stdout.strip().splitlines()[-1])
    # float32 networks on two backends: agreement to 1e-4 dex (the data went
    # through float32 HDF5 storage too, a ~1e-7 relative change)
    np.testing.assert_allclose(got["log_mbh"], expected["log_mbh"].value, atol=1e-4)
    np.testing.assert_allclose(got["log_mbh_err"], expected["log_mbh_err"].value,
                               atol=1e-4)
