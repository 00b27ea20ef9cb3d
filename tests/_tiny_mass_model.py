"""A tiny trained MassEstimator for tests of the layers around the model.

Used by tests/test_analysis.py, tests/test_cli_predict.py and
tests/test_visualization.py: a few epochs on the toy Hβ spectra of
tests/estimators/conftest.py (the network's quality is not under test there;
only that the same numbers come through every door).
"""

import functools

from tests.estimators.conftest import TOY_OPTIONS, TOY_PREPROCESSING, make_toy_batch


@functools.cache
def train_tiny_mass_estimator():
    """A resnet1d MassEstimator fitted for 2 epochs on 64 toy spectra (once per session)."""
    from spectralnn.estimators import MassEstimator

    est = MassEstimator("resnet1d", preprocessing=TOY_PREPROCESSING,
                        architecture_options=TOY_OPTIONS, virial=False)
    batch, y = make_toy_batch(64, seed=11)
    est.fit(batch, y, epochs=2, batch_size=32, seed=0, validation=None)
    return est


def save_tiny_mass_model(folder):
    """The tiny estimator saved under ``folder``; return (estimator, .keras path)."""
    est = train_tiny_mass_estimator()
    path = folder / "tiny-mass.keras"
    est.save(path, name="tiny-mass")
    return est, path
