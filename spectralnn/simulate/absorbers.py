"""
Intervening absorbers: damped Lyα systems, Lyman-limit systems, metal lines.

Absorbers of each kind are held as fixed-size, NaN-padded arrays of shape
``(N, K)`` (N sightlines, at most K absorbers each), so their absorption is
computed for all sightlines at once.

* **DLAs and sub-DLAs** (19.5 ≤ log N_HI ≤ 22.5): Voigt profiles in Lyα, Lyβ
  and Lyγ plus their Lyman-limit absorption. Column densities follow the
  observed distribution f(N) ∝ N^α exp(-N/N_d), α = -1.27, log N_d = 21.26
  (Noterdaeme et al. 2009, A&A 505, 1087, Γ-function fit). The incidence of
  log N_HI ≥ 20.3 systems is ℓ(z) = 0.045 ((1+z)/3.5)^1.5 per unit redshift,
  a power law through the SDSS measurements (ℓ ≈ 0.035 at z = 2.2, 0.07 at
  z = 4; Prochaska & Wolfe 2009, ApJ 696, 1543; Noterdaeme et al. 2012, A&A
  547, L1) — approximate; ``rate`` scales it (e.g. to enrich training sets).
* **Lyman-limit systems** (17.2 ≤ log N_HI < 19.5, dN/dlogN ∝ N^-0.5):
  incidence 2.84 ((1+z)/4.5)^2.04 (τ_LL ≥ 1; Songaila & Cowie 2010, ApJ 721,
  1448), Lyα line plus the continuum absorption below 912 Å.
* **Metal absorbers**: Mg II λλ2796, 2803 and C IV λλ1548, 1550 doublets
  with rest equivalent widths from an exponential distribution (W* = 0.7 Å
  for Mg II, Nestor et al. 2005, ApJ 628, 637; 0.5 Å for C IV), ~0.8 and
  ~2 systems per unit redshift above W = 0.3 Å; unresolved Gaussian optical
  depth profiles (b = 40 km/s before the instrument's smoothing) whose depth
  is set from W on the linear part of the curve of growth, capped at τ₀ = 5.

Examples
--------
>>> import numpy as np
>>> from spectralnn.simulate.absorbers import sample_log_nhi
>>> x = sample_log_nhi(np.linspace(0.001, 0.999, 999))
>>> bool(19.5 <= x.min() and x.max() <= 22.5), bool(np.median(x) < 20.5)
(True, True)
"""

import numpy as np

from ..physics.voigt import (
    LYMAN_LINES,
    damped_equivalent_width,
    lyman_limit_tau,
    tau_voigt,
)

__all__ = [
    "dla_incidence",
    "lls_incidence",
    "sample_log_nhi",
    "draw_absorbers",
    "absorber_tau",
    "n_uniforms",
    "METAL_DOUBLETS",
]

_C_KMS = 299792.458
_LYA = LYMAN_LINES["Lya"][0]
#: Metal doublets: ion -> ((vacuum wavelengths Å), (oscillator strengths))
METAL_DOUBLETS = {
    "MgII": ((2796.354, 2803.531), (0.6155, 0.3058)),
    "CIV": ((1548.204, 1550.781), (0.1899, 0.09475)),
}

_ALPHA, _LOG_ND = -1.27, 21.26


def dla_incidence(z):
    """
    Return the number of log N_HI ≥ 20.3 absorbers per unit redshift.

    ``ℓ(z) = 0.045 ((1+z)/3.5)^1.5``.

    Parameters
    ----------
    z : float or array-like
        Absorber redshift.

    Returns
    -------
    incidence : float or `~numpy.ndarray`
        DLAs per unit redshift, the shape of ``z``.

    Examples
    --------
    >>> round(float(dla_incidence(2.5)), 3)
    0.045
    """
    return 0.045 * ((1.0 + np.asarray(z, dtype=np.float64)) / 3.5) ** 1.5


