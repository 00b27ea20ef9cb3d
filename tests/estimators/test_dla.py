"""Tests of spectralnn.estimators.dla (DLAFinder) and its analyzer and plot."""

import numpy as np
import pytest
from astropy import units as u
from astropy.table import QTable

from spectralnn import SpectrumBatch
from spectralnn.errors import BatchItemWarning
from spectralnn.estimators.dla import (
    DLAFinder,
    match_absorbers,
    truth_absorbers,
)
from spectralnn.physics.voigt import tau_voigt

pytest.importorskip("keras")

Z_QSO = 3.0
#: a short rest-frame grid and a tiny network keep the toy training to seconds
TOY_PREPROCESSING = {
    "steps": ["rest_frame", "resample", "normalize"],
    "grid": {"start": 1000.0, "stop": 1260.0, "dloglam": 4e-4},
    "normalization": "median",
    "channels": ["flux", "ivar"],
    "min_good_fraction": 0.3,
}
TOY_OPTIONS = {"filters": 12, "dilations": [1, 2, 4, 8, 16], "radius": 2,
               "batch_norm_momentum": 0.8}


def make_sightlines(n, *, seed=0, noise=0.02, dla_fraction=0.6):
    """Flat-continuum quasars at z = 3 with at most one strong DLA each (rest 1050–1180 Å)."""
    rng = np.random.default_rng(seed)
    wave = 3800.0 * 10 ** (1e-4 * np.arange(3000))  # 3800-7600 Å
    has = rng.random(n) < dla_fraction
    lam_rest = rng.uniform(1050.0, 1180.0, n)
    z_abs = np.where(has, lam_rest * (1 + Z_QSO) / 1215.6701 - 1, np.nan)
    log_nhi = np.where(has, rng.uniform(20.6, 21.6, n), np.nan)
    tau = np.where(has[:, None],
                   tau_voigt(wave[None, :], np.nan_to_num(z_abs)[:, None],
                             np.nan_to_num(log_nhi, nan=20.0)[:, None]), 0.0)
    flux = np.exp(-tau) + noise * rng.standard_normal(tau.shape)
    meta = QTable({"object_id": np.arange(n), "z": np.full(n, Z_QSO),
                   "dla1_z": z_abs, "dla1_log_nhi": log_nhi})
    ivar = np.full(flux.shape, noise**-2)
    return SpectrumBatch(wave * u.AA, flux * u.one, ivar, meta=meta)


@pytest.fixture(scope="module")
def toy_finder():
    """A tiny detector trained for a few seconds on toy sight-lines."""
    finder = DLAFinder("dla_cnn", preprocessing=TOY_PREPROCESSING,
                       architecture_options=TOY_OPTIONS)
    finder.fit(make_sightlines(400, seed=1), epochs=12, batch_size=32, validation=None,
               seed=0, learning_rate=3e-3)
    return finder


def test_settings_are_validated():
    with pytest.raises(ValueError, match="threshold"):
        DLAFinder("dla_cnn", threshold=1.5)
    with pytest.raises(ValueError, match="nms_velocity"):
        DLAFinder("dla_cnn", nms_velocity=-5.0)
    with pytest.raises(ValueError, match="unknown architecture options"):
        DLAFinder("dla_cnn", architecture_options={"filterz": 3})


def test_labels_mark_strong_absorbers_and_ignore_subdlas():
    finder = DLAFinder("dla_cnn")
    n_cells = finder._n_cells()
    good = np.ones((2, n_cells), dtype=bool)
    truth = np.array([[[2.2, 21.0]], [[2.2, 19.8]]])  # a DLA; a sub-DLA to ignore
    y = finder.labels(truth, np.array([3.0, 3.0]), good, bal=np.array([0.0, 1.0]))
    assert y.shape == (2, n_cells, 6)
    assert y[0, :, 0].sum() == 5  # 2 * radius + 1 cells
    centre = np.flatnonzero(y[0, :, 0])
    # the offsets point at one (fractional) cell position
    np.testing.assert_allclose(centre + y[0, centre, 2], (centre + y[0, centre, 2])[0])
    assert y[1, :, 0].sum() == 0 and (y[1, :, 1] == 0).sum() == 5
    assert y[1, 0, 5] == 1.0 and y[0, 0, 5] == 0.0
    # the centre sits where the absorber's Lyα falls in the quasar rest frame
    lam = 10 ** finder._cell_loglam(centre[2] + y[0, centre[2], 2])
    assert lam == pytest.approx(1215.6701 * 3.2 / 4.0, rel=1e-6)


@pytest.mark.slow  # the toy detector trains for ~10-30 s (once per module)
def test_finds_injected_dla_and_nothing_in_a_clean_sightline(toy_finder):
    test = make_sightlines(60, seed=7)
    found, sight = toy_finder.predict(test, summary=True)
    truth = np.asarray(test.meta["dla1_z"])
    has = np.isfinite(truth)
    d, t = match_absorbers(found["spectrum"], found["z_abs"],
                           np.flatnonzero(has), truth[has])
    # the toy task is easy: (almost) every DLA found within |dz| <= 0.01 ...
    assert np.mean(t >= 0) >= 0.9
    matched = found[d >= 0]
    dz = np.abs(np.asarray(matched["z_abs"]) - truth[np.asarray(matched["spectrum"])])
    assert np.median(dz) < 0.005
    # ... and clean sight-lines (no absorber at all) stay (almost) clean
    clean = np.flatnonzero(~has)
    assert np.isin(np.asarray(found["spectrum"]), clean).sum() <= 1
    assert len(sight) == 60 and set(sight.colnames) >= {
        "n_dla", "dz_searched", "snr_forest", "bal", "bal_probability", "flags"}
    assert np.all(sight["dz_searched"] > 0.3)
    assert found["log_nhi"].unit == u.dex(u.cm**-2)
    assert np.all(found["z_abs_err"] > 0) and np.all(found["log_nhi_err"].value > 0)
    assert found.meta["task"] == "dla" and found.meta["matching_rule"] == "|dz| <= 0.01"


