"""
The Lyman-α (and Lyman-β) forest as a lognormal optical-depth field.

The optical depth of the intergalactic H I at absorption redshift z is drawn
as ``τ = A(z) exp(s g)``, where g is a unit Gaussian field correlated over a
few pixels along each sightline and s the lognormal width. ``A(z)`` is solved
for (Gauss–Hermite quadrature, then interpolation) so that the *mean*
transmission is exactly that observed:

    <exp(-τ)> = exp(-τ_eff(z)),   τ_eff = 0.0018 (1 + z)^3.92

(Faucher-Giguère et al. 2008, ApJ 681, 831, eq. 8; their fit covers
2 < z < 4.2 and is used here, as the same power law, from z = 0 to 6.
`tau_eff_lya` also offers the Becker et al. 2013, MNRAS 430, 2067 fit,
``τ_eff = 0.751 ((1 + z)/4.5)^2.90 - 0.132``, which is 20 % lower at z = 5).
The lognormal gives the line-to-line (pixel-to-pixel) scatter of real forests:
mostly transparent pixels at z ≈ 2, mostly saturated ones at z ≈ 5.

The Lyβ forest (gas at ``λ / 1025.72 - 1``) is an independent field whose
optical depth is the Lyα one times ``f_β λ_β / (f_α λ_α) = 0.16``.

Examples
--------
>>> from spectralnn.simulate import tau_eff_lya
>>> round(float(tau_eff_lya(3.0)), 3)
0.412
"""

import numpy as np
from scipy.ndimage import gaussian_filter1d

from ..physics.voigt import LYMAN_LINES

__all__ = ["tau_eff_lya", "forest_transmission", "mean_forest_transmission"]

_LYA = LYMAN_LINES["Lya"][0]
_LYB = LYMAN_LINES["Lyb"][0]
_LYB_OVER_LYA = (LYMAN_LINES["Lyb"][1] * _LYB) / (LYMAN_LINES["Lya"][1] * _LYA)

#: Default lognormal width of the optical-depth field.
FOREST_SCATTER = 1.5


def tau_eff_lya(z, model="FG08"):
    """
    Effective optical depth of the Lyα forest, ``-ln <F>``.

    Parameters
    ----------
    z : float or array-like
        Absorption redshift.
    model : {'FG08', 'B13'}, optional
        Faucher-Giguère et al. (2008) ``0.0018 (1+z)^3.92`` (default) or
        Becker et al. (2013) ``0.751 ((1+z)/4.5)^2.90 - 0.132`` (clipped at 0).

    Returns
    -------
    tau_eff : ndarray

    Examples
    --------
    >>> tau_eff_lya([2.0, 4.0])  # doctest: +FLOAT_CMP
    array([0.13353276, 0.98908798])
    """
    zp1 = 1.0 + np.asarray(z, dtype=np.float64)
    if model == "FG08":
        return 0.0018 * zp1**3.92
    if model == "B13":
        return np.clip(0.751 * (zp1 / 4.5) ** 2.90 - 0.132, 0.0, None)
    raise ValueError(f"model must be 'FG08' or 'B13', not {model!r}")


def _amplitude_table(scatter):
    """Log A and the mean transmission it gives, for the lognormal field."""
    x, w = np.polynomial.hermite.hermgauss(120)
    log_a = np.linspace(-14.0, 6.0, 801)
    tau = np.exp(log_a)[:, None] * np.exp(scatter * np.sqrt(2.0) * x)[None, :]
    mean = (np.exp(-tau) @ w) / np.sqrt(np.pi)
    return log_a, mean


_TABLES = {}


def _log_amplitude(mean_flux, scatter):
    """Invert <exp(-A e^{s g})> = mean_flux for log A (vectorised)."""
    if scatter not in _TABLES:
        _TABLES[scatter] = _amplitude_table(scatter)
    log_a, mean = _TABLES[scatter]
    # mean decreases with A: interpolate on the reversed (increasing) table
    return np.interp(mean_flux, mean[::-1], log_a[::-1])


