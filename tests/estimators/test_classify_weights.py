"""
The shipped SpectralClassifier and RedshiftEstimator on fresh simulated spectra.

A few dozen spectra of each class from a seed never used in training, at
S/N per pixel 8–30 (the hold-out figures over the whole 1–30 range are in
the models' metadata and ``docs/classification.rst``; they come from
``benchmarks/bench_classify_holdout.py``).
"""

import warnings

import numpy as np
import pytest

pytest.importorskip("keras")

C_KMS = 299792.458


@pytest.fixture(scope="module")
def spectra():
    from spectralnn.batch import concatenate
    from spectralnn.simulate import simulate_galaxies, simulate_quasars, simulate_stars

    n = 20
    rng = np.random.default_rng(77)
    q = simulate_quasars(n, seed=771, z_range=(0.2, 4.5), snr_range=(8, 30),
                         bal_fraction=0.0)
    g = simulate_galaxies(n, seed=772, z_range=(0.02, 0.6),
                          snr=np.exp(rng.uniform(np.log(8), np.log(30), n)))
    s = simulate_stars(n, seed=773, snr=np.exp(rng.uniform(np.log(8), np.log(30), n)))
    return concatenate([q, g, s])


@pytest.fixture(scope="module")
def classified(spectra):
    from spectralnn.estimators import SpectralClassifier

    clf = SpectralClassifier()
    return clf, clf.predict(spectra)


def test_shipped_classifier_gets_the_classes(classified, spectra):
    clf, table = classified
    assert clf.metadata["sha256"] and clf.metadata["name"] == "classifier-default"
    truth = np.asarray(spectra.meta["class"]).astype(str)
    pred = np.asarray(table["class"]).astype(str)
    assert np.mean(pred == truth) >= 0.95
    # probabilities: one per class, summing to one, the winner the largest
    probs = np.stack([table[f"prob_{c}"] for c in ("star", "galaxy", "qso")], axis=1)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert np.all(np.asarray(table["class_prob"]) >= probs.max(axis=1) - 1e-6)


def test_shipped_redshifts_end_to_end(classified, spectra):
    from spectralnn.estimators import RedshiftEstimator

    _, ctab = classified
    est = RedshiftEstimator(classifier=classified[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = est.predict(spectra)
    z = np.asarray(spectra.meta["z"], dtype=float)
    dv = np.abs(table["z"].value - z) / (1 + z) * C_KMS
    cls = np.asarray(spectra.meta["class"]).astype(str)
    assert np.all(table["z_method"][cls != "STAR"] == "template")
    # quasars within the QuasarNET criterion, galaxies within 1000 km/s,
    # stars' radial velocities within 100 km/s (S/N >= 8)
    assert np.mean(dv[cls == "QSO"] < 6000) >= 0.95
    assert np.median(dv[cls == "QSO"]) < 300
    assert np.mean(dv[cls == "GALAXY"] < 1000) >= 0.95
    assert np.median(dv[cls == "STAR"]) < 100
    # the spectral types used are the classifier's
    np.testing.assert_array_equal(table["spectype"], ctab["class"])


def test_scan_fallback_keeps_the_step_error(classified, spectra, monkeypatch):
    # when every fine fit fails, the global scan's redshift stands with the
    # scan step as its error; the per-class Δχ² error scale (QSO 3.3) is for
    # fine-fit errors and must not inflate that step
    import spectralnn.preprocessing.redshift_fit as redshift_fit
    from spectralnn.estimators import RedshiftEstimator
    from spectralnn.flags import Flag
    from spectralnn.preprocessing.redshift_scan import SCAN_STEPS

    real_fit = redshift_fit.fit_redshift

    def failing_fit(*args, **kwargs):
        table = real_fit(*args, **kwargs)
        table["flags"] = np.asarray(table["flags"]) | int(Flag.FIT_FAILED)
        return table

    monkeypatch.setattr(redshift_fit, "fit_redshift", failing_fit)
    quasars = spectra[np.flatnonzero(np.asarray(spectra.meta["class"]) == "QSO")[:5]]
    est = RedshiftEstimator(classifier=classified[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = est.predict(quasars, spectype="QSO")
    z = np.asarray(table["z"], dtype=float)
    step = (1.0 + z) * SCAN_STEPS["QSO"] * np.log(10.0)
    np.testing.assert_allclose(np.asarray(table["z_err"], dtype=float), step, rtol=1e-6)
    assert est.metadata["refinement"]["error_scale"]["QSO"] > 3
