"""
The one ``regions`` rule of the `spectralnn.analysis` functions.

Not public API: names here can change without deprecation.

Every analysis function treats ``regions`` the same way (as
``specutils.analysis`` does): ``None`` means the whole spectrum, one
`~specutils.SpectralRegion` gives one result, and a list of regions gives a
list of results, one per region. A region restricts the pixels the
computation may use: pixels outside it are *masked* (zero weight), not cut
away, so the spectrum keeps the wavelength grid a network expects and the
continuum windows of a physical fit stay where they are; bounds are in the
frame of the spectrum's spectral axis (observed), in any spectral unit.
"""

import numpy as np
from astropy import units as u

from .batch import as_batch

__all__ = []


def over_regions(func, spectra, regions, **kwargs):
    """
    Apply ``func(batch, **kwargs)`` to the whole input or to each region.

    Parameters
    ----------
    func : callable
        The computation; takes a `~spectralnn.SpectrumBatch` first.
    spectra : `specutils.Spectrum`, `~spectralnn.SpectrumBatch`, list or path(s)
        The input, converted once with `spectralnn.batch.as_batch`.
    regions : None, `~specutils.SpectralRegion` or list of them
        See the module docstring.
    **kwargs
        Passed to ``func``.

    Returns
    -------
    result
        ``func``'s result, or a list of them for a list of regions.

    Raises
    ------
    TypeError
        If ``regions`` is of another type.
    """
    from specutils import SpectralRegion

    batch = as_batch(spectra)
    if regions is None:
        return func(batch, **kwargs)
    if isinstance(regions, SpectralRegion):
        return func(mask_outside(batch, regions), **kwargs)
    if isinstance(regions, (list, tuple)) and all(
        isinstance(r, SpectralRegion) for r in regions
    ):
        return [func(mask_outside(batch, r), **kwargs) for r in regions]
    raise TypeError(
        "regions must be None, a specutils SpectralRegion or a list of them; got "
        f"{type(regions).__name__}"
    )


def region_bounds(region):
    """(K, 2) array of the sub-region bounds of a `~specutils.SpectralRegion`, in Å."""
    bounds = []
    for lower, upper in region.subregions:
        lo = u.Quantity(lower).to_value(u.AA, equivalencies=u.spectral())
        hi = u.Quantity(upper).to_value(u.AA, equivalencies=u.spectral())
        bounds.append(sorted((lo, hi)))  # frequency bounds come out reversed
    return np.array(bounds, dtype=np.float64).reshape(-1, 2)


def mask_outside(batch, region):
    """
    A copy of ``batch`` with every pixel outside ``region`` masked.

    Parameters
    ----------
    batch : `~spectralnn.SpectrumBatch`
        The spectra (their own frame).
    region : `~specutils.SpectralRegion`
        Bounds in any spectral unit (wavelength, frequency, energy).

    Returns
    -------
    batch : `~spectralnn.SpectrumBatch`
        Pixels outside every sub-region get ``mask=True`` and zero inverse
        variance.
    """
    wave = batch.wavelength_2d
    inside = np.zeros(wave.shape, dtype=bool)
    for lo, hi in region_bounds(region):
        inside |= (wave >= lo) & (wave <= hi)
    outside = ~inside
    ivar = np.where(outside, 0.0, batch.ivar)
    return batch.copy(mask=batch.mask | outside, ivar=ivar)


def attach_uncertainty(value, error, unit, error_unit):
    """
    ``value`` in ``unit`` with ``error`` (in ``error_unit``) as ``.uncertainty``.

    The conversion happens *before* the attribute is attached: a
    `~astropy.units.Quantity` attribute does not survive a unit conversion
    (the same caveat as in ``specutils.analysis``).

    Parameters
    ----------
    value, error : `~astropy.units.Quantity`
        The values and their 1σ uncertainties (same shape).
    unit, error_unit : `~astropy.units.Unit`
        Units of the result and of its uncertainty.

    Returns
    -------
    result : `~astropy.units.Quantity`
        A scalar for one value, else an array; ``result.uncertainty`` is a
        Quantity of the same shape and ``result.uncertainty_type`` is
        ``'std'``.
    """
    result = value.to(unit)
    if result.ndim == 1 and result.size == 1:
        result = result[0]
    err = error.to(error_unit)
    result.uncertainty = err.reshape(result.shape)
    result.uncertainty_type = "std"
    return result
