"""Tests of linear_line_fluxes: vectorised linear least-squares line fluxes."""

import numpy as np
import pytest
from astropy import units as u
from astropy.table import Table

from spectralnn import SpectrumBatch
from spectralnn.errors import MaskedPixelsWarning
from spectralnn.flags import Flag
from spectralnn.lines import get_line
from spectralnn.preprocessing import (
    NII_DOUBLET_RATIO,
    OIII_DOUBLET_RATIO,
    line_column_prefix,
    linear_line_fluxes,
    measure_lines,
)

C = 299792.458
UNIT = u.Unit("1e-17 erg / (s cm2 AA)")
LINES = ["[OII]3726", "[OII]3729", "Hbeta", "[OIII]4959", "[OIII]5007", "[OI]6300",
         "[NII]6548", "Halpha", "[NII]6583", "[SII]6716", "[SII]6731"]


def simulate(n, *, seed=0, sigma=1.5, noise=0.05, z=0.0, vmax=150.0, lo=3650.0, hi=6800.0,
             fmin=0.5, fmax=20.0):
    """Gaussian lines (σ in Å, constant) on a flat continuum, 1-Å pixels, known fluxes."""
    rng = np.random.default_rng(seed)
    wave = np.arange(lo, hi, 1.0) * (1 + z)
    truth = {name: rng.uniform(fmin, fmax, n) for name in LINES}
    truth["[OIII]4959"] = truth["[OIII]5007"] / OIII_DOUBLET_RATIO
    truth["[NII]6548"] = truth["[NII]6583"] / NII_DOUBLET_RATIO
    v = rng.uniform(-vmax, vmax, n)
    flux = np.full((n, wave.size), 0.3)
    for name in LINES:
        lam = get_line(name)["wavelength"].to_value(u.AA) * (1 + z) * (1 + v / C)
        s = sigma * (1 + z)
        # observed-frame flux density of a line of (rest = observed) flux F
        flux += (truth[name] / (np.sqrt(2 * np.pi) * s))[:, None] * np.exp(
            -0.5 * ((wave - lam[:, None]) / s) ** 2)
    flux += noise * rng.standard_normal(flux.shape)
    ivar = np.full(flux.shape, 1.0 / noise**2)
    return wave, flux, ivar, truth, v


def batch_of(wave, flux, ivar, mask=None, **kw):
    return SpectrumBatch(wave * u.AA, flux, ivar, mask, flux_unit=UNIT, **kw)


def test_fluxes_agree_with_truth_within_errors():
    wave, flux, ivar, truth, v = simulate(600, seed=1)
    t = linear_line_fluxes(batch_of(wave, flux, ivar, frame="rest"), LINES)
    assert t["Halpha_flux"].unit == UNIT * u.AA
    assert np.all(t["flags"] == 0)
    for name in LINES:
        p = line_column_prefix(name)
        f, e = t[f"{p}_flux"].value, t[f"{p}_flux_err"].value
        pull = (f - truth[name]) / e
        # errors from the least-squares covariance describe the scatter
        assert 0.8 < np.std(pull) < 1.25, name
        assert abs(np.mean(pull)) < 0.25, name
    # the velocities too (their errors from the χ² curvature)
    pv = (t["velocity"].to_value(u.km / u.s) - v) / t["velocity_err"].to_value(u.km / u.s)
    assert 0.8 < np.std(pv) < 1.25
    # the [O II] sum carries the (negative) covariance of the blended pair
    s, se = t["OII_3727_flux"].value, t["OII_3727_flux_err"].value
    pull = (s - truth["[OII]3726"] - truth["[OII]3729"]) / se
    assert 0.8 < np.std(pull) < 1.25
    assert np.all(se < np.hypot(t["OII_3726_flux_err"].value, t["OII_3729_flux_err"].value))
    # the widths found: σ = 1.5 Å, in km/s at each line
    for name, sigma in t.meta["sigma_kms"].items():
        lam = get_line(name)["wavelength"].to_value(u.AA)
        if name in LINES:
            assert sigma * lam / C == pytest.approx(1.5, rel=0.03), name


def test_observed_frame_and_redshift_from_meta():
    z = 0.05
    wave, flux, ivar, truth, _ = simulate(50, seed=2, z=z, lo=4700.0, hi=6800.0)
    b = batch_of(wave, flux, ivar, meta=Table({"z": np.full(50, z)}))
    t = linear_line_fluxes(b, ["Hbeta", "[OIII]5007", "Halpha", "[NII]6583"])
    assert np.all(t["z"] == z)
    f, e = t["Halpha_flux"].value, t["Halpha_flux_err"].value
    assert np.all(np.abs(f - truth["Halpha"]) < 5 * e)
    # no redshift: flagged, NaN, not garbage
    t = linear_line_fluxes(batch_of(wave, flux, ivar), ["Halpha"])
    assert np.all(t["Halpha_flags"] & Flag.NO_REDSHIFT) and np.all(np.isnan(t["Halpha_flux"]))


