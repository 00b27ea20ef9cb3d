"""
Quasar spectra with a physical truth table.

Each quasar starts from a black-hole mass and an Eddington ratio. They fix
the bolometric luminosity, which sets a broken power-law continuum and, through
inverted single-epoch virial relations, the widths of the broad lines. On top
come emission lines with the Baldwin effect and a C IV blueshift, Fe II
pseudo-continua, host-galaxy light at low luminosity, the Lyα forest, DLAs and
other absorbers, and BAL troughs. The noiseless spectrum is then observed
through a survey's instrument model (`~spectralnn.simulate.observe`).

Physics and sources:

* **Masses**: log M_BH is a normal truncated to [6.5, 10.5], of mean
  ``8.7 + 0.8 log10((1+z)/2.65)`` and width 0.40 dex. With the 0.15 dex
  scatter of the virial widths the catalogue-style (S11 Mg II) masses
  reproduce the DR16Q single-epoch masses at 1.46 < z < 1.80 (Chen et al.
  2019 subset: mean 8.56, σ 0.43).
* **Eddington ratios**: log λ_Edd ~ N(μ(z), 0.4) truncated to [-3, 0.5],
  μ(z) = -1.2 + 1.5 log10((1+z)/2.65) clipped to [-1.9, -1.0]: the 0.4 dex
  width of Shen et al. (2008, ApJ 680, 169) and lower rates at low z
  (Schulze & Wisotzki 2010, A&A 516, A87; Kelly & Shen 2013, ApJ 764, 45);
  L_bol = λ_Edd 1.26e38 M erg/s.
* **Continuum**: f_ν ∝ ν^α, α = -0.44 ± 0.3 redward of a break drawn in
  1000–1200 Å (Vanden Berk et al. 2001, AJ 122, 549), α = -1.7 ± 0.3 blueward
  (Telfer et al. 2002, ApJ 565, 773); normalised to λL3000 = L_bol / 5.15
  (Richards et al. 2006 bolometric correction as in Shen et al. 2011). The
  truth λL1350, λL3000, λL5100 are those of this (quasar-only) continuum.
* **Host galaxy**: an old stellar population (analytic: 4000 Å break, Ca II
  H&K, G band, Mg b, Na D) whose 5100 Å flux relative to the quasar follows
  Shen et al. (2011, eq. 1) evaluated at the total λL5100, 0 above
  λL5100 = 1.1e45 erg/s.
* **Broad lines**: two Gaussians (core σ and base k σ, k ∈ [1.8, 3], base
  flux fraction 0.15–0.5) with independent offsets (core 0.25 σ scatter,
  base redshifted by 0.4 ± 0.6 σ: Population B red asymmetry, Marziani et al.
  2009, A&A 495, 83), scaled so the profile's FWHM is the target. Target
  FWHMs invert the calibrations Hβ VP06 and C IV VP06
  (`spectralnn.physics.VIRIAL_CALIBRATIONS`); Mg II is as broad as Hβ in
  Population A and 20 % narrower in Population B (Marziani et al. 2013, A&A
  555, A89); each line has an intrinsic scatter ``width_scatter`` (default
  0.15 dex in log FWHM²); Hα has 0.9 × FWHM(Hβ)
  (Greene & Ho 2005), the other Balmer and He lines the Hβ width, Lyα, N V,
  Si IV, He II λ1640, O VI the C IV width, C III] the Mg II width.
* **Equivalent widths**: composite-spectrum values (Vanden Berk et al. 2001,
  table 2) times a 0.2 dex lognormal, with Baldwin slopes d log EW / d log L
  = -0.2 (C IV), -0.1 (Lyα, Si IV, C III], O VI) (Baldwin 1977; Dietrich
  et al. 2002, ApJ 581, 912). Mg II instead follows the Eddington ratio,
  EW ∝ λ_Edd^-0.4 at any luminosity (Dong et al. 2009, ApJ 703, L1), 32 Å at
  λ_Edd = 0.1; the UV Fe II EW depends on neither (Dong et al. 2011, ApJ 736,
  86). Broad-line centres are the composite peak
  wavelengths (C IV: lab 1549.06 Å blueshifted by a lognormal velocity of
  median 560 km/s, whose composite peak is 1546.2 Å as in Vanden Berk et al.).
* **Narrow lines**: [O II], [Ne V], [Ne III], [O III], [O I], [N II], [S II],
  narrow Hβ and Hα, FWHM ~ 450 km/s; log EW([O III]) falls by 0.5 per dex of
  λ_Edd (Eigenvector 1, Boroson & Green 1992; Shen & Ho 2014, Nature 513,
  210), 0.45 dex scatter. Broad Hβ EW 85 Å (against the quasar continuum).
* **Fe II**: `spectralnn.simulate.feii` pseudo-continua broadened to the
  Mg II (UV) and Hβ (optical) widths, EW(UV, 2200–3090 Å) ~ 60 Å × 0.2 dex,
  R_FeII = EW(Fe II 4434–4684)/EW(Hβ) = 0.4 × 10^(0.7 (log λ_Edd + 1)) ×
  0.2 dex (Eigenvector 1 driven by the Eddington ratio, Shen & Ho 2014).
* **Forest, absorbers, BALs**: `spectralnn.simulate.forest`,
  `spectralnn.simulate.absorbers`, `spectralnn.simulate.bal`; BAL fraction
  ``bal_fraction`` (default 0.12), 15 % of them with Mg II troughs.
* **Galactic reddening**: E(B-V) drawn from an exponential of mean 0.04 mag
  (capped at 0.3), applied by the instrument model.
* **Distances**: flat ΛCDM, H0 = 70 km/s/Mpc, Ωm = 0.3 (the cosmology of the
  virial calibrations).

Examples
--------
>>> from spectralnn.simulate import simulate_quasars
>>> batch = simulate_quasars(3, seed=42, z_range=(2.0, 3.0))
>>> len(batch), str(batch.meta["class"][0])
(3, 'QSO')
>>> bool(abs(batch.meta["virial_log_mbh"] - batch.meta["log_mbh"]).max() < 1.0)
True
"""

import numpy as np
from astropy import units as u
from astropy.table import QTable
from scipy.special import ndtr, ndtri

from ..batch import FLUX_UNIT, SpectrumBatch
from ..physics.virial import DEFAULT_CALIBRATIONS, VIRIAL_CALIBRATIONS
from .absorbers import absorber_tau, draw_absorbers, n_uniforms
from .bal import bal_transmission, balnicity_index
from .feii import feii_template
from .forest import forest_transmission, mean_forest_transmission
from .instrument import _get_survey, observe, survey_grid
from .photometry import synthetic_photometry

