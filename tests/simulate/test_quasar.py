"""Tests of spectralnn.simulate.quasar."""

import numpy as np
import pytest
from astropy import units as u

from spectralnn.physics import virial_mass
from spectralnn.simulate import (
    object_seeds,
    simulate_quasar_epochs,
    simulate_quasars,
    synthetic_photometry,
)

#: Composite peak wavelengths of Vanden Berk et al. (2001, AJ 122, 549, table 2)
VB01_PEAKS = {
    "Lya": 1216.25,
    "CIV": 1546.15,
    "CIII]": 1905.97,
    "MgII": 2798.75,
    "[OIII]5007": 5008.22,
    "Halpha": 6564.93,
}


def test_same_seed_identical_and_prefix_stable():
    a = simulate_quasars(6, seed=11, z_range=(1.5, 4.0))
    b = simulate_quasars(6, seed=11, z_range=(1.5, 4.0))
    for name in ("flux", "ivar", "mask"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.meta.colnames == b.meta.colnames
    # the first k objects of a run of n are a run of k
    c = simulate_quasars(2, seed=11, z_range=(1.5, 4.0))
    np.testing.assert_array_equal(a.flux[:2], c.flux)
    # a chunk made from the run's per-object seeds is the matching slice
    d = simulate_quasars(3, seed=object_seeds(11, 3, 6, "qso"), z_range=(1.5, 4.0))
    np.testing.assert_array_equal(a.flux[3:], d.flux)
    np.testing.assert_array_equal(a.meta["z"][3:], d.meta["z"])
    e = simulate_quasars(2, seed=12, z_range=(1.5, 4.0))
    assert not np.array_equal(e.flux, c.flux)


def test_truth_table_columns_and_units():
    b = simulate_quasars(20, seed=3)
    meta = b.meta
    for col in (
        "object_id",
        "epoch",
        "class",
        "subclass",
        "z",
        "log_mbh",
        "log_edd_ratio",
        "log_lambda_l_1350",
        "log_lambda_l_3000",
        "log_lambda_l_5100",
        "virial_log_mbh",
        "fwhm_hbeta",
        "fwhm_mgii",
        "fwhm_civ",
        "ebv",
        "snr",
        "mag_u",
        "mag_z",
        "bal",
        "bal_bi",
        "n_dla",
        "dla1_z",
        "dla1_log_nhi",
        "dla2_z",
        "flags",
    ):
        assert col in meta.colnames, col
    assert meta["fwhm_mgii"].unit == u.km / u.s
    assert set(meta["class"]) == {"QSO"}
    assert np.all(np.isnan(meta["dla2_z"][meta["n_dla"] < 2]))
    assert np.all((meta["log_mbh"] >= 6.5) & (meta["log_mbh"] <= 10.5))
    # the batch converts to specutils spectra with the truth in meta
    spec = b.to_spectrum(0)
    assert spec.meta["z"] == meta["z"][0]


def test_virial_mass_consistent_with_widths(noiseless_quasars):
    meta = noiseless_quasars.meta
    lum = {
        "Hbeta": "log_lambda_l_5100",
        "MgII": "log_lambda_l_3000",
        "CIV": "log_lambda_l_1350",
    }
    fwhm = {"Hbeta": "fwhm_hbeta", "MgII": "fwhm_mgii", "CIV": "fwhm_civ"}
    for line in ("Hbeta", "MgII", "CIV"):
        sel = meta["virial_line"] == line
        assert sel.sum() > 50
        logm, _ = virial_mass(
            meta[fwhm[line]][sel],
            u.Dex(meta[lum[line]][sel], u.dex(u.erg / u.s)),
            line=line,
        )
        np.testing.assert_allclose(logm.value, meta["virial_log_mbh"][sel], atol=1e-8)
    # which line at which redshift (a catalogue's choice)
    z = meta["z"]
    assert set(meta["virial_line"][z < 0.8]) == {"Hbeta"}
    assert set(meta["virial_line"][(z > 0.8) & (z < 1.9)]) == {"MgII"}
    assert set(meta["virial_line"][z > 1.9]) == {"CIV"}
    # Hβ and C IV widths carry the 0.15 dex intrinsic scatter about their
    # calibrations: ~300 and ~1300 draws give the std to 4 % and 2 %
    diff = meta["virial_log_mbh"] - meta["log_mbh"]
    for line, n_tol in (("Hbeta", 0.02), ("CIV", 0.015)):
        sel = meta["virial_line"] == line
        assert abs(np.std(diff[sel]) - 0.15) < n_tol, line
        assert abs(np.mean(diff[sel])) < 0.03, line
    # Mg II is ~20 % narrower than Hβ in Population B quasars (Marziani et
    # al. 2013), so the S11 Mg II masses of these (low-luminosity, not
    # flux-limited) quasars fall below the drawn mass on average
    sel = meta["virial_line"] == "MgII"
    assert -0.25 < np.mean(diff[sel]) < -0.08
    assert np.std(diff[sel]) < 0.22


def test_composite_line_peaks(noiseless_quasars):
    b = noiseless_quasars
    z = np.asarray(b.meta["z"])
    grid = np.arange(1100.0, 7000.0, 0.25)
    for name, peak in VB01_PEAKS.items():
        lo, hi = peak - 60, peak + 60
        rows = np.flatnonzero(
            (b.wavelength[0] < lo * (1 + z)) & (b.wavelength[-1] > hi * (1 + z))
        )
        assert rows.size > 80, name
        sel = (grid > lo) & (grid < hi)
        stack = np.empty((rows.size, sel.sum()))
        for k, r in enumerate(rows):
            rest = b.wavelength / (1 + z[r])
            f = np.interp(grid[sel], rest, b.flux[r])
            stack[k] = f / np.median(f)
        composite = np.median(stack, axis=0)
        found = grid[sel][np.argmax(composite)]
        assert abs(found - peak) < 2.0, (name, found)


def test_magnitudes_match_spectrum(noiseless_quasars):
    # noiseless (no reddening, mean forest): the r magnitude of the survey
    # spectrum equals the truth magnitude (computed on a wider, coarser grid)
    b = noiseless_quasars[:200]
    mags = synthetic_photometry(b.wavelength, b.flux, bands="r")["r"]
    np.testing.assert_allclose(mags, b.meta["mag_r"], atol=0.03)


def test_requested_snr_reached():
    b = simulate_quasars(40, seed=8, z_range=(0.3, 1.5), snr_range=(5, 20))
    good = ~b.mask
    measured = np.array(
        [
            np.median(b.flux[i, good[i]] * np.sqrt(b.ivar[i, good[i]]))
            for i in range(len(b))
        ]
    )
    # noisy flux in the estimator: 10 % per spectrum
    np.testing.assert_allclose(measured, b.meta["snr"], rtol=0.1)


def test_bal_fraction_and_balnicity():
    b = simulate_quasars(400, seed=9, z_range=(1.8, 4.0), noiseless=True, forest=False)
    bal = np.asarray(b.meta["bal"])
    assert abs(bal.mean() - 0.12) < 3 * np.sqrt(0.12 * 0.88 / 400)
    assert np.all(b.meta["bal_bi"][~bal].value == 0)
    assert np.median(b.meta["bal_bi"][bal].value) > 1000
    assert set(b.meta["subclass"][bal]) == {"BAL"}


def test_mass_distribution_matches_dr16q(real_data):
    pd = pytest.importorskip("pandas")
    cat = pd.read_parquet(
        real_data / "catalogs" / "chen2019_dr16q_mbh" / "quasars.parquet"
    )
    lmbh = cat["LMBH"][cat["LMBH"] > 0].to_numpy()
    b = simulate_quasars(
        600, seed=5, z_range=(1.46, 1.80), noiseless=True, forest=False
    )
    sim = np.asarray(b.meta["virial_log_mbh"])
    # catalogue: mean 8.56, std 0.43 (30,920 quasars)
    assert abs(sim.mean() - lmbh.mean()) < 0.1
    assert abs(sim.std() - lmbh.std()) < 0.05


def test_epochs_vary_continuum_keep_object():
    b = simulate_quasar_epochs(4, 5, seed=2, z_range=(0.2, 0.7), snr_range=(30, 40))
    meta = b.meta
    assert len(b) == 20
    for obj in range(4):
        rows = meta["object_id"] == obj
        for col in ("z", "log_mbh", "log_edd_ratio"):
            assert np.ptp(meta[col][rows]) == 0
        assert np.ptp(meta["delta_mag"][rows]) > 0
        assert np.all(np.diff(meta["mjd"][rows]) >= 0)
        # VP06 Hbeta has L^0.5 and the Balmer lines breathe as L^-1/4: the
        # single-epoch mass does not vary
        assert np.ptp(meta["virial_log_mbh"][rows]) < 1e-9
        assert np.ptp(meta["log_lambda_l_5100"][rows]) > 0
    # epochs are different spectra
    assert not np.array_equal(b.flux[0], b.flux[1])
    # reproducible
    c = simulate_quasar_epochs(4, 5, seed=2, z_range=(0.2, 0.7), snr_range=(30, 40))
    np.testing.assert_array_equal(b.flux, c.flux)


def test_invalid_options():
    with pytest.raises(ValueError, match="z_range"):
        simulate_quasars(2, seed=1, z_range=(3.0, 1.0))
    with pytest.raises(ValueError, match="snr_range"):
        simulate_quasars(2, seed=1, snr_range=(-1, 5))


def test_mgii_ew_follows_eddington_ratio_not_luminosity():
    # Dong et al. (2009, ApJ 703, L1): EW(Mg II) ∝ (L/L_Edd)^-0.4, with no
    # luminosity dependence at fixed L/L_Edd; the input EWs of 4000 drawn
    # quasars recover both slopes (0.2 dex scatter: slope errors ~0.01)
    from spectralnn.simulate import quasar

    n = 4000
    rng = np.random.default_rng(21)
    p = quasar._derive(quasar._draw_parameters(
        rng.random((n, quasar._N_DRAWS)), z_range=(0.3, 2.0), snr_range=None,
        width_scatter=0.15, bal_fraction=0.0))
    ew0, slope_l = quasar.QUASAR_LINES["MgII"][1:3]
    log_ew = (np.log10(ew0) + slope_l * (p["log_lbol"] - 46.0)
              + p["ew_eps"]["MgII"])
    x = np.column_stack([p["log_edd_ratio"] + 1.0, p["log_lbol"] - 46.0,
                         np.ones(n)])
    coef = np.linalg.lstsq(x, log_ew, rcond=None)[0]
    assert coef[0] == pytest.approx(-0.4, abs=0.04)
    assert abs(coef[1]) < 0.04
    # 32 Å (Vanden Berk et al. 2001 composite) at λ_Edd = 0.1
    assert 10 ** coef[2] == pytest.approx(32.0, rel=0.05)
