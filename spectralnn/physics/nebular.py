"""
Classical gas diagnostics from emission-line fluxes, vectorised.

Strong-line metallicity calibrations
    * `n2_metallicity` and `o3n2_metallicity`: Pettini & Pagel (2004) [1]_;
    * `r23_metallicity`: McGaugh (1991) [2]_ in the analytic form of
      Kobulnicky, Kennicutt & Pizagno (1999) [3]_, branch chosen with
      [N II]/[O II] or [N II]/Hα (Kewley & Ellison 2008 [4]_).

Direct (T_e) method and electron density, with PyNeb [5]_ atomic data
    * `sii_density`: n_e from [S II] 6716/6731;
    * `oiii_temperature`: T_e from [O III] 4363/(4959 + 5007);
    * `direct_metallicity`: O⁺⁺/H⁺ and O⁺/H⁺ from the emissivities at T_e
      (T_e[O II] = 0.7 T_e[O III] + 3000 K: Campbell, Terlevich & Melnick
      1986 [6]_, Garnett 1992 [7]_).

PyNeb is used once per process to tabulate line ratios and emissivities on
temperature–density grids; every diagnostic then interpolates those tables,
so a million objects take a fraction of a second (PyNeb's own ``getTemDen``
takes milliseconds per object). Fluxes may be `~astropy.units.Quantity` (all
in one unit) or plain arrays; each function returns ``(value, error)``, the
error propagating the flux errors (numerical derivatives) and, for the
strong-line calibrations, adding the calibration's scatter in quadrature.
Values outside a calibration's validity range or a diagnostic's physical
range are NaN.

References
----------
.. [1] Pettini, M. & Pagel, B. E. J. 2004, MNRAS 348, L59
.. [2] McGaugh, S. S. 1991, ApJ 380, 140
.. [3] Kobulnicky, H. A., Kennicutt, R. C. & Pizagno, J. L. 1999, ApJ 514, 544
.. [4] Kewley, L. J. & Ellison, S. L. 2008, ApJ 681, 1183
.. [5] Luridiana, V., Morisset, C. & Shaw, R. A. 2015, A&A 573, A42 (PyNeb)
.. [6] Campbell, A., Terlevich, R. & Melnick, J. 1986, MNRAS 223, 811
.. [7] Garnett, D. R. 1992, AJ 103, 1330

Examples
--------
>>> from spectralnn.physics import n2_metallicity
>>> oh, err = n2_metallicity(0.1, 1.0)     # [N II]/Hα = 0.1
>>> round(float(oh), 2), round(float(err), 2)
(8.33, 0.18)
"""

import functools

import numpy as np
from astropy import units as u

__all__ = [
    "N2_SCATTER",
    "O3N2_SCATTER",
    "R23_SCATTER",
    "OIII_4959_5007",
    "n2_metallicity",
    "o3n2_metallicity",
    "r23_metallicity",
    "sii_density",
    "oiii_temperature",
    "direct_metallicity",
]

#: 1-sigma scatter of the N2 calibration (PP04: 95 % of H II regions within
#: ±0.41 dex, i.e. 0.18 dex).
N2_SCATTER = 0.18
#: 1-sigma scatter of the O3N2 calibration (PP04: 95 % within ±0.25 dex).
O3N2_SCATTER = 0.14
#: Systematic uncertainty of the McGaugh R23 calibration (KKP99: ~0.15 dex).
R23_SCATTER = 0.15
#: [O III] 4959/5007 flux ratio (Storey & Zeippen 2000, MNRAS 312, 813).
OIII_4959_5007 = 1.0 / 2.98

_T_GRID = np.linspace(5000.0, 30000.0, 51)         # K
_LOGN_GRID = np.linspace(0.0, 5.0, 51)             # log10 cm^-3


def _values(*arrays):
    """Plain float arrays of fluxes given as Quantities (one unit) or numbers."""
    unit = next((a.unit for a in arrays if isinstance(a, u.Quantity)), None)
    out = []
    for a in arrays:
        if a is None:
            out.append(None)
        elif isinstance(a, u.Quantity):
            out.append(np.asarray(a.to_value(unit), dtype=float))
        else:
            out.append(np.asarray(a, dtype=float))
    return out


def _errors(errors, values):
    return [np.zeros_like(v) if e is None else e for e, v in
            zip(_values(*errors), values, strict=True)]