__all__ = ["QUASAR_LINES", "simulate_quasars", "simulate_quasar_epochs"]

_C_KMS = 299792.458
_FWHM_SIGMA = 2.3548200450309493
_MAX_DLA, _MAX_LLS, _MAX_METAL = 2, 2, 4

#: Emission lines of the simulated quasars: name -> (rest centre Å, rest EW Å
#: at log L_bol = 46, Baldwin slope, width group, width factor). Broad
#: centres are composite peak wavelengths (Vanden Berk et al. 2001).
QUASAR_LINES = {
    # broad
    "OVI": (1033.82, 9.0, -0.1, "CIV", 1.0),
    "Lya": (1216.25, 70.0, -0.1, "CIV", 1.0),
    "NV": (1240.81, 15.0, 0.0, "CIV", 1.0),
    "SiIV": (1398.33, 8.0, -0.1, "CIV", 1.0),
    "CIV": (1549.06, 24.0, -0.2, "CIV", 1.0),
    "HeII1640": (1640.42, 1.5, 0.0, "CIV", 1.0),
    "CIII]": (1905.97, 21.0, -0.1, "MgII", 1.0),
    # Mg II: EW at λ_Edd = 0.1, set by the Eddington ratio, not by L (see
    # `_MGII_EDD_SLOPE`)
    "MgII": (2798.75, 32.0, 0.0, "MgII", 1.0),
    "Hdelta": (4102.89, 5.0, 0.0, "Hbeta", 1.0),
    "Hgamma": (4341.68, 13.0, 0.0, "Hbeta", 1.0),
    "HeII4686": (4687.02, 2.0, 0.0, "Hbeta", 1.0),
    "Hbeta": (4862.68, 85.0, 0.0, "Hbeta", 1.0),
    "HeI5876": (5877.25, 6.0, 0.0, "Hbeta", 1.0),
    "Halpha": (6564.93, 195.0, 0.0, "Hbeta", 0.9),
    # narrow
    "[NeV]3426": (3426.84, 1.0, 0.0, "narrow", 1.0),
    "[OII]3726": (3727.09, 0.7, 0.0, "narrow", 1.0),
    "[OII]3729": (3729.88, 0.9, 0.0, "narrow", 1.0),
    "[NeIII]3869": (3869.86, 1.4, 0.0, "narrow", 1.0),
    "Hbeta_n": (4862.68, 2.0, 0.0, "narrow", 1.0),
    "[OIII]4959": (4960.30, 22.0 / 2.98, 0.0, "narrow", 1.0),
    "[OIII]5007": (5008.24, 22.0, 0.0, "narrow", 1.0),
    "[OI]6300": (6302.05, 1.5, 0.0, "narrow", 1.0),
    "[NII]6548": (6549.86, 2.0, 0.0, "narrow", 1.0),
    "Halpha_n": (6564.61, 10.0, 0.0, "narrow", 1.0),
    "[NII]6583": (6585.27, 6.0, 0.0, "narrow", 1.0),
    "[SII]6716": (6718.29, 3.0, 0.0, "narrow", 1.0),
    "[SII]6731": (6732.67, 3.0, 0.0, "narrow", 1.0),
}
_LINE_NAMES = list(QUASAR_LINES)
#: d log EW(Mg II) / d log λ_Edd: the Mg II EW of 2092 SDSS AGN at
#: 0.45 < z < 0.8 scales as (L/L_Edd)^-0.4, with no dependence on
#: luminosity, mass or line width at fixed L/L_Edd (Dong et al. 2009, ApJ
#: 703, L1); this replaces the luminosity Baldwin effect of Mg II. The
#: composite EW (32 Å, Vanden Berk et al. 2001) is taken at λ_Edd = 0.1,
#: the pivot of the Eigenvector-1 relations below.
_MGII_EDD_SLOPE = -0.4
_OIII = ("[OIII]4959", "[OIII]5007")
_VIRIAL_LINES = ("Hbeta", "MgII", "CIV")
#: Luminosity wavelength (Å) of each virial calibration.
_VIRIAL_L = {
    line: VIRIAL_CALIBRATIONS[DEFAULT_CALIBRATIONS[line]].wavelength.to_value(u.AA)
    for line in _VIRIAL_LINES
}
#: Broad lines whose FWHM goes into the truth table (column name suffix).
_FWHM_COLUMNS = {
    "Lya": "lya",
    "CIV": "civ",
    "CIII]": "ciii",
    "MgII": "mgii",
    "Hbeta": "hbeta",
    "Halpha": "halpha",
}

# named scalar draws per object, in a fixed order (one uniform each)
_DRAWS = (
    [
        "z",
        "mbh",
        "edd",
        "snr",
        "ebv",
        "alpha",
        "alpha_fuv",
        "break",
        "k",
        "r",
        "civ_shift",
        "feii_uv",
        "feii_opt",
        "narrow_w",
        "bal",
        "bal_vmin",
        "bal_width",
        "bal_depth",
        "lobal",
        "host",
    ]
    + [f"w_{line}" for line in _VIRIAL_LINES]
    + [f"ew_{name}" for name in _LINE_NAMES]
    + ["balmer", "core_shift", "wing_shift"]
)
_N_DRAWS = len(_DRAWS)
_N_ABS = n_uniforms(_MAX_DLA, _MAX_LLS, _MAX_METAL)


# ----------------------------------------------------------------- random streams
def _object_generators(seed, n, kind="qso"):
    """Per-object SeedSequences: from an int seed, or passed in as a sequence."""
    from .core import object_seeds

    if isinstance(seed, (list, tuple)):
        if len(seed) != n:
            raise ValueError(f"got {len(seed)} seeds for {n} objects")
        return [
            s if isinstance(s, np.random.SeedSequence) else np.random.SeedSequence(s)
            for s in seed
        ]
    return object_seeds(seed, 0, n, kind)


def _gaussian(u):
    """Map a uniform in [0, 1) to a standard normal (inverse CDF)."""
    return ndtri(np.clip(u, 1e-12, 1 - 1e-12))


def _truncnorm(u, mean, sigma, lo, hi):
    a, b = ndtr((lo - mean) / sigma), ndtr((hi - mean) / sigma)
    return mean + sigma * ndtri(a + np.clip(u, 1e-12, 1 - 1e-12) * (b - a))


