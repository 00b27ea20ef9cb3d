"""
Continuum models: a quasar power law and a general robust continuum.

Both work on N×M arrays at once and return the continuum as a model spectrum
(a `~spectralnn.SpectrumBatch`, or a `specutils.Spectrum` for one spectrum)
that `subtract_continuum` and `normalize_continuum` apply.
"""

import warnings

import numpy as np
from astropy import units as u

from .._utils import per_spectrum, positive_reciprocal, spectrum_or_batch
from ..batch import SpectrumBatch, as_batch
from ..errors import InvalidSpectrumError, SpectralUnitsError
from ..flags import Flag
from ..lines import CONTINUUM_WINDOWS
from ..logger import log
from ._fitting import compact, levenberg_marquardt

__all__ = [
    "continuum_powerlaw",
    "continuum_robust",
    "subtract_continuum",
    "normalize_continuum",
]

#: speed of light in km/s
_C_KMS = 299792.458


def _rest_arrays(batch, z):
    """
    Rest-frame wavelength (N, M), redshift (N,) and a flag array.

    A rest-frame batch has z = 0 here; an observed-frame batch needs a finite
    z per spectrum (rows without one are flagged NO_REDSHIFT and get z = NaN).
    """
    n = len(batch)
    flags = np.zeros(n, dtype=np.int64)
    if batch.frame == "rest":
        zz = np.zeros(n)
        if z is not None:
            log.debug("batch is already rest-frame: z argument ignored")
    else:
        zz = per_spectrum(batch, z, "z")
        missing = ~np.isfinite(zz)
        flags[missing] |= Flag.NO_REDSHIFT
        zz = np.where(missing, np.nan, zz)
    if batch.frame == "rest":
        # a read-only view: on a shared grid every row is the same memory
        return batch.wavelength_2d, zz, flags
    lam = batch.wavelength_2d / (1.0 + np.nan_to_num(zz, nan=0.0))[:, None]
    return lam, zz, flags


def _in_windows(lam, windows):
    """Boolean mask of wavelengths inside any of the sorted (K, 2) windows."""
    order = np.argsort(windows[:, 0])
    lo, hi = windows[order, 0], windows[order, 1]
    k = np.searchsorted(lo, lam, side="right") - 1
    inside = k >= 0
    return inside & (lam <= hi[np.clip(k, 0, None)])


def _weighted_line(x, y, w):
    """Weighted least-squares straight line ``y = a + b x`` per row: (N, 2)."""
    s0, s1, s2 = w.sum(1), (w * x).sum(1), (w * x * x).sum(1)
    wy = w * y
    b0, b1 = wy.sum(1), (wy * x).sum(1)
    det = s0 * s2 - s1**2
    ok = det > 0
    det = np.where(ok, det, 1.0)
    a = np.where(ok, (s2 * b0 - s1 * b1) / det, 0.0)
    b = np.where(ok, (s0 * b1 - s1 * b0) / det, 0.0)
    return np.stack([a, b], axis=1)


def _windows_value(windows):
    if windows is None:
        windows = CONTINUUM_WINDOWS
    if isinstance(windows, u.Quantity):
        windows = windows.to_value(u.AA, equivalencies=u.spectral())
    else:
        raise SpectralUnitsError("windows need a unit, e.g. [[1350, 1360]] * u.AA")
    windows = np.atleast_2d(np.asarray(windows, dtype=float))
    if (
        windows.ndim != 2
        or windows.shape[1] != 2
        or np.any(windows[:, 1] <= windows[:, 0])
    ):
        raise ValueError(
            f"windows must have shape (K, 2) with lower < upper, got {windows.shape}"
        )
    return windows