def _propagate(func, values, errors, rel_step=1e-4):
    """Value of ``func(*values)`` and its error from numerical derivatives."""
    value = func(*values)
    var = np.zeros(np.shape(value))
    for i, (x, e) in enumerate(zip(values, errors, strict=True)):
        if x is None or not np.any(e):
            continue
        h = rel_step * np.where(np.abs(x) > 0, np.abs(x), 1.0)
        shifted = list(values)
        shifted[i] = x + h
        deriv = (func(*shifted) - value) / h
        var = var + (deriv * e) ** 2
    return value, np.sqrt(var)


def _log(x):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(x > 0, np.log10(np.where(x > 0, x, 1.0)), np.nan)


def n2_metallicity(nii6583, halpha, nii6583_err=None, halpha_err=None):
    """
    12 + log(O/H) from N2 = log([N II] 6583 / Hα) (Pettini & Pagel 2004).

    ``12 + log(O/H) = 8.90 + 0.57 N2``, valid for -2.5 < N2 < -0.3 (NaN
    outside).

    Parameters
    ----------
    nii6583, halpha : float, array-like or `~astropy.units.Quantity`
        Line fluxes (same unit).
    nii6583_err, halpha_err : optional
        Their 1-sigma errors.

    Returns
    -------
    oh, oh_err : ndarray
        12 + log(O/H) and its error (flux errors plus `N2_SCATTER`).

    Examples
    --------
    >>> oh, err = n2_metallicity([0.05, 0.3], [1.0, 1.0])
    >>> oh.round(3).tolist()
    [8.158, 8.602]
    """
    values = _values(nii6583, halpha)
    errors = _errors((nii6583_err, halpha_err), values)

    def f(n, ha):
        n2 = _log(n / ha)
        return np.where((n2 > -2.5) & (n2 < -0.3), 8.90 + 0.57 * n2, np.nan)

    oh, err = _propagate(f, values, errors)
    return oh, np.hypot(err, N2_SCATTER)


def o3n2_metallicity(oiii5007, hbeta, nii6583, halpha, oiii5007_err=None,
                     hbeta_err=None, nii6583_err=None, halpha_err=None):
    """
    12 + log(O/H) from O3N2 (Pettini & Pagel 2004).

    ``O3N2 = log(([O III] 5007/Hβ) / ([N II] 6583/Hα))``,
    ``12 + log(O/H) = 8.73 - 0.32 O3N2``, valid for O3N2 < 2 (NaN above).

    Parameters
    ----------
    oiii5007, hbeta, nii6583, halpha : float, array-like or Quantity
        Line fluxes (same unit).
    oiii5007_err, hbeta_err, nii6583_err, halpha_err : optional
        Their 1-sigma errors.

    Returns
    -------
    oh, oh_err : ndarray
        12 + log(O/H) and its error (flux errors plus `O3N2_SCATTER`).

    Examples
    --------
    >>> oh, err = o3n2_metallicity(1.0, 1.0, 0.1, 1.0)   # O3N2 = 1
    >>> round(float(oh), 2)
    8.41
    """
    values = _values(oiii5007, hbeta, nii6583, halpha)
    errors = _errors((oiii5007_err, hbeta_err, nii6583_err, halpha_err), values)

    def f(o3, hb, n2, ha):
        x = _log(o3 / hb) - _log(n2 / ha)
        return np.where(x < 2.0, 8.73 - 0.32 * x, np.nan)

    oh, err = _propagate(f, values, errors)
    return oh, np.hypot(err, O3N2_SCATTER)


def _r23_branches(x, y):
    """KKP99 eqs. 8 (lower) and 9 (upper): x = log R23, y = log O32."""
    lower = 12 - 4.944 + 0.767 * x + 0.602 * x**2 - y * (0.29 + 0.332 * x - 0.331 * x**2)
    upper = (12 - 2.939 - 0.2 * x - 0.237 * x**2 - 0.305 * x**3 - 0.0283 * x**4
             - y * (0.0047 - 0.0221 * x - 0.102 * x**2 - 0.0817 * x**3 - 0.00717 * x**4))
    return lower, upper