# ------------------------------------------------------------------- parameters
def _edd_mean(z):
    """Mean log Eddington ratio at redshift z (lower at low z: downsizing)."""
    return np.clip(-1.2 + 1.5 * np.log10((1 + z) / 2.65), -1.9, -1.0)


def _draw_parameters(uni, *, z_range, snr_range, width_scatter, bal_fraction):
    """Physical parameters of N quasars from their (N, _N_DRAWS) uniforms."""
    d = {name: uni[:, i] for i, name in enumerate(_DRAWS)}
    p = {}
    z = z_range[0] + d["z"] * (z_range[1] - z_range[0])
    p["z"] = z
    # masses: anchored so that the catalogue-style (S11 Mg II) virial masses
    # at 1.5 < z < 1.8 reproduce DR16Q / Chen et al. (2019): mean 8.56,
    # std 0.43; lower at low redshift (downsizing). Eddington ratios are
    # lognormal at fixed mass with a 0.4 dex dispersion and a mean of
    # ~10^-1.2 at z ~ 1.6 (Shen et al. 2008, ApJ 680, 169), lower at low z
    p["log_mbh"] = _truncnorm(
        d["mbh"], 8.7 + 0.8 * np.log10((1 + z) / 2.65), 0.4, 6.5, 10.5
    )
    p["log_edd_ratio"] = _truncnorm(d["edd"], _edd_mean(z), 0.4, -3.0, 0.5)
    if snr_range is not None:
        lo, hi = np.log(snr_range[0]), np.log(snr_range[1])
        p["snr"] = np.exp(lo + d["snr"] * (hi - lo))
    p["ebv"] = np.minimum(-0.04 * np.log1p(-d["ebv"]), 0.3)
    p["alpha_nu"] = np.clip(-0.44 + 0.3 * _gaussian(d["alpha"]), -1.5, 0.5)
    p["alpha_fuv"] = np.clip(-1.7 + 0.3 * _gaussian(d["alpha_fuv"]), -3.0, -0.5)
    p["break_wave"] = 1000.0 + 200.0 * d["break"]
    p["profile_k"] = 1.8 + 1.2 * d["k"]
    p["profile_wing"] = 0.15 + 0.35 * d["r"]
    # velocity offsets of the two broad components, in units of the core σ:
    # the core scatters about the systemic velocity, the broad base is
    # mostly redshifted (red asymmetry of Population B Hβ; Marziani et al.
    # 2009, A&A 495, 83; Zamfir et al. 2010, MNRAS 403, 1759)
    p["core_shift"] = 0.25 * _gaussian(d["core_shift"])
    p["wing_shift"] = 0.4 + 0.6 * _gaussian(d["wing_shift"])
    p["civ_blueshift"] = 10 ** (np.log10(560.0) + 0.25 * _gaussian(d["civ_shift"]))
    p["feii_uv_ew"] = 60.0 * 10 ** (0.2 * _gaussian(d["feii_uv"]))
    # Eigenvector 1: optical Fe II rises and [O III] falls with the Eddington
    # ratio (Boroson & Green 1992; Shen & Ho 2014, Nature 513, 210)
    ev1 = _gaussian(d["feii_opt"])
    drive = p["log_edd_ratio"] + 1.0
    p["r_feii"] = np.clip(0.4 * 10 ** (0.7 * drive + 0.2 * ev1), 0.01, 3.0)
    p["fwhm_narrow"] = 450.0 * 10 ** (0.1 * _gaussian(d["narrow_w"]))
    is_bal = d["bal"] < bal_fraction
    p["bal"] = is_bal
    p["bal_vmin"] = np.where(is_bal, 500.0 + 7500.0 * d["bal_vmin"], 0.0)
    width = 10 ** (np.log10(2000.0) + d["bal_width"] * np.log10(10.0))
    p["bal_vmax"] = np.where(is_bal, np.minimum(p["bal_vmin"] + width, 29000.0), 0.0)
    p["bal_depth"] = np.where(is_bal, 0.4 + 0.55 * d["bal_depth"], 0.0)
    p["lobal"] = is_bal & (d["lobal"] < 0.15)
    p["host_scatter"] = 0.1 * _gaussian(d["host"])
    p["width_eps"] = {
        line: width_scatter * _gaussian(d[f"w_{line}"]) for line in _VIRIAL_LINES
    }
    p["ew_eps"] = {name: 0.2 * _gaussian(d[f"ew_{name}"]) for name in _LINE_NAMES}
    # [O III] EWs spread over ~0.4 dex (Shen et al. 2011 DR7 catalogue);
    # Eigenvector 1: strong optical Fe II, weak [O III]
    for name in _OIII:
        p["ew_eps"][name] = (
            2.25 * p["ew_eps"]["[OIII]5007"] - 0.5 * drive - 0.15 * ev1
        )
    # Mg II EW falls with the Eddington ratio (Dong et al. 2009, ApJ 703, L1)
    p["ew_eps"]["MgII"] = p["ew_eps"]["MgII"] + _MGII_EDD_SLOPE * drive
    # Balmer continuum at the edge relative to the power law (Dietrich et al.
    # 2002, ApJ 581, 912: typically 0.1-0.5)
    p["balmer_ratio"] = 0.25 * 10 ** (0.15 * _gaussian(d["balmer"]))
    p["log_lbol"] = p["log_edd_ratio"] + np.log10(1.26e38) + p["log_mbh"]
    return p


def _continuum_shape(rest, p):
    """L_λ continuum of unit value at 3000 Å: broken power law in f_ν."""
    a_red = -(2.0 + p["alpha_nu"])[:, None]
    a_fuv = -(2.0 + p["alpha_fuv"])[:, None]
    lb = p["break_wave"][:, None]
    at_break = (lb / 3000.0) ** a_red
    return np.where(
        rest >= lb, (rest / 3000.0) ** a_red, at_break * (rest / lb) ** a_fuv
    )


