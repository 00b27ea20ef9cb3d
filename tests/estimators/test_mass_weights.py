"""The shipped MassEstimator weights, the scalar-input branch and `spectralnn train`."""

import json
import shutil

import numpy as np
import pytest
from astropy import units as u

from spectralnn.errors import ModelFileError
from spectralnn.models.pipeline import Pipeline, validate_preprocessing
from spectralnn.models.registry import file_sha256, find_model

pytest.importorskip("keras")


@pytest.fixture(scope="module")
def default_estimator():
    from spectralnn.estimators import MassEstimator

    return MassEstimator()


@pytest.fixture(scope="module")
def quasars():
    """Simulated quasars from a seed used neither in training nor in the hold-out."""
    from spectralnn.simulate import simulate_quasars

    return simulate_quasars(
        60, seed=987_654, z_range=(0.1, 4.8), snr_range=(10.0, 30.0)
    )


def test_shipped_files_and_metadata():
    path = find_model("mass-default")
    meta = json.loads(path.with_suffix(".json").read_text())
    # small enough to ship in the wheel
    assert path.stat().st_size < 10 * 2**20
    assert meta["sha256"] == file_sha256(path)
    assert meta["task"] == "black_hole_mass"
    assert meta["version"]
    prep = validate_preprocessing(meta["preprocessing"])
    assert prep["grid"]["dloglam"] > 0
    # the luminosity median normalisation removes comes back as a scalar input
    assert prep["scalars"]["names"] == ["log_lambda_l", "z"]
    assert meta["training_set"]["n_spectra"] >= 50_000
    assert "seed" in meta["training_set"]["provenance"]
    assert 0.5 < meta["uncertainty"]["sigma_scale"] < 2.0
    hold = meta["metrics"]["holdout"]
    assert hold["n"] >= 5000
    # the hold-out seed is none of the training seeds (one per redshift third)
    train_seeds = str(meta["training_set"]["provenance"]["seed"]).split(",")
    assert str(hold["seed"]) not in train_seeds
    # the done-when, as recorded by benchmarks/bench_mass.py --record
    assert hold["overall"]["r2"] >= 0.90
    assert set(hold["per_line"]) == {"Hbeta", "MgII", "CIV"}
    assert len(hold["per_snr"]) == 4
    assert hold["overall"]["rmse"] < hold["virial_baseline"]["overall"]["rmse"]
    assert abs(hold["edges"]["low_decile_bias"]) < 0.1
    assert abs(hold["edges"]["high_decile_bias"]) < 0.1
    assert 0.60 <= hold["coverage_68"] <= 0.76
    epochs = meta["metrics"]["multi_epoch"]
    assert epochs["pooled_rmse"] < epochs["single_epoch_rmse"]


def test_default_weights_predict_virial_mass(default_estimator, quasars):
    table = default_estimator.predict(quasars)
    assert table["log_mbh"].unit == u.dex(u.solMass)
    pred = table["log_mbh"].value
    err = table["log_mbh_err"].value
    truth = np.asarray(quasars.meta["virial_log_mbh"])
    assert np.all(np.isfinite(pred)) and np.all(err > 0)
    resid = pred - truth
    # hold-out RMSE at S/N > 10 is ~0.15 dex (metadata); 60 spectra give a
    # median |residual| well under 0.25 dex and no bias beyond 0.15 dex
    assert np.median(np.abs(resid)) < 0.25
    assert abs(np.median(resid)) < 0.15
    # the network tracks the mass over its range, not just the mean
    assert np.corrcoef(pred, truth)[0, 1] > 0.85
    assert table.meta["model_sha256"] == default_estimator.metadata["sha256"]


def test_luminosity_reaches_the_network(default_estimator, quasars):
    # 10x brighter at fixed line widths is a virial mass 10^b higher, with
    # b = 0.5-0.62 for the Hβ, Mg II and C IV calibrations: the network must
    # respond to the flux level that median normalisation removes
    batch = quasars[:20]
    brighter = batch.copy(flux=batch.flux * 10.0, ivar=batch.ivar / 100.0)
    before = default_estimator.predict(batch)["log_mbh"].value
    after = default_estimator.predict(brighter)["log_mbh"].value
    assert 0.3 < np.median(after - before) < 0.8


def test_corrupted_weights_refused(tmp_path):
    path = find_model("mass-default")
    copy = tmp_path / "mass-copy.keras"
    shutil.copy(path, copy)
    shutil.copy(path.with_suffix(".json"), copy.with_suffix(".json"))
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 0xFF
    copy.write_bytes(bytes(data))
    from spectralnn.estimators import MassEstimator

    with pytest.raises(ModelFileError, match="sha256"):
        MassEstimator(copy)