def r23_metallicity(oii3727, oiii5007, hbeta, nii6583=None, halpha=None, *,
                    oiii4959=None, oii3727_err=None, oiii5007_err=None,
                    hbeta_err=None, nii6583_err=None, halpha_err=None,
                    branch: str = "auto"):
    """
    12 + log(O/H) from R23 (McGaugh 1991, as parametrised by KKP99).

    ``R23 = ([O II] 3726,29 + [O III] 4959 + 5007) / Hβ`` and
    ``O32 = [O III] 4959 + 5007 / [O II] 3726,29``; [O III] 4959 is taken as
    5007/2.98 unless given. The upper branch is used where
    log([N II] 6583/[O II] 3727) > -1.2 (Kewley & Ellison 2008), the lower
    branch elsewhere; without [N II] the upper branch is assumed. NaN where
    log R23 > 1 (beyond the calibration).

    Parameters
    ----------
    oii3727, oiii5007, hbeta : float, array-like or Quantity
        Fluxes of [O II] 3726+3729, [O III] 5007 and Hβ (same unit).
    nii6583, halpha : optional
        [N II] 6583 and Hα fluxes, to choose the branch.
    oiii4959 : optional
        [O III] 4959 flux.
    oii3727_err, oiii5007_err, hbeta_err, nii6583_err, halpha_err : optional
        1-sigma errors.
    branch : {'auto', 'upper', 'lower'}, optional
        Force a branch. Default 'auto'.

    Returns
    -------
    oh, oh_err : ndarray
        12 + log(O/H) and its error (flux errors plus `R23_SCATTER`).

    Examples
    --------
    >>> oh, err = r23_metallicity(2.0, 1.0, 1.0, nii6583=0.5, halpha=2.86)
    >>> round(float(oh), 2)
    8.84
    """
    if branch not in ("auto", "upper", "lower"):
        raise ValueError(f"branch must be 'auto', 'upper' or 'lower', not {branch!r}")
    o2, o3, hb, n2, ha, o3b = _values(oii3727, oiii5007, hbeta, nii6583, halpha, oiii4959)
    o2e, o3e, hbe = _errors((oii3727_err, oiii5007_err, hbeta_err), (o2, o3, hb))
    if branch == "auto" and n2 is not None:
        upper = _log(n2 / o2) > -1.2
    else:
        upper = np.full(np.shape(o2), branch != "lower")
    factor = None if o3b is not None else 1.0 + OIII_4959_5007

    def f(a, b, c):
        o3sum = b + o3b if factor is None else b * factor
        x = _log((a + o3sum) / c)
        y = _log(o3sum / a)
        low, up = _r23_branches(x, y)
        return np.where(x <= 1.0, np.where(upper, up, low), np.nan)

    oh, err = _propagate(f, [o2, o3, hb], [o2e, o3e, hbe])
    return oh, np.hypot(err, R23_SCATTER)


# --------------------------------------------------------------------------
# PyNeb tables
# --------------------------------------------------------------------------
def _pyneb():
    try:
        import pyneb
    except ImportError as exc:
        from ..datasets.nebular_grids import ISMDependencyError

        raise ISMDependencyError(
            "the direct method and [S II] densities need PyNeb: pip install spectralnn[ism]"
        ) from exc
    return pyneb


@functools.lru_cache(maxsize=1)
def _tables():
    """Ratios and emissivities on (_T_GRID, _LOGN_GRID), tabulated with PyNeb."""
    pn = _pyneb()
    dens = 10.0 ** _LOGN_GRID
    s2, o3, o2 = pn.Atom("S", 2), pn.Atom("O", 3), pn.Atom("O", 2)
    h1 = pn.RecAtom("H", 1)

    def em(atom, **kw):
        return np.asarray(atom.getEmissivity(_T_GRID, dens, product=True, **kw), float)

    hb = em(h1, label="4_2")
    j5007, j4959, j4363 = em(o3, wave=5007), em(o3, wave=4959), em(o3, wave=4363)
    j3726, j3729 = em(o2, wave=3726), em(o2, wave=3729)
    return {
        "sii": em(s2, wave=6716) / em(s2, wave=6731),       # (T, n)
        "oiii": j4363 / (j5007 + j4959),                     # (T, n)
        "o3_hb": j5007 / hb,
        "o2_hb": (j3726 + j3729) / hb,
    }


def _interp_axis(table, axis_grid, x, axis):
    """Linear interpolation of a 2-D table along one axis at per-object x."""
    x = np.clip(x, axis_grid[0], axis_grid[-1])
    i = np.clip(np.searchsorted(axis_grid, x, side="right") - 1, 0, len(axis_grid) - 2)
    w = (x - axis_grid[i]) / (axis_grid[i + 1] - axis_grid[i])
    if axis == 0:  # rows of the result: one curve along axis 1 per object
        return (1 - w)[:, None] * table[i] + w[:, None] * table[i + 1]
    return (1 - w)[:, None] * table[:, i].T + w[:, None] * table[:, i + 1].T