def _derive(p):
    """Luminosities and broad-line widths (N,) from the drawn parameters."""
    ones = np.ones((p["z"].size, 1))
    l3000 = 10 ** p["log_lbol"] / 5.15  # λL_λ at 3000 Å, erg/s
    p["llam3000"] = l3000 / 3000.0  # L_λ(3000) erg/s/Å
    for wave in (1350.0, 3000.0, 5100.0):
        shape = _continuum_shape(wave * ones, p)[:, 0]
        p[f"log_lambda_l_{int(wave)}"] = np.log10(wave * p["llam3000"] * shape)
    # log FWHM of the calibration without scatter, and its FWHM² exponent
    log_f, power = {}, {}
    for line in ("Hbeta", "CIV"):
        cal = VIRIAL_CALIBRATIONS[DEFAULT_CALIBRATIONS[line]]
        log_l44 = p[f"log_lambda_l_{int(_VIRIAL_L[line])}"] - 44.0
        log_f[line] = (p["log_mbh"] - cal.a - cal.b * log_l44) / cal.c
        power[line] = cal.c
    # Mg II follows the Hβ width of the same black hole: as broad as Hβ in
    # Population A (FWHM(Hβ) < 4000 km/s), ~20 % narrower in Population B
    # (Marziani et al. 2013, A&A 555, A89)
    pop_b = 0.5 * (1 + np.tanh((log_f["Hbeta"] - np.log10(4000.0)) / 0.05))
    log_f["MgII"] = log_f["Hbeta"] + np.log10(0.8) * pop_b
    power["MgII"] = 2.0
    fwhm = {line: np.clip(10 ** (log_f[line] + p["width_eps"][line] / power[line]),
                          600.0, 30000.0)
            for line in log_f}
    p["fwhm"] = fwhm
    return p


def _line_fwhm(p, name):
    """FWHM (km/s) of an emission line from its width group."""
    group, factor = QUASAR_LINES[name][3], QUASAR_LINES[name][4]
    if group == "narrow":
        return p["fwhm_narrow"]
    return factor * p["fwhm"][group]


def _fwhm_factor(k, wing, core_shift=None, wing_shift=None):
    """FWHM / σ_core of the two-Gaussian broad profile (vectorised).

    The profile in units of the core σ is ``(1 - wing) N(x; core_shift, 1) +
    wing N(x; wing_shift, k)``; its FWHM is found on a grid with linear
    interpolation of the half-maximum crossings (error < 1e-3).
    """
    k = np.asarray(k, float)
    c0 = np.zeros_like(k) if core_shift is None else np.asarray(core_shift, float)
    c1 = np.zeros_like(k) if wing_shift is None else np.asarray(wing_shift, float)
    half_range = (4.0 * k + np.abs(c1 - c0))[:, None]
    x = c0[:, None] + np.linspace(-1.0, 1.0, 1201)[None, :] * half_range
    prof = (1 - wing)[:, None] * np.exp(-0.5 * (x - c0[:, None]) ** 2) + (
        wing / k
    )[:, None] * np.exp(-0.5 * ((x - c1[:, None]) / k[:, None]) ** 2)
    rows = np.arange(k.size)
    ipk = np.argmax(prof, axis=1)
    half = 0.5 * prof[rows, ipk][:, None]
    j = np.arange(x.shape[1])
    above = prof >= half
    # outermost pixels above half maximum on either side of the peak
    left = np.where(above, j, x.shape[1]).min(axis=1)
    right = np.where(above, j, -1).max(axis=1)
    left_out = np.maximum(left - 1, 0)
    right_out = np.minimum(right + 1, x.shape[1] - 1)

    def cross(i_in, i_out):
        y0, y1 = prof[rows, i_in], prof[rows, i_out]
        t = (half[:, 0] - y0) / np.where(y1 != y0, y1 - y0, 1.0)
        return x[rows, i_in] + t * (x[rows, i_out] - x[rows, i_in])

    return cross(right, right_out) - cross(left, left_out)


def _host_shape(rest):
    """Old stellar population, f_λ normalised to 1 at 5100 Å (analytic)."""
    step = 0.5 * (1 + np.tanh((rest - 4000.0) / 40.0))
    shape = (rest / 5100.0) * (1 / 1.8 + (1 - 1 / 1.8) * step)
    shape = shape * np.where(
        rest < 3000.0, (np.clip(rest, 1.0, None) / 3000.0) ** 3, 1.0
    )
    for centre, depth, sigma in (
        (3934.78, 0.35, 6.0),
        (3969.59, 0.3, 6.0),
        (4305.6, 0.15, 15.0),
        (5176.7, 0.12, 15.0),
        (5895.0, 0.1, 8.0),
    ):
        shape = shape * (1 - depth * np.exp(-0.5 * ((rest - centre) / sigma) ** 2))
    return shape


def _host_ratio(p):
    """L5100(host) / L5100(quasar), Shen et al. (2011, eq. 1).

    The relation is a function of the *total* (quasar + host) λL5100, so the
    ratio r solves ``r = f(log L_qso + log(1 + r))`` (fixed-point iteration;
    below total log L = 43.5 it is held at its value there, as in
    `spectralnn.physics.host_fraction_5100`).
    """
    x_q = p["log_lambda_l_5100"] - 44.0

    def f(x):
        x = np.maximum(x, -0.5)
        r = 0.8052 - 1.5502 * x + 0.9121 * x**2 - 0.1577 * x**3
        return np.where(x < 1.053, r, 0.0)

    ratio = f(x_q)
    for _ in range(30):
        ratio = 0.5 * (ratio + f(x_q + np.log10(1 + ratio)))
    ratio = ratio * 10 ** p["host_scatter"]
    return np.clip(ratio, 0.0, 5.0)


_FEII_CACHE = {}


def _feii_tables():
    """Fe II templates on a rest log grid for a ladder of FWHMs (cached)."""
    if not _FEII_CACHE:
        step = 2e-4
        log_w = np.arange(np.log10(2100.0), np.log10(5600.0), step)
        fwhms = np.geomspace(600.0, 30000.0, 24)
        wave = 10**log_w
        for group in ("uv", "optical"):
            _FEII_CACHE[group] = np.stack(
                [feii_template(wave, f, group) for f in fwhms]
            )
        sel = (wave > 4434) & (wave < 4684)
        dw = np.gradient(wave)
        # fraction of the optical template flux in the R_FeII window
        _FEII_CACHE["opt_window"] = (_FEII_CACHE["optical"][:, sel] * dw[sel]).sum(1)
        sel = (wave > 2200) & (wave < 3090)
        _FEII_CACHE["uv_window"] = (_FEII_CACHE["uv"][:, sel] * dw[sel]).sum(1)
        _FEII_CACHE["grid"] = (log_w[0], step, log_w.size, np.log(fwhms))
    return _FEII_CACHE


