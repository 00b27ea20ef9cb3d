"""Realism of simulated quasars against real SDSS/BOSS spectra (issue 4).

The simulated quasars take their S/N from their flux (magnitude-driven
noise, ``snr_range=None``), so matching on z and S/N also matches
luminosity, as a flux-limited survey does.

Known gap (medians more than 25 % apart; numbers of
``simulate_quasars(3000, seed=2024, z_range=(0.03, 0.75), snr_range=None)``
matched 5:1 to the 72 real low-z AGN, see docs/simulator.rst):

* R_FeII: real 0.136, simulated 0.182 (input 0.218). Most of it follows the
  Hβ widths: in bins of measured FWHM(Hβ) (< 4000, 4000-7000, > 7000 km/s)
  the medians differ by 10-25 %, but the matched simulated quasars are
  narrower (5640 vs 6700 km/s, i.e. higher Eddington ratios, hence stronger
  Fe II). Lowering the simulated Fe II strength instead would take it further
  below the published values for low-z quasars (a few tenths, Boroson &
  Green 1992), and the measurement itself reads real Fe II low: on the one
  real spectrum with a published PyQSOFit fit (spec-0332-52367-0639) the
  package's joint fit gives R_FeII = 0.22 where PyQSOFit's gives 0.67.

Within 25 %: continuum slope (real -1.05, simulated -1.30), Hβ FWHM
(6700 / 5640 km/s), Hβ EW (71 / 62 Å), Mg II FWHM (5260 / 5250 km/s),
Mg II EW (41 / 34 Å, since the Mg II EW follows the Eddington ratio, Dong et
al. 2009; 30 Å before with a luminosity Baldwin effect), [O III] EW
(27 / 30 Å), S/N. All spreads are within the factor 1.5.
"""

import csv

import numpy as np
import pytest

from spectralnn.io import read_spectra
from spectralnn.simulate import simulate_quasars
from spectralnn.simulate.realism import (
    classifier_auc,
    compare_distributions,
    match_by_z_snr,
    quasar_features,
    roc_auc,
)

#: Quantities whose median is not yet within 25 % (known gaps of the simulator,
#: documented in docs/simulator.rst); their spreads are still asserted.
KNOWN_MEDIAN_GAPS = {"r_feii"}
#: Quantities whose 16-84 % range is not yet within a factor 1.5.
KNOWN_SPREAD_GAPS = set()


def _real_quasars(root):
    """One epoch (the highest-S/N one) per object of the low-z AGN + RM017 sets."""
    rows = list(csv.DictReader(open(root / "spectra_index.csv")))
    best = {}
    for r in rows:
        if not ("lowz_broadline_agn" in r["path"] or "rm017" in r["path"]):
            continue
        # MANIFEST: drop wrong pipeline redshifts and the z ~ 1.92 outlier
        if "Z_SUSPECT" in r["flags"] or float(r["label_z"]) > 1.0:
            continue
        key = r["object_id"]
        if key not in best or float(r["median_snr"]) > float(best[key]["median_snr"]):
            best[key] = r
    return read_spectra([str(root / r["path"]) for r in best.values()])