def _invert(curves, grid, r):
    """Per-row inversion of monotonic curves (N, G) at values r (N,); NaN outside."""
    sign = np.sign(curves[:, -1] - curves[:, 0])[:, None]
    c = curves * sign
    rr = r * sign[:, 0]
    j = np.sum(c < rr[:, None], axis=1)
    ok = (j > 0) & (j < len(grid)) & np.isfinite(rr)
    j = np.clip(j, 1, len(grid) - 1)
    rows = np.arange(len(r))
    c0, c1 = c[rows, j - 1], c[rows, j]
    w = (rr - c0) / (c1 - c0)
    return np.where(ok, grid[j - 1] + w * (grid[j] - grid[j - 1]), np.nan)


def _as_kelvin(t, n):
    t = t.to_value(u.K) if isinstance(t, u.Quantity) else np.asarray(t, float)
    return np.broadcast_to(t, (n,)).astype(float)


def _as_density(d, n):
    d = d.to_value(u.cm**-3) if isinstance(d, u.Quantity) else np.asarray(d, float)
    return np.broadcast_to(d, (n,)).astype(float)


def sii_density(sii6716, sii6731, sii6716_err=None, sii6731_err=None, *,
                temperature=1e4 * u.K):
    """
    Electron density from [S II] 6716/6731 (PyNeb atomic data).

    Parameters
    ----------
    sii6716, sii6731 : float, array-like or Quantity
        Line fluxes (same unit).
    sii6716_err, sii6731_err : optional
        Their 1-sigma errors.
    temperature : `~astropy.units.Quantity` or float, optional
        Electron temperature (K; scalar or per object). Default 10⁴ K.

    Returns
    -------
    n_e, n_e_err : `~astropy.units.Quantity`
        In cm⁻³. NaN where the ratio lies outside the range spanned by
        1 ≤ n_e ≤ 10⁵ cm⁻³ (e.g. above the low-density limit ≈ 1.45).

    Examples
    --------
    >>> ne, err = sii_density(1.0, 1.0)
    >>> bool(500 < ne[0].to_value("cm-3") < 800)
    True
    """
    values = _values(sii6716, sii6731)
    n = np.size(np.broadcast_arrays(*values)[0])
    values = [np.broadcast_to(v, (n,)).astype(float) for v in values]
    errors = [np.broadcast_to(e, (n,)).astype(float) for e in
              _errors((sii6716_err, sii6731_err), values)]
    tem = _as_kelvin(temperature, n)
    curves = _interp_axis(_tables()["sii"], _T_GRID, tem, axis=0)  # (N, n grid)

    def f(a, b):
        with np.errstate(divide="ignore", invalid="ignore"):
            return _invert(curves, _LOGN_GRID, a / b)

    logn, logn_err = _propagate(f, values, errors)
    ne = 10.0**logn
    return ne * u.cm**-3, ne * np.log(10) * logn_err * u.cm**-3


def oiii_temperature(oiii4363, oiii5007, oiii4363_err=None, oiii5007_err=None, *,
                     density=100 * u.cm**-3, oiii4959=None):
    """
    Electron temperature from [O III] 4363/(4959 + 5007) (PyNeb atomic data).

    Parameters
    ----------
    oiii4363, oiii5007 : float, array-like or Quantity
        Line fluxes (same unit).
    oiii4363_err, oiii5007_err : optional
        Their 1-sigma errors.
    density : `~astropy.units.Quantity` or float, optional
        Electron density (cm⁻³; scalar or per object). Default 100 cm⁻³.
    oiii4959 : optional
        [O III] 4959 flux (default 5007/2.98).

    Returns
    -------
    t_e, t_e_err : `~astropy.units.Quantity`
        In K; NaN outside 5,000–30,000 K.

    Examples
    --------
    >>> te, err = oiii_temperature(0.01, 1.0)
    >>> bool(10000 < te[0].to_value("K") < 12000)
    True
    """
    values = _values(oiii4363, oiii5007)
    n = np.size(np.broadcast_arrays(*values)[0])
    values = [np.broadcast_to(v, (n,)).astype(float) for v in values]
    errors = [np.broadcast_to(e, (n,)).astype(float) for e in
              _errors((oiii4363_err, oiii5007_err), values)]
    o3b = _values(oiii4959)[0]
    logn = np.log10(np.clip(_as_density(density, n), 1.0, 1e5))
    curves = _interp_axis(_tables()["oiii"], _LOGN_GRID, logn, axis=1)  # (N, T grid)

    def f(a, b):
        total = b + (o3b if o3b is not None else b * OIII_4959_5007)
        with np.errstate(divide="ignore", invalid="ignore"):
            return _invert(curves, _T_GRID, a / total)

    te, err = _propagate(f, values, errors)
    return te * u.K, err * u.K


