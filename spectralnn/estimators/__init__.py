"""
Predictors: a specutils spectrum (or many) in, a `~astropy.table.QTable` out.

`Estimator` is the shared base (input coercion, the model's declared
preprocessing, batching through the network, training with checkpoints,
saving and loading hash-checked weights, table assembly with units, ``*_err``
columns and flags); each subclass declares its task. Keras is imported only
when a network is built, loaded or run, so importing this subpackage is cheap.
"""

from .autoencoder import *  # noqa: F403
from .base import *  # noqa: F403
from .classify import *  # noqa: F403
from .dla import *  # noqa: F403
from .ism import *  # noqa: F403
from .mass import *  # noqa: F403
from .pooling import *  # noqa: F403
from .redshift import *  # noqa: F403
