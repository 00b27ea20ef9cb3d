"""
Single-epoch virial black-hole masses from a broad-line width and a luminosity.

All calibrations here share one form (e.g. Shen et al. 2011, ApJS 194, 45,
eq. 5):

    log10(M_BH / M_sun) = a + b log10(λL_λ / 10^44 erg s^-1)
                            + c log10(FWHM / km s^-1),

with c = 2 for every calibration in the registry. They are stored as data in
`VIRIAL_CALIBRATIONS` (name → `VirialCalibration`); pass a name, or your own
`VirialCalibration`, to `virial_mass`.

Uncertainties
-------------
`virial_mass` propagates the *measurement* uncertainties of FWHM and
luminosity to first order,

    σ(log M)² = (c σ_FWHM / (FWHM ln 10))² + (b σ_L / (L ln 10))²,

which is what a spectrum constrains. The *intrinsic* scatter of a calibration
against reverberation-mapping masses (≈0.3–0.55 dex, `VirialCalibration.scatter`)
is usually much larger; it is added in quadrature only with
``include_scatter=True``.
"""

import dataclasses

import numpy as np
from astropy import units as u

from ..errors import SpectralUnitsError

__all__ = [
    "VirialCalibration",
    "VIRIAL_CALIBRATIONS",
    "DEFAULT_CALIBRATIONS",
    "VIRIAL_LINE_COVERAGE",
    "VIRIAL_LINE_PREFERENCE",
    "get_calibration",
    "virial_mass",
    "choose_virial_line",
]

_LINE_ALIASES = {
    "hbeta": "Hbeta",
    "hb": "Hbeta",
    "h_beta": "Hbeta",
    "mgii": "MgII",
    "mg2": "MgII",
    "civ": "CIV",
    "c4": "CIV",
}