def lls_incidence(z):
    """
    Lyman-limit systems (τ ≥ 1) per unit redshift, ``2.84 ((1+z)/4.5)^2.04``.

    Parameters
    ----------
    z : float or array-like
        Absorber redshift.

    Returns
    -------
    incidence : float or `~numpy.ndarray`
        Lyman-limit systems per unit redshift, the shape of ``z``.

    Examples
    --------
    >>> round(float(lls_incidence(3.5)), 2)
    2.84
    """
    return 2.84 * ((1.0 + np.asarray(z, dtype=np.float64)) / 4.5) ** 2.04


def _nhi_cdf_table(lo=19.5, hi=22.5):
    log_n = np.linspace(lo, hi, 3001)
    n_over = 10 ** (log_n - _LOG_ND)
    # dN/dlogN ∝ N f(N) = N^(1+α) exp(-N/N_d)
    pdf = n_over ** (1 + _ALPHA) * np.exp(-n_over)
    cdf = np.concatenate(
        [[0.0], np.cumsum(0.5 * (pdf[1:] + pdf[:-1]) * np.diff(log_n))]
    )
    return log_n, cdf


_LOG_N, _CDF = _nhi_cdf_table()
#: Fraction of 19.5-22.5 absorbers with log N_HI >= 20.3.
_DLA_SHARE = 1.0 - np.interp(20.3, _LOG_N, _CDF) / _CDF[-1]


def sample_log_nhi(uniform):
    """
    Map uniform numbers to log N_HI in [19.5, 22.5] (inverse CDF of f(N)).

    Parameters
    ----------
    uniform : array-like
        Numbers in [0, 1).

    Returns
    -------
    log_nhi : ndarray

    Examples
    --------
    >>> sample_log_nhi([0.0, 1.0])  # doctest: +FLOAT_CMP
    array([19.5, 22.5])
    """
    return np.interp(np.asarray(uniform) * _CDF[-1], _CDF, _LOG_N)


def _poisson_from_uniform(lam, u):
    """Poisson counts from uniforms (inverse CDF, vectorised, small lam)."""
    k = np.zeros(np.shape(u), dtype=np.int64)
    p = np.exp(-lam)
    cdf = p.copy()
    for i in range(1, 12):
        k += u > cdf
        p = p * lam / i
        cdf = cdf + p
    return k