def _emissivity_ratio(name, tem, logn):
    """Table ``name`` at per-object temperature and log density (bilinear)."""
    table = _tables()[name]
    along_n = _interp_axis(table, _T_GRID, np.clip(tem, _T_GRID[0], _T_GRID[-1]), axis=0)
    x = np.clip(logn, _LOGN_GRID[0], _LOGN_GRID[-1])
    i = np.clip(np.searchsorted(_LOGN_GRID, x, side="right") - 1, 0, len(_LOGN_GRID) - 2)
    w = (x - _LOGN_GRID[i]) / (_LOGN_GRID[i + 1] - _LOGN_GRID[i])
    rows = np.arange(len(x))
    return (1 - w) * along_n[rows, i] + w * along_n[rows, i + 1]


def direct_metallicity(oii3727, oiii4363, oiii5007, hbeta, oii3727_err=None,
                       oiii4363_err=None, oiii5007_err=None, hbeta_err=None, *,
                       density=100 * u.cm**-3):
    """
    12 + log(O/H) by the direct (T_e) method.

    T_e([O III]) from [O III] 4363/(4959 + 5007) (`oiii_temperature`),
    T_e([O II]) = 0.7 T_e([O III]) + 3000 K (Campbell et al. 1986; Garnett
    1992); O⁺⁺/H⁺ = (I5007/IHβ) j(Hβ)/j(5007) at T_e([O III]), O⁺/H⁺ =
    (I3727/IHβ) j(Hβ)/j(3726+3729) at T_e([O II]), all emissivities from
    PyNeb; O/H = O⁺/H⁺ + O⁺⁺/H⁺. Fluxes must be dust-corrected.

    Parameters
    ----------
    oii3727, oiii4363, oiii5007, hbeta : float, array-like or Quantity
        Fluxes of [O II] 3726+3729, [O III] 4363, [O III] 5007 and Hβ.
    oii3727_err, oiii4363_err, oiii5007_err, hbeta_err : optional
        Their 1-sigma errors.
    density : `~astropy.units.Quantity` or float, optional
        Electron density (e.g. from `sii_density`). Default 100 cm⁻³.

    Returns
    -------
    oh, oh_err : ndarray
        12 + log(O/H) and its error (flux errors only); NaN where T_e is
        undefined.
    t_e, t_e_err : `~astropy.units.Quantity`
        T_e([O III]) and its error.

    Examples
    --------
    >>> oh, err, te, te_err = direct_metallicity(1.5, 0.02, 4.0, 1.0)
    >>> round(float(oh[0]), 1), round(float(te[0].to_value("K")), -2)
    (8.4, 9200.0)
    """
    values = _values(oii3727, oiii4363, oiii5007, hbeta)
    n = np.size(np.broadcast_arrays(*values)[0])
    values = [np.broadcast_to(v, (n,)).astype(float) for v in values]
    errors = [np.broadcast_to(e, (n,)).astype(float) for e in
              _errors((oii3727_err, oiii4363_err, oiii5007_err, hbeta_err), values)]
    logn = np.log10(np.clip(_as_density(density, n), 1.0, 1e5))
    logn = np.where(np.isfinite(logn), logn, 2.0)
    curves = _interp_axis(_tables()["oiii"], _LOGN_GRID, logn, axis=1)

    def temperature(o4363, o5007):
        with np.errstate(divide="ignore", invalid="ignore"):
            return _invert(curves, _T_GRID, o4363 / (o5007 * (1 + OIII_4959_5007)))

    def f(o2, o4363, o5007, hb):
        t3 = temperature(o4363, o5007)
        t2 = 0.7 * t3 + 3000.0
        with np.errstate(divide="ignore", invalid="ignore"):
            opp = (o5007 / hb) / _emissivity_ratio("o3_hb", t3, logn)
            op = (o2 / hb) / _emissivity_ratio("o2_hb", t2, logn)
        return 12.0 + _log(op + opp)

    oh, oh_err = _propagate(f, values, errors)
    te, te_err = _propagate(temperature, values[1:3], errors[1:3])
    return oh, oh_err, te * u.K, te_err * u.K
