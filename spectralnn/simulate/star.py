"""
Simulated stellar spectra with SDSS stellar subclasses and a truth table.

A star is a Planck continuum at its effective temperature, multiplied by
absorption lines whose strengths follow the temperature sequence (Balmer
lines peaking in A stars, He II in O and He I in B stars, Ca II H and K, the G
band, Mg b, Na D and the Ca II triplet growing toward cool stars) and by
molecular bands modelled as saw-tooth optical depths from their band heads
(TiO, CaH and VO in M dwarfs; FeH, CrH, K I and H₂O in L dwarfs, CH₄ in T
dwarfs; CN, CH and C₂ Swan bands in carbon stars). White dwarfs have
pressure-broadened Balmer lines (Zeeman-split in magnetic ones), Ca II (DZ)
or C₂ (DQ) features; cataclysmic variables a hot disc continuum with Balmer
and He emission. Band heads and temperature scales are approximate
literature values (Kirkpatrick et al. 1991, ApJS 77, 417; Pecaut & Mamajek
2013, ApJS 208, 9; Kirkpatrick 2005, ARA&A 43, 195): good enough for
classifier training, not for stellar parameters.

Subclasses are the SDSS template names (Bolton et al. 2012, AJ 144, 144),
grouped by spectral type in ``spectral_group``.

Examples
--------
>>> from spectralnn.simulate import simulate_stars
>>> batch = simulate_stars(3, seed=1, noiseless=True)
>>> batch.meta["class"].tolist()
['STAR', 'STAR', 'STAR']
"""

import numpy as np
from astropy import units as u
from astropy.table import QTable

from .core import _finish, _generators, _magnitude_scale, _uniforms
from .galaxy import _C_KMS, _planck

__all__ = ["STAR_SUBCLASSES", "STAR_GROUPS", "simulate_stars"]

# subclass, group, Teff low, Teff high (K), log g
_SUBCLASS_DATA = [
    ("O", "O", 35000, 45000, 4.0), ("O8", "O", 33000, 36000, 4.0),
    ("O9", "O", 30000, 33000, 4.0),
    ("OB", "B", 22000, 30000, 4.0), ("B6", "B", 13000, 15000, 4.0),
    ("B9", "B", 10500, 11500, 4.0),
    ("A0", "A", 9300, 10000, 4.0), ("A0p", "A", 9300, 10000, 4.0),
    ("F2", "F", 6800, 7100, 4.2), ("F5", "F", 6400, 6700, 4.3), ("F9", "F", 6000, 6200, 4.3),
    ("G0", "G", 5850, 6000, 4.4), ("G2", "G", 5700, 5850, 4.4), ("G5", "G", 5500, 5700, 4.5),
    ("K1", "K", 5000, 5250, 4.5), ("K3", "K", 4700, 4900, 4.6), ("K5", "K", 4300, 4500, 4.6),
    ("K7", "K", 4000, 4200, 4.7),
    ("M0", "M", 3800, 3900, 4.7), ("M1", "M", 3650, 3800, 4.8), ("M2", "M", 3500, 3650, 4.8),
    ("M3", "M", 3350, 3500, 4.9), ("M4", "M", 3150, 3350, 5.0), ("M5", "M", 3000, 3150, 5.0),
    ("M6", "M", 2850, 3000, 5.1), ("M7", "M", 2650, 2850, 5.2), ("M8", "M", 2500, 2650, 5.2),
    ("M9", "M", 2350, 2500, 5.3),
    ("L0", "L/T", 2200, 2350, 5.3), ("L1", "L/T", 2100, 2200, 5.3),
    ("L2", "L/T", 2000, 2100, 5.3), ("L3", "L/T", 1850, 2000, 5.3),
    ("L5", "L/T", 1650, 1850, 5.3), ("L9", "L/T", 1300, 1450, 5.3),
    ("T2", "L/T", 1150, 1300, 5.3),
    ("WD", "WD", 10000, 20000, 8.0), ("WDhotter", "WD", 25000, 60000, 8.0),
    ("WDcooler", "WD", 6000, 9000, 8.0), ("WDmagnetic", "WD", 10000, 20000, 8.0),
    ("CalciumWD", "WD", 6000, 10000, 8.0),
    ("Carbon", "Carbon", 2800, 3400, 0.5), ("Carbon_lines", "Carbon", 4000, 5000, 2.0),
    ("CarbonWD", "Carbon", 6000, 12000, 8.0),
    ("CV", "CV", 8000, 20000, 8.0),
]