def draw_absorbers(z_qso, z_min, u, *, rate=1.0, max_dla=2, max_lls=2, max_metal=4):
    """
    Draw the absorbers on each sightline from uniform random numbers.

    The path searched runs from ``z_min`` to 3000 km/s short of the quasar
    (proximate absorbers are left out). Within it each kind's count is
    Poisson with the integrated incidence, capped at its ``max_*``.

    Parameters
    ----------
    z_qso : ndarray
        Quasar redshifts, shape ``(N,)``.
    z_min : float or ndarray
        Lowest absorber redshift of interest (e.g. where Lyα enters the
        spectrum).
    u : ndarray
        Uniform numbers, shape ``(N, K)`` with ``K >= n_uniforms(max_dla,
        max_lls, max_metal)`` (= 3 + 3 max_dla + 3 max_lls + 4 max_metal).
    rate : float, optional
        Multiplier of the DLA incidence. Default 1.
    max_dla, max_lls, max_metal : int, optional
        Array sizes (2, 2, 4).

    Returns
    -------
    absorbers : dict of str -> ndarray
        ``dla_z``, ``dla_log_nhi``, ``dla_b`` (N, max_dla); ``lls_z``,
        ``lls_log_nhi`` (N, max_lls); ``metal_z``, ``metal_ew``,
        ``metal_ion`` (0 Mg II, 1 C IV) (N, max_metal); NaN (ion -1) where
        unused. ``n_dla``, ``n_lls``, ``n_metal`` count them.

    Examples
    --------
    >>> import numpy as np
    >>> u = np.random.default_rng(0).random((1000, 3 + 6 + 6 + 16))
    >>> a = draw_absorbers(np.full(1000, 3.5), 2.0, u, rate=5.0)
    >>> bool(np.all(np.isnan(a["dla_z"]) | (a["dla_z"] < 3.5)))
    True
    """
    zq = np.asarray(z_qso, dtype=np.float64)
    n = zq.size
    z_hi = (1 + zq) * (1 - 3000.0 / _C_KMS) - 1
    z_lo = np.minimum(np.broadcast_to(np.asarray(z_min, dtype=np.float64), (n,)), z_hi)
    path = z_hi - z_lo
    zmid = 0.5 * (z_hi + z_lo)
    col = 3
    out = {}

    # DLAs + sub-DLAs (19.5-22.5): incidence of >=20.3 over the share >=20.3
    lam = rate * dla_incidence(zmid) * path / _DLA_SHARE
    count = np.minimum(_poisson_from_uniform(lam, u[:, 0]), max_dla)
    slots = np.arange(max_dla)[None, :] < count[:, None]
    uz, un, ub = (u[:, col + i * max_dla : col + (i + 1) * max_dla] for i in range(3))
    col += 3 * max_dla
    out["dla_z"] = np.where(slots, z_lo[:, None] + uz * path[:, None], np.nan)
    out["dla_log_nhi"] = np.where(slots, sample_log_nhi(un), np.nan)
    out["dla_b"] = np.where(slots, 15.0 + 35.0 * ub, np.nan)
    out["n_dla"] = count

    lam = lls_incidence(zmid) * path
    count = np.minimum(_poisson_from_uniform(lam, u[:, 1]), max_lls)
    slots = np.arange(max_lls)[None, :] < count[:, None]
    uz, un, ub = (u[:, col + i * max_lls : col + (i + 1) * max_lls] for i in range(3))
    col += 3 * max_lls
    out["lls_z"] = np.where(slots, z_lo[:, None] + uz * path[:, None], np.nan)
    # dN/dlogN ∝ N^-0.5 between 17.2 and 19.5
    lo, hi = 10 ** (-0.5 * 17.2), 10 ** (-0.5 * 19.5)
    out["lls_log_nhi"] = np.where(slots, -2.0 * np.log10(lo + un * (hi - lo)), np.nan)
    out["n_lls"] = count

    # metal absorbers along the whole path to the quasar (from z = 0.3)
    mpath = np.clip(z_hi - 0.3, 0, None)
    lam = 2.8 * mpath * 0.5
    count = np.minimum(_poisson_from_uniform(lam, u[:, 2]), max_metal)
    slots = np.arange(max_metal)[None, :] < count[:, None]
    uz, uw, ui, _ = (
        u[:, col + i * max_metal : col + (i + 1) * max_metal] for i in range(4)
    )
    ion = np.where(ui < 0.3, 0, 1)  # 0 = MgII, 1 = CIV
    wstar = np.where(ion == 0, 0.7, 0.5)
    out["metal_z"] = np.where(slots, 0.3 + uz * mpath[:, None], np.nan)
    out["metal_ew"] = np.where(slots, 0.3 - wstar * np.log1p(-uw), np.nan)
    out["metal_ion"] = np.where(slots, ion, -1)
    out["n_metal"] = count
    return out


def n_uniforms(max_dla=2, max_lls=2, max_metal=4):
    """
    Return how many uniforms per sightline `draw_absorbers` needs.

    Parameters
    ----------
    max_dla, max_lls, max_metal : int, optional
        The array sizes given to `draw_absorbers` (default 2, 2, 4).

    Returns
    -------
    k : int
        ``3 + 3 max_dla + 3 max_lls + 4 max_metal``.

    Examples
    --------
    >>> n_uniforms()
    31
    >>> n_uniforms(max_dla=1, max_lls=0, max_metal=0)
    6
    """
    return 3 + 3 * max_dla + 3 * max_lls + 4 * max_metal


