"""
Exceptions and warnings raised by spectralnn.

Every error the package raises on purpose derives from `SpectralNNError`, so a
caller can catch all of them at once, and each also derives from the matching
built-in exception (``ValueError``, ``OSError``...) so generic handlers still
work.

Examples
--------
>>> from spectralnn.errors import SpectralNNError, InvalidSpectrumError
>>> issubclass(InvalidSpectrumError, SpectralNNError)
True
>>> issubclass(InvalidSpectrumError, ValueError)
True
"""

from astropy.units import UnitsError
from astropy.utils.exceptions import AstropyUserWarning

__all__ = [
    "SpectralNNError",
    "InvalidSpectrumError",
    "WavelengthCoverageError",
    "SpectralUnitsError",
    "SpectrumFileError",
    "ModelFileError",
    "DatasetError",
    "SpectralNNWarning",
    "MaskedPixelsWarning",
    "BatchItemWarning",
]


class SpectralNNError(Exception):
    """Base class of every error raised by spectralnn."""


class InvalidSpectrumError(SpectralNNError, ValueError):
    """
    The spectrum's arrays are unusable.

    Raised for NaN or infinite flux where it cannot be masked, negative or
    all-zero inverse variance, unsorted or duplicated wavelengths, or arrays
    whose shapes do not agree.
    """


class WavelengthCoverageError(SpectralNNError, ValueError):
    """
    The spectrum does not cover the wavelengths an operation needs.

    Raised, for example, when dereddening outside a dust model's valid range,
    when a line window falls off the spectrum, or when two grids do not overlap.
    """


class SpectralUnitsError(SpectralNNError, UnitsError):
    """A quantity is missing its unit or carries an incompatible one."""


class SpectrumFileError(SpectralNNError, OSError):
    """A spectrum file is missing, truncated, corrupt or of an unknown format."""


class ModelFileError(SpectralNNError, OSError):
    """A model file or its metadata is invalid, or its hash does not match."""


class DatasetError(SpectralNNError, OSError):
    """An HDF5 dataset is truncated, foreign or of an unsupported schema version."""


class SpectralNNWarning(AstropyUserWarning):
    """Base class of every warning issued by spectralnn."""


class MaskedPixelsWarning(SpectralNNWarning):
    """Bad pixels (NaN, inf, negative inverse variance) were masked."""


class BatchItemWarning(SpectralNNWarning):
    """One item of a batch failed; it is flagged and the others go on."""
