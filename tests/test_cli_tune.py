"""``spectralnn tune``: a keras-tuner search that can be resumed."""

import json

import pytest

from spectralnn.cli import main

pytest.importorskip("keras_tuner")
pytest.importorskip("keras")


def test_tune_searches_and_resumes(tmp_path):
    from spectralnn.datasets import write_dataset
    from spectralnn.simulate import simulate_quasars

    data = write_dataset(simulate_quasars(48, seed=3, z_range=(0.5, 2.5)),
                         tmp_path / "qso.h5")
    folder = tmp_path / "search"
    common = ["tune", "redshift", "--data", str(data), "--directory", str(folder),
              "--algorithm", "random", "--epochs", "1", "--batch-size", "16"]
    assert main([*common, "--trials", "2"]) == 0
    best = json.loads((folder / "best.json").read_text())
    assert best["task"] == "redshift" and best["trials"] == 2
    assert set(best["options"]) == {"filters", "stages", "kernel_size", "dense_units",
                                    "dropout"}
    assert 1e-4 <= best["learning_rate"] <= 3e-3
    # resuming keeps the two finished trials and runs only one more
    trials = sorted(p.name for p in (folder / "redshift-resnet1d").glob("trial_*"))
    assert main([*common, "--trials", "3", "--resume"]) == 0
    best = json.loads((folder / "best.json").read_text())
    assert best["trials"] == 3
    after = sorted(p.name for p in (folder / "redshift-resnet1d").glob("trial_*"))
    assert set(trials) < set(after) and len(after) == 3


def test_tune_rejects_bad_validation(tmp_path, caplog):
    assert main(["tune", "mass", "--data", str(tmp_path / "none.h5"),
                 "--validation", "1.5"]) == 1
    assert "--validation" in caplog.text