def _feii(rest, fwhm, group):
    """Interpolated Fe II template (unit flux in its defining window)."""
    t = _feii_tables()
    l0, step, size, log_f = t["grid"]
    pos = (np.log10(rest) - l0) / step
    i0 = np.clip(np.floor(pos).astype(np.int64), 0, size - 2)
    frac = pos - i0
    inside = (pos >= 0) & (pos <= size - 1)
    j = np.clip(np.searchsorted(log_f, np.log(fwhm)) - 1, 0, log_f.size - 2)
    wj = np.clip((np.log(fwhm) - log_f[j]) / (log_f[j + 1] - log_f[j]), 0, 1)[:, None]
    table = t[group]
    window = t["uv_window" if group == "uv" else "opt_window"]
    jj = j[:, None]
    val = 0.0
    for jsel, wsel in ((jj, 1 - wj), (jj + 1, wj)):
        v = (1 - frac) * table[jsel, i0] + frac * table[jsel, i0 + 1]
        val = val + wsel * v / window[jsel]
    return np.where(inside, val, 0.0)


class _Windows:
    """Add per-object features inside rest-wavelength windows of an (N, M) array.

    Evaluating a narrow line over all M pixels of every spectrum wastes most of
    the work; here each feature is evaluated only on the pixels of its window
    (at most W per row), gathered with fancy indexing. Every row is computed
    independently of the others.
    """

    def __init__(self, wave, z):
        self.wave = wave
        self.zp1 = 1.0 + z
        self.rows = np.arange(z.size)

    def take(self, lo_rest, hi_rest, rows=None):
        """(rows, idx, valid, rest) of the pixels within [lo, hi] (rest Å)."""
        rows = self.rows if rows is None else rows
        zp1 = self.zp1[rows]
        lo = np.searchsorted(self.wave, np.broadcast_to(lo_rest, zp1.shape) * zp1)
        hi = np.searchsorted(self.wave, np.broadcast_to(hi_rest, zp1.shape) * zp1)
        width = int(np.max(hi - lo, initial=0))
        if width == 0:
            return None
        idx = lo[:, None] + np.arange(width)[None, :]
        valid = idx < hi[:, None]
        idx = np.minimum(idx, self.wave.size - 1)
        rest = self.wave[idx] / zp1[:, None]
        return rows, idx, valid, rest

    @staticmethod
    def add(total, window, values):
        rows, idx, valid, _ = window
        r = np.broadcast_to(rows[:, None], idx.shape)[valid]
        total[r, idx[valid]] += values[valid]


def _gauss_kms(rest, centre, sigma_kms):
    """Unit-flux Gaussian in f_λ (per Å) of velocity width sigma (km/s)."""
    x = (rest - centre) / centre * _C_KMS
    return np.exp(-0.5 * (x / sigma_kms) ** 2) / (
        np.sqrt(2 * np.pi) * sigma_kms * centre / _C_KMS
    )


def _rest_model(wave, p):
    """Quasar + host L_λ (erg/s/Å, rest frame) at observed wavelengths (N, M)."""
    z = p["z"]
    n = z.size
    rest = wave[None, :] / (1 + z[:, None])
    cont = p["llam3000"][:, None] * _continuum_shape(rest, p)
    total = cont.copy()
    win = _Windows(wave, z)
    ones = np.ones((n, 1))
    factor = _fwhm_factor(
        p["profile_k"], p["profile_wing"], p["core_shift"], p["wing_shift"]
    )
    log_l = p["log_lbol"] - 46.0
    for name in _LINE_NAMES:
        centre0, ew0, slope, group, _ = QUASAR_LINES[name]
        fwhm = _line_fwhm(p, name)
        centre = np.full(n, centre0)
        if name == "CIV":
            centre = centre * (1 - p["civ_blueshift"] / _C_KMS)
        ew = ew0 * 10 ** (slope * log_l + p["ew_eps"][name])
        flux = ew * p["llam3000"] * _continuum_shape(centre[:, None], p)[:, 0]
        if group == "narrow":
            reach = 5.0 * fwhm / _FWHM_SIGMA
        else:
            # 5 σ of the wider component (exp(-12.5) = 4e-6 of its peak)
            reach = (
                5.0 * p["profile_k"] + np.abs(p["wing_shift"]) + np.abs(p["core_shift"])
            ) * fwhm / factor
        reach = np.minimum(reach, 0.9 * _C_KMS)
        w = win.take(centre * (1 - reach / _C_KMS), centre * (1 + reach / _C_KMS))
        if w is None:
            continue
        lam = w[3]
        c = centre[:, None]
        if group == "narrow":
            prof = _gauss_kms(lam, c, (fwhm / _FWHM_SIGMA)[:, None])
        else:
            s1 = (fwhm / factor)[:, None]
            k = p["profile_k"][:, None]
            wing = p["profile_wing"][:, None]
            c_core = c * (1 + p["core_shift"][:, None] * s1 / _C_KMS)
            c_wing = c * (1 + p["wing_shift"][:, None] * s1 / _C_KMS)
            prof = (1 - wing) * _gauss_kms(lam, c_core, s1) + wing * _gauss_kms(
                lam, c_wing, k * s1
            )
        _Windows.add(total, w, flux[:, None] * prof)
    # Fe II pseudo-continua
    cont2600 = p["llam3000"] * _continuum_shape(2600.0 * ones, p)[:, 0]
    w = win.take(2100.0, 3300.0)
    if w is not None:
        _Windows.add(
            total,
            w,
            (p["feii_uv_ew"] * cont2600)[:, None]
            * _feii(w[3], p["fwhm"]["MgII"], "uv"),
        )
    cont4560 = p["llam3000"] * _continuum_shape(4560.0 * ones, p)[:, 0]
    ew_hb = QUASAR_LINES["Hbeta"][1] * 10 ** p["ew_eps"]["Hbeta"]
    w = win.take(4200.0, 5600.0)
    if w is not None:
        _Windows.add(
            total,
            w,
            (p["r_feii"] * ew_hb * cont4560)[:, None]
            * _feii(w[3], p["fwhm"]["Hbeta"], "optical"),
        )
    # Balmer continuum (Grandi 1982, ApJ 255, 25): optically thin-to-thick
    # emission of T_e = 15000 K gas, tau = 1 at the edge, blended with the
    # high-order Balmer lines into a smooth rise (edge smoothed over ~20 Å)
    w = win.take(1500.0, 3800.0)
    if w is not None:
        lam = w[3]
        edge = 3646.0
        cont_edge = p["llam3000"] * _continuum_shape(edge * ones, p)[:, 0]
        hc_kt = 1.4387769e8 / 15000.0  # hc / (k T) in Å
        planck = (edge / lam) ** 5 * np.expm1(hc_kt / edge) / np.expm1(hc_kt / lam)
        depth = -np.expm1(-((lam / edge) ** 3)) / -np.expm1(-1.0)
        step = 0.5 * (1 - np.tanh((lam - edge) / 20.0))
        _Windows.add(total, w, (p["balmer_ratio"] * cont_edge)[:, None]
                     * planck * depth * step)
    # host galaxy, only where it contributes
    ratio = _host_ratio(p)
    hosts = np.flatnonzero(ratio > 0)
    if hosts.size:
        cont5100 = p["llam3000"] * _continuum_shape(5100.0 * ones, p)[:, 0]
        total[hosts] += (ratio * cont5100)[hosts, None] * _host_shape(rest[hosts])
    # BAL troughs
    bals = np.flatnonzero(p["bal"])
    if bals.size:
        sub = {key: p[key][bals] for key in ("bal_vmin", "bal_vmax", "bal_depth")}
        trans = bal_transmission(
            rest[bals],
            sub["bal_vmin"],
            sub["bal_vmax"],
            sub["bal_depth"],
            ("NV", "SiIV", "CIV"),
        )
        lobal = p["lobal"][bals]
        if lobal.any():
            trans[lobal] *= bal_transmission(
                rest[bals][lobal],
                sub["bal_vmin"][lobal],
                sub["bal_vmax"][lobal],
                sub["bal_depth"][lobal],
                ("MgII",),
            )
        total[bals] *= trans
    return total