def test_blended_nii_halpha_recovered():
    # σ = 6 Å (270 km/s at Hα): [N II] 6548, 6583 sit on Hα's wings (±20 Å)
    wave, flux, ivar, truth, _ = simulate(300, seed=3, sigma=6.0, lo=6300.0, hi=6800.0,
                                          noise=0.03, fmin=5.0, fmax=30.0)
    names = ["[NII]6548", "Halpha", "[NII]6583", "[SII]6716", "[SII]6731"]
    t = linear_line_fluxes(batch_of(wave, flux, ivar, frame="rest"), names)
    for name in names:
        p = line_column_prefix(name)
        pull = (t[f"{p}_flux"].value - truth[name]) / t[f"{p}_flux_err"].value
        assert 0.8 < np.std(pull) < 1.25 and abs(np.mean(pull)) < 0.25, name
    # the tie: 6548 is 6583 / 3.05 exactly
    np.testing.assert_allclose(t["NII_6548_flux"] * NII_DOUBLET_RATIO, t["NII_6583_flux"])
    n2 = np.log10(t["NII_6583_flux"].value / t["Halpha_flux"].value)
    n2_true = np.log10(truth["[NII]6583"] / truth["Halpha"])
    assert np.median(np.abs(n2 - n2_true)) < 0.02


def test_agrees_with_gaussian_measure_lines():
    wave, flux, ivar, truth, _ = simulate(6, seed=4, lo=4800.0, hi=6800.0, fmin=5.0)
    b = batch_of(wave, flux, ivar, frame="rest")
    names = ["Hbeta", "[OIII]5007", "Halpha", "[NII]6583", "[SII]6716", "[SII]6731"]
    lin = linear_line_fluxes(b, names)
    gau = measure_lines(b, names, profile="gaussian")
    for name in names:
        p = line_column_prefix(name)
        fl, el = lin[f"{p}_flux"].value, lin[f"{p}_flux_err"].value
        fg, eg = gau[f"{p}_flux"].value, gau[f"{p}_flux_err"].value
        # the same data: the two differ by less than the noise (the Gaussian
        # fits have a free width and velocity per line, hence larger errors)
        assert np.all(np.abs(fl - fg) < 3.0 * el), name
        assert np.median(np.abs(fl - fg) / el) < 1.0, name
        assert np.all((el / eg > 0.7) & (el / eg < 1.05)), name


def test_masked_pixels_have_no_weight():
    wave, flux, ivar, truth, _ = simulate(200, seed=5, lo=6300.0, hi=6800.0)
    names = ["[NII]6548", "Halpha", "[NII]6583", "[SII]6716", "[SII]6731"]
    ref = linear_line_fluxes(batch_of(wave, flux, ivar, frame="rest"), names)
    mask = np.zeros(flux.shape, bool)
    ha = get_line("Halpha")["wavelength"].to_value(u.AA)
    s2 = get_line("[SII]6731")["wavelength"].to_value(u.AA)
    mask[:, (wave > ha + 1.0) & (wave < ha + 6.0)] = True  # Hα's red wing
    mask[:, np.abs(wave - s2) < 8.0] = True  # [S II] 6731 entirely
    bad = flux.copy()
    bad[mask] = 1e6  # garbage under the mask must not leak in
    zero = ivar.copy()
    zero[mask] = 0.0
    for t in (linear_line_fluxes(batch_of(wave, bad, ivar, mask, frame="rest"), names),
              linear_line_fluxes(batch_of(wave, flux, zero, frame="rest"), names)):
        f, e = t["Halpha_flux"].value, t["Halpha_flux_err"].value
        assert np.all(np.isfinite(f)) and np.all(e > ref["Halpha_flux_err"].value)
        assert 0.8 < np.std((f - truth["Halpha"]) / e) < 1.25
        assert np.all(np.isnan(t["SII_6731_flux"]))
        assert np.all(t["SII_6731_flags"] & Flag.OUT_OF_COVERAGE)
        assert np.all(t["flags"] & Flag.OUT_OF_COVERAGE)
        # its blended partner is still measured
        assert np.all(np.abs(t["SII_6716_flux"].value - truth["[SII]6716"])
                      < 5 * t["SII_6716_flux_err"].value)


def test_bad_spaxels_flagged_others_returned():
    wave, flux, ivar, truth, _ = simulate(40, seed=6, lo=4800.0, hi=6800.0)
    rng = np.random.default_rng(0)
    ivar[0] = 0.0  # no data
    flux[1] = 0.3 + 0.05 * rng.standard_normal(wave.size)  # no line at all
    flux[2, :] = np.nan  # unreadable
    names = ["Hbeta", "[OIII]5007", "Halpha", "[NII]6583"]
    with pytest.warns(MaskedPixelsWarning):
        b = batch_of(wave, flux, ivar, frame="rest")
    t = linear_line_fluxes(b, names)
    for name in names:
        col = t[f"{line_column_prefix(name)}_flux"]
        assert np.all(np.isnan(col[:3]))
        assert np.all(np.isfinite(col[3:]))
    assert t["flags"][0] & Flag.NO_DATA
    assert t["Halpha_flags"][1] & Flag.LOW_SNR and np.isnan(t["velocity"][1])
    assert t["delta_chi2"][1] < 25 < np.min(t["delta_chi2"][3:])
    assert t["flags"][2] & (Flag.NO_DATA | Flag.MASKED_PIXELS)
    assert np.all(t["flags"][3:] == 0)
    f = t["Halpha_flux"].value[3:]
    assert np.all(np.abs(f - truth["Halpha"][3:]) < 5 * t["Halpha_flux_err"].value[3:])


def test_invalid_arguments():
    wave, flux, ivar, _, _ = simulate(2, seed=7, lo=6400.0, hi=6700.0)
    b = batch_of(wave, flux, ivar, frame="rest")
    with pytest.raises(KeyError):
        linear_line_fluxes(b, ["Halpha", "[XX]1234"])
    with pytest.raises(ValueError, match="velocity_range"):
        linear_line_fluxes(b, ["Halpha"], velocity_range=(100, -100))
    with pytest.raises(ValueError, match="widths"):
        linear_line_fluxes(b, ["Halpha"], widths=[-5.0])
