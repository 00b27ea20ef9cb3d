"""
Astrophysics on measured spectra: luminosities, virial black-hole masses,
line profiles, nebular diagnostics (strong-line metallicities, T_e, n_e).

Distances come from `astropy.cosmology` (Planck18 by default, any astropy
cosmology accepted); every function takes and returns `~astropy.units.Quantity`
values, vectorised over many spectra.
"""

from .blackhole import *  # noqa: F403
from .luminosity import *  # noqa: F403
from .nebular import *  # noqa: F403
from .virial import *  # noqa: F403
from .voigt import *  # noqa: F403