@pytest.mark.slow
def test_simulated_quasars_match_real(real_data):
    real = quasar_features(_real_quasars(real_data))
    assert len(real) > 60
    sim_batch = simulate_quasars(3000, seed=2024, z_range=(0.03, 0.75), snr_range=None)
    sim = quasar_features(sim_batch)
    idx = match_by_z_snr(real, sim, k=5)
    matched = sim[idx[idx >= 0]]
    # the matching worked: z and S/N agree closely
    assert abs(np.median(matched["z"]) - np.median(real["z"])) < 0.05
    cmp = compare_distributions(real, matched)
    for row in cmp:
        name = row["quantity"]
        assert row["n_real"] >= 25 and row["n_sim"] >= 120, name
        if name not in KNOWN_MEDIAN_GAPS:
            assert row["median_ok"], f"{name}: medians differ by {row['median_rel_diff']:.2f}"
        if name not in KNOWN_SPREAD_GAPS:
            assert row["spread_ok"], f"{name}: spread ratio {row['spread_ratio']:.2f}"
    # a logistic regression on the measured features separates the samples
    # imperfectly; guard against regressions (measured 0.61 with the physics
    # of this version, R_FeII the most telling feature; 0.77-0.79 with
    # S/N drawn independently of flux, 0.88-0.92 before the Eddington-ratio,
    # Fe II and host-galaxy changes; broken physics gives > 0.95)
    cols = ["continuum_slope", "Hbeta_fwhm", "Hbeta_ew", "OIII_5007_ew", "r_feii"]
    x_real = np.column_stack([np.asarray(getattr(real[c], "value", real[c])) for c in cols])
    x_sim = np.column_stack([np.asarray(getattr(matched[c], "value", matched[c]))
                             for c in cols])
    auc, _ = classifier_auc(x_real, x_sim, folds=5)
    assert 0.5 <= auc < 0.75


def test_compare_distributions_detects_shift():
    rng = np.random.default_rng(3)
    a = {"x": rng.normal(10.0, 1.0, 500)}
    from astropy.table import QTable

    same = compare_distributions(QTable(a), QTable({"x": rng.normal(10.0, 1.0, 500)}),
                                 ["x"])[0]
    shifted = compare_distributions(QTable(a), QTable({"x": rng.normal(14.0, 2.0, 500)}),
                                    ["x"])[0]
    assert same["median_ok"] and same["spread_ok"]
    assert not shifted["median_ok"] and not shifted["spread_ok"]
    # spread ratio of N(., 2) to N(., 1) is 2 within sampling noise (~5 %)
    assert shifted["spread_ratio"] == pytest.approx(2.0, rel=0.15)


def test_classifier_auc_separates_and_not():
    rng = np.random.default_rng(4)
    a = rng.normal(0, 1, (300, 3))
    auc0, _ = classifier_auc(a, rng.normal(0, 1, (300, 3)))
    # one feature shifted by 2 sigma: AUC = Phi(2 / sqrt(2)) = 0.92
    b = rng.normal(0, 1, (300, 3))
    b[:, 1] += 2.0
    auc1, coef = classifier_auc(a, b)
    assert abs(auc0 - 0.5) < 0.08
    assert auc1 == pytest.approx(0.921, abs=0.04)
    assert np.argmax(np.abs(coef)) == 1 and coef[1] < 0
    assert roc_auc([1, 2, 3, 4], [0, 0, 1, 1]) == 1.0


def test_match_by_z_snr_without_replacement():
    from astropy.table import Table

    real = Table({"z": [0.3, 0.3], "snr": [10.0, 10.0]})
    sim = Table({"z": [0.3, 0.31, 0.9], "snr": [10.0, 11.0, 50.0]})
    idx = match_by_z_snr(real, sim, k=1)
    assert sorted(idx.ravel().tolist()) == [0, 1]


def test_quasar_features_recover_truth():
    b = simulate_quasars(40, seed=9, z_range=(0.3, 0.6), snr_range=(40.0, 60.0),
                         bal_fraction=0.0)
    t = quasar_features(b)
    true = b.meta["fwhm_hbeta"].value
    ratio = t["Hbeta_fwhm"].value / true
    # joint fits at S/N 40-60 recover the input FWHM to ~10 % (shifted broad
    # components, Fe II blends and the narrow lines add scatter)
    assert np.nanmedian(np.abs(ratio - 1)) < 0.15
    # R_FeII of the joint fit follows the input (EW(Fe II 4434-4684)/EW(Hβ));
    # the fit's two-template Fe II and the host galaxy scatter it by ~30 %;
    # below R_FeII ~ 0.02 (2 % of Hβ) Fe II is not detectable
    r_in = b.meta["r_feii"]
    good = np.isfinite(t["r_feii"])
    assert good.sum() >= 30
    r_out = np.clip(t["r_feii"][good], 0.02, None)
    assert np.corrcoef(np.log(r_in[good]), np.log(r_out))[0, 1] > 0.7
