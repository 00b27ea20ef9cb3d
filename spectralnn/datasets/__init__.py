"""
Datasets of spectra for training.

An HDF5 format with a versioned schema, streamed reading, standardisation,
splits by object and class balancing; training sets from survey spectra joined
to a catalogue of labels; SDSS queries and downloads
(`spectralnn.datasets.sdss`, which needs astroquery).
"""

from .balance import *  # noqa: F403
from .catalog import *  # noqa: F403
from .examples import *  # noqa: F403
from .hdf5 import *  # noqa: F403
from .nebular_grids import *  # noqa: F403
from .sdss import *  # noqa: F403
from .splits import *  # noqa: F403
from .standardize import *  # noqa: F403