def _subclass_table():
    names, groups, lo, hi, logg = zip(*_SUBCLASS_DATA)
    t = QTable()
    t["subclass"] = np.array(names)
    t["spectral_group"] = np.array(groups)
    t["teff_min"] = np.array(lo, dtype=np.float64) * u.K
    t["teff_max"] = np.array(hi, dtype=np.float64) * u.K
    t["logg"] = np.array(logg, dtype=np.float64)
    return t


#: SDSS stellar subclasses simulated: ``subclass``, ``spectral_group``,
#: effective-temperature range ``teff_min``-``teff_max`` and nominal ``logg``.
STAR_SUBCLASSES = _subclass_table()

#: The spectral groups, hot to cool, then the peculiar ones.
STAR_GROUPS = ("O", "B", "A", "F", "G", "K", "M", "L/T", "WD", "Carbon", "CV")

# vacuum wavelengths (Å, NIST) of absorption lines, grouped by behaviour
_BALMER = (6564.61, 4862.68, 4341.68, 4102.89, 3971.20, 3890.16, 3836.47)
_HEI = (4027.33, 4472.73, 5877.25, 6679.99)
_HEII = (4687.02, 4542.86, 5413.03)
_CAHK = (3934.78, 3969.59)
_METALS = (  # wavelength, relative depth, sigma (Å)
    (4227.92, 0.6, 3.0),   # Ca I
    (4301.5, 0.5, 12.0),   # G band (CH)
    (5168.76, 0.35, 2.5), (5174.13, 0.45, 2.5), (5185.05, 0.5, 2.5),  # Mg b
    (5271.9, 0.2, 3.0), (5336.2, 0.15, 3.0),  # Fe
    (5891.58, 0.6, 2.5), (5897.56, 0.5, 2.5),  # Na D
    (8185.5, 0.2, 3.0), (8197.1, 0.25, 3.0),   # Na I doublet
    (8500.36, 0.3, 3.0), (8544.44, 0.45, 3.0), (8664.52, 0.4, 3.0),  # Ca II triplet
)
# molecular band heads: wavelength (Å), direction (+1 red-degraded, -1 violet),
# e-folding length (Å), relative depth
_TIO = ((4763.0, 1, 60.0, 0.4), (4956.0, 1, 70.0, 0.5), (5169.0, 1, 80.0, 0.6),
        (5450.0, 1, 90.0, 0.6), (5849.0, 1, 100.0, 0.7), (6161.0, 1, 100.0, 0.8),
        (6653.0, 1, 120.0, 0.8), (7056.0, 1, 140.0, 1.0), (7591.0, 1, 120.0, 0.8),
        (8434.0, 1, 120.0, 0.6), (8862.0, 1, 120.0, 0.5))
_CAH = ((6384.0, 1, 60.0, 0.5), (6832.0, 1, 60.0, 0.6))
_VO = ((7400.0, 1, 150.0, 0.6), (7900.0, 1, 150.0, 0.6))
_LDWARF = ((8613.0, 1, 80.0, 0.6), (8694.0, 1, 100.0, 0.8), (9250.0, 1, 300.0, 0.8))
_CH4 = ((8880.0, 1, 150.0, 1.0),)
_C2 = ((4738.0, -1, 120.0, 0.8), (5166.0, -1, 150.0, 1.0), (5637.0, -1, 160.0, 1.0),
       (6192.0, -1, 150.0, 0.7))
_CN = ((3884.0, -1, 60.0, 0.8), (4217.0, -1, 80.0, 0.6), (7880.0, 1, 200.0, 0.4),
       (8737.0, 1, 200.0, 0.4))

