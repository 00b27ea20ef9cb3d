"""
Readers of survey spectrum files.

SDSS/BOSS ``spec`` files (`read_sdss`), DESI coadds with their three arms
merged (`read_desi_coadd`), spectra stored as 1-D FITS images
(`read_fits_image_spectrum`), any of them by content (`read_spectrum`), and
many files into one `~spectralnn.SpectrumBatch` (`read_spectra`). Missing,
truncated or corrupt files raise `~spectralnn.errors.SpectrumFileError`.
"""

from .desi import *  # noqa: F403
from .fits_image import *  # noqa: F403
from .readers import *  # noqa: F403
from .registry import *  # noqa: F403
from .sdss import *  # noqa: F403
