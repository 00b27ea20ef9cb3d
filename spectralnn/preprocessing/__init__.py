"""
Physics preprocessing of spectra, for one `specutils.Spectrum` or a batch.

Every step accepts a `specutils.Spectrum` (returning a `specutils.Spectrum`) or a
`~spectralnn.SpectrumBatch` (returning a batch), and works on N×M arrays
without a Python loop over spectra.
"""

from .continuum import *  # noqa: F403
from .dereddening import *  # noqa: F403
from .line_fluxes import *  # noqa: F403
from .measure import *  # noqa: F403
from .redshift import *  # noqa: F403
from .redshift_fit import *  # noqa: F403
from .redshift_templates import *  # noqa: F403
from .resample import *  # noqa: F403