_U = {name: i for i, name in enumerate((
    "subclass", "teff", "feh", "rv", "mag", "ebv", "width", "field", "emission",
    "spare1", "spare2", "spare3",
))}


def _gauss(wave, center, sigma):
    return np.exp(-0.5 * ((wave - center) / sigma) ** 2)


def _bands(wave, bands, strength):
    """Optical depth of saw-tooth molecular bands (N, M)."""
    tau = np.zeros(wave.shape)
    for head, direction, length, depth in bands:
        d = (wave - head) * direction
        prof = np.where(d >= 0, np.exp(-np.clip(d, 0, None) / length), 0.0)
        # soften the head over ~2 Å so it is resolved by the line-spread function
        prof *= 0.5 * (1.0 + np.tanh(d / 2.0))
        tau += (strength * depth)[:, None] * prof
    return tau


def _lines(wave, centres, strength, sigma, shift=0.0):
    tau = np.zeros(wave.shape)
    for lam in centres:
        tau += strength[:, None] * _gauss(wave, lam + shift, sigma[:, None])
    return tau


def _bump(log_t, centre, width):
    return np.exp(-0.5 * ((log_t - np.log10(centre)) / width) ** 2)


def _star_model(wave, p):
    """Rest-frame model f_λ (arbitrary scale) of each star on rest wavelengths (N, M)."""
    teff = p["teff"]
    group = p["group"]
    sub = p["subclass"]
    log_t = np.log10(teff)
    metal = 10 ** (0.3 * np.clip(p["feh"], -2.5, 0.5))
    is_wd = (group == "WD") | (sub == "CarbonWD") | (group == "CV")
    normal = ~is_wd & (group != "Carbon")
    cont = _planck(wave, teff[:, None])
    # Balmer jump of A-B stars
    jump = np.where(normal, 0.4 * _bump(log_t, 9500.0, 0.12), 0.0)
    cont = cont * (1.0 - jump[:, None] * 0.5 * (1.0 - np.tanh((wave - 3646.0) / 15.0)))

    tau = np.zeros(wave.shape)
    w = p["width"]
    # hydrogen
    s_h = np.where(normal, 0.9 * _bump(log_t, 9500.0, 0.13), 0.0)
    sig_h = np.where(normal, 6.0 + 10.0 * _bump(log_t, 9500.0, 0.1), 5.0) * w
    wd_da = np.isin(sub, ["WD", "WDhotter", "WDcooler", "WDmagnetic"])
    s_h = np.where(wd_da, np.select([sub == "WDhotter", sub == "WDcooler"], [0.35, 0.25], 0.7),
                   s_h)
    sig_h = np.where(wd_da, np.where(sub == "WDcooler", 20.0, 40.0) * w, sig_h)
    magnetic = sub == "WDmagnetic"
    plain = s_h * ~magnetic
    tau += _lines(wave, _BALMER, plain, sig_h)
    # Zeeman triplets: shift 4.67e-13 λ² B (Å, B in gauss), B = 1-10 MG
    if magnetic.any():
        b_field = 1e6 * (1.0 + 9.0 * p["field"])
        for lam in _BALMER:
            dz = 4.67e-13 * lam**2 * b_field
            for shift in (-1.0, 0.0, 1.0):
                tau += (0.5 * s_h * magnetic)[:, None] * _gauss(
                    wave, lam + shift * dz[:, None], 0.5 * sig_h[:, None])
    # helium
    s_he1 = np.where(normal, 0.3 * _bump(log_t, 20000.0, 0.08), 0.0)
    tau += _lines(wave, _HEI, s_he1, np.full(len(teff), 3.0))
    s_he2 = np.where(normal, 0.3 * np.clip((teff - 30000.0) / 10000.0, 0, 1), 0.0)
    tau += _lines(wave, _HEII, s_he2, np.full(len(teff), 3.0))
    # metals: grow from F to M
    s_met = np.where(normal | (sub == "Carbon_lines") | (sub == "Carbon"),
                     np.clip((7500.0 - teff) / 2500.0, 0, 1.3) * metal, 0.0)
    s_met *= np.where(group == "L/T", 0.3, 1.0)
    s_ca = np.where(normal, np.clip((8500.0 - teff) / 3000.0, 0, 1) * 1.5 * metal, 0.0)
    s_ca = np.where(sub == "CalciumWD", 2.5, s_ca)
    sig_ca = np.where(sub == "CalciumWD", 15.0, 4.0)
    tau += _lines(wave, _CAHK, s_ca, sig_ca)
    for lam, depth, sig in _METALS:
        tau += (s_met * depth)[:, None] * _gauss(wave, lam, sig)
    # M dwarfs: TiO, CaH, VO (weakening again in L dwarfs)
    cool = np.clip((4000.0 - teff) / 1000.0, 0, 1.5) * np.clip((teff - 1700.0) / 600.0, 0, 1)
    cool = np.where(normal, cool, 0.0)
    tau += _bands(wave, _TIO, cool)
    tau += _bands(wave, _CAH, cool)
    tau += _bands(wave, _VO, np.where(normal, np.clip((2900.0 - teff) / 500.0, 0, 1), 0.0))
    # L and T dwarfs: FeH, CrH, H2O, the broad K I resonance doublet, CH4
    lt = np.where(group == "L/T", 1.0, 0.0)
    tau += _bands(wave, _LDWARF, lt)
    tau += _lines(wave, (7667.0, 7701.1), 1.5 * lt, np.full(len(teff), 60.0))
    tau += _bands(wave, _CH4, np.where(sub == "T2", 1.0, 0.0))
    # carbon stars: C2 Swan bands, CN and CH
    c2 = np.select([sub == "Carbon", sub == "Carbon_lines", sub == "CarbonWD"],
                   [1.2, 0.5, 0.6], 0.0)
    tau += _bands(wave, _C2, c2)
    tau += _bands(wave, _CN, np.where(np.isin(sub, ["Carbon", "Carbon_lines"]), 0.8, 0.0))
    tau += _lines(wave, (4301.5,), np.where(np.isin(sub, ["Carbon", "Carbon_lines"]),
                                            1.0, 0.0), np.full(len(teff), 15.0))
    # peculiar A stars: enhanced Sr II, Cr II, Eu II lines
    ap = np.where(sub == "A0p", 0.5, 0.0)
    tau += _lines(wave, (4078.9, 4216.7, 4130.8, 4205.1), ap, np.full(len(teff), 2.5))

    flux = cont * np.exp(-tau)
    # cataclysmic variables: disc emission lines (EW ~ 20-100 Å)
    cv = sub == "CV"
    if cv.any():
        ref = _planck(np.array([6564.61, 4862.68]), teff[:, None])  # (N, 2)
        ew = 20.0 + 80.0 * p["emission"]
        for lam, rel in ((6564.61, 1.0), (4862.68, 0.7), (4341.68, 0.5), (4102.89, 0.4),
                         (5877.25, 0.2), (4472.73, 0.15), (6679.99, 0.1),
                         (4687.02, 0.2)):
            c = ref[:, 0] if lam > 5500 else ref[:, 1]
            amp = np.where(cv, rel * ew * c / (np.sqrt(2 * np.pi) * 20.0), 0.0)
            flux += amp[:, None] * _gauss(wave, lam, 20.0)
    return flux


