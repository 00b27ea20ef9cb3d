"""
Fe II pseudo-continuum of quasars, built from Fe II multiplet wavelengths.

Thousands of blended, broadened Fe II lines form a pseudo-continuum in the
ultraviolet (2200–3090 Å, under Mg II) and the optical (4400–5400 Å, around
Hβ). Here it is modelled as the sum of the strongest lines of the main
multiplets, each a Gaussian with the width of the broad lines; no empirical
template (Vestergaard & Wilkes 2001, Boroson & Green 1992) is used or copied.

Line lists (air wavelengths in Å, converted to vacuum; multiplet numbers of
Moore 1945, "A multiplet table of astrophysical interest"; relative
strengths are rough, equal within a multiplet group unless noted):

* UV: multiplets UV 1 (2586–2632 Å), UV 2 (2374–2414), UV 3 (2333–2365),
  UV 35/36 (2260–2280 region, from 2249.9, 2260.8), UV 62/63 (2714–2756),
  UV 60/78 (2926–2985) — the groups that dominate the 2200–3090 Å
  pseudo-continuum (Vestergaard & Wilkes 2001, ApJS 134, 1, fig. 1).
* Optical: multiplets 27, 28, 37, 38 (4400–4630 Å), 42 (4924, 5018, 5169),
  48/49 (5198–5425) — the F, S, G and P groups of Kovačević et al. (2010,
  ApJS 189, 15).

Examples
--------
>>> import numpy as np
>>> from spectralnn.simulate.feii import feii_template
>>> wave = np.linspace(2000.0, 3200.0, 1201)
>>> t = feii_template(wave, 3000.0, "uv")
>>> bool(t[(wave > 2400) & (wave < 2700)].mean() > 10 * t[wave < 2100].mean())
True
"""

import numpy as np

from .instrument import _air_to_vacuum

__all__ = ["FEII_UV_LINES", "FEII_OPTICAL_LINES", "feii_template"]

_UV_AIR = [
    # UV 1
    (2585.88, 1.0),
    (2599.40, 1.0),
    (2607.09, 0.8),
    (2611.87, 0.8),
    (2613.82, 0.6),
    (2617.62, 0.6),
    (2621.67, 0.5),
    (2625.67, 0.7),
    (2628.29, 0.5),
    (2631.83, 0.5),
    # UV 2
    (2373.74, 0.8),
    (2382.04, 1.0),
    (2388.63, 0.6),
    (2395.63, 0.8),
    (2399.24, 0.6),
    (2404.43, 0.8),
    (2405.62, 0.6),
    (2407.39, 0.5),
    (2411.07, 0.6),
    (2413.31, 0.5),
    # UV 3
    (2332.80, 0.5),
    (2338.01, 0.6),
    (2343.50, 0.8),
    (2344.28, 0.8),
    (2348.30, 0.5),
    (2359.11, 0.6),
    (2361.74, 0.4),
    (2364.83, 0.5),
    # UV 35/36 region
    (2249.88, 0.3),
    (2260.78, 0.3),
    (2268.56, 0.3),
    (2279.92, 0.3),
    # UV 62/63
    (2714.41, 0.6),
    (2727.54, 0.6),
    (2730.73, 0.5),
    (2739.55, 0.8),
    (2743.20, 0.6),
    (2746.48, 0.7),
    (2749.32, 0.7),
    (2755.73, 0.8),
    # UV 60 / UV 78
    (2926.58, 0.5),
    (2939.50, 0.4),
    (2944.40, 0.4),
    (2953.77, 0.5),
    (2970.51, 0.4),
    (2979.35, 0.3),
    (2984.83, 0.3),
]

_OPTICAL_AIR = [
    # multiplets 27, 28, 37, 38 (F group)
    (4416.83, 0.6),
    (4472.93, 0.4),
    (4489.19, 0.5),
    (4491.41, 0.6),
    (4508.28, 0.8),
    (4515.34, 0.7),
    (4520.22, 0.7),
    (4522.63, 1.0),
    (4534.17, 0.4),
    (4541.52, 0.5),
    (4549.47, 1.0),
    (4555.89, 0.8),
    (4576.34, 0.6),
    (4582.84, 0.6),
    (4583.84, 1.0),
    (4620.51, 0.6),
    (4629.34, 0.9),
    # multiplet 42 (S group)
    (4923.93, 1.0),
    (5018.44, 1.2),
    (5169.03, 1.2),
    # multiplets 41, 48, 49 (G/P groups)
    (5197.58, 0.8),
    (5234.62, 0.8),
    (5254.93, 0.4),
    (5264.81, 0.4),
    (5276.00, 0.9),
    (5284.11, 0.5),
    (5316.62, 1.0),
    (5337.73, 0.4),
    (5362.87, 0.6),
    (5414.07, 0.3),
    (5425.26, 0.4),
]

#: UV Fe II lines: (vacuum wavelength Å, relative strength).
FEII_UV_LINES = np.column_stack(
    [_air_to_vacuum(np.array(_UV_AIR)[:, 0]), np.array(_UV_AIR)[:, 1]]
)
#: Optical Fe II lines: (vacuum wavelength Å, relative strength).
FEII_OPTICAL_LINES = np.column_stack(
    [_air_to_vacuum(np.array(_OPTICAL_AIR)[:, 0]), np.array(_OPTICAL_AIR)[:, 1]]
)

_C_KMS = 299792.458


def feii_template(wavelength, fwhm, group="uv"):
    """
    Fe II pseudo-continuum: Gaussian lines of one FWHM, unit total flux.

    Parameters
    ----------
    wavelength : array-like
        Rest wavelengths in Å, shape ``(M,)`` or ``(N, M)``.
    fwhm : float or array-like
        Line FWHM in km/s (scalar, or shape ``(N,)`` with 2-D wavelengths).
    group : {'uv', 'optical'}, optional
        Which multiplet group. Default ``'uv'``.

    Returns
    -------
    template : ndarray
        f_λ per Å with the shape of ``wavelength``; the lines' fluxes add up
        to 1 (the integral over all wavelengths is 1), so multiplying by an
        equivalent width times the continuum gives the Fe II flux.

    Examples
    --------
    >>> import numpy as np
    >>> wave = np.linspace(4000.0, 6000.0, 20001)
    >>> template = feii_template(wave, 2000.0, "optical")
    >>> float(np.trapezoid(template, wave))  # doctest: +FLOAT_CMP
    1.0
    """
    lines = {"uv": FEII_UV_LINES, "optical": FEII_OPTICAL_LINES}.get(group)
    if lines is None:
        raise ValueError(f"group must be 'uv' or 'optical', not {group!r}")
    wave = np.asarray(wavelength, dtype=np.float64)
    fwhm = np.asarray(fwhm, dtype=np.float64)
    if wave.ndim == 2 and fwhm.ndim == 1:
        fwhm = fwhm[:, None]
    strength = lines[:, 1] / lines[:, 1].sum()
    out = np.zeros(np.broadcast_shapes(wave.shape, fwhm.shape))
    for centre, s in zip(lines[:, 0], strength, strict=True):
        sigma = centre * fwhm / (_C_KMS * 2.3548200450309493)
        out += (
            s
            * np.exp(-0.5 * ((wave - centre) / sigma) ** 2)
            / (np.sqrt(2 * np.pi) * sigma)
        )
    return out