def test_pipeline_scalars_are_log_luminosity_and_z(quasars):
    spec = {
        "steps": ["rest_frame", "resample", "normalize"],
        "grid": {"start": 1200.0, "stop": 7000.0, "dloglam": 1e-3},
        "min_good_fraction": 0.1,
        "scalars": {"names": ["log_lambda_l", "z", "log_norm"]},
    }
    result = Pipeline(spec)(quasars[:10])
    assert result.usable.all()
    log_l, z, log_norm = result.scalars.T
    assert np.allclose(z, quasars.meta["z"][:10], rtol=1e-6)
    # a median rest-frame λL in the range of the simulated quasar continua
    truth = np.asarray(quasars.meta["log_lambda_l_3000"][:10])
    assert np.all(np.abs(log_l - truth) < 1.0)
    assert np.all(log_l - log_norm > 50)  # log10(4π d_L² 3000 Å) at z > 0.1
    brighter = quasars[:10].copy(flux=quasars.flux[:10] * 10.0)
    assert np.allclose(Pipeline(spec)(brighter).scalars[:, 0] - log_l, 1.0, atol=1e-5)


def test_scalar_spec_validation():
    base = {"steps": ["rest_frame", "normalize"]}
    spec = validate_preprocessing({**base, "scalars": {"names": ["z"]}})
    assert spec["scalars"] == {"names": ["z"], "loc": [0.0], "scale": [1.0]}
    with pytest.raises(ValueError, match="drawn from"):
        validate_preprocessing({**base, "scalars": {"names": ["mass"]}})
    with pytest.raises(ValueError, match="rest_frame"):
        validate_preprocessing({"steps": ["normalize"], "scalars": {"names": ["z"]}})
    with pytest.raises(ValueError, match="positive"):
        validate_preprocessing({**base, "scalars": {"names": ["z"], "scale": [0.0]}})


@pytest.mark.slow
def test_train_command_round_trip(tmp_path):
    from spectralnn.cli import main
    from spectralnn.datasets import write_dataset
    from spectralnn.estimators import MassEstimator
    from spectralnn.simulate import simulate_spectra

    data = tmp_path / "qso.h5"
    write_dataset(simulate_spectra("qso", 120, seed=3, z_range=(0.5, 2.0)), data)
    out = tmp_path / "mass.keras"
    options = '{"filters": 4, "stages": 2, "dense_units": 8}'
    assert (
        main(
            [
                "train",
                "mass",
                "--data",
                str(data),
                "-o",
                str(out),
                "--epochs",
                "2",
                "--batch-size",
                "32",
                "--options",
                options,
                "--seed",
                "1",
            ]
        )
        == 0
    )
    est = MassEstimator(out)
    meta = est.metadata
    assert meta["training_set"]["n_spectra"] == 120
    assert meta["uncertainty"]["n"] == 12
    # temperature scaling makes the validation 68 % intervals cover 68 %
    assert meta["metrics"]["log_mbh"]["coverage_68"] == pytest.approx(0.68, abs=0.1)
    table = est.predict(
        simulate_spectra("qso", 3, seed=4, z_range=(0.5, 2.0)).__next__()
    )
    assert np.all(np.isfinite(table["log_mbh"].value))


def test_shipped_epoch_pooling():
    from spectralnn.estimators import MassEstimator
    from spectralnn.simulate import simulate_quasar_epochs

    # the learned pooling ships beside the network, hash-checked like it
    path = find_model("mass-default-pooling")
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["sha256"] == file_sha256(path)
    assert meta["task"] == "black_hole_mass_pooling"
    est = MassEstimator(virial=False)
    assert est.pooling is not None and est.pooling.is_trained
    # recorded by benchmarks/bench_mass.py --record on simulated 4-epoch sets:
    # both poolings beat single epochs, the learned one also covers ~68 %
    # where the inverse-variance mean's 1/sqrt(N) error is too small
    multi = est.metadata["metrics"]["multi_epoch"]
    assert multi["pooled_rmse"] < multi["single_epoch_rmse"]
    assert multi["learned_pooled_rmse"] < multi["single_epoch_rmse"]
    assert 0.6 < multi["learned_pooled_coverage_68"] < 0.8
    b = simulate_quasar_epochs(1, 4, seed=77, z_range=(1.0, 1.5), snr_range=(5.0, 20.0))
    row = est.predict_epochs(b)[0]
    truth = b.meta["virial_log_mbh"].mean()
    assert row["n_epochs"] == 4
    assert abs(row["log_mbh_pooled"].value - truth) < 5 * row["log_mbh_pooled_err"].value
    assert row["log_mbh_pooled_err"].value > 0
