"""
Monochromatic luminosities λL_λ of sources at cosmological distances.

Derivation
----------
A source at redshift z and luminosity distance d_L emits L_λ(λ_rest) per unit
rest wavelength. Energy conservation between rest frame and observer, with the
definition of d_L (bolometric flux F = L / 4π d_L²), gives for the observed
flux density per unit *observed* wavelength, λ_obs = (1 + z) λ_rest:

    f_obs(λ_obs) dλ_obs = L_λ(λ_rest) dλ_rest / (4π d_L²)
    ⇒ L_λ(λ_rest) = 4π d_L² (1 + z) f_obs(λ_obs).

Multiplying by λ_rest = λ_obs / (1 + z):

    λ_rest L_λ(λ_rest) = 4π d_L² λ_obs f_obs(λ_obs).

A spectrum shifted to its rest frame conserving flux (``f_rest = (1 + z) f_obs``
on the grid ``λ_rest = λ_obs / (1 + z)``, as `spectralnn.preprocessing`'s
``to_rest_frame`` does) therefore gives the same number with rest-frame
quantities only:

    λL_λ = 4π d_L² λ_rest f_rest(λ_rest).

`monochromatic_luminosity` accepts either convention through ``frame``; the
product λ f_λ is the same in both frames, which is why no other factor of
(1 + z) appears. The convention matters only for L_λ itself (not computed here).
"""

import numpy as np
from astropy import units as u

from ..errors import SpectralUnitsError

__all__ = ["monochromatic_luminosity", "luminosity_distance"]

_FLAMBDA = u.erg / (u.s * u.cm**2 * u.AA)


def _cosmology(cosmology):
    if cosmology is None:
        from astropy.cosmology import Planck18

        return Planck18
    if not hasattr(cosmology, "luminosity_distance"):
        raise TypeError(
            "cosmology must be an astropy.cosmology instance (e.g. Planck18 or "
            f"FlatLambdaCDM(H0=70, Om0=0.3)), not {type(cosmology).__name__}"
        )
    return cosmology


def luminosity_distance(z, *, cosmology=None):
    """
    Luminosity distance, NaN where the redshift is unknown or not positive.

    Parameters
    ----------
    z : float or array-like
        Redshifts. NaN, negative or zero redshifts give NaN (a luminosity
        needs a cosmological distance).
    cosmology : `~astropy.cosmology.Cosmology`, optional
        Any astropy cosmology. Default `~astropy.cosmology.Planck18`.

    Returns
    -------
    d_l : `~astropy.units.Quantity`
        In Mpc, with the shape of ``z``.

    Examples
    --------
    >>> from astropy.cosmology import FlatLambdaCDM
    >>> luminosity_distance(0.1, cosmology=FlatLambdaCDM(H0=70, Om0=0.3))  # doctest: +FLOAT_CMP
    <Quantity 460.29993639 Mpc>
    """
    cosmo = _cosmology(cosmology)
    z = np.asarray(z, dtype=np.float64)
    good = np.isfinite(z) & (z > 0)
    d = np.full(z.shape, np.nan)
    if np.any(good):
        d[good] = cosmo.luminosity_distance(z[good]).to_value(u.Mpc)
    return d * u.Mpc


def monochromatic_luminosity(
    flux_density,
    wavelength,
    z,
    *,
    flux_density_err=None,
    cosmology=None,
    frame="rest",
):
    """
    Monochromatic luminosity λL_λ from a flux density at one wavelength.

    Parameters
    ----------
    flux_density : `~astropy.units.Quantity`
        f_λ (or f_ν, converted at ``wavelength``), any shape broadcastable
        with ``wavelength`` and ``z``. In the rest frame (``frame='rest'``)
        this is the flux-conserving rest-frame density ``(1 + z) f_obs``.
    wavelength : `~astropy.units.Quantity`
        The wavelength at which ``flux_density`` is given, in the same frame.
    z : float or array-like
        Redshift(s). NaN or non-positive redshifts give NaN.
    flux_density_err : `~astropy.units.Quantity`, optional
        1σ uncertainty of ``flux_density``. If given, the uncertainty of the
        luminosity is returned too (the distance is taken as exact).
    cosmology : `~astropy.cosmology.Cosmology`, optional
        Any astropy cosmology. Default `~astropy.cosmology.Planck18`.
    frame : {'rest', 'observed'}, optional
        Frame of ``flux_density`` and ``wavelength``. Default ``'rest'``. The
        result is the same for a spectrum and its flux-conserving rest-frame
        version (see the module docstring for the derivation).

    Returns
    -------
    luminosity : `~astropy.units.Quantity`
        λL_λ in erg/s at the rest wavelength ``wavelength`` (``frame='rest'``)
        or ``wavelength / (1 + z)`` (``frame='observed'``).
    luminosity_err : `~astropy.units.Quantity`
        Only when ``flux_density_err`` is given: its 1σ uncertainty, erg/s.

    Raises
    ------
    spectralnn.errors.SpectralUnitsError
        If ``flux_density`` is not a flux density or ``wavelength`` has no
        length unit.

    Examples
    --------
    A rest-frame flux density of 1e-15 erg/s/cm²/Å at 5100 Å for z = 0.1 in a
    flat ΛCDM cosmology with H0 = 70, Ωm = 0.3:

    >>> import astropy.units as u
    >>> from astropy.cosmology import FlatLambdaCDM
    >>> f = 1e-15 * u.erg / (u.s * u.cm**2 * u.AA)
    >>> cosmo = FlatLambdaCDM(H0=70, Om0=0.3)
    >>> monochromatic_luminosity(f, 5100 * u.AA, 0.1, cosmology=cosmo)  # doctest: +FLOAT_CMP
    <Quantity 1.29289412e+44 erg / s>
    """
    if frame not in ("rest", "observed"):
        raise ValueError(f"frame must be 'rest' or 'observed', not {frame!r}")
    if not isinstance(wavelength, u.Quantity) or not wavelength.unit.is_equivalent(
        u.AA, equivalencies=u.spectral()
    ):
        raise SpectralUnitsError(
            "wavelength must be a Quantity with a spectral unit (e.g. 5100 * u.AA)"
        )
    wave = wavelength.to(u.AA, equivalencies=u.spectral())

    def _to_flambda(value, name):
        if not isinstance(value, u.Quantity):
            raise SpectralUnitsError(
                f"{name} needs a flux-density unit (e.g. erg / (s cm2 AA))"
            )
        try:
            return value.to_value(_FLAMBDA, equivalencies=u.spectral_density(wave))
        except u.UnitConversionError as exc:
            raise SpectralUnitsError(
                f"{name} unit {value.unit} is not a flux density"
            ) from exc

    f = _to_flambda(flux_density, "flux_density")
    d_l = luminosity_distance(z, cosmology=cosmology).to_value(u.cm)
    # λ f_λ is frame independent for a flux-conserving shift: one formula
    factor = 4.0 * np.pi * d_l**2 * wave.value
    lum = factor * f * (u.erg / u.s)
    if flux_density_err is None:
        return lum
    f_err = _to_flambda(flux_density_err, "flux_density_err")
    return lum, factor * np.abs(f_err) * (u.erg / u.s)
