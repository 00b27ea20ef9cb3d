import numpy as np
import pytest
from astropy import units as u
from astropy.tests.helper import assert_quantity_allclose

from spectralnn.simulate import (
    GALAXY_SUBCLASSES,
    bpt_class,
    nebular_line_ratios,
    sdss_galaxy_subclass,
    simulate_galaxies,
)
from spectralnn.simulate.galaxy import EMISSION_LINES


@pytest.fixture(scope="module")
def galaxies():
    return simulate_galaxies(200, seed=11, noiseless=True)


def test_truth_table(galaxies):
    meta = galaxies.meta
    assert set(meta["class"]) == {"GALAXY"}
    assert set(meta["subclass"]) <= set(GALAXY_SUBCLASSES)
    # the default mix produces every main subclass in 200 galaxies
    assert {"", "STARFORMING", "STARBURST", "AGN"} <= set(meta["subclass"])
    assert meta["flux_Halpha"].unit == u.Unit("1e-17 erg / (s cm2)")
    assert np.all(np.isfinite(galaxies.flux)) and np.all(galaxies.flux > 0)


def test_subclasses_follow_their_definitions(galaxies):
    m = galaxies.meta
    ew = m["ew_Halpha"].to_value(u.AA)
    with np.errstate(divide="ignore", invalid="ignore"):  # passive: 0 / 0
        x = np.log10(m["flux_[NII]6583"].value / m["flux_Halpha"].value)
        y = np.log10(m["flux_[OIII]5007"].value / m["flux_Hbeta"].value)
    base = np.array([s.replace("BROADLINE", "").strip() for s in m["subclass"]])
    lines = ew >= 3.0
    agn = y > 0.7 - 1.2 * (x + 0.4)
    assert np.all(base[~lines] == "")
    assert np.all(base[lines & agn] == "AGN")
    assert np.all(base[lines & ~agn & (ew > 50)] == "STARBURST")
    assert np.all(base[lines & ~agn & (ew <= 50)] == "STARFORMING")
    broad = np.char.endswith(np.asarray(m["subclass"], dtype=str), "BROADLINE")
    assert np.all(broad == (m["broad_sigma"].to_value(u.km / u.s) > 200))


def test_line_flux_is_in_the_spectrum():
    # same seed with and without lines: the difference is the emission alone
    kw = dict(seed=5, z_range=(0.05, 0.2), type_fractions=(0, 1, 0, 0), noiseless=True)
    full = simulate_galaxies(5, **kw)
    cont = simulate_galaxies(5, emission_lines=False, **kw)
    wave = full.wavelength
    # both are normalised to the same r magnitude, lines included: rescale the
    # continuum-only run by the ratio in line-free pixels (most of them)
    k = np.median(full.flux / cont.flux, axis=1, keepdims=True)
    diff = full.flux - k * cont.flux
    cont = cont.copy(flux=k * cont.flux)
    for name in ("[OIII]5007", "Hbeta"):
        from spectralnn.lines import get_line

        lam = get_line(name)["wavelength"].to_value(u.AA)
        for i in range(5):
            z = full.meta["z"][i]
            win = np.abs(wave - lam * (1 + z)) < 15 * (1 + z)
            dw = np.gradient(wave)
            flux = np.sum(diff[i, win] * dw[win])
            # pixel-integrated Gaussians: flux conserved to <1% (window ±15 Å
            # holds >99.9% of a σ ≤ 150 km/s line, neighbours are > 40 Å away)
            assert_quantity_allclose(flux * u.Unit("1e-17 erg/(s cm2)"),
                                     full.meta[f"flux_{name}"][i], rtol=0.01)
            # EW is relative to the stellar continuum at the line centre
            c = np.interp(lam * (1 + z), wave, cont.flux[i]) * (1 + z)
            assert_quantity_allclose(flux / c * u.AA, full.meta[f"ew_{name}"][i], rtol=0.03)


def test_deterministic():
    a = simulate_galaxies(4, seed=3)
    b = simulate_galaxies(4, seed=3)
    assert np.array_equal(a.flux, b.flux) and np.array_equal(a.ivar, b.ivar)
    c = simulate_galaxies(4, seed=4)
    assert not np.array_equal(a.flux, c.flux)


def test_bpt_and_subclass_functions():
    assert bpt_class([-1.0], [1.5]).tolist() == ["AGN"]
    assert sdss_galaxy_subclass([10.0], [-0.5], [0.0], [300.0]).tolist() == [
        "STARFORMING BROADLINE"]
    assert sdss_galaxy_subclass([0.0], [np.nan], [np.nan], [300.0]).tolist() == [
        "BROADLINE"]


def test_grid_file_provenance():
    t = nebular_line_ratios()
    assert "Thomas et al. 2018" in " ".join(t.meta["comments"])
    # Case-B-like Hα/Hβ in the HII models (2.86 at 10^4 K; 2.7-3.3 in MAPPINGS)
    hii = t[t["grid"] == "HII"]
    assert np.all(np.abs(hii["Halpha"] - np.log10(2.9)) < 0.06)
    assert set(EMISSION_LINES) >= {"Halpha", "Hbeta", "[OIII]5007", "[NII]6583"}


def test_invalid_arguments():
    with pytest.raises(ValueError, match="z_range"):
        simulate_galaxies(2, z_range=(0.5, 0.1))
    with pytest.raises(ValueError, match="type_fractions"):
        simulate_galaxies(2, type_fractions=(1, 0))