def _flux_scale(z):
    """1 / (4π d_L² (1+z)) / 1e-17: L_λ (erg/s/Å, rest) -> observed f_λ units."""
    from astropy.cosmology import FlatLambdaCDM

    cosmo = FlatLambdaCDM(H0=70.0, Om0=0.3)
    d_l = cosmo.luminosity_distance(z).to_value(u.cm)
    return 1.0 / (4 * np.pi * d_l**2 * (1 + z)) / 1e-17


def _observed_model(wave, p, absorbers=None, forest_normals=None):
    """Noiseless observed f_λ (N, M) on ``wave`` (Å)."""
    flux = _rest_model(wave, p) * _flux_scale(p["z"])[:, None]
    if forest_normals is None:
        flux *= mean_forest_transmission(wave, p["z"])
    else:
        flux *= forest_transmission(wave, p["z"], forest_normals)
    if absorbers is not None:
        flux *= np.exp(-absorber_tau(wave, absorbers))
    return flux


_PHOT_GRID = 10 ** np.arange(np.log10(3000.0), np.log10(11000.0), 5e-4)


def _magnitudes(p, absorbers):
    """Observed ugriz AB magnitudes (Galactic extinction included)."""
    from dust_extinction.parameter_averages import G23

    flux = _observed_model(_PHOT_GRID, p, absorbers)
    ext = G23(Rv=3.1)(_PHOT_GRID * u.AA)
    flux = flux * 10 ** (-0.4 * 3.1 * p["ebv"][:, None] * ext[None, :])
    return synthetic_photometry(_PHOT_GRID, flux)


def _virial(p):
    """Catalogue-style virial mass and the line used, from the noiseless widths."""
    z = p["z"]
    line = np.where(z < 0.8, "Hbeta", np.where(z < 1.9, "MgII", "CIV"))
    out = np.full(z.size, np.nan)
    for name in _VIRIAL_LINES:
        cal = VIRIAL_CALIBRATIONS[DEFAULT_CALIBRATIONS[name]]
        log_l44 = p[f"log_lambda_l_{int(_VIRIAL_L[name])}"] - 44.0
        mass = cal.a + cal.b * log_l44 + cal.c * np.log10(p["fwhm"][name])
        out = np.where(line == name, mass, out)
    return out, line


def _truth_table(p, absorbers, mags, survey):
    n = p["z"].size
    t = QTable()
    t["object_id"] = np.arange(n, dtype=np.int64)
    t["epoch"] = np.zeros(n, dtype=np.int64)
    t["class"] = np.full(n, "QSO")
    t["subclass"] = np.where(p["bal"], "BAL", "BROADLINE")
    t["z"] = p["z"]
    t["log_mbh"] = p["log_mbh"]
    t["log_edd_ratio"] = p["log_edd_ratio"]
    t["log_lbol"] = p["log_lbol"]
    for wave in (1350, 3000, 5100):
        t[f"log_lambda_l_{wave}"] = p[f"log_lambda_l_{wave}"]
    vm, vline = _virial(p)
    t["virial_log_mbh"] = vm
    t["virial_line"] = vline
    for name, col in _FWHM_COLUMNS.items():
        t[f"fwhm_{col}"] = _line_fwhm(p, name) * u.km / u.s
    t["civ_blueshift"] = p["civ_blueshift"] * u.km / u.s
    t["r_feii"] = p["r_feii"]
    t["host_fraction_5100"] = _host_ratio(p) / (1 + _host_ratio(p))
    t["ebv"] = p["ebv"]
    t["snr"] = p.get("snr", np.full(n, np.nan))
    for band in "ugriz":
        t[f"mag_{band}"] = mags[band]
    t["bal"] = p["bal"]
    t["bal_bi"] = (
        balnicity_index(p["bal_vmin"], p["bal_vmax"], p["bal_depth"]) * u.km / u.s
    )
    t["bal_vmin"] = p["bal_vmin"] * u.km / u.s
    t["bal_vmax"] = p["bal_vmax"] * u.km / u.s
    t["n_dla"] = absorbers["n_dla"].astype(np.int64)
    # fixed-size, NaN-padded scalar columns (one pair per DLA slot)
    for k in range(absorbers["dla_z"].shape[1]):
        t[f"dla{k + 1}_z"] = absorbers["dla_z"][:, k]
        t[f"dla{k + 1}_log_nhi"] = absorbers["dla_log_nhi"][:, k]
    t["n_lls"] = absorbers["n_lls"].astype(np.int64)
    for k in range(absorbers["lls_z"].shape[1]):
        t[f"lls{k + 1}_z"] = absorbers["lls_z"][:, k]
        t[f"lls{k + 1}_log_nhi"] = absorbers["lls_log_nhi"][:, k]
    t["n_metal"] = absorbers["n_metal"].astype(np.int64)
    t["survey"] = np.full(n, survey.name)
    t["flags"] = np.zeros(n, dtype=np.int64)
    return t