def absorber_tau(wavelength, absorbers):
    """
    Optical depth of all drawn absorbers at observed wavelengths.

    Parameters
    ----------
    wavelength : ndarray
        Observed wavelengths in Å, shape ``(M,)``.
    absorbers : dict
        As returned by `draw_absorbers`.

    Returns
    -------
    tau : ndarray
        Shape ``(N, M)``.

    Examples
    --------
    >>> import numpy as np
    >>> a = {"dla_z": np.array([[2.0]]), "dla_log_nhi": np.array([[21.0]]),
    ...      "dla_b": np.array([[30.0]])}
    >>> tau = absorber_tau(np.array([3647.0, 4500.0]), a)
    >>> bool(tau[0, 0] > 1e5 and tau[0, 1] < 0.01)
    True
    """
    wave = np.asarray(wavelength, dtype=np.float64)
    n = next(iter(absorbers.values())).shape[0]
    tau = np.zeros((n, wave.size))
    for zkey, nkey, bkey in (
        ("dla_z", "dla_log_nhi", "dla_b"),
        ("lls_z", "lls_log_nhi", None),
    ):
        if zkey not in absorbers:
            continue
        zs, ns = absorbers[zkey], absorbers[nkey]
        for k in range(zs.shape[1]):
            rows = np.flatnonzero(np.isfinite(zs[:, k]))
            if rows.size == 0:
                continue
            z = zs[rows, k][:, None]
            logn = ns[rows, k][:, None]
            b = absorbers[bkey][rows, k][:, None] if bkey else 30.0
            tau[rows] += lyman_limit_tau(wave, z, logn)
            for line in ("Lya", "Lyb", "Lyg"):
                lam0, f, gamma = LYMAN_LINES[line]
                # evaluate only where tau > ~1e-4: damping wing tau = A / dλ²
                a_wing = (
                    damped_equivalent_width(logn[:, 0], line).value / 2
                ) ** 2 / np.pi
                reach = np.sqrt(a_wing / 1e-4) + 5.0  # rest Å, +5 Å for the core
                centre = lam0 * (1 + z[:, 0])
                lo = np.searchsorted(wave, centre - reach * (1 + z[:, 0]))
                hi = np.searchsorted(wave, centre + reach * (1 + z[:, 0]))
                width = int(np.max(hi - lo, initial=0))
                if width == 0:
                    continue
                idx = lo[:, None] + np.arange(width)[None, :]
                valid = idx < hi[:, None]
                idx = np.minimum(idx, wave.size - 1)
                t = tau_voigt(wave[idx], z, logn, b, line)
                r = np.broadcast_to(rows[:, None], idx.shape)[valid]
                tau[r, idx[valid]] += t[valid]
    if "metal_z" in absorbers:
        zs, ews, ions = (
            absorbers["metal_z"],
            absorbers["metal_ew"],
            absorbers["metal_ion"],
        )
        b = 40.0
        for k in range(zs.shape[1]):
            rows = np.flatnonzero(np.isfinite(zs[:, k]))
            if rows.size == 0:
                continue
            for code, ion in enumerate(("MgII", "CIV")):
                sel = rows[ions[rows, k] == code]
                if sel.size == 0:
                    continue
                (w1, w2), (f1, f2) = METAL_DOUBLETS[ion]
                z = zs[sel, k][:, None]
                for lam0, f in ((w1, f1), (w2, f2)):
                    sigma = lam0 * b / _C_KMS / np.sqrt(2.0)
                    # linear curve of growth: W = tau0 sigma sqrt(2 pi), stronger
                    # member carries the drawn W; capped (saturation)
                    tau0 = np.minimum(
                        ews[sel, k][:, None] * (f / f1) / (sigma * np.sqrt(2 * np.pi)),
                        5.0,
                    )
                    rest = wave[None, :] / (1 + z)
                    tau[sel] += tau0 * np.exp(-0.5 * ((rest - lam0) / sigma) ** 2)
    return tau
