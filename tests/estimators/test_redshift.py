"""Tests of spectralnn.estimators.redshift (RedshiftEstimator) and analysis.redshift."""

import numpy as np
import pytest
from astropy import units as u
from astropy.table import QTable

from spectralnn import SpectrumBatch
from spectralnn.estimators import RedshiftEstimator
from spectralnn.estimators.redshift import _lines_covered
from spectralnn.lines import get_line

pytest.importorskip("keras")

TINY = {"filters": 8, "stages": 2, "dense_units": 16, "dropout": 0.0}


def _quasars(n, seed):
    from spectralnn.simulate import simulate_spectra

    return next(simulate_spectra("qso", n, seed=seed, chunk_size=n))


@pytest.fixture(scope="module")
def held_out():
    return _quasars(200, seed=14)


@pytest.fixture(scope="module")
def trained():
    """A tiny redshift network trained once on 500 simulated quasars."""
    # the network alone (the template refinement has its own tests)
    est = RedshiftEstimator("resnet1d", architecture_options=TINY, refine=False)
    est.fit(_quasars(500, seed=13), "z", epochs=25, batch_size=32, patience=10, seed=0)
    return est


def test_invalid_settings():
    with pytest.raises(ValueError, match="catastrophic_velocity"):
        RedshiftEstimator("resnet1d", catastrophic_velocity=-1.0)
    with pytest.raises(ValueError, match="risk_threshold"):
        RedshiftEstimator("resnet1d", risk_threshold=1.5)
    with pytest.raises(ValueError, match="rest_frame"):
        RedshiftEstimator("resnet1d", preprocessing={
            "steps": ["rest_frame", "resample", "normalize"],
            "grid": {"start": 3600.0, "stop": 10000.0, "dloglam": 1e-3}})


def test_catastrophic_risk_is_the_gaussian_tail():
    est = RedshiftEstimator("resnet1d")
    limit = np.log1p(6000.0 / 299792.458)
    risk = est._risk(np.array([limit, limit / 3.0, limit * 100]))
    # P(|x| > 1σ) = 31.73 %, P(|x| > 3σ) = 0.27 %, nearly certain for a huge σ
    np.testing.assert_allclose(risk[:2], [0.31731, 0.0026998], rtol=1e-3)
    assert risk[2] > 0.99


def test_lines_covered():
    wave = np.linspace(3800.0, 9200.0, 500)
    batch = SpectrumBatch(wave * u.AA, np.ones((2, 500)), np.ones((2, 500)),
                          flux_unit=u.one)
    lines = _lines_covered(batch, np.array([2.0, 0.1]))
    # z = 2: C IV at 4647 Å and Mg II at 8396 Å are on the grid, Hβ is not
    assert "CIV" in lines[0].split(",") and "MgII" in lines[0].split(",")
    assert "Hbeta" not in lines[0].split(",")
    # z = 0.1: Hβ to [S II] are on, Lyα is not
    assert {"Hbeta", "Halpha", "[SII]6731"} <= set(lines[1].split(","))
    assert "Lya" not in lines[1].split(",")


@pytest.mark.slow  # trains a tiny network once per module (~15 s)
def test_recovers_quasar_redshifts(trained, held_out):
    # ln(1+z) of the simulated quasars (z 0-5) spreads by ~0.45; the tiny
    # network, trained for seconds on 450 spectra, must explain most of that
    # on unseen spectra (measured: NMAD of Δz/(1+z) about 0.1, r about 0.9)
    table = trained.predict(held_out)
    truth = np.asarray(held_out.meta["z"])
    pred = table["z"].value
    r = np.corrcoef(np.log1p(pred), np.log1p(truth))[0, 1]
    assert r > 0.75
    dz = (pred - truth) / (1 + truth)
    assert 1.4826 * np.median(np.abs(dz - np.median(dz))) < 0.2
    # the predicted uncertainties are of the right size (68 % coverage ± 20 %)
    inside = np.abs(pred - truth) < table["z_err"].value
    assert 0.45 < inside.mean() < 0.88


@pytest.mark.slow  # trains a tiny network once per module (~15 s)
def test_table_contents(trained, held_out):
    part = held_out[:10]
    table = trained.predict(part)
    assert isinstance(table, QTable) and len(table) == 10
    assert table["z"].unit == u.dimensionless_unscaled
    assert np.all(table["z_err"].value > 0)
    np.testing.assert_allclose(table["z_ref"], part.meta["z"])
    assert np.all((table["z_risk"] >= 0) & (table["z_risk"] <= 1))
    assert np.all(table["z_warning"] == (table["z_risk"] > trained.risk_threshold))
    # every line listed lies on the spectrum at the predicted z
    row = 0
    for name in table["lines"][row].split(","):
        observed = get_line(name)["wavelength"].value * (1 + table["z"][row].value)
        assert part.wavelength[0] <= observed <= part.wavelength[-1]
    assert table.meta["task"] == "redshift"


@pytest.mark.slow  # trains a tiny network once per module (~15 s)
def test_save_load_round_trip(trained, held_out, tmp_path):
    path = trained.save(tmp_path / "z", name="z-test", version="0.1.0")
    loaded = RedshiftEstimator.load(path, refine=False)
    a, b = trained.predict(held_out[:5]), loaded.predict(held_out[:5])
    np.testing.assert_allclose(a["z"], b["z"], rtol=1e-5)


@pytest.mark.slow  # trains a tiny network once per module (~15 s)
def test_analysis_redshift(trained, held_out):
    from spectralnn.analysis import redshift

    z = redshift(held_out.to_spectrum(0), estimator=trained)
    assert z.ndim == 0 and z.unit == u.dimensionless_unscaled
    assert z.uncertainty.value > 0
    many = redshift(held_out[:3], estimator=trained)
    assert many.shape == (3,) and many.uncertainty.shape == (3,)