def _check_options(z_range, snr_range, n):
    if int(n) != n or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n}")
    if not (0.0 <= z_range[0] < z_range[1] <= 7.0):
        raise ValueError(f"z_range must satisfy 0 <= zmin < zmax <= 7, got {z_range}")
    if snr_range is not None and not (0 < snr_range[0] <= snr_range[1]):
        raise ValueError(f"snr_range must be positive and increasing, got {snr_range}")


def _simulate(
    seeds,
    *,
    survey,
    z_range,
    snr_range,
    width_scatter,
    bal_fraction,
    dla_rate,
    forest,
    noiseless,
    epochs=None,
):
    s = _get_survey(survey)
    wave = survey_grid(s)
    n = len(seeds)
    gens = [np.random.default_rng(sq) for sq in seeds]
    uni = (
        np.stack([g.random(_N_DRAWS + _N_ABS) for g in gens])
        if n
        else np.zeros((0, _N_DRAWS + _N_ABS))
    )
    p = _draw_parameters(
        uni[:, :_N_DRAWS],
        z_range=z_range,
        snr_range=snr_range,
        width_scatter=width_scatter,
        bal_fraction=bal_fraction,
    )
    z_min = wave[0] / 1215.67 - 1.0
    absorbers = draw_absorbers(
        p["z"],
        z_min,
        uni[:, _N_DRAWS:],
        rate=dla_rate,
        max_dla=_MAX_DLA,
        max_lls=_MAX_LLS,
        max_metal=_MAX_METAL,
    )
    if epochs is not None:
        p, gens = epochs(p, seeds)
    p = _derive(p)
    normals = None
    if forest:
        normals = (
            np.stack([g.standard_normal((2, wave.size)) for g in gens], axis=1)
            if len(gens)
            else np.zeros((2, 0, wave.size))
        )
    model = _observed_model(wave, p, absorbers, normals)
    if noiseless:
        p["ebv"] = np.zeros_like(p["ebv"])
    truth = _truth_table(p, absorbers, _magnitudes(p, absorbers), s)
    if noiseless:
        flux, ivar, mask = model, np.ones_like(model), np.zeros(model.shape, dtype=bool)
    else:
        flux, ivar, mask = observe(
            wave, model, survey=s, snr=p.get("snr"), ebv=p["ebv"], rng=gens
        )
        if snr_range is None:
            truth["snr"] = np.median(np.abs(model) * np.sqrt(ivar), axis=1)
    return SpectrumBatch._from_arrays_unchecked(
        wave, flux, ivar, mask, truth, FLUX_UNIT, "observed"
    )


def simulate_quasars(
    n,
    *,
    seed=None,
    survey="SDSS",
    z_range=(0.1, 5.0),
    snr_range=(2.0, 30.0),
    width_scatter=0.15,
    bal_fraction=0.12,
    dla_rate=1.0,
    forest=True,
    noiseless=False,
):
    """
    Simulate quasar spectra with a truth table.

    Parameters
    ----------
    n : int
        Number of quasars.
    seed : int or sequence of `numpy.random.SeedSequence`, optional
        Seed of the run; object i draws from ``SeedSequence(seed,
        spawn_key=(1, i))`` (`spectralnn.simulate.object_seeds`), so the
        first k objects of a run of n equal a run of k, and chunks made with
        explicit per-object seeds are identical to one large run. Default:
        fresh entropy.
    survey : str or `~spectralnn.simulate.Survey`, optional
        Survey grid, resolution and noise. Default ``'SDSS'``.
    z_range : tuple of float, optional
        Redshifts are uniform in this range. Default (0.1, 5.0).
    snr_range : tuple of float or None, optional
        Median S/N per pixel, log-uniform in this range (default (2, 30)).
        None: the noise follows each quasar's physical flux (its magnitude).
    width_scatter : float, optional
        Intrinsic scatter (dex) of the virial relations, in log FWHM²
        (= log M) units. Default 0.15.
    bal_fraction : float, optional
        Fraction of BAL quasars. Default 0.12.
    dla_rate : float, optional
        Multiplier of the DLA incidence (e.g. 10 for a DLA training set).
        Default 1.
    forest : bool, optional
        Draw a random Lyα forest (True, default) or apply its mean
        transmission (False).
    noiseless : bool, optional
        Return the noiseless model (no instrument, no reddening; unit ivar).

    Returns
    -------
    batch : `~spectralnn.SpectrumBatch`
        Observed-frame spectra on the survey grid (flux in 1e-17
        erg/s/cm²/Å). ``meta`` is the truth table: ``object_id``, ``epoch``,
        ``class``, ``subclass``, ``z``, ``log_mbh``, ``log_edd_ratio``,
        ``log_lbol``, ``log_lambda_l_1350/3000/5100`` (quasar continuum, erg/s),
        ``virial_log_mbh`` and ``virial_line`` (Hβ VP06 below z = 0.8,
        Mg II S11 below 1.9, C IV VP06 above, from the noiseless FWHM and
        luminosity), ``fwhm_lya/civ/ciii/mgii/hbeta/halpha`` (km/s),
        ``civ_blueshift``, ``r_feii`` (EW(Fe II 4434–4684)/EW(Hβ)),
        ``host_fraction_5100``, ``ebv``, ``snr``,
        ``mag_u``…``mag_z`` (observed AB, extinction included; forest as its
        mean), ``bal``, ``bal_bi`` (BALnicity index), ``bal_vmin/vmax``,
        ``n_dla``, ``dla1_z``, ``dla1_log_nhi``, ``dla2_z``,
        ``dla2_log_nhi`` (NaN where absent; sub-DLAs from log N_HI = 19.5),
        ``n_lls``, ``lls1_z``, ``lls1_log_nhi``, ``lls2_z``,
        ``lls2_log_nhi`` (Lyman-limit systems, 17.2 ≤ log N_HI < 19.5),
        ``n_metal``, ``survey``, ``flags``.

    Raises
    ------
    ValueError
        If ``n``, ``z_range`` or ``snr_range`` is invalid.

    Examples
    --------
    >>> from spectralnn.simulate import simulate_quasars
    >>> a = simulate_quasars(4, seed=1, z_range=(1.0, 2.0))
    >>> b = simulate_quasars(2, seed=1, z_range=(1.0, 2.0))
    >>> bool((a.flux[:2] == b.flux).all())
    True
    """
    _check_options(z_range, snr_range, n)
    seeds = _object_generators(seed, int(n))
    batch = _simulate(
        seeds,
        survey=survey,
        z_range=z_range,
        snr_range=snr_range,
        width_scatter=width_scatter,
        bal_fraction=bal_fraction,
        dla_rate=dla_rate,
        forest=forest,
        noiseless=noiseless,
    )
    if not isinstance(seed, (list, tuple)):
        batch.meta["object_id"] = np.arange(int(n), dtype=np.int64)
    return batch


