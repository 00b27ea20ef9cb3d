"""
Wavelength grids and ivar-weighted, flux-conserving resampling.

Every pixel is treated as a bin whose edges lie half-way to its neighbours
(the outermost edges half a spacing beyond the first and last pixel). The flux
density of a target bin is the mean of the source flux densities it overlaps,
weighted by inverse variance times overlap length. With uniform inverse
variance and no mask this conserves the integral of the flux density over
any range spanned by whole target bins exactly; masked or zero-ivar pixels
carry no weight.

Target bins that are not *fully* covered by the source bins (at the ends of
the spectrum, or beyond them) are never extrapolated: they get flux 0,
inverse variance 0 and mask True. A target bin that overlaps only masked
source pixels is masked in the same way.
"""

import warnings

import numpy as np
from astropy import units as u
from scipy import sparse

from .._utils import quantity_value, spectrum_or_batch
from ..batch import SpectrumBatch
from ..errors import (
    BatchItemWarning,
    InvalidSpectrumError,
    WavelengthCoverageError,
)
from ..flags import Flag
from ..logger import log

__all__ = ["log_wavelength_grid", "resample", "pixel_edges"]

#: Relative tolerance (of a target bin width) on "fully covered".
_COVER_RTOL = 1e-9


def log_wavelength_grid(
    start: u.Quantity, stop: u.Quantity, dloglam: float = 1e-4
) -> u.Quantity:
    """
    Make a wavelength grid uniform in log10(λ) covering ``start`` to ``stop``.

    The grid points are integer multiples of ``dloglam`` in log10(λ/Å), the
    SDSS/BOSS convention (``COEFF0``, ``COEFF1 = 1e-4``), so grids made with
    the same step line up with each other and with SDSS coadds pixel for
    pixel. The first point is at or below ``start`` and the last at or above
    ``stop``, so both ends are covered.

    Parameters
    ----------
    start, stop : `~astropy.units.Quantity`
        The wavelength range to cover (any spectral unit; frequencies and
        energies are converted).
    dloglam : float, optional
        Step in log10(λ). Default 1e-4 (69 km/s per pixel, as SDSS).

    Returns
    -------
    grid : `~astropy.units.Quantity`
        Wavelengths in Å, strictly increasing.

    Raises
    ------
    ValueError
        If ``dloglam`` is not positive or the range is empty.
    spectralnn.errors.SpectralUnitsError
        If ``start`` or ``stop`` has no spectral unit.

    Examples
    --------
    >>> import astropy.units as u
    >>> grid = log_wavelength_grid(3600 * u.AA, 3601 * u.AA)
    >>> grid  # doctest: +FLOAT_CMP
    <Quantity [3599.97927043, 3600.80829173, 3601.63750395] Angstrom>
    """
    lo = float(quantity_value(start, u.AA, "start"))
    hi = float(quantity_value(stop, u.AA, "stop"))
    lo, hi = min(lo, hi), max(lo, hi)
    if not dloglam > 0 or not np.isfinite(dloglam):
        raise ValueError(f"dloglam must be a positive number, got {dloglam!r}")
    if not (lo > 0 and np.isfinite(hi)) or hi == lo:
        raise ValueError(f"invalid wavelength range {lo} - {hi} Angstrom")
    # a tiny slack so that a bound already on the grid is not pushed outwards
    k0 = int(np.floor(np.log10(lo) / dloglam + 1e-6))
    k1 = int(np.ceil(np.log10(hi) / dloglam - 1e-6))
    return 10.0 ** (dloglam * np.arange(k0, k1 + 1)) * u.AA


def pixel_edges(wavelength: np.ndarray) -> np.ndarray:
    """
    Bin edges of pixels centred on ``wavelength`` (mid-points between pixels).

    The outer edges lie half a pixel spacing beyond the first and last pixel.

    Parameters
    ----------
    wavelength : `~numpy.ndarray`
        Pixel centres, shape ``(..., M)`` with ``M >= 2``, increasing along the
        last axis.

    Returns
    -------
    edges : `~numpy.ndarray`
        Shape ``(..., M + 1)``.

    Examples
    --------
    >>> import numpy as np
    >>> pixel_edges(np.array([1.0, 2.0, 4.0]))
    array([0.5, 1.5, 3. , 5. ])
    """
    w = np.asarray(wavelength, dtype=np.float64)
    mid = 0.5 * (w[..., 1:] + w[..., :-1])
    first = w[..., :1] - (mid[..., :1] - w[..., :1])
    last = w[..., -1:] + (w[..., -1:] - mid[..., -1:])
    return np.concatenate([first, mid, last], axis=-1)


