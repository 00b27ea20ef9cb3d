"""
Simulated galaxy spectra with SDSS-style classes and a truth table.

Each galaxy is a stellar continuum plus nebular emission lines, redshifted,
normalised to an r-band magnitude and observed with
`~spectralnn.simulate.observe`:

* **Stellar continuum**: two parametric stellar populations, an old one (a
  4800 K Planck curve with a 4000 Å break and metal absorption lines: Ca II H
  and K, the G band, Fe 4383, Mg b, Fe 5270/5335, Na D, the Ca II triplet) and
  a young one (a hotter Planck curve with a Balmer break and broad Balmer
  absorption lines), mixed by their light fraction at 5500 Å. Absorption lines
  are broadened by the stellar velocity dispersion. Dust attenuates the
  continuum with the power law ``τ ∝ λ^-0.7`` of Charlot & Fall (2000, ApJ
  539, 718), 0.44 times the attenuation of the gas (Calzetti et al. 2000, ApJ
  533, 682).
* **Emission lines**: ratios to Hβ from the MAPPINGS 5 photoionisation grids of
  NebulaBayes (Thomas et al. 2018, ApJ 856, 89; HII regions, and AGN
  narrow-line regions of Thomas et al. 2016, ApJ 833, 266), shipped as
  ``spectralnn/data/nebular_line_ratios.ecsv``. AGN mix an NLR model with an
  HII model. [O III]4959 and [N II]6548 are a third of their strong partners
  (Storey & Zeippen 2000, MNRAS 312, 813). Lines are Gaussians integrated over
  each pixel, so their flux is conserved exactly.

Classes follow the SDSS spectroscopic pipeline (Bolton et al. 2012, AJ 144,
144) so simulated and real labels compare: ``class`` is ``'GALAXY'`` and
``subclass`` is ``'STARFORMING'``, ``'STARBURST'`` (star-forming with
EW(Hα) > 50 Å), ``'AGN'`` (above ``log [O III]/Hβ = 0.7 - 1.2 (log [N II]/Hα
+ 0.4)``), optionally followed by ``'BROADLINE'`` (lines with σ > 200 km/s),
or ``''`` for galaxies without measurable lines. The ``bpt_class`` column
gives the classification with the curves of Kauffmann et al. (2003, MNRAS
346, 1055) and Kewley et al. (2001, ApJ 556, 121).

Examples
--------
>>> from spectralnn.simulate import simulate_galaxies
>>> batch = simulate_galaxies(4, seed=1, noiseless=True)
>>> batch.flux.shape
(4, 3840)
>>> batch.meta["class"].tolist()
['GALAXY', 'GALAXY', 'GALAXY', 'GALAXY']
"""

from functools import lru_cache
from importlib import resources

import numpy as np
from astropy import units as u
from astropy.table import QTable, Table
from scipy.special import erf, ndtri

from ..lines import get_line
from .core import _finish, _generators, _magnitude_scale, _uniforms

__all__ = [
    "GALAXY_SUBCLASSES",
    "EMISSION_LINES",
    "simulate_galaxies",
    "sdss_galaxy_subclass",
    "bpt_class",
    "nebular_line_ratios",
]

_C_KMS = 299792.458
_LINE_FLUX_UNIT = u.Unit("1e-17 erg / (s cm2)")

#: Subclasses a simulated galaxy can get (SDSS names; '' = no measurable lines).
GALAXY_SUBCLASSES = (
    "",
    "STARFORMING",
    "STARBURST",
    "AGN",
    "BROADLINE",
    "STARFORMING BROADLINE",
    "STARBURST BROADLINE",
    "AGN BROADLINE",
)

#: Emission lines put into galaxy spectra (names of `spectralnn.lines.LINES`).
EMISSION_LINES = (
    "[NeV]3426",
    "[OII]3726",
    "[OII]3729",
    "[NeIII]3869",
    "Hdelta",
    "Hgamma",
    "[OIII]4363",
    "HeII4686",
    "Hbeta",
    "[OIII]4959",
    "[OIII]5007",
    "HeI5876",
    "[OI]6300",
    "[NII]6548",
    "Halpha",
    "[NII]6583",
    "[SII]6716",
    "[SII]6731",
)