def simulate_quasar_epochs(
    n_objects,
    n_epochs,
    *,
    seed=None,
    survey="SDSS",
    baseline=3000.0,
    sf_inf=0.2,
    tau_drw=200.0,
    responsivity=0.5,
    **kwargs,
):
    """
    Simulate several epochs of each quasar, with continuum and line variability.

    The continuum varies as a damped random walk in magnitude (structure
    function at infinity ``sf_inf`` mag, rest-frame damping time ``tau_drw``
    days; MacLeod et al. 2010, ApJ 721, 1014). Broad-line fluxes follow with
    ``d log F_line / d log L = responsivity`` (no lag), and the Balmer lines
    breathe, FWHM ∝ L^-1/4 (radius–luminosity relation R ∝ L^1/2 at fixed
    mass). Everything else (mass, redshift, absorbers, BALs) is fixed.

    Parameters
    ----------
    n_objects, n_epochs : int
        Number of quasars and of epochs per quasar.
    seed : int, optional
        Seed of the run (objects use the same streams as `simulate_quasars`).
    survey : str, optional
        Default ``'SDSS'``.
    baseline : float, optional
        Observed-frame span of the epochs in days. Default 3000.
    sf_inf, tau_drw, responsivity : float, optional
        Variability parameters (0.2 mag, 200 d, 0.5).
    **kwargs
        Passed on as in `simulate_quasars` (``z_range``, ``snr_range``...).

    Returns
    -------
    batch : `~spectralnn.SpectrumBatch`
        ``n_objects * n_epochs`` rows, object by object; ``meta`` as in
        `simulate_quasars` plus ``mjd`` and ``delta_mag`` (continuum change of
        the epoch), per-epoch luminosities, widths and virial masses.

    Examples
    --------
    >>> from spectralnn.simulate import simulate_quasar_epochs
    >>> b = simulate_quasar_epochs(2, 3, seed=5, z_range=(0.3, 0.6))
    >>> b.meta["object_id"].tolist(), b.meta["epoch"].tolist()
    ([0, 0, 0, 1, 1, 1], [0, 1, 2, 0, 1, 2])
    >>> bool(b.meta["log_mbh"][0] == b.meta["log_mbh"][2])
    True
    """
    from .core import object_seeds

    n_objects, n_epochs = int(n_objects), int(n_epochs)
    if n_epochs < 1:
        raise ValueError(f"n_epochs must be at least 1, got {n_epochs}")
    kwargs.setdefault("z_range", (0.1, 5.0))
    kwargs.setdefault("snr_range", (2.0, 30.0))
    _check_options(kwargs["z_range"], kwargs["snr_range"], n_objects)
    from .core import _check_seed

    seed = _check_seed(seed)
    objects = object_seeds(seed, 0, n_objects, "qso")
    rows = [s for s in objects for _ in range(n_epochs)]
    info = {}

    def epochs(p, seeds):
        # per-epoch streams: the object's key extended by the epoch number
        gens, mjd, dmag = [], np.zeros(len(seeds)), np.zeros(len(seeds))
        for i in range(n_objects):
            ss = objects[i]
            eg = [
                np.random.default_rng(
                    np.random.SeedSequence(
                        ss.entropy, spawn_key=ss.spawn_key + (e + 1,)
                    )
                )
                for e in range(n_epochs)
            ]
            t = np.sort(
                np.concatenate([[0.0], [g.random() * baseline for g in eg[1:]]])
            )
            g0 = np.array([g.standard_normal() for g in eg])
            dt = np.diff(t) / (1 + p["z"][i * n_epochs])
            x = np.empty(n_epochs)
            x[0] = sf_inf / np.sqrt(2) * g0[0]
            decay = np.exp(-dt / tau_drw)
            for e in range(1, n_epochs):
                x[e] = (
                    x[e - 1] * decay[e - 1]
                    + sf_inf / np.sqrt(2) * np.sqrt(1 - decay[e - 1] ** 2) * g0[e]
                )
            sl = slice(i * n_epochs, (i + 1) * n_epochs)
            mjd[sl] = 55000.0 + t
            dmag[sl] = x
            gens.extend(eg)
        dlog_l = -0.4 * dmag
        p["log_lbol"] = p["log_lbol"] + dlog_l
        # broad-line EW changes as L^(responsivity - 1); narrow lines keep their flux
        for name in _LINE_NAMES:
            if QUASAR_LINES[name][3] == "narrow":
                p["ew_eps"][name] = p["ew_eps"][name] - dlog_l
            else:
                # remove the Baldwin-slope response of the mean relation
                slope = QUASAR_LINES[name][2]
                p["ew_eps"][name] = (
                    p["ew_eps"][name] + (responsivity - 1 - slope) * dlog_l
                )
        # Balmer lines breathe, FWHM ∝ L^-1/4; Mg II and C IV keep their width
        # (the virial inversion alone would narrow them as L^(-b/2))
        for line in _VIRIAL_LINES:
            b = VIRIAL_CALIBRATIONS[DEFAULT_CALIBRATIONS[line]].b
            shift = (b - 0.5) if line == "Hbeta" else b
            p["width_eps"][line] = p["width_eps"][line] + shift * dlog_l
        info["mjd"], info["dmag"] = mjd, dmag
        return p, gens

    batch = _simulate(
        rows,
        survey=survey,
        width_scatter=kwargs.get("width_scatter", 0.15),
        z_range=kwargs["z_range"],
        snr_range=kwargs["snr_range"],
        bal_fraction=kwargs.get("bal_fraction", 0.12),
        dla_rate=kwargs.get("dla_rate", 1.0),
        forest=kwargs.get("forest", True),
        noiseless=kwargs.get("noiseless", False),
        epochs=epochs,
    )
    batch.meta["object_id"] = np.repeat(np.arange(n_objects, dtype=np.int64), n_epochs)
    batch.meta["epoch"] = np.tile(np.arange(n_epochs, dtype=np.int64), n_objects)
    batch.meta["mjd"] = info["mjd"]
    batch.meta["delta_mag"] = info["dmag"]
    return batch