def _overlap_matrix(src_edges, tgt_edges):
    """
    Sparse (M_src, M_tgt) matrix of the overlap lengths of source and target bins.

    The sorted union of both edge sets cuts the axis into segments; each
    segment lies in exactly one source bin and one target bin, and is the
    whole overlap of that pair.
    """
    m = src_edges.size - 1
    k = tgt_edges.size - 1
    union = np.union1d(src_edges, tgt_edges)
    length = np.diff(union)
    centre = 0.5 * (union[1:] + union[:-1])
    i = np.searchsorted(src_edges, centre, side="right") - 1
    j = np.searchsorted(tgt_edges, centre, side="right") - 1
    keep = (i >= 0) & (i < m) & (j >= 0) & (j < k) & (length > 0)
    return sparse.csr_matrix((length[keep], (i[keep], j[keep])), shape=(m, k))


def _resample_shared(flux, ivar, src_edges, tgt_edges):
    """Shared source grid: apply the overlap matrix to all rows at once."""
    overlap = _overlap_matrix(src_edges, tgt_edges)
    overlap_t = overlap.T.tocsr()
    weight = np.asarray(overlap_t @ ivar.T).T
    weighted_flux = np.asarray(overlap_t @ (ivar * flux).T).T
    weight_sq = np.asarray(overlap_t.multiply(overlap_t) @ ivar.T).T
    return weight, weighted_flux, weight_sq


def _resample_per_row(flux, ivar, src_edges, tgt_edges):
    """
    Per-row source grids, one shared target grid, without a loop over rows.

    Linear sums over overlaps are differences of cumulative integrals of the
    piecewise-constant source; the sum of ``ivar * overlap**2`` is built from
    the two partial end bins plus a cumulative sum over the whole bins between.
    The source bin holding each target edge is found for all rows at once by
    one `numpy.searchsorted` on the rows laid end to end (each row shifted past
    the previous one).
    """
    n, m = flux.shape
    width = np.diff(src_edges, axis=1)
    zero = np.zeros((n, 1))
    cum0 = np.concatenate([zero, np.cumsum(ivar * width, axis=1)], axis=1)
    cum1 = np.concatenate([zero, np.cumsum(ivar * flux * width, axis=1)], axis=1)
    cum2 = np.concatenate([zero, np.cumsum(ivar * width**2, axis=1)], axis=1)

    # row-offset searchsorted: rows become disjoint intervals of one sorted axis
    lo = min(src_edges.min(), tgt_edges[0])
    span = max(src_edges.max(), tgt_edges[-1]) - lo
    shift = 2.0 * span + 1.0
    offset = (np.arange(n) * shift)[:, None]
    flat = ((src_edges - lo) + offset).ravel()
    queries = ((tgt_edges - lo)[None, :] + offset).ravel()
    pos = np.searchsorted(flat, queries, side="right")
    idx = pos.reshape(n, -1) - 1 - (np.arange(n) * (m + 1))[:, None]
    idx = np.clip(idx, 0, m - 1)  # (N, K+1): source bin holding each target edge

    rows = np.arange(n)[:, None]
    left = src_edges[rows, idx]
    a = ivar[rows, idx]
    af = a * flux[rows, idx]
    dx = tgt_edges[None, :] - left
    c0 = cum0[rows, idx] + a * dx
    c1 = cum1[rows, idx] + af * dx
    weight = np.diff(c0, axis=1)
    weighted_flux = np.diff(c1, axis=1)

    ia, ib = idx[:, :-1], idx[:, 1:]
    t_lo, t_hi = tgt_edges[None, :-1], tgt_edges[None, 1:]
    same = ia == ib
    first = a[:, :-1] * (np.minimum(src_edges[rows, ia + 1], t_hi) - t_lo) ** 2
    middle = cum2[rows, ib] - cum2[rows, np.minimum(ia + 1, ib)]
    last = a[:, 1:] * (t_hi - src_edges[rows, ib]) ** 2
    weight_sq = np.where(same, a[:, :-1] * (t_hi - t_lo) ** 2, first + middle + last)
    return weight, weighted_flux, weight_sq


def _is_single(spectra):
    """Tell whether the input is one 1-D `specutils.Spectrum` (errors then raise)."""
    from specutils import Spectrum

    return isinstance(spectra, Spectrum) and spectra.flux.ndim == 1


