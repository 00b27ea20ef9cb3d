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
    """
    Base class of every error raised by spectralnn.

    Examples
    --------
    Catch any spectralnn error at once:

    >>> from spectralnn.errors import SpectralNNError
    >>> from spectralnn.io import read_sdss
    >>> try:
    ...     read_sdss("no-such-file.fits")
    ... except SpectralNNError as exc:
    ...     print(type(exc).__name__)
    SpectrumFileError
    """


class InvalidSpectrumError(SpectralNNError, ValueError):
    """
    The spectrum's arrays are unusable.

    Raised for NaN or infinite flux where it cannot be masked, negative or
    all-zero inverse variance, unsorted or duplicated wavelengths, or arrays
    whose shapes do not agree.

    Examples
    --------
    >>> import numpy as np
    >>> import astropy.units as u
    >>> from spectralnn import SpectrumBatch
    >>> from spectralnn.errors import InvalidSpectrumError
    >>> flux = np.ones((1, 3)) * u.Unit("1e-17 erg / (s cm2 AA)")
    >>> try:
    ...     SpectrumBatch([4000, 4001, 4002] * u.AA, flux, np.ones((1, 4)))
    ... except InvalidSpectrumError as exc:
    ...     print(exc)
    ivar shape (1, 4) does not match flux shape (1, 3)
    """


class WavelengthCoverageError(SpectralNNError, ValueError):
    """
    The spectrum does not cover the wavelengths an operation needs.

    Raised, for example, when dereddening outside a dust model's valid range,
    when a line window falls off the spectrum, or when two grids do not overlap.

    Examples
    --------
    >>> import numpy as np
    >>> import astropy.units as u
    >>> from spectralnn import SpectrumBatch
    >>> from spectralnn.errors import WavelengthCoverageError
    >>> from spectralnn.preprocessing import deredden
    >>> far_uv = SpectrumBatch(np.linspace(100, 200, 5) * u.AA, np.ones((1, 5)) * u.Jy,
    ...                        np.ones((1, 5)))
    >>> try:
    ...     deredden(far_uv, ebv=0.1)
    ... except WavelengthCoverageError:
    ...     print("outside the dust model")
    outside the dust model
    """


class SpectralUnitsError(SpectralNNError, UnitsError):
    """
    A quantity is missing its unit or carries an incompatible one.

    Examples
    --------
    >>> import numpy as np
    >>> from spectralnn import SpectrumBatch
    >>> from spectralnn.errors import SpectralUnitsError
    >>> try:
    ...     SpectrumBatch(np.array([4000.0, 4001.0]), np.ones((1, 2)), np.ones((1, 2)))
    ... except SpectralUnitsError as exc:
    ...     print(exc)
    wavelength has no unit: pass an astropy Quantity (e.g. wave * u.AA)
    """


class SpectrumFileError(SpectralNNError, OSError):
    """
    A spectrum file is missing, truncated, corrupt or of an unknown format.

    Examples
    --------
    >>> from spectralnn.errors import SpectrumFileError
    >>> from spectralnn.io import read_spectrum
    >>> try:
    ...     read_spectrum("no-such-file.fits")
    ... except SpectrumFileError as exc:
    ...     print(exc)
    no-such-file.fits: no such file
    """


class ModelFileError(SpectralNNError, OSError):
    """
    A model file or its metadata is invalid, or its hash does not match.

    Examples
    --------
    >>> from spectralnn.errors import ModelFileError
    >>> from spectralnn.models import load_model
    >>> try:
    ...     load_model("no-such-model.keras")
    ... except ModelFileError as exc:
    ...     print(exc)
    model file no-such-model.keras does not exist
    """


class DatasetError(SpectralNNError, OSError):
    """
    An HDF5 dataset is truncated, foreign or of an unsupported schema version.

    Examples
    --------
    >>> from spectralnn.datasets import SpectrumDataset
    >>> from spectralnn.errors import DatasetError
    >>> try:
    ...     SpectrumDataset("no-such-dataset.h5")
    ... except DatasetError as exc:
    ...     print(exc)
    dataset file no-such-dataset.h5 does not exist
    """


class SpectralNNWarning(AstropyUserWarning):
    """
    Base class of every warning issued by spectralnn.

    Examples
    --------
    Silence all spectralnn warnings (not recommended) with the standard
    `warnings` filters:

    >>> import warnings
    >>> from spectralnn.errors import SpectralNNWarning
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore", SpectralNNWarning)
    ...     warnings.warn("a message", SpectralNNWarning)
    """


class MaskedPixelsWarning(SpectralNNWarning):
    """
    Bad pixels (NaN, inf, negative inverse variance) were masked.

    Examples
    --------
    >>> import warnings
    >>> import numpy as np
    >>> import astropy.units as u
    >>> from spectralnn import SpectrumBatch
    >>> from spectralnn.errors import MaskedPixelsWarning
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     batch = SpectrumBatch([4000, 4001, 4002] * u.AA,
    ...                           np.array([[1.0, np.nan, 1.0]]) * u.Jy, np.ones((1, 3)))
    >>> caught[0].category is MaskedPixelsWarning, batch.mask.tolist()
    (True, [[False, True, False]])
    """


class BatchItemWarning(SpectralNNWarning):
    """
    One item of a batch failed; it is flagged and the others go on.

    Examples
    --------
    >>> import warnings
    >>> from spectralnn.datasets import example_spectrum_path
    >>> from spectralnn.errors import BatchItemWarning
    >>> from spectralnn.flags import describe_flags
    >>> from spectralnn.io import read_spectra
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     batch = read_spectra([example_spectrum_path(), "missing.fits"])
    >>> caught[0].category is BatchItemWarning, describe_flags(batch.meta["flags"][1])
    (True, ['NO_DATA', 'READ_ERROR'])
    """