# lines tied to a stronger partner by atomic physics: name -> (partner, ratio)
_TIED = {"[OIII]4959": ("[OIII]5007", 1 / 2.98), "[NII]6548": ("[NII]6583", 1 / 3.05)}

# metal absorption of the old population: vacuum wavelength (Å, NIST), optical
# depth at solar metallicity, intrinsic Gaussian sigma (Å)
_METAL_LINES = np.array([
    [3934.78, 0.9, 7.0],   # Ca II K
    [3969.59, 0.8, 7.0],   # Ca II H
    [4301.5, 0.25, 12.0],  # G band (CH)
    [4384.7, 0.10, 5.0],   # Fe I 4383
    [5168.76, 0.12, 3.0],  # Mg b
    [5174.13, 0.15, 3.0],
    [5185.05, 0.15, 3.0],
    [5271.9, 0.08, 4.0],   # Fe 5270
    [5336.2, 0.07, 4.0],   # Fe 5335
    [5891.58, 0.20, 2.5],  # Na D2
    [5897.56, 0.17, 2.5],  # Na D1
    [8500.36, 0.12, 4.0],  # Ca II triplet
    [8544.44, 0.18, 4.0],
    [8664.52, 0.16, 4.0],
])

# Balmer absorption of the young population: vacuum wavelength (Å), optical
# depth, sigma (Å) (pressure-broadened wings approximated by a wide Gaussian)
_BALMER_LINES = np.array([
    [6564.61, 0.25, 12.0],
    [4862.68, 0.30, 14.0],
    [4341.68, 0.32, 14.0],
    [4102.89, 0.34, 14.0],
    [3971.20, 0.30, 12.0],
    [3890.16, 0.25, 10.0],
    [3836.47, 0.20, 9.0],
    [3798.98, 0.15, 8.0],
])

# galaxy populations: name -> fraction of galaxies (default mix)
_TYPES = ("passive", "starforming", "agn", "broadline")
_DEFAULT_FRACTIONS = (0.3, 0.45, 0.2, 0.05)

#: EW(Hα) (rest frame, Å) below which a galaxy has no measurable lines: the
#: noiseless stand-in for the S/N requirement of the SDSS pipeline.
_MIN_EW_HALPHA = 3.0

# columns of the per-object uniform random numbers
_U = {name: i for i, name in enumerate((
    "type", "z", "mag", "sigma_star", "young", "t_young", "metal", "av", "ew",
    "hii_row", "nlr_row", "f_agn", "sigma_gas", "sigma_broad", "broad_ratio", "ebv",
    "broad_base", "break", "spare1", "spare2",
))}


@lru_cache(maxsize=1)
def nebular_line_ratios():
    """
    The photoionisation-grid line ratios shipped with spectralnn.

    Returns
    -------
    table : `~astropy.table.Table`
        One row per grid model: ``grid`` ('HII' or 'NLR'), ``log_U``,
        ``log_P_k``, ``log_OH`` (12 + log O/H), ``log_E_peak`` (NLR only) and
        ``log10(F / F_Hβ)`` of each line in a column named as in
        `spectralnn.lines.LINES`. Provenance is in ``table.meta``.

    Examples
    --------
    >>> t = nebular_line_ratios()
    >>> sorted(set(t["grid"].tolist()))
    ['HII', 'NLR']
    """
    path = resources.files("spectralnn") / "data" / "nebular_line_ratios.ecsv"
    with resources.as_file(path) as p:
        return Table.read(p, format="ascii.ecsv")


def _grid_ratios(kind):
    """Rows of one grid usable for galaxies: (params table, linear ratios dict)."""
    t = nebular_line_ratios()
    t = t[t["grid"] == kind]
    if kind == "HII":
        keep = (t["log_OH"] >= 8.0) & (t["log_U"] >= -3.75) & (t["log_U"] <= -2.5)
    else:
        keep = (t["log_OH"] >= 8.6) & (t["log_U"] >= -3.8) & (t["log_U"] <= -2.2)
    t = t[keep]
    ratios = {}
    for name in EMISSION_LINES:
        if name == "Hbeta":
            ratios[name] = np.ones(len(t))
        elif name in t.colnames:
            ratios[name] = 10.0 ** np.asarray(t[name], dtype=np.float64)
    for name, (partner, r) in _TIED.items():
        ratios[name] = ratios[partner] * r
    return t, ratios


