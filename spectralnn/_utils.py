"""
Internal helpers shared by the preprocessing, physics and estimator modules.

Not public API: names here can change without deprecation.
"""

import functools

import numpy as np
from astropy import units as u

from .batch import SpectrumBatch, as_batch
from .errors import SpectralUnitsError

__all__ = []


def spectrum_or_batch(func):
    """
    Let a function written for a `SpectrumBatch` accept a Spectrum as well.

    The wrapped function takes a `SpectrumBatch` as first argument. When the
    caller passes one `specutils.Spectrum` (or ``Spectrum1D``) it is converted
    with ``on_invalid='raise'``; if the function returns a `SpectrumBatch` of
    one row, it is converted back to a `specutils.Spectrum`. Lists of spectra
    become a batch, and a batch comes back. Any other return value (a table)
    is passed through.
    """

    @functools.wraps(func)
    def wrapper(spectra, *args, **kwargs):
        from specutils import Spectrum

        single = isinstance(spectra, Spectrum) and spectra.flux.ndim == 1
        batch = as_batch(spectra)
        result = func(batch, *args, **kwargs)
        if single and isinstance(result, SpectrumBatch) and len(result) == 1:
            return result.to_spectrum(0)
        return result

    return wrapper


def per_spectrum(batch, value, name, *, unit=None, meta_key=None, default=np.nan):
    """
    Resolve a per-spectrum parameter to a float array of shape (N,).

    ``value`` may be None (then ``batch.meta[meta_key or name]`` is used), a
    scalar, or an array of length N. With ``unit`` given, Quantities are
    converted to it and plain numbers are taken to be in it.
    """
    n = len(batch)
    if value is None:
        return batch.meta_column(meta_key or name, default=default)
    if isinstance(value, u.Quantity):
        if unit is None:
            raise SpectralUnitsError(f"{name} must be a plain number, not {value.unit}")
        value = value.to_value(unit)
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        return np.full(n, float(arr))
    if arr.shape != (n,):
        raise ValueError(f"{name} must be a scalar or have length {n}, got shape {arr.shape}")
    return arr.copy()


def quantity_value(value, unit, name):
    """Strip ``unit`` from a Quantity; refuse a plain number where a unit is needed."""
    if not isinstance(value, u.Quantity):
        raise SpectralUnitsError(f"{name} needs a unit (e.g. {name}=5000 * u.{unit})")
    return value.to_value(unit, equivalencies=u.spectral())


def flag_bad_rows(flux, ivar, mask, flags, bad, flag, reason, *, hint="", stacklevel=5):
    """
    Mask whole spectra in place, set a flag on them and warn once.

    ``flux``, ``ivar``, ``mask`` (N, M) and ``flags`` (N,) are modified in
    place for the rows where ``bad`` is True; the warning reads
    "<k> spectra have <reason> (rows ...); they are masked and flagged <FLAG>".
    """
    import warnings

    from .errors import BatchItemWarning

    if not np.any(bad):
        return
    mask[bad] = True
    ivar[bad] = 0.0
    flux[bad] = 0.0
    flags[bad] |= flag
    rows = np.flatnonzero(bad)
    more = "..." if rows.size > 10 else ""
    warnings.warn(
        f"{rows.size} spectra have {reason} (rows {rows[:10].tolist()}{more}); they "
        f"are masked and flagged {flag.name}{hint}",
        BatchItemWarning,
        stacklevel=stacklevel,
    )


def positive_reciprocal(values):
    """
    ``1 / values`` where ``values > 0``, else 0 (ivar ↔ variance, no warnings).

    Zero (or negative, or NaN) inverse variance means "no information", so its
    variance contribution is 0 and the pixel must be masked by the caller; the
    same rule turns a total variance of 0 back into an ivar of 0.
    """
    values = np.asarray(values, dtype=np.float64)
    positive = values > 0
    return np.where(positive, 1.0 / np.where(positive, values, 1.0), 0.0)
