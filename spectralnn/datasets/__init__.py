"""
Datasets of spectra for training: an HDF5 format with a versioned schema,
streamed reading, standardisation, splits by object and class balancing.
"""

from .balance import *  # noqa: F403
from .examples import *  # noqa: F403
from .hdf5 import *  # noqa: F403
from .splits import *  # noqa: F403
from .standardize import *  # noqa: F403
