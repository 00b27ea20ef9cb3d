"""
Simulated survey spectra with truth tables.

Noiseless physical models (quasars here; galaxies and stars in their own
modules) are observed through an instrument model (`observe`) that gives them
a survey's grid, resolution, sky, noise and bad pixels. Every simulator is
deterministic for a given seed and returns a `~spectralnn.SpectrumBatch`
whose ``meta`` is the truth table.
"""

from .absorbers import *  # noqa: F403
from .bal import *  # noqa: F403
from .core import *  # noqa: F403
from .feii import *  # noqa: F403
from .forest import *  # noqa: F403
from .galaxy import *  # noqa: F403
from .instrument import *  # noqa: F403
from .photometry import *  # noqa: F403
from .quasar import *  # noqa: F403
from .star import *  # noqa: F403