@pytest.mark.slow  # the toy detector trains for ~10-30 s (once per module)
def test_no_redshift_means_no_search(toy_finder):
    test = make_sightlines(3, seed=8, dla_fraction=1.0)
    test.meta["z"] = np.nan
    with pytest.warns(BatchItemWarning):
        found, sight = toy_finder.predict(test, summary=True)
    assert len(found) == 0 and found.colnames[:4] == ["spectrum", "object_id", "z_qso", "z_abs"]
    assert np.all(sight["dz_searched"] == 0)


@pytest.mark.slow  # the toy detector trains for ~10-30 s (once per module)
def test_z_is_an_alias_of_z_qso(toy_finder):
    test = make_sightlines(4, seed=9)
    a = toy_finder.predict(test, z_qso=Z_QSO)
    b = toy_finder.predict(test, z=Z_QSO)
    np.testing.assert_allclose(a["z_abs"], b["z_abs"])
    with pytest.raises(ValueError, match="not both"):
        toy_finder.predict(test, z=3.0, z_qso=3.0)


@pytest.mark.slow  # the toy detector trains for ~10-30 s (once per module)
def test_save_load_round_trip(toy_finder, tmp_path):
    path = toy_finder.save(tmp_path / "toy-dla", name="toy-dla", version="0.0.1")
    loaded = DLAFinder(path)
    test = make_sightlines(5, seed=10)
    np.testing.assert_allclose(loaded.predict(test)["z_abs"], toy_finder.predict(test)["z_abs"])
    assert loaded.metadata["sha256"] == loaded.predict(test).meta["model_sha256"]


@pytest.mark.slow  # the toy detector trains for ~10-30 s (once per module)
def test_find_dlas_and_plot(toy_finder):
    import matplotlib

    matplotlib.use("Agg")
    from spectralnn.analysis import find_dlas
    from spectralnn.visualization import plot_dlas

    spectrum = make_sightlines(1, seed=11, dla_fraction=1.0)
    table = find_dlas(spectrum, estimator=toy_finder)
    assert len(table) == 1
    assert abs(table["z_abs"][0] - spectrum.meta["dla1_z"][0]) < 0.01
    ax = plot_dlas(spectrum, table)
    assert len(ax.lines) >= 3  # spectrum, Voigt profile, markers


def test_match_absorbers_rule():
    d, t = match_absorbers([0, 0, 1, 2], [2.300, 2.308, 3.1, 2.0],
                           [0, 1, 2], [2.305, 3.111, 2.5])
    # each true absorber to its closest detection within 0.01
    assert d.tolist() == [0, -1, -1, -1] or d.tolist() == [-1, 0, -1, -1]
    assert t.tolist()[1:] == [-1, -1]
    d, t = match_absorbers([], [], [0], [2.0])
    assert d.size == 0 and t.tolist() == [-1]


def test_truth_absorbers_needs_truth_columns():
    batch = make_sightlines(2)
    assert truth_absorbers(batch).shape == (2, 1, 2)
    batch.meta.remove_column("dla1_z")
    with pytest.raises(ValueError, match="dla1_z"):
        truth_absorbers(batch)


def test_default_weights_find_phl957_dla(real_data):
    """Keck/ESI PHL 957: literature DLA at z_abs ≈ 2.309, log N_HI ≈ 21.4."""
    from spectralnn.errors import ModelFileError
    from spectralnn.io import read_spectrum

    try:
        finder = DLAFinder()
    except ModelFileError:
        pytest.skip("no dla-default weights installed")
    spec = read_spectrum(real_data / "other/keck_esi_ph957/PH957_f.fits")
    found = finder.predict(spec, z_qso=2.68)
    dz = np.abs(np.asarray(found["z_abs"]) - 2.309)
    assert dz.min() <= 0.01
    best = found[int(np.argmin(dz))]
    assert abs(best["log_nhi"].value - 21.4) <= 0.3


@pytest.mark.slow  # simulates, trains one epoch and saves (~10 s)
def test_train_dla_command(tmp_path):
    import argparse
    import contextlib
    import io

    from spectralnn.commands.train import add_arguments, run
    from spectralnn.datasets import write_dataset
    from spectralnn.simulate import simulate_quasars

    data = write_dataset(simulate_quasars(30, seed=3, z_range=(2.5, 3.5), dla_rate=5.0),
                         tmp_path / "qso.h5")
    parser = argparse.ArgumentParser(prog="spectralnn train")
    add_arguments(parser)
    args = parser.parse_args([
        "dla", "--data", str(data), "-o", str(tmp_path / "dla.keras"),
        "--options", '{"filters": 4, "dilations": [1, 2]}', "--epochs", "1",
        "--batch-size", "8", "--validation", "0.3"])
    with contextlib.redirect_stdout(io.StringIO()):
        assert run(args) == 0
    finder = DLAFinder(tmp_path / "dla.keras")
    assert finder.metadata["task"] == "dla" and finder.options["filters"] == 4
    assert finder.metadata["training_set"]["n_spectra"] == 30
