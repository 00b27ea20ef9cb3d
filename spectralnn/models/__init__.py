"""
Keras networks, their preprocessing declaration and the weights registry.

`architectures` builds the networks by name (``'resnet1d'``/``'default'``,
``'wren2021'``, ``'epoch_pooling'``), `heads` holds the heteroscedastic
Gaussian head and its loss, `layers` the masked epoch pooling, `pipeline` the
preprocessing a model declares, and `registry` saves, finds, verifies (sha256)
and safely loads ``.keras`` files with their JSON metadata; `quasarnet` is a
Keras 3 replica of QuasarNET (Busca & Balland 2018), the benchmark peer.

Keras is imported only when a network is built or loaded: the Keras classes
(`HeteroscedasticHead`, `GaussianNLL`, `gaussian_nll`,
`MaskedAttentionPooling`) are resolved on first access.
"""

import importlib

from .architectures import *  # noqa: F403
from .pipeline import *  # noqa: F403
from .quasarnet import *  # noqa: F403
from .registry import *  # noqa: F403

_KERAS_NAMES = {
    "HeteroscedasticHead": "heads",
    "GaussianNLL": "heads",
    "gaussian_nll": "heads",
    "split_mean_log_var": "heads",
    "MaskedAttentionPooling": "layers",
}


def __getattr__(name):
    if name in _KERAS_NAMES:
        module = importlib.import_module(f"spectralnn.models.{_KERAS_NAMES[name]}")
        return getattr(module, name)
    raise AttributeError(f"module 'spectralnn.models' has no attribute {name!r}")