def bpt_class(log_nii_halpha, log_oiii_hbeta):
    """
    BPT class of emission-line galaxies from [N II]/Hα and [O III]/Hβ.

    Star-forming galaxies lie below the empirical curve of Kauffmann et al.
    (2003, MNRAS 346, 1055, eq. 1), ``y = 0.61 / (x - 0.05) + 1.3``; AGN lie
    above the theoretical maximum-starburst curve of Kewley et al. (2001, ApJ
    556, 121, eq. 5), ``y = 0.61 / (x - 0.47) + 1.19``; composites in between.

    Parameters
    ----------
    log_nii_halpha, log_oiii_hbeta : array-like
        ``log10([N II]6583 / Hα)`` and ``log10([O III]5007 / Hβ)``.

    Returns
    -------
    classes : ndarray of str
        ``'star-forming'``, ``'composite'``, ``'AGN'``, or ``''`` where a
        ratio is not finite.

    Examples
    --------
    >>> bpt_class([-0.8, -0.2, 0.1], [0.0, 0.0, 0.8]).tolist()
    ['star-forming', 'composite', 'AGN']
    """
    x = np.asarray(log_nii_halpha, dtype=np.float64)
    y = np.asarray(log_oiii_hbeta, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        below_ka = (x < 0.05) & (y < 0.61 / (x - 0.05) + 1.3)
        below_ke = (x < 0.47) & (y < 0.61 / (x - 0.47) + 1.19)
    out = np.where(below_ka, "star-forming", np.where(below_ke, "composite", "AGN"))
    out = out.astype("<U12")
    out[~(np.isfinite(x) & np.isfinite(y))] = ""
    return out


def sdss_galaxy_subclass(ew_halpha, log_nii_halpha, log_oiii_hbeta, broad_sigma=None,
                         *, min_ew_halpha=_MIN_EW_HALPHA):
    """
    SDSS galaxy subclass from emission-line properties.

    The rules of the SDSS spectroscopic pipeline (Bolton et al. 2012, AJ 144,
    144, section 4.2): galaxies with measurable lines are ``'AGN'`` when
    ``log [O III]/Hβ > 0.7 - 1.2 (log [N II]/Hα + 0.4)``, otherwise
    ``'STARFORMING'``, or ``'STARBURST'`` when EW(Hα) > 50 Å; ``'BROADLINE'``
    is appended when the lines have σ > 200 km/s. "Measurable" is taken here as
    EW(Hα) ≥ ``min_ew_halpha`` (the pipeline uses the S/N of the lines).

    Parameters
    ----------
    ew_halpha : array-like
        Rest-frame emission EW of narrow Hα in Å (positive for emission).
    log_nii_halpha, log_oiii_hbeta : array-like
        BPT line ratios (log10).
    broad_sigma : array-like, optional
        Velocity dispersion of broad Balmer lines in km/s (0 or NaN: none).
    min_ew_halpha : float, optional
        EW(Hα) in Å below which a galaxy has no measurable lines. Default 3.

    Returns
    -------
    subclass : ndarray of str
        One of `GALAXY_SUBCLASSES`.

    Examples
    --------
    >>> sdss_galaxy_subclass([20.0, 80.0, 10.0, 0.5], [-0.5, -0.9, 0.0, -0.5],
    ...                      [0.0, 0.3, 0.8, 0.0]).tolist()
    ['STARFORMING', 'STARBURST', 'AGN', '']
    """
    ew = np.asarray(ew_halpha, dtype=np.float64)
    x = np.asarray(log_nii_halpha, dtype=np.float64)
    y = np.asarray(log_oiii_hbeta, dtype=np.float64)
    measurable = np.isfinite(ew) & (ew >= min_ew_halpha) & np.isfinite(x) & np.isfinite(y)
    with np.errstate(invalid="ignore"):
        agn = y > 0.7 - 1.2 * (x + 0.4)
    base = np.where(agn, "AGN", np.where(ew > 50.0, "STARBURST", "STARFORMING"))
    base = np.where(measurable, base, "").astype("<U24")
    if broad_sigma is None:
        return base
    broad = np.nan_to_num(np.asarray(broad_sigma, dtype=np.float64)) > 200.0
    out = np.where(broad, np.char.strip(np.char.add(np.char.add(base, " "), "BROADLINE")),
                   base)
    return out.astype("<U24")


def _planck(wave, temperature):
    """Planck f_λ (arbitrary scale) at wavelengths in Å, temperatures in K."""
    x = 1.4387769e8 / (wave * temperature)  # hc / (λ k T) with λ in Å
    return wave**-5 / np.expm1(np.minimum(x, 700.0))


def _step_below(wave, edge, width):
    """Smooth step: 1 well below ``edge`` Å, 0 well above."""
    return 0.5 * (1.0 - np.tanh((wave - edge) / width))


def _absorption(wave, lines, strength, sigma_v):
    """exp(-Σ τ_k G_k) for absorption lines broadened by sigma_v (km/s)."""
    tau = np.zeros(np.broadcast_shapes(wave.shape, strength.shape))
    for lam, depth, sig in lines:
        sig_tot = np.sqrt(sig**2 + (lam * sigma_v / _C_KMS) ** 2)
        tau += (strength * depth) * np.exp(-0.5 * ((wave - lam) / sig_tot) ** 2)
    return np.exp(-tau)


def _stellar_continuum(wave, p):
    """Rest-frame stellar f_λ (normalised near 1 at 5500 Å), attenuated."""
    col = lambda a: a[:, None]  # noqa: E731
    old = _planck(wave, 4800.0) / _planck(5500.0, 4800.0)
    old = old * (1.0 - col(p["break_depth"]) * _step_below(wave, 4000.0, 30.0))
    old = old * _absorption(wave, _METAL_LINES, col(p["metal_strength"]),
                            col(p["sigma_star"]))
    t_y = col(p["t_young"])
    young = _planck(wave, t_y) / _planck(5500.0, t_y)
    young = young * (1.0 - 0.3 * _step_below(wave, 3646.0, 15.0))
    young = young * _absorption(wave, _BALMER_LINES, np.ones_like(t_y),
                                col(p["sigma_star"]))
    fy = col(p["young_fraction"])
    stellar = (1.0 - fy) * old + fy * young
    a_star = 0.44 * col(p["av"])
    return stellar * 10 ** (-0.4 * a_star * (wave / 5500.0) ** -0.7)


def _pixel_edges(wave):
    """Edges of pixels centred on ``wave`` (M,) -> (M + 1,)."""
    mid = 0.5 * (wave[1:] + wave[:-1])
    return np.concatenate([[wave[0] - (mid[0] - wave[0])], mid,
                           [wave[-1] + (wave[-1] - mid[-1])]])


def _add_binned_gaussians(out, edges, centers, sigmas, fluxes):
    """Add pixel-integrated Gaussians (flux conserving) to ``out`` (N, M)."""
    width = np.diff(edges, axis=-1)
    for k in range(centers.shape[-1]):
        c = centers[..., k][:, None]
        s = sigmas[..., k][:, None] * np.sqrt(2.0)
        f = fluxes[..., k]
        rows = f != 0
        if not rows.any():
            continue
        cdf = 0.5 * erf((edges[rows] - c[rows]) / s[rows])
        out[rows] += f[rows, None] * np.diff(cdf, axis=-1) / width[rows]
    return out


def _draw_parameters(uni, z_range, magnitude_range, fractions):
    """Physical parameters from the (N, K) uniform numbers."""
    n = uni.shape[0]
    cum = np.cumsum(fractions) / np.sum(fractions)
    gtype = np.searchsorted(cum, uni[:, _U["type"]], side="right")
    passive = gtype == 0
    p = {"type": np.asarray(_TYPES)[gtype]}
    p["z"] = z_range[0] + (z_range[1] - z_range[0]) * uni[:, _U["z"]]
    p["mag_r"] = magnitude_range[0] + (magnitude_range[1] - magnitude_range[0]) \
        * uni[:, _U["mag"]]
    p["sigma_star"] = np.where(passive, 100.0 + 200.0 * uni[:, _U["sigma_star"]],
                               40.0 + 160.0 * uni[:, _U["sigma_star"]])
    p["young_fraction"] = np.select(
        [passive, gtype == 1], [0.1 * uni[:, _U["young"]], 0.2 + 0.7 * uni[:, _U["young"]]],
        0.05 + 0.45 * uni[:, _U["young"]])
    p["t_young"] = 9000.0 + 11000.0 * uni[:, _U["t_young"]]
    p["metallicity"] = -0.7 + 1.0 * uni[:, _U["metal"]]
    p["metal_strength"] = 10 ** (0.25 * p["metallicity"])
    p["break_depth"] = 0.4 + 0.2 * uni[:, _U["break"]]
    p["av"] = np.where(passive, 0.0, 1.5 * uni[:, _U["av"]])
    # narrow-line gas
    p["sigma_gas"] = 30.0 + 120.0 * uni[:, _U["sigma_gas"]]
    log_ew = np.where(gtype == 2, 0.9 + 0.35 * ndtri(uni[:, _U["ew"]]),
                      1.3 + 0.4 * ndtri(uni[:, _U["ew"]]))
    p["ew_halpha_drawn"] = np.where(passive, 0.0, 10 ** np.clip(log_ew, -1.0, 3.0))
    broadline = gtype == 3
    base_agn = (gtype == 2) | (broadline & (uni[:, _U["broad_base"]] < 0.5))
    p["f_agn"] = np.where(base_agn, 0.3 + 0.7 * uni[:, _U["f_agn"]], 0.0)
    p["sigma_broad"] = np.where(broadline, 300.0 + 1200.0 * uni[:, _U["sigma_broad"]], 0.0)
    p["broad_ratio"] = np.where(broadline, 0.5 + 4.5 * uni[:, _U["broad_ratio"]], 0.0)
    # Galactic reddening: exponential, mean 0.03 mag (high-latitude sky)
    p["ebv"] = -0.03 * np.log1p(-uni[:, _U["ebv"]])
    p["n"] = n
    return p


def _line_ratios(uni, p):
    """Intrinsic line ratios to Hβ (N, L) and grid parameters of each galaxy."""
    hii, r_hii = _grid_ratios("HII")
    nlr, r_nlr = _grid_ratios("NLR")
    i_hii = np.minimum((uni[:, _U["hii_row"]] * len(hii)).astype(int), len(hii) - 1)
    i_nlr = np.minimum((uni[:, _U["nlr_row"]] * len(nlr)).astype(int), len(nlr) - 1)
    f = p["f_agn"][:, None]
    ratios = np.stack([(1 - f[:, 0]) * r_hii[name][i_hii] + f[:, 0] * r_nlr[name][i_nlr]
                       for name in EMISSION_LINES], axis=1)
    agn = p["f_agn"] > 0
    p["log_oh"] = np.where(agn, np.asarray(nlr["log_OH"])[i_nlr],
                           np.asarray(hii["log_OH"])[i_hii])
    p["log_u"] = np.where(agn, np.asarray(nlr["log_U"])[i_nlr], np.asarray(hii["log_U"])[i_hii])
    return ratios


def simulate_galaxies(
    n: int,
    *,
    seed=None,
    survey: str = "SDSS",
    z_range: tuple = (0.01, 0.4),
    magnitude_range: tuple = (16.0, 19.5),
    type_fractions: tuple | None = None,
    snr=None,
    noiseless: bool = False,
    emission_lines: bool = True,
):
    """
    Simulate galaxy spectra with a truth table.

    Parameters
    ----------
    n : int
        Number of galaxies.
    seed : int, `numpy.random.Generator` or sequence, optional
        Random state: one seed for the batch, or a sequence of ``n`` seeds or
        `~numpy.random.SeedSequence` (one per galaxy, as
        `~spectralnn.simulate.simulate_spectra` uses; results then do not
        depend on how galaxies are batched).
    survey : str, optional
        Survey grid and instrument (`spectralnn.simulate.SURVEYS`). Default
        ``'SDSS'``.
    z_range : tuple of float, optional
        Redshifts are uniform in this range. Default (0.01, 0.4).
    magnitude_range : tuple of float, optional
        r-band AB magnitudes (before Galactic extinction) are uniform in this
        range. Default (16, 19.5).
    type_fractions : tuple of 4 float, optional
        Fractions of passive, star-forming, AGN and broad-line galaxies.
        Default (0.3, 0.45, 0.2, 0.05).
    snr : float or array-like, optional
        Median S/N per pixel to scale the noise to (default: the survey's
        noise for the magnitude).
    noiseless : bool, optional
        Return the noiseless models (no Galactic reddening, resolution or
        noise; unit inverse variance). Default False.
    emission_lines : bool, optional
        Include the emission lines. Default True (False gives the stellar
        continuum alone, with the same truth table).

    Returns
    -------
    batch : `~spectralnn.SpectrumBatch`
        Observed-frame spectra on the survey grid. ``meta`` is the truth
        table: ``class``, ``subclass``, ``bpt_class``, ``galaxy_type``, ``z``,
        ``mag_r``, ``velocity_dispersion``, ``gas_sigma``, ``broad_sigma``,
        ``young_fraction``, ``metallicity`` ([Z/H]), ``log_oh`` (gas
        12 + log O/H), ``log_u``, ``av``, ``d4000`` (narrow D_n4000 of the
        stellar continuum, Balogh et al. 1999, ApJ 527, 54), ``ebv``,
        ``flux_<line>`` (observed, before Galactic extinction) and
        ``ew_<line>`` (rest frame, relative to the stellar continuum with its
        absorption lines, positive for emission) for every line of
        `EMISSION_LINES`, ``flux_Halpha_broad``, ``flux_Hbeta_broad``.

    Raises
    ------
    ValueError
        If a range or the fractions are invalid.
    spectralnn.errors.WavelengthCoverageError
        If the survey grid does not cover the r band.

    Examples
    --------
    >>> batch = simulate_galaxies(3, seed=2, z_range=(0.1, 0.1), noiseless=True)
    >>> batch.meta["z"].tolist()
    [0.1, 0.1, 0.1]
    """
    from .instrument import survey_grid

    n = int(n)
    if not (0 <= z_range[0] <= z_range[1]):
        raise ValueError(f"z_range must be (low, high) with 0 <= low <= high, got {z_range}")
    if magnitude_range[0] > magnitude_range[1]:
        raise ValueError(f"magnitude_range must be increasing, got {magnitude_range}")
    fractions = np.asarray(_DEFAULT_FRACTIONS if type_fractions is None else type_fractions,
                           dtype=np.float64)
    if fractions.shape != (4,) or np.any(fractions < 0) or fractions.sum() <= 0:
        raise ValueError("type_fractions must be 4 non-negative numbers with a positive "
                         f"sum (passive, star-forming, AGN, broad-line), got {type_fractions}")

    gens = _generators(seed, n)
    uni = _uniforms(gens, n, len(_U))
    p = _draw_parameters(uni, z_range, magnitude_range, fractions)
    ratios = _line_ratios(uni, p)  # intrinsic, (N, L)

    wave = np.asarray(survey_grid(survey), dtype=np.float64)
    one_z = 1.0 + p["z"]
    rest = wave[None, :] / one_z[:, None]
    stellar = _stellar_continuum(rest, p)

    # observed (dust-attenuated) line fluxes in continuum units (rest frame)
    lam = np.array([get_line(name)["wavelength"].to_value(u.AA) for name in EMISSION_LINES])
    atten = 10 ** (-0.4 * p["av"][:, None] * ((lam / 5500.0) ** -0.7 - 1.0))
    cont_at = _stellar_continuum(np.broadcast_to(lam, (n, lam.size)), p)
    i_ha = EMISSION_LINES.index("Halpha")
    i_hb = EMISSION_LINES.index("Hbeta")
    obs_ratio = ratios * atten / atten[:, [i_hb]]
    f_ha = p["ew_halpha_drawn"] * cont_at[:, i_ha]
    line_flux = obs_ratio / obs_ratio[:, [i_ha]] * f_ha[:, None]  # (N, L) rest units
    ew = line_flux / cont_at

    # broad Balmer lines (BROADLINE galaxies)
    broad_ha = p["broad_ratio"] * line_flux[:, i_ha]
    broad_hb = broad_ha / 3.06 * atten[:, i_hb] / atten[:, i_ha]

    model = stellar.copy()
    if emission_lines:
        edges = _pixel_edges(wave)[None, :] / one_z[:, None]
        sig = lam[None, :] * p["sigma_gas"][:, None] / _C_KMS
        _add_binned_gaussians(model, edges, np.broadcast_to(lam, (n, lam.size)), sig,
                              line_flux)
        blam = np.array([lam[i_ha], lam[i_hb]])
        bsig = blam[None, :] * p["sigma_broad"][:, None] / _C_KMS
        _add_binned_gaussians(model, edges, np.broadcast_to(blam, (n, 2)),
                              np.where(bsig > 0, bsig, 1.0),
                              np.stack([broad_ha, broad_hb], axis=1))

    # normalise the observed-frame model to the r magnitude
    scale = _magnitude_scale(wave, model, p["mag_r"])
    scaled = model * scale[:, None]
    to_obs_flux = scale * one_z  # rest-frame line integral -> observed flux

    truth = _truth_table(p, line_flux * to_obs_flux[:, None], ew,
                         broad_ha * to_obs_flux, broad_hb * to_obs_flux,
                         _d4000(p), emission_lines)
    return _finish(wave, scaled, truth, survey=survey, gens=gens, noiseless=noiseless,
                   snr=snr)


def _d4000(p):
    """Narrow 4000 Å break of the stellar continuum (Balogh et al. 1999)."""
    grid = np.arange(3850.0, 4100.5, 1.0)
    f = _stellar_continuum(np.broadcast_to(grid, (p["n"], grid.size)), p)
    fnu = f * grid**2
    blue = (grid >= 3850) & (grid <= 3950)
    red = (grid >= 4000) & (grid <= 4100)
    return fnu[:, red].mean(axis=1) / fnu[:, blue].mean(axis=1)


def _truth_table(p, flux, ew, broad_ha, broad_hb, d4000, emission_lines):
    n = p["n"]
    if not emission_lines:
        flux = np.zeros_like(flux)
        ew = np.zeros_like(ew)
        broad_ha = np.zeros_like(broad_ha)
        broad_hb = np.zeros_like(broad_hb)
    i = {name: k for k, name in enumerate(EMISSION_LINES)}
    with np.errstate(divide="ignore", invalid="ignore"):
        n2ha = np.log10(flux[:, i["[NII]6583"]] / flux[:, i["Halpha"]])
        o3hb = np.log10(flux[:, i["[OIII]5007"]] / flux[:, i["Hbeta"]])
    t = QTable()
    t["object_id"] = np.arange(n, dtype=np.int64)
    t["class"] = np.full(n, "GALAXY")
    t["subclass"] = sdss_galaxy_subclass(ew[:, i["Halpha"]], n2ha, o3hb, p["sigma_broad"])
    measurable = ew[:, i["Halpha"]] >= _MIN_EW_HALPHA
    t["bpt_class"] = np.where(measurable, bpt_class(n2ha, o3hb), "")
    t["galaxy_type"] = p["type"]
    t["z"] = p["z"]
    t["mag_r"] = p["mag_r"] * u.mag
    t["velocity_dispersion"] = p["sigma_star"] * u.km / u.s
    t["gas_sigma"] = np.where(p["ew_halpha_drawn"] > 0, p["sigma_gas"], 0.0) * u.km / u.s
    t["broad_sigma"] = p["sigma_broad"] * u.km / u.s
    t["young_fraction"] = p["young_fraction"]
    t["metallicity"] = p["metallicity"]
    has_gas = p["ew_halpha_drawn"] > 0
    t["log_oh"] = np.where(has_gas, p["log_oh"], np.nan)
    t["log_u"] = np.where(has_gas, p["log_u"], np.nan)
    t["f_agn"] = p["f_agn"]
    t["av"] = p["av"] * u.mag
    t["d4000"] = d4000
    t["ebv"] = p["ebv"]
    t["log_nii_halpha"] = np.where(has_gas, n2ha, np.nan)
    t["log_oiii_hbeta"] = np.where(has_gas, o3hb, np.nan)
    for name, k in i.items():
        t[f"flux_{name}"] = flux[:, k] * _LINE_FLUX_UNIT
        t[f"ew_{name}"] = ew[:, k] * u.AA
    t["flux_Halpha_broad"] = broad_ha * _LINE_FLUX_UNIT
    t["flux_Hbeta_broad"] = broad_hb * _LINE_FLUX_UNIT
    return t
