"""
Voigt profiles and the optical depth of H I Lyman-series absorbers.

The Voigt function is evaluated through the Faddeeva function
(`scipy.special.wofz`): ``H(a, u) = Re w(u + i a)``. Atomic data (vacuum
wavelength, oscillator strength f, damping constant Γ) are those of Morton
(2003, ApJS 149, 205) for the H I Lyman lines.

The optical depth of a column N of atoms in the line is

    τ(ν) = N (π e² / m_e c) f φ(ν),   φ(ν) = H(a, u) / (√π Δν_D),

with Doppler width Δν_D = b / λ₀, damping parameter a = Γ λ₀ / (4π b) and
u = (ν - ν₀) / Δν_D.

Far in the damping wings τ ≈ A / Δλ² with
``A = N (π e²/m_e c) f Γ λ₀⁴ / (4π² c²)``, and the equivalent width of a
damped line tends to ``W = ∫ (1 - e^{-A/Δλ²}) dΔλ = 2 √(π A)``, i.e.

    W = (λ₀² / c) √(N (π e²/m_e c) f Γ / π),

the damped limit of the curve of growth (`damped_equivalent_width`);
``W ≈ 10.4 Å`` for Lyα at log N_HI = 20.3.

Examples
--------
>>> import numpy as np
>>> from spectralnn.physics import tau_voigt
>>> wave = np.array([3600.0, 3647.0, 3700.0])
>>> tau = tau_voigt(wave, 2.0, 20.5)
>>> bool(tau[1] > 1e4 and tau[0] < tau[1])
True
"""

import numpy as np
from astropy import units as u
from scipy.special import wofz

__all__ = [
    "LYMAN_LINES",
    "voigt_profile",
    "tau_voigt",
    "damped_equivalent_width",
    "lyman_limit_tau",
]

#: H I Lyman lines: name -> (vacuum wavelength Å, oscillator strength,
#: damping constant Γ in s⁻¹), Morton (2003, ApJS 149, 205).
LYMAN_LINES = {
    "Lya": (1215.6701, 0.4164, 6.265e8),
    "Lyb": (1025.7223, 0.07912, 1.897e8),
    "Lyg": (972.5368, 0.02900, 8.127e7),
}

_C_KMS = 299792.458
_C_AA = 2.99792458e18  # Å/s
_PI_E2_MC = 0.026540  # π e² / (m_e c) in cm² s⁻¹ (Hz cm²)
_SIGMA_LL = 6.304e-18  # H I photo-ionisation cross-section at 912 Å, cm²
_LYMAN_LIMIT = 911.753


def voigt_profile(x, sigma, gamma):
    """
    Area-normalised Voigt profile: a Gaussian convolved with a Lorentzian.

    Parameters
    ----------
    x : array-like
        Offset from the line centre (any unit, the same as ``sigma``).
    sigma : float or array-like
        Standard deviation of the Gaussian (> 0).
    gamma : float or array-like
        Half width at half maximum of the Lorentzian (>= 0).

    Returns
    -------
    profile : ndarray
        ``V(x) = Re w((x + iγ) / (σ√2)) / (σ√(2π))``, integrating to 1.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.linspace(-50, 50, 20001)
    >>> float(np.trapezoid(voigt_profile(x, 1.0, 0.0), x))  # doctest: +FLOAT_CMP
    1.0
    """
    x = np.asarray(x, dtype=np.float64)
    sigma = np.asarray(sigma, dtype=np.float64)
    z = (x + 1j * np.asarray(gamma, dtype=np.float64)) / (sigma * np.sqrt(2.0))
    return wofz(z).real / (sigma * np.sqrt(2.0 * np.pi))


def _strip(value, unit):
    if isinstance(value, u.Quantity):
        return value.to_value(unit, equivalencies=u.spectral())
    return np.asarray(value, dtype=np.float64)