def simulate_stars(
    n: int,
    *,
    seed=None,
    survey: str = "SDSS",
    subclasses=None,
    magnitude_range: tuple = (15.0, 20.0),
    rv_sigma=40.0 * u.km / u.s,
    snr=None,
    noiseless: bool = False,
):
    """
    Simulate stellar spectra with SDSS stellar subclasses and a truth table.

    Parameters
    ----------
    n : int
        Number of stars.
    seed : int, `numpy.random.Generator` or sequence, optional
        Random state: one for the batch, or ``n`` seeds (one per star).
    survey : str, optional
        Survey grid and instrument. Default ``'SDSS'``.
    subclasses : sequence of str, optional
        Subclasses to draw from; default all of `STAR_SUBCLASSES`. Each
        spectral group is equally likely, and each subclass within its group.
    magnitude_range : tuple of float, optional
        r-band AB magnitudes (before extinction) uniform in this range.
        Default (15, 20).
    rv_sigma : `~astropy.units.Quantity`, optional
        Dispersion of the Gaussian radial-velocity distribution. Default
        40 km/s.
    snr : float or array-like, optional
        Median S/N per pixel to scale the noise to.
    noiseless : bool, optional
        Return the noiseless models (unit inverse variance). Default False.

    Returns
    -------
    batch : `~spectralnn.SpectrumBatch`
        Observed-frame spectra; ``meta`` holds ``class`` ('STAR'),
        ``subclass``, ``spectral_group``, ``teff``, ``logg``, ``feh``,
        ``rv``, ``z`` (= rv / c), ``mag_r``, ``ebv``.

    Raises
    ------
    ValueError
        If a subclass is unknown or a range invalid.

    Examples
    --------
    >>> batch = simulate_stars(2, seed=3, subclasses=["M4"], noiseless=True)
    >>> batch.meta["subclass"].tolist(), batch.meta["spectral_group"].tolist()
    (['M4', 'M4'], ['M', 'M'])
    """
    from .instrument import survey_grid

    n = int(n)
    table = STAR_SUBCLASSES
    if subclasses is not None:
        unknown = sorted(set(subclasses) - set(table["subclass"]))
        if unknown:
            raise ValueError(f"unknown stellar subclasses {unknown}; known: "
                             f"{', '.join(table['subclass'])}")
        table = table[np.isin(table["subclass"], list(subclasses))]
    if magnitude_range[0] > magnitude_range[1]:
        raise ValueError(f"magnitude_range must be increasing, got {magnitude_range}")
    rv_sigma = u.Quantity(rv_sigma, u.km / u.s).value

    gens = _generators(seed, n)
    uni = _uniforms(gens, n, len(_U))
    # every spectral group equally likely, then subclasses equally within it
    groups = np.asarray(table["spectral_group"])
    _, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    weight = 1.0 / counts[inverse]
    cum = np.cumsum(weight) / weight.sum()
    k = np.minimum(np.searchsorted(cum, uni[:, _U["subclass"]], side="right"),
                   len(table) - 1)
    lo = table["teff_min"].value[k]
    hi = table["teff_max"].value[k]
    p = {
        "subclass": np.asarray(table["subclass"])[k],
        "group": np.asarray(table["spectral_group"])[k],
        "teff": lo + (hi - lo) * uni[:, _U["teff"]],
        "logg": np.asarray(table["logg"])[k],
        "feh": -2.0 + 2.4 * uni[:, _U["feh"]],
        "width": 0.8 + 0.4 * uni[:, _U["width"]],
        "field": uni[:, _U["field"]],
        "emission": uni[:, _U["emission"]],
    }
    from scipy.special import ndtri

    rv = rv_sigma * ndtri(np.clip(uni[:, _U["rv"]], 1e-12, 1 - 1e-12))
    mag = magnitude_range[0] + (magnitude_range[1] - magnitude_range[0]) * uni[:, _U["mag"]]
    ebv = -0.03 * np.log1p(-uni[:, _U["ebv"]])

    wave = np.asarray(survey_grid(survey), dtype=np.float64)
    rest = wave[None, :] / (1.0 + rv / _C_KMS)[:, None]
    model = _star_model(rest, p)
    model = model * _magnitude_scale(wave, model, mag)[:, None]

    t = QTable()
    t["object_id"] = np.arange(n, dtype=np.int64)
    t["class"] = np.full(n, "STAR")
    t["subclass"] = p["subclass"].astype("<U12")
    t["spectral_group"] = p["group"].astype("<U8")
    t["z"] = rv / _C_KMS
    t["teff"] = p["teff"] * u.K
    t["logg"] = p["logg"]
    t["feh"] = p["feh"]
    t["rv"] = rv * u.km / u.s
    t["mag_r"] = mag * u.mag
    t["ebv"] = ebv
    return _finish(wave, model, t, survey=survey, gens=gens, noiseless=noiseless, snr=snr)
