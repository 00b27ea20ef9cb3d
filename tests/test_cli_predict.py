"""Tests of ``spectralnn predict`` and ``spectralnn measure`` (in-process)."""

import numpy as np
import pytest
from astropy import units as u
from astropy.table import QTable

from spectralnn.cli import main
from spectralnn.datasets import example_spectrum, example_spectrum_path, write_dataset
from spectralnn.flags import Flag
from tests.estimators.conftest import make_toy_batch


@pytest.fixture(scope="module")
def toy_h5(tmp_path_factory):
    batch, _ = make_toy_batch(10, seed=5)
    path = tmp_path_factory.mktemp("predict") / "toy.h5"
    write_dataset(batch, path)
    return path, batch


def test_measure_example(tmp_path):
    out = tmp_path / "m.ecsv"
    src = str(example_spectrum_path())
    assert main(["measure", src, src, "-o", str(out), "--lines", "Hbeta", "CIV"]) == 0
    t = QTable.read(out)
    assert len(t) == 2
    assert t["virial_log_mbh"].unit == u.dex(u.M_sun)
    # the same virial fit as analysis.black_hole_mass(method='virial') (8.314)
    from spectralnn.analysis import black_hole_mass

    expected = black_hole_mass(example_spectrum(), method="virial")
    np.testing.assert_allclose(t["virial_log_mbh"].value, expected.value, atol=1e-9)
    assert t["Hbeta_fwhm"].unit == u.km / u.s and np.all(np.isfinite(t["Hbeta_fwhm"]))
    # C IV is not covered at z = 0.28: its own flag, not the spectrum's
    assert np.all(t["CIV_flags"] & Flag.OUT_OF_COVERAGE)
    assert np.all(t["flags"] == 0)
    # an existing output is not replaced without --overwrite
    assert main(["measure", src, "-o", str(out)]) == 1


def test_measure_fits_output_and_bad_file(tmp_path):
    out = tmp_path / "m.fits"
    missing = tmp_path / "missing.fits"
    src = str(example_spectrum_path())
    with pytest.warns(Warning, match="missing.fits"):
        status = main(["measure", src, str(missing), "-o", str(out),
                       "--lines", "Hbeta"])
    assert status == 0
    t = QTable.read(out)
    assert len(t) == 2
    assert t["flags"][1] & Flag.READ_ERROR and not t["flags"][0] & Flag.READ_ERROR
    assert np.isnan(t["virial_log_mbh"][1].value)


def test_measure_unknown_line(tmp_path, caplog):
    status = main(["measure", str(example_spectrum_path()), "-o",
                   str(tmp_path / "x.ecsv"), "--lines", "Nonsense"])
    assert status == 1
    assert "unknown line" in caplog.text


def test_predict_without_weights_points_to_model_option(tmp_path, caplog, monkeypatch):
    pytest.importorskip("keras")
    from spectralnn.estimators import MassEstimator

    # behave as a fresh install without shipped weights
    monkeypatch.setattr(MassEstimator, "default_model_name", "no-such-model")
    status = main(["predict", "mass", str(example_spectrum_path()), "-o",
                   str(tmp_path / "p.ecsv")])
    assert status == 1
    err = caplog.text  # the CLI reports user errors through the log
    assert "no default weights" in err and "--model" in err
    assert not (tmp_path / "p.ecsv").exists()


@pytest.mark.slow  # trains the tiny network (~10 s) unless another test did
@pytest.mark.parametrize("fmt", ["ecsv", "fits"])
def test_predict_with_model_streams_h5_and_fits(tmp_path, toy_h5, fmt):
    pytest.importorskip("keras")
    from tests._tiny_mass_model import save_tiny_mass_model

    est, model = save_tiny_mass_model(tmp_path)
    h5, batch = toy_h5
    out = tmp_path / f"p.{fmt}"
    # batch size 4: the 10 dataset rows arrive in 3 chunks, then the FITS file
    status = main(["predict", "mass", str(h5), str(example_spectrum_path()),
                   "-o", str(out), "--model", str(model), "--batch-size", "4",
                   "--format", fmt, "--no-virial"])
    assert status == 0
    t = QTable.read(out)
    assert len(t) == 11
    assert t["log_mbh"].unit == u.dex(u.M_sun) and t["log_mbh_err"].unit == u.dex
    # chunked streaming gives the numbers of one in-memory call (float32 network)
    direct = est.predict(batch)
    np.testing.assert_allclose(t["log_mbh"][:10].value, direct["log_mbh"].value,
                               atol=1e-5)
    single = est.predict(example_spectrum())
    np.testing.assert_allclose(t["log_mbh"][10].value, single["log_mbh"][0].value,
                               atol=1e-5)
    meta = {str(k).lower(): v for k, v in t.meta.items()}  # FITS upper-cases keys
    assert meta["task"] == "black_hole_mass"