def resample(spectra, grid: u.Quantity):
    """
    Resample spectra onto a new wavelength grid, conserving flux.

    Each source and target pixel is a bin with edges half-way to its
    neighbours. The flux density of a target bin is the mean of the source
    flux densities it overlaps, weighted by inverse variance × overlap length,
    so that with uniform inverse variance the integral of f_λ over any range
    of whole target bins is conserved. The inverse variance is propagated
    exactly for independent source pixels,
    ``ivar_j = (Σ_i ivar_i o_ij)² / Σ_i ivar_i o_ij²`` (neighbouring target
    pixels become correlated when several share a source pixel).

    Parameters
    ----------
    spectra : `specutils.Spectrum` or `~spectralnn.SpectrumBatch`
        The spectra; a batch may have a shared grid or one grid per row.
    grid : `~astropy.units.Quantity`
        Target wavelengths (pixel centres), 1-D, strictly increasing, at
        least 2 points.

    Returns
    -------
    resampled : `specutils.Spectrum` or `~spectralnn.SpectrumBatch`
        On ``grid`` (in Å). Target bins not fully covered by the source, or
        overlapping only masked pixels, get flux 0, inverse variance 0 and
        mask True: nothing is extrapolated.

    Raises
    ------
    spectralnn.errors.WavelengthCoverageError
        For a single spectrum that the grid does not overlap at all. In a
        batch such rows are flagged `~spectralnn.flags.Flag.OUT_OF_COVERAGE`
        and `~spectralnn.flags.Flag.NO_DATA` with a
        `~spectralnn.errors.BatchItemWarning`.
    spectralnn.errors.InvalidSpectrumError
        If the grid is not 1-D and strictly increasing.

    Examples
    --------
    >>> import numpy as np, astropy.units as u
    >>> from spectralnn import SpectrumBatch
    >>> wave = np.arange(4000.0, 4010.0) * u.AA
    >>> batch = SpectrumBatch(wave, np.arange(10.0), np.ones(10), flux_unit=u.one)
    >>> out = resample(batch, np.arange(4000.5, 4009.0, 2.0) * u.AA)
    >>> out.flux  # doctest: +FLOAT_CMP
    array([[0.5, 2.5, 4.5, 6.5, 8.5]])
    >>> out.ivar  # doctest: +FLOAT_CMP
    array([[2., 2., 2., 2., 2.]])
    """
    return _resample(spectra, grid, strict=_is_single(spectra))


@spectrum_or_batch
def _resample(batch, grid, *, strict):
    """Worker of `resample`; ``strict`` raises instead of flagging."""
    target = np.asarray(quantity_value(grid, u.AA, "grid"), dtype=np.float64)
    if target.ndim != 1 or target.size < 2:
        raise InvalidSpectrumError(
            f"grid must be 1-D with at least 2 points, got shape {target.shape}"
        )
    if target[0] > target[-1]:
        target = target[::-1]
    if not np.all(np.diff(target) > 0):
        raise InvalidSpectrumError("grid must be strictly increasing (no duplicates)")
    if batch.n_pixels < 2:
        raise InvalidSpectrumError("cannot resample spectra of fewer than 2 pixels")

    tgt_edges = pixel_edges(target)
    src_edges = pixel_edges(batch.wavelength)
    ivar = np.where(batch.mask, 0.0, batch.ivar)
    flux = np.where(ivar > 0, batch.flux, 0.0)

    if batch.shared_grid:
        weight, weighted_flux, weight_sq = _resample_shared(flux, ivar, src_edges,
                                                            tgt_edges)
        src_lo, src_hi = src_edges[0], src_edges[-1]
    else:
        weight, weighted_flux, weight_sq = _resample_per_row(flux, ivar, src_edges,
                                                             tgt_edges)
        src_lo, src_hi = src_edges[:, :1], src_edges[:, -1:]

    tol = _COVER_RTOL * np.diff(tgt_edges)
    covered = (tgt_edges[:-1] >= src_lo - tol) & (tgt_edges[1:] <= src_hi + tol)
    covered = np.broadcast_to(covered, weight.shape)
    good = covered & (weight > 0) & (weight_sq > 0)
    safe_w = np.where(good, weight, 1.0)
    new_flux = np.where(good, weighted_flux / safe_w, 0.0)
    new_ivar = np.where(good, weight**2 / np.where(good, weight_sq, 1.0), 0.0)
    new_mask = ~good

    meta = batch.meta.copy()
    flags = np.asarray(meta["flags"], dtype=np.int64).copy()
    outside = ~covered.any(axis=1)
    no_data = ~good.any(axis=1) & (batch.good.any(axis=1) | outside)
    if no_data.any():
        if strict and outside.all():
            raise WavelengthCoverageError(
                f"the target grid {target[0]:.1f}-{target[-1]:.1f} Angstrom does not "
                f"overlap the spectrum ({float(np.min(batch.wavelength)):.1f}-"
                f"{float(np.max(batch.wavelength)):.1f} Angstrom)"
            )
        flags[outside] |= Flag.OUT_OF_COVERAGE
        flags[no_data] |= Flag.NO_DATA
        rows = np.flatnonzero(no_data)
        warnings.warn(
            f"{rows.size} spectra have no data on the target grid "
            f"{target[0]:.1f}-{target[-1]:.1f} Angstrom (rows {rows[:10].tolist()}"
            f"{'...' if rows.size > 10 else ''}); they are flagged NO_DATA",
            BatchItemWarning,
            stacklevel=3,
        )
    meta["flags"] = flags
    log.debug("resampled %d spectra from %d to %d pixels", len(batch), batch.n_pixels,
              target.size)
    return SpectrumBatch._from_arrays_unchecked(
        target.copy(), new_flux, new_ivar, new_mask, meta, batch.flux_unit,
        batch.frame,
    )
