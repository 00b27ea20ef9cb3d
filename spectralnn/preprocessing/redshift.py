"""
Shifting spectra between the observed frame and the rest frame.

λ_rest = λ_obs / (1 + z) and, since the same photons are spread over a
(1 + z) times narrower range, f_λ,rest = (1 + z) f_λ,obs (the inverse variance
scales by (1 + z)⁻²). The integral ∫f_λ dλ is unchanged. The redshift comes
from the ``z`` argument (a scalar or one value per spectrum) or from the
``z`` column of the batch's meta table.
"""


import numpy as np
from astropy import units as u

from .._utils import flag_bad_rows, per_spectrum, spectrum_or_batch
from ..batch import SpectrumBatch
from ..errors import InvalidSpectrumError
from ..flags import Flag
from ..logger import log
from .resample import _is_single, log_wavelength_grid, resample

__all__ = ["to_rest_frame", "to_observed_frame", "rest_frame_batch", "MIN_REDSHIFT"]

#: Smallest redshift accepted. Slightly negative values are real (blueshifted
#: Galactic stars and Local Group galaxies, |v| up to ~1500 km/s); anything
#: below is taken to be a failed or placeholder redshift.
MIN_REDSHIFT = -0.005


def _resolve_redshift(batch, z, *, strict, action):
    """Per-spectrum z (N,), with invalid rows flagged (or raising if strict)."""
    z = per_spectrum(batch, z, "z", unit=u.dimensionless_unscaled)
    bad = ~np.isfinite(z) | (z < MIN_REDSHIFT)
    if bad.any() and strict:
        raise InvalidSpectrumError(
            f"cannot {action}: redshift is "
            f"{'unknown (nan)' if np.isnan(z[0]) else float(z[0])}; pass z= or "
            f"set meta['z'] to a finite value >= {MIN_REDSHIFT}"
        )
    return z, bad


def _shift(batch, z, bad, *, frame):
    """Apply λ → λ·s, f → f/s with s = 1+z (to observed) or 1/(1+z) (to rest)."""
    ok_z = z[~bad]
    fill = ok_z[0] if ok_z.size else 0.0
    z_used = np.where(bad, fill, z)
    stretch = 1.0 + z_used if frame == "observed" else 1.0 / (1.0 + z_used)
    if np.all(stretch == stretch[0]) and batch.shared_grid:
        wave = batch.wavelength * stretch[0]
    else:
        wave = batch.wavelength_2d * stretch[:, None]
    flux = batch.flux / stretch[:, None]
    ivar = batch.ivar * stretch[:, None] ** 2
    mask = batch.mask.copy()
    meta = batch.meta.copy()
    flags = np.asarray(meta["flags"], dtype=np.int64).copy()
    flag_bad_rows(flux, ivar, mask, flags, bad, Flag.NO_REDSHIFT, "no valid redshift")
    meta["flags"] = flags
    meta["z"] = np.where(bad, np.nan, z)
    return SpectrumBatch._from_arrays_unchecked(wave, flux, ivar, mask, meta,
                                                batch.flux_unit, frame)


def to_rest_frame(spectra, z=None):
    """
    Shift observed-frame spectra to their rest frames.

    λ_rest = λ_obs / (1 + z), f_λ,rest = (1 + z) f_λ,obs and the inverse
    variance is divided by (1 + z)². With different redshifts the result has
    one wavelength grid per spectrum; use `rest_frame_batch` to put them on a
    common rest grid.

    Parameters
    ----------
    spectra : `specutils.Spectrum` or `~spectralnn.SpectrumBatch`
        Observed-frame spectra.
    z : float or array-like, optional
        Redshift, one value or one per spectrum. Default: the ``z`` column of
        the meta table (``spectrum.meta['z']`` for a Spectrum).

    Returns
    -------
    rest : `specutils.Spectrum` or `~spectralnn.SpectrumBatch`
        Rest-frame spectra (``frame='rest'``) with the redshift used in
        ``meta['z']``.

    Raises
    ------
    spectralnn.errors.InvalidSpectrumError
        If the spectra are already in the rest frame, or, for a single
        spectrum, if the redshift is missing, NaN or below `MIN_REDSHIFT`. In
        a batch such rows are instead masked (ivar 0), flagged
        `~spectralnn.flags.Flag.NO_REDSHIFT` and reported with a
        `~spectralnn.errors.BatchItemWarning`.

    Examples
    --------
    >>> import numpy as np, astropy.units as u
    >>> from spectralnn import SpectrumBatch
    >>> batch = SpectrumBatch(np.array([6000.0, 6002.0]) * u.AA, np.ones(2),
    ...                       np.ones(2), flux_unit=u.one)
    >>> rest = to_rest_frame(batch, z=1.0)
    >>> rest.wavelength, rest.flux, rest.frame  # doctest: +FLOAT_CMP
    (array([3000., 3001.]), array([[2., 2.]]), 'rest')
    """
    strict = _is_single(spectra)
    return _to_rest_frame(spectra, z, strict=strict)