@dataclasses.dataclass(frozen=True)
class VirialCalibration:
    """
    One single-epoch virial calibration: coefficients and provenance.

    ``log10(M/M_sun) = a + b log10(λL_λ / 1e44 erg/s) + c log10(FWHM / km/s)``.

    Parameters
    ----------
    name : str
        Registry key, e.g. ``'VP06_Hbeta'``.
    line : str
        Broad line whose FWHM is used (``'Hbeta'``, ``'MgII'`` or ``'CIV'``).
    wavelength : `~astropy.units.Quantity`
        Rest wavelength of the continuum luminosity λL_λ.
    a, b, c : float
        Zero point, luminosity slope and FWHM slope (FWHM in km/s).
    scatter : float
        Intrinsic scatter (dex) of the calibration against reverberation or
        reference masses.
    reference : str
        Paper and equation.

    Examples
    --------
    >>> VIRIAL_CALIBRATIONS["VP06_Hbeta"].b
    0.5
    """

    name: str
    line: str
    wavelength: u.Quantity
    a: float
    b: float
    c: float
    scatter: float
    reference: str

    def log_mass(self, fwhm_kms, luminosity_erg_s):
        """
        log10(M/M_sun) from plain arrays (FWHM in km/s, λL_λ in erg/s).

        Parameters
        ----------
        fwhm_kms, luminosity_erg_s : array-like
            Broadcastable arrays; non-positive values give NaN.

        Returns
        -------
        log_mbh : `~numpy.ndarray`

        Examples
        --------
        >>> VIRIAL_CALIBRATIONS["VP06_Hbeta"].log_mass(1000.0, 1e44)  # doctest: +FLOAT_CMP
        np.float64(6.91)
        """
        fwhm = np.asarray(fwhm_kms, dtype=np.float64)
        lum = np.asarray(luminosity_erg_s, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            logf = np.where(fwhm > 0, np.log10(np.where(fwhm > 0, fwhm, 1.0)), np.nan)
            logl = np.where(
                lum > 0, np.log10(np.where(lum > 0, lum, 1.0)) - 44.0, np.nan
            )
        return self.a + self.b * logl + self.c * logf


def _cal(name, line, wave, a, b, scatter, reference):
    return VirialCalibration(name, line, wave * u.AA, a, b, 2.0, scatter, reference)


#: Registry of single-epoch calibrations, name → `VirialCalibration`.
#: Coefficients in the common form of Shen et al. (2011, eq. 5), FWHM in km/s:
#:
#: - ``VP06_Hbeta``: Vestergaard & Peterson 2006, ApJ 641, 689, eq. 5
#:   (log M = log[(FWHM/1000)² (λL5100/1e44)^0.50] + 6.91; scatter 0.43 dex).
#: - ``MD04_Hbeta``: McLure & Dunlop 2004, MNRAS 352, 1390, eq. 5
#:   (M = 4.74 (λL5100/1e44 erg/s)^0.61 FWHM²; a = log10 4.74). Scatter not
#:   quoted as intrinsic in the paper; 0.40 dex adopted.
#: - ``A11_Hbeta``: Assef et al. 2011, ApJ 742, 93 (Hβ, a = 0.895, b = 0.52;
#:   R–L slope of Bentz et al. 2009), as used by the SDSS-DR16 SPIDERS
#:   black-hole-mass catalogue (Coffey et al. 2019, A&A 625, A123). Scatter
#:   0.43 dex adopted (as VP06).
#: - ``S11_MgII``: Shen et al. 2011, ApJS 194, 45, eq. 10 (a = 0.740,
#:   b = 0.62; calibrated to match VP06 Hβ masses). Scatter 0.40 dex adopted.
#: - ``VO09_MgII``: Vestergaard & Osmer 2009, ApJ 699, 800, eq. 1 with the
#:   3000 Å zero point (a = 0.860, b = 0.50; scatter 0.55 dex).
#: - ``VP06_CIV``: Vestergaard & Peterson 2006, ApJ 641, 689, eq. 7
#:   (a = 0.660, b = 0.53 with λL1350; scatter 0.36 dex).
VIRIAL_CALIBRATIONS = {
    c.name: c
    for c in (
        _cal(
            "VP06_Hbeta",
            "Hbeta",
            5100.0,
            0.910,
            0.50,
            0.43,
            "Vestergaard & Peterson 2006, ApJ 641, 689, eq. 5",
        ),
        _cal(
            "MD04_Hbeta",
            "Hbeta",
            5100.0,
            float(np.log10(4.74)),
            0.61,
            0.40,
            "McLure & Dunlop 2004, MNRAS 352, 1390, eq. 5",
        ),
        _cal(
            "A11_Hbeta",
            "Hbeta",
            5100.0,
            0.895,
            0.52,
            0.43,
            "Assef et al. 2011, ApJ 742, 93 (as adopted by Coffey et al. 2019, "
            "SPIDERS DR16)",
        ),
        _cal(
            "S11_MgII",
            "MgII",
            3000.0,
            0.740,
            0.62,
            0.40,
            "Shen et al. 2011, ApJS 194, 45, eq. 10",
        ),
        _cal(
            "VO09_MgII",
            "MgII",
            3000.0,
            0.860,
            0.50,
            0.55,
            "Vestergaard & Osmer 2009, ApJ 699, 800, eq. 1 (3000 A zero point)",
        ),
        _cal(
            "VP06_CIV",
            "CIV",
            1350.0,
            0.660,
            0.53,
            0.36,
            "Vestergaard & Peterson 2006, ApJ 641, 689, eq. 7",
        ),
    )
}

#: Calibration used for each line when none is named.
DEFAULT_CALIBRATIONS = {"Hbeta": "VP06_Hbeta", "MgII": "S11_MgII", "CIV": "VP06_CIV"}

#: Rest-frame range (Å) a spectrum must cover to measure each line and its
#: continuum: the fitting ranges of Shen et al. (2011, §3.3–3.5) — Hβ
#: 4435–5535 (including the 5100 Å continuum), MgII 2200–3090 (including
#: 3000 Å) — and for CIV 1340–1705, i.e. Shen's 1445–1705 extended to the
#: 1350 Å continuum window of its luminosity.
VIRIAL_LINE_COVERAGE = {
    "Hbeta": (4435.0, 5535.0),
    "MgII": (2200.0, 3090.0),
    "CIV": (1340.0, 1705.0),
}

#: Order of preference of `choose_virial_line`: Hβ is calibrated directly
#: against reverberation mapping; MgII is calibrated to Hβ and behaves
#: virially; CIV is affected by outflows (non-virial blueshifted emission),
#: hence last (e.g. Shen et al. 2011; Shen 2013, BASI 41, 61).
VIRIAL_LINE_PREFERENCE = ("Hbeta", "MgII", "CIV")


def _line_name(line):
    key = str(line).lower().replace(" ", "").replace("β", "beta")
    if key not in _LINE_ALIASES:
        raise ValueError(
            f"unknown virial line {line!r}; use one of {', '.join(DEFAULT_CALIBRATIONS)}"
        )
    return _LINE_ALIASES[key]


def get_calibration(line="Hbeta", calibration=None):
    """
    Look up a virial calibration.

    Parameters
    ----------
    line : str, optional
        ``'Hbeta'``, ``'MgII'`` or ``'CIV'`` (case-insensitive). Default Hβ.
    calibration : str or `VirialCalibration`, optional
        A registry key (``'VP06_Hbeta'``), its short form combined with
        ``line`` (``'VP06'``, ``'MD04'``, ``'A11'``, ``'S11'``, ``'VO09'``), or
        a `VirialCalibration` instance. Default: `DEFAULT_CALIBRATIONS` of the line.

    Returns
    -------
    calibration : `VirialCalibration`

    Raises
    ------
    ValueError
        If the line or calibration is unknown, or the calibration is for
        another line.

    Examples
    --------
    >>> get_calibration("MgII").name
    'S11_MgII'
    >>> get_calibration("Hbeta", "A11").a
    0.895
    """
    line = _line_name(line)
    if isinstance(calibration, VirialCalibration):
        cal = calibration
    else:
        name = DEFAULT_CALIBRATIONS[line] if calibration is None else str(calibration)
        if name not in VIRIAL_CALIBRATIONS:
            name = f"{name}_{line}"
        if name not in VIRIAL_CALIBRATIONS:
            raise ValueError(
                f"unknown calibration {calibration!r} for {line}; known: "
                f"{', '.join(k for k, c in VIRIAL_CALIBRATIONS.items() if c.line == line)}"
            )
        cal = VIRIAL_CALIBRATIONS[name]
    if cal.line != line:
        raise ValueError(f"calibration {cal.name!r} is for {cal.line}, not {line}")
    return cal


def _as_value(value, unit, name, equivalencies=None):
    if value is None:
        return None
    if not isinstance(value, u.Quantity):
        raise SpectralUnitsError(f"{name} needs a unit (e.g. {name}=... * u.{unit})")
    try:
        if isinstance(value.unit, u.FunctionUnitBase):
            value = value.physical
        return np.asarray(
            value.to_value(unit, equivalencies=equivalencies or []), dtype=np.float64
        )
    except u.UnitConversionError as exc:
        raise SpectralUnitsError(
            f"{name} unit {value.unit} cannot be converted to {unit}"
        ) from exc


def virial_mass(
    fwhm,
    luminosity,
    *,
    line="Hbeta",
    calibration=None,
    fwhm_err=None,
    luminosity_err=None,
    include_scatter=False,
):
    """
    Single-epoch virial black-hole mass.

    Parameters
    ----------
    fwhm : `~astropy.units.Quantity`
        FWHM of the broad line (velocity, e.g. km/s), any shape.
    luminosity : `~astropy.units.Quantity`
        Continuum λL_λ at the calibration's wavelength (5100, 3000 or 1350 Å),
        in a power unit or ``dex(erg/s)``; broadcastable with ``fwhm``.
    line : str, optional
        ``'Hbeta'`` (default), ``'MgII'`` or ``'CIV'``.
    calibration : str or `VirialCalibration`, optional
        See `get_calibration`. Default: VP06 for Hβ and CIV, S11 for MgII.
    fwhm_err, luminosity_err : `~astropy.units.Quantity`, optional
        1σ measurement uncertainties (default: none, i.e. zero).
    include_scatter : bool, optional
        Add the calibration's intrinsic scatter in quadrature to the
        uncertainty. Default False (measurement uncertainty only).

    Returns
    -------
    log_mbh : `~astropy.units.Quantity`
        log10(M_BH/M_sun) in ``dex(M_sun)``; NaN where FWHM or L is not
        positive or finite.
    log_mbh_err : `~astropy.units.Quantity`
        Its 1σ uncertainty in dex.

    Raises
    ------
    spectralnn.errors.SpectralUnitsError
        If an input lacks a unit or has an incompatible one.
    ValueError
        If the line or calibration is unknown.

    Examples
    --------
    Vestergaard & Peterson (2006) Hβ, FWHM = 3000 km/s, λL5100 = 1e45 erg/s:

    >>> import astropy.units as u
    >>> m, err = virial_mass(3000 * u.km / u.s, 1e45 * u.erg / u.s,
    ...                      fwhm_err=300 * u.km / u.s)
    >>> m  # doctest: +FLOAT_CMP
    <Dex 8.36424251 dex(solMass)>
    >>> err  # doctest: +FLOAT_CMP
    <Quantity 0.08685889 dex>
    """
    cal = get_calibration(line, calibration)
    f = _as_value(fwhm, u.km / u.s, "fwhm")
    lum = _as_value(luminosity, u.erg / u.s, "luminosity")
    log_m = cal.log_mass(f, lum)
    var = np.zeros(np.shape(log_m))
    ln10 = np.log(10.0)
    if fwhm_err is not None:
        f_err = _as_value(fwhm_err, u.km / u.s, "fwhm_err")
        var = var + (cal.c * f_err / (f * ln10)) ** 2
    if luminosity_err is not None:
        l_err = _as_value(luminosity_err, u.erg / u.s, "luminosity_err")
        var = var + (cal.b * l_err / (lum * ln10)) ** 2
    if include_scatter:
        var = var + cal.scatter**2
    err = np.where(np.isfinite(log_m), np.sqrt(var), np.nan)
    return log_m * u.dex(u.M_sun), err * u.dex


def choose_virial_line(z, wavelength_min, wavelength_max):
    """
    The preferred virial line fully covered by each spectrum.

    A line is usable when the observed range ``[wavelength_min,
    wavelength_max]`` contains its whole rest-frame range of
    `VIRIAL_LINE_COVERAGE` (line, continuum windows and the luminosity
    wavelength) redshifted by ``1 + z``. Among usable lines, Hβ is preferred
    to MgII, and MgII to CIV (`VIRIAL_LINE_PREFERENCE`).

    Parameters
    ----------
    z : float or array-like
        Redshift(s). NaN gives no line.
    wavelength_min, wavelength_max : `~astropy.units.Quantity`
        Observed-frame coverage, scalars or arrays broadcastable with ``z``.

    Returns
    -------
    line : `~numpy.ndarray` of str
        ``'Hbeta'``, ``'MgII'``, ``'CIV'`` or ``''`` (none covered), with the
        broadcast shape of the inputs.

    Examples
    --------
    SDSS covers about 3800–9200 Å:

    >>> import astropy.units as u
    >>> choose_virial_line([0.3, 1.2, 2.5, 5.0], 3800 * u.AA, 9200 * u.AA)
    array(['Hbeta', 'MgII', 'CIV', ''], dtype='<U5')
    """
    lo = _as_value(wavelength_min, u.AA, "wavelength_min", u.spectral())
    hi = _as_value(wavelength_max, u.AA, "wavelength_max", u.spectral())
    zz = np.asarray(z, dtype=np.float64)
    shape = np.broadcast_shapes(zz.shape, np.shape(lo), np.shape(hi))
    result = np.full(shape, "", dtype="<U5")
    chosen = np.zeros(shape, dtype=bool)
    with np.errstate(invalid="ignore"):
        for name in VIRIAL_LINE_PREFERENCE:
            rest_lo, rest_hi = VIRIAL_LINE_COVERAGE[name]
            ok = (rest_lo * (1 + zz) >= lo) & (rest_hi * (1 + zz) <= hi) & ~chosen
            result[ok] = name
            chosen |= ok
    return result
