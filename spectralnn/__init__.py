"""
spectralnn: neural networks and classic spectral physics for survey spectra.

The physics (dereddening, resampling, continua, line measurements, virial
masses) is importable without TensorFlow or Keras; the estimators are loaded
lazily on first access, so ``import spectralnn`` stays fast.
"""

import importlib

from astropy import config as _config

try:
    from ._version import version as __version__
except ImportError:  # pragma: no cover - only without an installed build
    __version__ = "0.0.0"

from .batch import SpectrumBatch
from .errors import *  # noqa: F403
from .errors import __all__ as _errors_all
from .logger import log


class Conf(_config.ConfigNamespace):
    """Configuration parameters for `spectralnn`."""

    check_training_domain = _config.ConfigItem(
        True,
        "Warn when an input lies outside the domain a model was trained on "
        "(redshift, wavelength coverage, S/N).",
    )
    low_snr_threshold = _config.ConfigItem(
        2.0, "Median S/N per pixel below which a spectrum is flagged as low S/N."
    )


conf = Conf()

_LAZY = {
    # estimators need Keras at prediction time: import them only when asked for
    "Estimator": "spectralnn.estimators",
    "MassEstimator": "spectralnn.estimators",
    "SpectralClassifier": "spectralnn.estimators",
    "RedshiftEstimator": "spectralnn.estimators",
    "DLAFinder": "spectralnn.estimators",
    "ISMEstimator": "spectralnn.estimators",
    "SpectrumAutoencoder": "spectralnn.estimators",
}

_SUBMODULES = {
    "analysis",
    "datasets",
    "estimators",
    "io",
    "lines",
    "models",
    "physics",
    "preprocessing",
    "simulate",
    "visualization",
}

__all__ = ["SpectrumBatch", "conf", "log", "__version__", *_errors_all, *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        module = importlib.import_module(_LAZY[name])
        return getattr(module, name)
    if name in _SUBMODULES:
        return importlib.import_module(f"spectralnn.{name}")
    raise AttributeError(f"module 'spectralnn' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY) | _SUBMODULES)