def tau_voigt(wavelength, z_abs, log_nhi, b=30.0, line="Lya"):
    """
    Optical depth of an H I absorber in one Lyman line.

    Parameters
    ----------
    wavelength : array-like or `~astropy.units.Quantity`
        Observed wavelengths (Å when plain numbers).
    z_abs : float or array-like
        Absorber redshift; arrays broadcast against ``wavelength`` (e.g.
        shape ``(N, 1)`` with wavelengths ``(N, M)`` or ``(M,)``).
    log_nhi : float or array-like
        log10 of the H I column density in cm⁻².
    b : float, array-like or `~astropy.units.Quantity`, optional
        Doppler parameter (km/s when a plain number). Default 30 km/s.
    line : {'Lya', 'Lyb', 'Lyg'}, optional
        Which Lyman line. Default ``'Lya'``.

    Returns
    -------
    tau : ndarray
        Optical depth at each wavelength.

    Raises
    ------
    KeyError
        If ``line`` is unknown.

    Examples
    --------
    >>> import numpy as np
    >>> wave = 1215.6701 * 3.0 + np.array([0.0, 30.0])
    >>> tau_voigt(wave, 2.0, 20.0) > [1e5, 0.01]
    array([ True,  True])
    """
    if line not in LYMAN_LINES:
        raise KeyError(f"unknown line {line!r}; known lines: {', '.join(LYMAN_LINES)}")
    lam0, f, gamma = LYMAN_LINES[line]
    wave = _strip(wavelength, u.AA)
    b_kms = _strip(b, u.km / u.s)
    z_abs = np.asarray(z_abs, dtype=np.float64)
    rest = wave / (1.0 + z_abs)
    nu_d = b_kms / _C_KMS * _C_AA / lam0  # Doppler width in Hz
    a = gamma / (4.0 * np.pi * nu_d)
    uu = (_C_AA / rest - _C_AA / lam0) / nu_d
    column = 10.0 ** np.asarray(log_nhi, dtype=np.float64)
    phi = wofz(uu + 1j * a).real / (np.sqrt(np.pi) * nu_d)
    return column * _PI_E2_MC * f * phi


def damped_equivalent_width(log_nhi, line="Lya"):
    """
    Rest-frame equivalent width of a line in the damped limit of the curve of growth.

    ``W = (λ₀² / c) √(N (π e²/m_e c) f Γ / π)`` (see the module docstring);
    accurate to better than a few per cent for Lyα above log N_HI ≈ 20.

    Parameters
    ----------
    log_nhi : float or array-like
        log10 of the H I column density in cm⁻².
    line : {'Lya', 'Lyb', 'Lyg'}, optional
        Default ``'Lya'``.

    Returns
    -------
    width : `~astropy.units.Quantity`
        Rest equivalent width in Å.

    Examples
    --------
    >>> damped_equivalent_width(20.3)  # doctest: +FLOAT_CMP
    <Quantity 10.33718261 Angstrom>
    """
    lam0, f, gamma = LYMAN_LINES[line]
    column = 10.0 ** np.asarray(log_nhi, dtype=np.float64)
    return lam0**2 / _C_AA * np.sqrt(column * _PI_E2_MC * f * gamma / np.pi) * u.AA


def lyman_limit_tau(wavelength, z_abs, log_nhi):
    """
    Photo-ionisation optical depth of H I below the Lyman limit.

    ``τ = N σ₉₁₂ (λ_rest / 911.75 Å)³`` blueward of the limit, 0 redward
    (σ₉₁₂ = 6.30e-18 cm², e.g. Osterbrock & Ferland 2006).

    Parameters
    ----------
    wavelength : array-like
        Observed wavelengths in Å.
    z_abs : float or array-like
        Absorber redshift (broadcast against ``wavelength``).
    log_nhi : float or array-like
        log10 H I column density in cm⁻².

    Returns
    -------
    tau : ndarray

    Examples
    --------
    >>> lyman_limit_tau([3000.0, 4000.0], 3.0, 17.2)  # doctest: +FLOAT_CMP
    array([0.55611984, 0.        ])
    """
    wave = np.asarray(wavelength, dtype=np.float64)
    rest = wave / (1.0 + np.asarray(z_abs, dtype=np.float64))
    column = 10.0 ** np.asarray(log_nhi, dtype=np.float64)
    tau = column * _SIGMA_LL * (rest / _LYMAN_LIMIT) ** 3
    return np.where(rest < _LYMAN_LIMIT, tau, 0.0)