def mean_forest_transmission(wavelength, z_qso, model="FG08"):
    """
    Mean transmission of the Lyα + Lyβ forests in front of a quasar.

    Parameters
    ----------
    wavelength : array-like
        Observed wavelengths in Å, shape ``(M,)`` or ``(N, M)``.
    z_qso : array-like
        Quasar redshifts, shape ``(N,)``.
    model : str, optional
        See `tau_eff_lya`.

    Returns
    -------
    transmission : ndarray
        Shape ``(N, M)``; 1 redward of the quasar's Lyα.

    Examples
    --------
    >>> import numpy as np
    >>> t = mean_forest_transmission(np.array([4000.0, 5000.0]), np.array([3.0]))
    >>> t.round(3)
    array([[0.778, 1.   ]])
    """
    wave = np.asarray(wavelength, dtype=np.float64)
    zq = np.asarray(z_qso, dtype=np.float64)[:, None]
    za = wave / _LYA - 1.0
    zb = wave / _LYB - 1.0
    tau = np.where(za < zq, tau_eff_lya(np.clip(za, 0, None), model), 0.0)
    # optically thin scaling for the mean Lyβ absorption
    tau = tau + np.where(
        zb < zq, _LYB_OVER_LYA * tau_eff_lya(np.clip(zb, 0, None), model), 0.0
    )
    return np.exp(-tau)


def forest_transmission(
    wavelength, z_qso, normals, *, scatter=FOREST_SCATTER, correlation=1.5, model="FG08"
):
    """
    One random realisation of the Lyα + Lyβ forest transmission per quasar.

    Parameters
    ----------
    wavelength : array-like
        Observed wavelengths in Å, shape ``(M,)``.
    z_qso : array-like
        Quasar redshifts, shape ``(N,)``.
    normals : ndarray
        Standard normal numbers of shape ``(2, N, M)`` (Lyα and Lyβ fields):
        pass them in so the caller controls the random streams (one per
        object keeps a simulation independent of batching).
    scatter : float, optional
        Lognormal width s of the optical depth. Default 1.5.
    correlation : float, optional
        Gaussian correlation length of the field in pixels. Default 1.5.
    model : str, optional
        τ_eff(z) fit, see `tau_eff_lya`.

    Returns
    -------
    transmission : ndarray
        Shape ``(N, M)``, in [0, 1], exactly 1 redward of Lyα emission. Its
        expectation at every pixel is the ``exp(-τ_eff)`` of the Lyα forest
        times the (lognormal-averaged) Lyβ forest transmission.

    Examples
    --------
    >>> import numpy as np
    >>> wave = np.linspace(3600.0, 6000.0, 2400)
    >>> g = np.random.default_rng(0).standard_normal((2, 200, 2400))
    >>> t = forest_transmission(wave, np.full(200, 3.5), g)
    >>> sel = (wave > 4800) & (wave < 5000)  # z_abs = 2.95-3.11: only Lyα
    >>> ratio = t[:, sel].mean() / np.exp(-tau_eff_lya(wave[sel] / 1215.67 - 1)).mean()
    >>> bool(abs(ratio - 1) < 0.02)
    True
    """
    wave = np.asarray(wavelength, dtype=np.float64)
    zq = np.asarray(z_qso, dtype=np.float64)[:, None]
    out = np.ones((zq.shape[0], wave.shape[-1]))
    lines = ((_LYA, 1.0), (_LYB, _LYB_OVER_LYA))
    for field, (rest, factor) in zip(normals, lines, strict=True):
        za = wave / rest - 1.0
        inside = (za < zq) & (za > 0)
        if not inside.any():
            continue
        g = gaussian_filter1d(field, correlation, axis=-1, mode="nearest")
        g /= _smoothed_std(correlation)
        target = np.exp(-tau_eff_lya(np.clip(za, 0, None), model))
        log_a = _log_amplitude(target, scatter)
        tau = factor * np.exp(log_a + scatter * g)
        out *= np.where(inside, np.exp(-tau), 1.0)
    return out


def _smoothed_std(correlation):
    """Return the std of unit white noise after the Gaussian smoothing."""
    half = int(4 * correlation + 0.5)
    k = np.exp(-0.5 * (np.arange(-half, half + 1) / correlation) ** 2)
    k /= k.sum()
    return float(np.sqrt(np.sum(k**2)))