def _model_batch(batch, model, variance, meta, flags):
    """A continuum-model batch on the grid of ``batch``."""
    meta["flags"] = np.asarray(meta["flags"], dtype=np.int64) | flags
    bad = (
        ~np.isfinite(model)
        | (
            flags
            & (Flag.FIT_FAILED | Flag.OUT_OF_COVERAGE | Flag.NO_REDSHIFT | Flag.NO_DATA)
            != 0
        )[:, None]
    )
    with np.errstate(divide="ignore"):
        ivar = np.where(
            bad | ~(variance > 0), 0.0, 1.0 / np.where(variance > 0, variance, 1.0)
        )
    return SpectrumBatch._from_arrays_unchecked(
        batch.wavelength.copy(),
        np.where(bad, 0.0, model),
        ivar,
        bad.copy(),
        meta,
        batch.flux_unit,
        batch.frame,
    )


@spectrum_or_batch
def continuum_powerlaw(
    spectra,
    *,
    windows=None,
    z=None,
    wavelength0=None,
    sigma: float = 3.0,
    iterations: int = 5,
    min_pixels: int = 10,
    extrapolate: bool = False,
):
    """
    Fit a power law f_λ = A (λ/λ0)^α to line-free continuum windows.

    The fit uses only good pixels inside the rest-frame ``windows`` that a
    spectrum covers. It is done for all spectra at once: first by weighted
    linear least squares in log space with iterative sigma clipping of
    outliers (absorption, residual lines), then refined by a weighted
    nonlinear fit in linear flux space on the kept pixels, whose covariance
    gives the quoted errors. For an observed-frame batch the windows are
    shifted by (1 + z) per spectrum; the model returned is in the batch's
    frame, with λ the rest wavelength.

    Parameters
    ----------
    spectra : `specutils.Spectrum`, `~spectralnn.SpectrumBatch` or list
        The spectra.
    windows : `~astropy.units.Quantity`, optional
        Rest-frame windows, shape (K, 2). Default
        `spectralnn.lines.CONTINUUM_WINDOWS` (Shen et al. 2011; Vanden Berk et
        al. 2001 composite line-free regions).
    z : float or array-like, optional
        Redshift per spectrum for an observed-frame batch (default
        ``meta['z']``). Ignored for a rest-frame batch.
    wavelength0 : `~astropy.units.Quantity`, optional
        Rest-frame pivot λ0. Default: the median wavelength of the pixels used,
        per spectrum (which decorrelates A and α).
    sigma : float, optional
        Clipping threshold in units of the pixel error. Default 3.
    iterations : int, optional
        Maximum number of clipping iterations. Default 5.
    min_pixels : int, optional
        Fewest window pixels needed; rows with fewer are flagged
        ``OUT_OF_COVERAGE`` and ``FIT_FAILED``. Default 10.
    extrapolate : bool, optional
        If False (the default), pixels bluer or redder than the pixels used
        in the fit are masked in the returned model instead of extrapolated.

    Returns
    -------
    continuum : `~spectralnn.SpectrumBatch` or `specutils.Spectrum`
        The model on the input grid (its ``ivar`` is the inverse variance of
        the model from the fit covariance). ``meta`` holds
        ``continuum_amplitude`` (flux unit, at λ0), ``continuum_slope`` (α),
        ``continuum_wavelength`` (λ0, Å), each with an ``_err`` column (NaN
        with a flag where the fit failed), and ``continuum_npix``.

    Examples
    --------
    >>> import numpy as np, astropy.units as u
    >>> from spectralnn import SpectrumBatch
    >>> from spectralnn.preprocessing import continuum_powerlaw
    >>> wave = np.linspace(1300, 3000, 800)
    >>> flux = 5 * (wave / 2000) ** -1.5
    >>> batch = SpectrumBatch(wave * u.AA, flux, np.full(800, 1e4),
    ...                       flux_unit=u.Unit("1e-17 erg/(s cm2 AA)"), frame="rest")
    >>> cont = continuum_powerlaw(batch, wavelength0=2000 * u.AA)
    >>> float(cont.meta["continuum_slope"][0])  # doctest: +FLOAT_CMP
    -1.5
    """
    batch = spectra
    n = len(batch)
    win = _windows_value(windows)
    lam, zz, flags = _rest_arrays(batch, z)
    # a rest-frame batch on one grid: the window test is the same for all rows
    in_win = _in_windows(lam[:1] if lam.strides[0] == 0 else lam, win)
    use = batch.good & in_win & (batch.flux > 0)
    use &= np.isfinite(zz)[:, None]

    npix = use.sum(axis=1)
    few = npix < max(int(min_pixels), 3)
    flags[few] |= Flag.OUT_OF_COVERAGE | Flag.FIT_FAILED
    use[few] = False

    # work on the window pixels only, gathered to the left of (N, L) arrays
    index, valid = compact(use)
    lam_c = np.take_along_axis(lam, index, axis=1)
    if wavelength0 is None:
        # wavelengths increase along a row, so the median is the middle pixel
        count = valid.sum(axis=1)
        mid = np.take_along_axis(
            lam_c, np.stack([(count - 1) // 2, count // 2], axis=1).clip(0), axis=1
        )
        lam0 = np.where(count > 0, mid.mean(axis=1), np.nan)
    else:
        lam0 = per_spectrum(batch, wavelength0, "wavelength0", unit=u.AA)
    lam0 = np.where(np.isfinite(lam0), lam0, 1.0)
    if lam.strides[0] == 0:  # one grid: one logarithm per pixel
        x_full = np.log(lam[:1]) - np.log(lam0)[:, None]
    else:
        x_full = np.log(lam / lam0[:, None])
    x = np.log(lam_c / lam0[:, None])
    flux = np.take_along_axis(batch.flux, index, axis=1)
    ivar = np.where(valid, np.take_along_axis(batch.ivar, index, axis=1), 0.0)
    use_c = valid.copy()

    # --- log-space linear fit with sigma clipping ------------------------------
    keep = use_c.copy()
    logf = np.log(np.where(flux > 0, flux, 1.0))
    params = np.zeros((n, 2))
    n_min = max(int(min_pixels), 3)
    for _ in range(max(int(iterations), 0) + 1):
        w_log = np.where(keep, ivar * flux**2, 0.0)
        params = _weighted_line(x, logf, w_log)
        model = np.exp(params[:, :1] + params[:, 1:] * x)
        resid = (flux - model) * np.sqrt(ivar)
        new_keep = use_c & (np.abs(resid) < sigma)
        # never clip a row below the minimum: keep it as it was
        ok = new_keep.sum(axis=1) >= n_min
        new_keep = np.where(ok[:, None], new_keep, keep)
        if np.array_equal(new_keep, keep):
            break
        keep = new_keep

    # --- refine in linear flux space (unbiased for noisy data) ----------------
    def powerlaw(p, rows):
        xr = x[rows]
        f = np.exp(np.log(np.abs(p[:, :1])) + p[:, 1:] * xr)
        return f, np.stack([f / p[:, :1], f * xr], axis=-1)

    p0 = np.column_stack([np.exp(params[:, 0]), params[:, 1]])
    p0[~np.isfinite(p0)] = 1.0
    weight = np.where(keep, ivar, 0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        fit = levenberg_marquardt(
            powerlaw, p0, np.where(keep, flux, 0.0), weight, lower=[0.0, -np.inf]
        )
    failed = ~fit.success & ~few
    flags[failed] |= Flag.FIT_FAILED
    bad = (flags & (Flag.FIT_FAILED | Flag.NO_REDSHIFT)) != 0
    amp, slope = fit.params[:, 0], fit.params[:, 1]
    err = fit.errors
    model = amp[:, None] * np.exp(slope[:, None] * x_full)
    cov = fit.covariance
    var = model**2 * (
        cov[:, 0, 0, None] / amp[:, None] ** 2
        + 2 * x_full * cov[:, 0, 1, None] / amp[:, None]
        + x_full**2 * cov[:, 1, 1, None]
    )
    if not extrapolate:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            xk = np.where(keep, x, np.nan)
            lo = np.nanmin(xk, axis=1, initial=np.inf)
            hi = np.nanmax(xk, axis=1, initial=-np.inf)
        outside = (x_full < lo[:, None]) | (x_full > hi[:, None])
        model = np.where(outside, np.nan, model)

    meta = batch.meta.copy()
    # the amplitude is a flux density in the batch frame at rest wavelength lam0
    meta["continuum_amplitude"] = np.where(bad, np.nan, amp) * batch.flux_unit
    meta["continuum_amplitude_err"] = np.where(bad, np.nan, err[:, 0]) * batch.flux_unit
    meta["continuum_slope"] = np.where(bad, np.nan, slope)
    meta["continuum_slope_err"] = np.where(bad, np.nan, err[:, 1])
    meta["continuum_wavelength"] = np.where(bad, np.nan, lam0) * u.AA
    meta["continuum_npix"] = keep.sum(axis=1)
    meta["continuum_chi2_reduced"] = np.where(
        bad, np.nan, fit.chi2 / np.maximum(fit.dof, 1)
    )
    log.info("power-law continuum: %d spectra, %d failed", n, int(bad.sum()))
    return _model_batch(batch, model, var, meta, flags)


def _width_in_pixels(batch, width):
    """Convert a width (pixels, Å or km/s) to an odd pixel count."""
    if isinstance(width, u.Quantity):
        wave = batch.wavelength_2d
        dlam = np.median(np.diff(wave, axis=-1))
        if width.unit.is_equivalent(u.km / u.s):
            dv = np.median(np.diff(np.log(wave), axis=-1)) * _C_KMS
            pix = width.to_value(u.km / u.s) / dv
        else:
            pix = width.to_value(u.AA) / dlam
    else:
        pix = float(width)
    pix = int(round(pix))
    if pix < 3:
        raise ValueError(f"width must span at least 3 pixels, got {width}")
    return pix | 1


def _running_median(values, width):
    """
    Running median of ``width`` pixels (NaN ignored), sampled every width/4.

    Medians of windows centred every ``width // 4`` pixels are interpolated
    linearly back to every pixel; beyond the first and last centres the
    nearest median is used (the windows there still contain data).
    """
    n, m = values.shape
    half = width // 2
    step = max(width // 4, 1)
    padded = np.pad(values, ((0, 0), (half, half)), constant_values=np.nan)
    view = np.lib.stride_tricks.sliding_window_view(padded, width, axis=1)[:, ::step]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        med = np.nanmedian(view, axis=2)
    centres = np.arange(med.shape[1]) * step
    pos = np.clip(np.arange(m), centres[0], centres[-1])
    k = np.clip(
        np.searchsorted(centres, pos, side="right") - 1, 0, max(len(centres) - 2, 0)
    )
    if len(centres) == 1:
        return np.repeat(med, m, axis=1)
    t = (pos - centres[k]) / step
    left, right = med[:, k], med[:, k + 1]
    # a window without data gives NaN: fall back on the neighbour
    left = np.where(np.isfinite(left), left, right)
    right = np.where(np.isfinite(right), right, left)
    return left * (1 - t) + right * t


def _bspline_basis(x, knots):
    """Cubic B-spline values (…, 4) and first-basis index (…) on uniform knots."""
    step = knots[1] - knots[0]
    t = (x - knots[0]) / step
    k = np.clip(np.floor(t).astype(int), 0, len(knots) - 2)
    u_ = t - k
    b0 = (1 - u_) ** 3 / 6
    b1 = (3 * u_**3 - 6 * u_**2 + 4) / 6
    b2 = (-3 * u_**3 + 3 * u_**2 + 3 * u_ + 1) / 6
    b3 = u_**3 / 6
    return np.stack([b0, b1, b2, b3], axis=-1), k


def _pspline_fit(x, y, w, n_knots, penalty):
    """Penalised cubic B-spline (P-spline) fit of N rows at once."""
    n, m = y.shape
    lo, hi = x.min(), x.max()
    knots = np.linspace(lo, hi + 1e-9 * (hi - lo), n_knots)
    basis, k = _bspline_basis(x, knots)
    n_basis = n_knots + 2
    rows = np.arange(n)[:, None]
    a = np.zeros((n, n_basis * n_basis))
    b = np.zeros((n, n_basis))
    for i in range(4):  # 4x4 local products: vectorised over all pixels and rows
        bi = np.broadcast_to(basis[..., i], (n, m))
        ki = np.broadcast_to(k + i, (n, m))
        flat_b = (rows * n_basis + ki).ravel()
        b += np.bincount(flat_b, (w * y * bi).ravel(), n * n_basis).reshape(n, n_basis)
        for j in range(4):
            bj = np.broadcast_to(basis[..., j], (n, m))
            flat = (rows * n_basis * n_basis + ki * n_basis + (k + j)).ravel()
            a += np.bincount(
                flat, (w * bi * bj).ravel(), n * n_basis * n_basis
            ).reshape(n, -1)
    a = a.reshape(n, n_basis, n_basis)
    d2 = np.diff(np.eye(n_basis), 2, axis=0)
    scale = np.trace(a, axis1=1, axis2=2) / n_basis
    a = a + (penalty * np.maximum(scale, 1e-300))[:, None, None] * (d2.T @ d2)
    coef = np.linalg.solve(a, b[..., None])[..., 0]
    kk = np.broadcast_to(k, (n, m))
    idx = kk[..., None] + np.arange(4)
    return np.sum(
        np.take_along_axis(coef[:, None, :].repeat(m, 1), idx, axis=2) * basis, axis=-1
    )


@spectrum_or_batch
def continuum_robust(
    spectra,
    *,
    method: str = "median",
    width=101,
    sigma: float = 3.0,
    iterations: int = 5,
    penalty: float = 1e-3,
):
    """
    A general continuum by iterative sigma-clipped smoothing.

    Works for any spectrum (quasar, galaxy, star). With ``method='median'`` the
    continuum is a running median of ``width`` pixels; with ``'spline'`` it is
    a penalised cubic B-spline (a P-spline, Eilers & Marx 1996, Stat. Sci. 11,
    89) with one knot per ``width``. In both cases masked pixels and pixels
    deviating by more than ``sigma`` errors from the current continuum are
    left out, and the
    smoothing is repeated, for all spectra at once.

    Parameters
    ----------
    spectra : `specutils.Spectrum`, `~spectralnn.SpectrumBatch` or list
        The spectra.
    method : {'median', 'spline'}, optional
        Smoother. Default 'median'.
    width : int or `~astropy.units.Quantity`, optional
        Smoothing scale: pixels, or a length (Å) or velocity (km/s) converted
        with the median pixel size. Default 101 pixels (~7000 km/s on an SDSS
        grid), wider than narrow and most broad lines.
    sigma : float, optional
        Clipping threshold in pixel errors. Default 3.
    iterations : int, optional
        Number of clip-and-smooth passes. Default 5.
    penalty : float, optional
        Second-difference penalty of the spline, relative to the data weight.
        Default 1e-3.

    Returns
    -------
    continuum : `~spectralnn.SpectrumBatch` or `specutils.Spectrum`
        The continuum on the input grid. Its ``ivar`` is a rough estimate,
        the pixel variance divided by the number of pixels per ``width``
        (times π/2 for the median). Rows without data are masked and
        flagged.

    Examples
    --------
    >>> import numpy as np, astropy.units as u
    >>> from spectralnn import SpectrumBatch
    >>> from spectralnn.preprocessing import continuum_robust
    >>> wave = np.linspace(4000, 6000, 1000)
    >>> flux = 2 + 30 * np.exp(-0.5 * ((wave - 5000) / 3) ** 2)
    >>> b = SpectrumBatch(wave * u.AA, flux, np.full(1000, 100.0), flux_unit=u.one)
    >>> cont = continuum_robust(b, width=51)
    >>> float(cont.flux[0, 500])  # doctest: +FLOAT_CMP
    2.0
    """
    if method not in ("median", "spline"):
        raise ValueError(f"method must be 'median' or 'spline', not {method!r}")
    batch = spectra
    pix = _width_in_pixels(batch, width)
    good = batch.good
    flux, ivar = batch.flux, batch.ivar
    flags = np.zeros(len(batch), dtype=np.int64)
    empty = ~good.any(axis=1)
    flags[empty] |= Flag.NO_DATA | Flag.FIT_FAILED
    err = np.where(good, 1.0 / np.sqrt(np.where(good, ivar, 1.0)), np.inf)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        fill = np.nan_to_num(np.nanmedian(np.where(good, flux, np.nan), axis=1))
    keep = good.copy()
    cont = np.broadcast_to(fill[:, None], flux.shape).copy()
    for _ in range(max(int(iterations), 1)):
        if method == "median":
            cont = _running_median(np.where(keep, flux, np.nan), pix)
            cont = np.where(np.isfinite(cont), cont, fill[:, None])
        else:
            x = np.log(batch.wavelength)
            n_knots = max(int(np.ceil(batch.n_pixels / pix)) + 1, 4)
            cont = _pspline_fit(x, flux, np.where(keep, ivar, 0.0), n_knots, penalty)
        new_keep = good & (np.abs(flux - cont) < sigma * err)
        if np.array_equal(new_keep, keep):
            break
        keep = new_keep
    meta = batch.meta.copy()
    meta["continuum_npix"] = keep.sum(axis=1)
    factor = (np.pi / 2 if method == "median" else 1.0) / pix
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        typical = np.nanmedian(np.where(good, err**2, np.nan), axis=1)
    var = np.where(good, err**2, typical[:, None]) * factor
    return _model_batch(
        batch, cont, np.nan_to_num(var, nan=0.0, posinf=0.0), meta, flags
    )


def _pair(spectra, continuum):
    batch = as_batch(spectra)
    cont = as_batch(continuum)
    if len(cont) != len(batch) and len(cont) != 1:
        raise InvalidSpectrumError(
            f"continuum has {len(cont)} spectra for {len(batch)} spectra"
        )
    if cont.n_pixels != batch.n_pixels or not np.allclose(
        cont.wavelength_2d[:1] if cont.shared_grid else cont.wavelength,
        batch.wavelength_2d[:1] if cont.shared_grid else batch.wavelength,
        rtol=1e-10,
    ):
        raise InvalidSpectrumError(
            "continuum is not on the spectra's wavelength grid; evaluate it there "
            "(e.g. fit it on the same batch)"
        )
    if cont.flux_unit != batch.flux_unit:
        try:
            scale = (1.0 * cont.flux_unit).to_value(batch.flux_unit)
        except u.UnitConversionError as exc:
            raise SpectralUnitsError(
                f"continuum unit {cont.flux_unit} does not match flux unit "
                f"{batch.flux_unit}"
            ) from exc
        cont = cont.copy(
            flux=cont.flux * scale, ivar=cont.ivar / scale**2, flux_unit=batch.flux_unit
        )
    return batch, cont


def _result(spectra, batch, flux, ivar, mask, unit, flags):
    from specutils import Spectrum

    meta = batch.meta.copy()
    meta["flags"] = np.asarray(meta["flags"], dtype=np.int64) | flags
    ivar = np.where(mask, 0.0, ivar)
    out = SpectrumBatch._from_arrays_unchecked(
        batch.wavelength.copy(),
        np.where(mask, 0.0, flux),
        ivar,
        mask,
        meta,
        unit,
        batch.frame,
    )
    if isinstance(spectra, Spectrum) and spectra.flux.ndim == 1:
        return out.to_spectrum(0)
    return out


def subtract_continuum(spectra, continuum):
    """
    Subtract a continuum model: f - c.

    The inverse variance is propagated assuming independent errors
    (σ² = σ_f² + σ_c²; a noiseless model has zero variance). Pixels masked in
    either input are masked in the result.

    Parameters
    ----------
    spectra : `specutils.Spectrum`, `~spectralnn.SpectrumBatch` or list
        The spectra.
    continuum : `specutils.Spectrum` or `~spectralnn.SpectrumBatch`
        The continuum on the same grid (one row, or one per spectrum).

    Returns
    -------
    result : `~spectralnn.SpectrumBatch` or `specutils.Spectrum`
        Continuum-subtracted spectra, in the flux unit of ``spectra``.

    Examples
    --------
    >>> import numpy as np, astropy.units as u
    >>> from spectralnn import SpectrumBatch
    >>> from spectralnn.preprocessing import subtract_continuum
    >>> b = SpectrumBatch(np.arange(1., 4.) * u.AA, [3., 4., 5.], [1., 1., 1.],
    ...                   flux_unit=u.one)
    >>> c = b.copy(flux=np.full((1, 3), 2.0), ivar=np.zeros((1, 3)))
    >>> subtract_continuum(b, c).flux
    array([[1., 2., 3.]])
    """
    batch, cont = _pair(spectra, continuum)
    var = positive_reciprocal(batch.ivar)
    var_c = positive_reciprocal(cont.ivar)
    mask = batch.mask | cont.mask | ~(batch.ivar > 0)
    total = var + var_c
    ivar = positive_reciprocal(total)
    return _result(
        spectra,
        batch,
        batch.flux - cont.flux,
        ivar,
        mask,
        batch.flux_unit,
        np.broadcast_to(cont.flags, (len(batch),)),
    )


def normalize_continuum(spectra, continuum):
    """
    Divide by a continuum model: f / c (dimensionless).

    The inverse variance is propagated to first order,
    σ²(f/c) = σ_f²/c² + f² σ_c²/c⁴. Pixels where the continuum is not positive
    or either input is masked are masked.

    Parameters
    ----------
    spectra : `specutils.Spectrum`, `~spectralnn.SpectrumBatch` or list
        The spectra.
    continuum : `specutils.Spectrum` or `~spectralnn.SpectrumBatch`
        The continuum on the same grid (one row, or one per spectrum).

    Returns
    -------
    result : `~spectralnn.SpectrumBatch` or `specutils.Spectrum`
        Normalised spectra (dimensionless).

    Examples
    --------
    >>> import numpy as np, astropy.units as u
    >>> from spectralnn import SpectrumBatch
    >>> from spectralnn.preprocessing import normalize_continuum
    >>> b = SpectrumBatch(np.arange(1., 4.) * u.AA, [2., 4., 6.], [1., 1., 1.],
    ...                   flux_unit=u.one)
    >>> normalize_continuum(b, b.copy(flux=np.full((1, 3), 2.0))).flux
    array([[1., 2., 3.]])
    """
    batch, cont = _pair(spectra, continuum)
    c = cont.flux
    pos = c > 0
    safe = np.where(pos, c, 1.0)
    var = positive_reciprocal(batch.ivar)
    var_c = positive_reciprocal(cont.ivar)
    ratio = batch.flux / safe
    total = var / safe**2 + ratio**2 * var_c / safe**2
    mask = batch.mask | cont.mask | ~pos | ~(batch.ivar > 0)
    ivar = positive_reciprocal(total)
    return _result(
        spectra,
        batch,
        ratio,
        ivar,
        mask,
        u.dimensionless_unscaled,
        np.broadcast_to(cont.flags, (len(batch),)),
    )
