"""Tests of spectralnn.estimators.classify (SpectralClassifier) and analysis.classify."""

import numpy as np
import pytest
from astropy.table import QTable

from spectralnn.errors import BatchItemWarning
from spectralnn.estimators import SpectralClassifier
from spectralnn.estimators.classify import CLASSES, _balanced_rows, _labels_from_meta
from spectralnn.flags import Flag

pytest.importorskip("keras")

#: tiny residual trunk: trains on a few hundred spectra in seconds on one core
TINY = {"filters": 8, "stages": 2, "dense_units": 16, "dropout": 0.0}
#: stars and quasars only: the classic separation, with BAL quasars among them
FRACTIONS = {"qso": 0.5, "star": 0.5}


def _simulate(n, seed):
    from spectralnn.simulate import simulate_spectra

    return next(simulate_spectra("mixed", n, seed=seed, chunk_size=n, fractions=FRACTIONS))


@pytest.fixture(scope="module")
def held_out():
    return _simulate(200, seed=12)


@pytest.fixture(scope="module")
def trained():
    """A tiny classifier trained once on 600 simulated stars and quasars."""
    clf = SpectralClassifier("resnet1d", architecture_options=TINY)
    clf.fit(_simulate(600, seed=11), epochs=15, batch_size=32, patience=5, seed=0)
    return clf


def test_labels_from_truth_meta():
    meta = QTable({
        "class": ["STAR", "GALAXY", "QSO", "QSO", "GALAXY", "UNKNOWN"],
        "subclass": ["G2", "STARFORMING", "BROADLINE", "BAL", "", ""],
        "bal": [False, False, False, True, False, False],
        "spectral_group": ["G", "", "", "", "", ""],
    })
    assert _labels_from_meta(meta).tolist() == [
        "STAR:G", "GALAXY:STARFORMING", "QSO:BROADLINE", "QSO:BAL", "GALAXY:", ""]


def test_balanced_sampling_equalises_groups():
    groups = np.array([0] * 50 + [1] * 10 + [2] * 30 + [3] * 5)
    rows = _balanced_rows(groups, np.random.default_rng(0))
    counts = np.bincount(groups[rows])
    assert counts.tolist() == [50, 50, 50, 50]
    # the largest group is used once each, not resampled
    assert len(np.unique(rows[groups[rows] == 0])) == 50


def test_invalid_settings():
    with pytest.raises(ValueError, match="resnet1d"):
        SpectralClassifier("wren2021")
    with pytest.raises(ValueError, match="unknown option"):
        SpectralClassifier("resnet1d", architecture_options={"nonsense": 1})


@pytest.mark.slow  # trains a tiny network once per module (~15 s)
def test_separates_stars_from_quasars(trained, held_out):
    # Stars and quasars in equal numbers (chance: 50 %). Even this tiny
    # network, trained for seconds on 540 spectra, reads the broad emission
    # lines and the stellar continua: it must be right on 75 % of spectra it
    # has never seen (measured: 85 %).
    table = trained.predict(held_out)
    truth = np.asarray(held_out.meta["class"]).astype(str)
    assert np.mean(table["class"] == truth) > 0.75
    for name in ("STAR", "QSO"):
        pred = table["class"] == name
        assert np.sum(pred & (truth == name)) / pred.sum() > 0.6  # purity
    assert trained.metadata["metrics"]["accuracy"] > 0.6
    assert set(trained.labels) >= {"STAR:G", "QSO:BROADLINE", "QSO:BAL"}


@pytest.mark.slow  # trains a tiny network once per module (~15 s)
def test_table_contents(trained, held_out):
    table = trained.predict(held_out[:20])
    assert isinstance(table, QTable) and len(table) == 20
    prob = np.stack([table[f"prob_{c.lower()}"] for c in CLASSES], axis=1)
    np.testing.assert_allclose(prob.sum(axis=1), 1.0, atol=1e-5)
    # the class is the most probable one, with that probability
    assert np.all(np.array(CLASSES)[np.argmax(prob, axis=1)] == table["class"])
    np.testing.assert_allclose(table["class_prob"], prob.max(axis=1))
    assert np.all((table["subclass_prob"] > 0) & (table["subclass_prob"] <= 1 + 1e-6))
    # subclasses belong to their class: quasars are BROADLINE or BAL
    qso = table["class"] == "QSO"
    assert set(table["subclass"][qso]) <= {"BROADLINE", "BAL"}
    assert np.all(table["bal"] == (qso & (table["bal_prob"] > 0.5)))
    assert table.meta["task"] == "classification"
    # one specutils.Spectrum in, one row out, the same numbers
    one = trained.predict(held_out.to_spectrum(3))
    assert len(one) == 1 and one["class"][0] == table["class"][3]
    np.testing.assert_allclose(one["prob_qso"][0], table["prob_qso"][3], rtol=1e-5)


@pytest.mark.slow  # trains a tiny network once per module (~15 s)
def test_unusable_spectrum_is_a_flagged_row(trained, held_out):
    part = held_out[:3]
    ivar = part.ivar.copy()
    ivar[1] = 0.0
    part = part.copy(ivar=ivar)
    with pytest.warns(BatchItemWarning):
        table = trained.predict(part)
    assert table["class"][1] == "" and np.isnan(table["prob_qso"][1])
    assert table["flags"][1] & (Flag.NO_DATA | Flag.OUT_OF_COVERAGE)
    assert table["class"][0] in CLASSES and table["class"][2] in CLASSES


@pytest.mark.slow  # trains a tiny network once per module (~15 s)
def test_save_load_and_calibration(trained, held_out, tmp_path):
    path = trained.save(tmp_path / "clf", name="clf-test", version="0.1.0")
    loaded = SpectralClassifier.load(path)
    assert loaded.labels == trained.labels
    a, b = trained.predict(held_out[:10]), loaded.predict(held_out[:10])
    np.testing.assert_allclose(a["prob_qso"], b["prob_qso"], rtol=1e-5, atol=1e-6)
    # temperature scaling: stored, probabilities still normalised, confident
    # decisions kept (a class sums several labels, so a close call may flip)
    loaded.calibrate_uncertainties(held_out[100:])
    c = loaded.predict(held_out[:10])
    assert 0.25 <= loaded.temperature <= 4.0
    assert loaded.metadata["uncertainty"]["n"] == 100
    total = c["prob_star"] + c["prob_galaxy"] + c["prob_qso"]
    np.testing.assert_allclose(total, 1.0, atol=1e-6)
    sure = a["class_prob"] > 0.9
    assert np.all(c["class"][sure] == a["class"][sure])


@pytest.mark.slow  # trains a tiny network once per module (~15 s)
def test_analysis_classify(trained, held_out):
    from spectralnn.analysis import classify

    table = classify(held_out.to_spectrum(0), estimator=trained)
    assert isinstance(table, QTable) and len(table) == 1
    assert table["class"][0] in CLASSES
    assert "prob_star" in table.colnames and "subclass" in table.colnames