@spectrum_or_batch
def _to_rest_frame(batch, z, *, strict):
    if batch.frame == "rest":
        raise InvalidSpectrumError("the spectra are already in the rest frame")
    z, bad = _resolve_redshift(batch, z, strict=strict,
                               action="shift to the rest frame")
    log.debug("shifting %d spectra to the rest frame", len(batch))
    return _shift(batch, z, bad, frame="rest")


def to_observed_frame(spectra, z=None):
    """
    Shift rest-frame spectra back to the observed frame (inverse of `to_rest_frame`).

    λ_obs = (1 + z) λ_rest, f_λ,obs = f_λ,rest / (1 + z), inverse variance
    times (1 + z)².

    Parameters
    ----------
    spectra : `specutils.Spectrum` or `~spectralnn.SpectrumBatch`
        Rest-frame spectra.
    z : float or array-like, optional
        Redshift, one value or one per spectrum. Default: ``meta['z']``.

    Returns
    -------
    observed : `specutils.Spectrum` or `~spectralnn.SpectrumBatch`
        Observed-frame spectra (``frame='observed'``).

    Raises
    ------
    spectralnn.errors.InvalidSpectrumError
        If the spectra are not in the rest frame, or, for a single spectrum,
        if the redshift is invalid (in a batch such rows are flagged
        `~spectralnn.flags.Flag.NO_REDSHIFT`, as in `to_rest_frame`).

    Examples
    --------
    >>> import numpy as np, astropy.units as u
    >>> from spectralnn import SpectrumBatch
    >>> batch = SpectrumBatch(np.array([3000.0, 3001.0]) * u.AA, np.ones(2),
    ...                       np.ones(2), flux_unit=u.one, frame="rest")
    >>> to_observed_frame(batch, z=1.0).wavelength  # doctest: +FLOAT_CMP
    array([6000., 6002.])
    """
    strict = _is_single(spectra)
    return _to_observed_frame(spectra, z, strict=strict)


@spectrum_or_batch
def _to_observed_frame(batch, z, *, strict):
    if batch.frame != "rest":
        raise InvalidSpectrumError(
            "the spectra are already in the observed frame (frame='observed')"
        )
    z, bad = _resolve_redshift(batch, z, strict=strict,
                               action="shift to the observed frame")
    return _shift(batch, z, bad, frame="observed")


def rest_frame_batch(spectra, grid=None, z=None, *, dloglam: float = 1e-4):
    """
    Shift spectra to their rest frames and resample them onto one rest grid.

    `to_rest_frame` followed by `~spectralnn.preprocessing.resample`: the
    usual input of a neural network, which needs every spectrum on the same
    pixels.

    Parameters
    ----------
    spectra : `specutils.Spectrum` or `~spectralnn.SpectrumBatch`
        Observed-frame spectra.
    grid : `~astropy.units.Quantity`, optional
        Common rest-frame grid. Default: a log-λ grid of step ``dloglam``
        covering all rest-frame wavelengths of the spectra with a valid
        redshift.
    z : float or array-like, optional
        Redshift(s). Default: ``meta['z']``.
    dloglam : float, optional
        Step of the default grid in log10(λ). Default 1e-4.

    Returns
    -------
    rest : `specutils.Spectrum` or `~spectralnn.SpectrumBatch`
        Rest-frame spectra on ``grid``; pixels of the grid a spectrum does not
        fully cover are masked with ivar 0.

    Raises
    ------
    spectralnn.errors.InvalidSpectrumError
        As `to_rest_frame`.

    Examples
    --------
    >>> import numpy as np, astropy.units as u
    >>> from spectralnn import SpectrumBatch
    >>> wave = np.linspace(4000, 8000, 400) * u.AA
    >>> batch = SpectrumBatch(wave, np.ones((2, 400)), np.ones((2, 400)),
    ...                       flux_unit=u.one)
    >>> out = rest_frame_batch(batch, np.arange(2000.0, 3200.0, 10.0) * u.AA,
    ...                        z=[0.5, 1.0])
    >>> out.flux.shape, out.shared_grid
    ((2, 120), True)
    >>> out.mask.sum(axis=1)  # z=0.5 covers 2667-5333 A; z=1 starts inside bin 0
    array([67,  1])
    """
    rest = to_rest_frame(spectra, z=z)
    if grid is None:
        batch = rest
        if not isinstance(rest, SpectrumBatch):
            batch = SpectrumBatch.from_spectrum(rest)
        usable = ~(batch.flags & Flag.NO_REDSHIFT).astype(bool)
        wave = batch.wavelength_2d[usable] if usable.any() else batch.wavelength_2d
        grid = log_wavelength_grid(wave.min() * u.AA, wave.max() * u.AA,
                                   dloglam=dloglam)
    return resample(rest, grid)
