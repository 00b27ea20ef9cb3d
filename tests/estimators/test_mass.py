"""Tests of spectralnn.estimators.mass (and, through it, the Estimator base)."""

import subprocess
import sys

import numpy as np
import pytest
from astropy import units as u
from astropy.table import QTable
from astropy.tests.helper import assert_quantity_allclose

from spectralnn.errors import BatchItemWarning, ModelFileError
from spectralnn.estimators import MassEstimator
from spectralnn.flags import Flag

pytest.importorskip("keras")


def r2(pred, truth):
    return 1.0 - np.mean((pred - truth) ** 2) / np.var(truth)


def test_import_does_not_load_keras():
    code = ("import sys, spectralnn.estimators; "
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_default_weights_missing_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(MassEstimator, "default_model_name", "no-such-model")
    with pytest.raises(ModelFileError, match="no default weights are installed yet"):
        MassEstimator()


def test_invalid_settings(make_toy):
    with pytest.raises(ValueError, match="batch_size"):
        MassEstimator("resnet1d", batch_size=0)
    with pytest.raises(ValueError, match="unknown option"):
        MassEstimator("resnet1d", architecture_options={"nonsense": 1})
    with pytest.raises(ModelFileError, match="no weights yet"):
        MassEstimator("resnet1d").predict(make_toy(2)[0])


def test_learns_line_width_law(trained_estimator, toy_test_data):
    # log M = 8 + 2 log10(FWHM/3000) with FWHM 1500-8000 km/s spans 0.85 dex; a
    # network that reads the line width must explain most of that variance on
    # spectra it has never seen (R² > 0.8, as the task requires).
    batch, truth = toy_test_data
    table = trained_estimator.predict(batch)
    assert r2(table["log_mbh"].value, truth) > 0.8
    # history and metrics are kept on the estimator
    assert len(trained_estimator.history["loss"]) >= 5
    assert "val_loss" in trained_estimator.history
    assert trained_estimator.metadata["metrics"]["log_mbh"]["r2"] > 0.8


def test_table_units_and_err_columns(trained_estimator, toy_test_data):
    batch, _ = toy_test_data
    spectrum = batch.to_spectrum(0)  # one specutils.Spectrum in ...
    table = trained_estimator.predict(spectrum)  # ... one QTable row out
    assert isinstance(table, QTable) and len(table) == 1
    assert table["log_mbh"].unit == u.dex(u.M_sun)
    assert table["log_mbh_err"].unit == u.dex
    assert np.all(table["log_mbh_err"].value > 0)
    assert table["flags"][0] == 0
    assert table.meta["model_name"] == trained_estimator.metadata["name"]
    assert table.meta["task"] == "black_hole_mass"
    # the same spectrum through the batch path gives the same number
    from_batch = trained_estimator(batch[:1])
    assert_quantity_allclose(table["log_mbh"], from_batch["log_mbh"], rtol=1e-6)


def test_bad_spectrum_is_flagged_not_fatal(trained_estimator, toy_test_data):
    batch, _ = toy_test_data
    part = batch[:4]
    z = part.meta_column("z")
    z[1] = np.nan  # no redshift for a rest-frame model
    ivar = part.ivar.copy()
    ivar[2] = 0.0  # no usable pixel
    bad = part.copy(ivar=ivar)
    bad.meta["flags"][2] |= Flag.NO_DATA
    with pytest.warns(BatchItemWarning, match="2 spectra could not be used"):
        table = trained_estimator.predict(bad, z=z)
    assert len(table) == 4
    assert np.isnan(table["log_mbh"][1].value) and np.isnan(table["log_mbh"][2].value)
    assert table["flags"][1] & Flag.NO_REDSHIFT
    assert table["flags"][2] & Flag.NO_DATA
    good = trained_estimator.predict(part[[0, 3]])
    assert_quantity_allclose(table["log_mbh"][[0, 3]], good["log_mbh"], rtol=1e-6)


def test_save_load_round_trip(trained_estimator, toy_test_data, tmp_path):
    batch, _ = toy_test_data
    before = trained_estimator.predict(batch)
    path = trained_estimator.save(tmp_path / "toy-mass", version="0.1.0",
                                  training_set={"description": "toy Hβ widths"})
    assert path.suffix == ".keras" and path.with_suffix(".json").is_file()
    loaded = MassEstimator.load(path, virial=False)
    after = loaded.predict(batch)
    # float32 network, same weights and inputs: identical to 1e-6 dex
    np.testing.assert_allclose(after["log_mbh"].value, before["log_mbh"].value, atol=1e-6)
    assert_quantity_allclose(after["log_mbh_err"], before["log_mbh_err"], atol=1e-6 * u.dex)
    assert after.meta["model_sha256"] == loaded.metadata["sha256"] != "unsaved"
    assert loaded.metadata["training_set"]["description"] == "toy Hβ widths"


def test_fit_does_not_mutate_inputs_and_resumes(tmp_path, make_toy, toy_settings):
    batch, y = make_toy(64, seed=3)
    flux, ivar, meta, y0 = batch.flux.copy(), batch.ivar.copy(), batch.meta.copy(), y.copy()
    est = MassEstimator("resnet1d", **toy_settings)
    est.fit(batch, y, epochs=2, batch_size=32, checkpoint_dir=tmp_path, seed=0)
    np.testing.assert_array_equal(batch.flux, flux)
    np.testing.assert_array_equal(batch.ivar, ivar)
    np.testing.assert_array_equal(batch.meta["z"], meta["z"])
    np.testing.assert_array_equal(y, y0)
    assert (tmp_path / "last.keras").is_file() and (tmp_path / "state.json").is_file()
    # a new estimator resumes at epoch 2 and keeps the earlier history
    again = MassEstimator("resnet1d", **toy_settings)
    again.fit(batch, y, epochs=3, batch_size=32, checkpoint_dir=tmp_path, resume=True,
              seed=0)
    assert len(again.history["loss"]) == 3
    assert again.history["loss"][:2] == pytest.approx(est.history["loss"])


def test_targets_as_quantity_and_validation_tuple(make_toy, toy_settings):
    train, y = make_toy(64, seed=4)
    val, y_val = make_toy(16, seed=5)
    est = MassEstimator("wren2021", preprocessing=toy_settings["preprocessing"],
                        virial=False,
                        architecture_options={"conv_filters": [4, 4, 4],
                                              "lstm_units": [4, 4], "dense_units": [8, 8]})
    est.fit(train, y * u.dex(u.M_sun), validation=(val, y_val), epochs=1, seed=0)
    assert est.metadata["training_set"]["n_validation"] == 16
    with pytest.raises(ValueError, match="targets must have shape"):
        est.fit(train, y[:10], epochs=1)


def test_predict_epochs_inverse_variance_mean(trained_estimator, make_toy):
    batch, _ = make_toy(3, seed=6)
    per_epoch = trained_estimator.predict(batch)
    combined = trained_estimator.predict_epochs(batch)
    w = 1.0 / per_epoch["log_mbh_err"].value ** 2
    expected = np.sum(w * per_epoch["log_mbh"].value) / np.sum(w)
    assert len(combined) == 1 and combined["n_epochs"][0] == 3
    assert_quantity_allclose(combined["log_mbh"][0], expected * u.dex(u.M_sun), rtol=1e-9)
    # the combined error is smaller than the best single epoch's
    assert combined["log_mbh_err"][0] < per_epoch["log_mbh_err"].min()


def test_epoch_pooling_fit_and_predict(make_toy, toy_settings):
    # objects with 1-3 epochs of the same line width: the pooled network is
    # order-invariant and ignores the padding.
    rng = np.random.default_rng(7)
    objects, targets = [], []
    for i in range(12):
        batch, y = make_toy(int(rng.integers(1, 4)), seed=100 + i)
        objects.append(batch)
        targets.append(y[0])
    est = MassEstimator("epoch_pooling", preprocessing=toy_settings["preprocessing"],
                        virial=False, architecture_options={
                            **toy_settings["architecture_options"], "attention_units": 4})
    est.fit_epochs(objects, np.array(targets), epochs=2, batch_size=8, seed=0)
    group = objects[0] if len(objects[0]) > 1 else objects[1]
    table = est.predict_epochs(group)
    assert np.isfinite(table["log_mbh_pooled"][0].value)
    reversed_order = est.predict_epochs(group[::-1])
    assert_quantity_allclose(table["log_mbh_pooled"], reversed_order["log_mbh_pooled"],
                             rtol=1e-5)
    with pytest.raises(ValueError, match="epoch_pooling"):
        MassEstimator("resnet1d").fit_epochs(objects, targets)


def test_virial_columns_beside_the_network(trained_estimator, make_toy):
    pytest.importorskip("spectralnn.physics.blackhole")
    batch, truth = make_toy(3, seed=8)
    est = MassEstimator.__new__(MassEstimator)
    est.__dict__.update(trained_estimator.__dict__)
    est.virial = True
    table = est.predict(batch)
    for name in ("virial_log_mbh", "virial_log_mbh_err", "virial_line", "virial_fwhm"):
        assert name in table.colnames
    assert table["virial_log_mbh"].unit == u.dex(u.M_sun)
    assert table.colnames[-2:] == ["snr", "flags"]
    # the toy line is a single Gaussian: where the physics fit succeeds (it may
    # flag a row FIT_FAILED, which is its business) the FWHM is recovered to 10 %
    fwhm_true = 3000.0 * 10 ** ((truth - 8.0) / 2.0)
    fwhm = table["virial_fwhm"].to_value(u.km / u.s)
    ok = np.isfinite(fwhm)
    assert ok.sum() >= 2
    np.testing.assert_allclose(fwhm[ok], fwhm_true[ok], rtol=0.1)
