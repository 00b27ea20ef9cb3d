"""Tests of ISMEstimator, the nebular grids and the classical gas diagnostics."""

import importlib.util

import numpy as np
import pytest
from astropy import units as u
from astropy.table import QTable

from spectralnn.errors import ModelFileError
from spectralnn.flags import Flag
from spectralnn.physics import nebular

HAS_NB = importlib.util.find_spec("NebulaBayes") is not None
needs_grid = pytest.mark.skipif(not HAS_NB, reason="NebulaBayes (its grids) not installed: "
                                "pip install spectralnn[ism]")


# --------------------------------------------------------------------------
# classical diagnostics
# --------------------------------------------------------------------------
def test_pettini_pagel_definitions():
    # PP04 eqs. 1 and 3: N2 = -1 -> 8.90 - 0.57; O3N2 = 0 -> 8.73
    oh, err = nebular.n2_metallicity(0.1, 1.0)
    assert float(oh) == pytest.approx(8.33, abs=1e-9)
    assert float(err) == pytest.approx(nebular.N2_SCATTER)
    oh, _ = nebular.o3n2_metallicity(0.5, 1.0, 0.5, 1.0)
    assert float(oh) == pytest.approx(8.73, abs=1e-9)
    # outside the validity range: NaN
    assert np.isnan(nebular.n2_metallicity(1.0, 1.0)[0])
    # flux errors add to the scatter
    _, err_noisy = nebular.n2_metallicity(0.1, 1.0, 0.02, 0.02)
    assert float(err_noisy) > nebular.N2_SCATTER


def test_r23_branches():
    # the same R23 gives a higher abundance on the upper branch (high [N II]/[O II])
    up, _ = nebular.r23_metallicity(3.0, 3.0, 1.0, nii6583=1.0, halpha=2.86)
    low, _ = nebular.r23_metallicity(3.0, 3.0, 1.0, nii6583=0.01, halpha=2.86)
    assert float(up) > 8.4 > float(low)
    forced, _ = nebular.r23_metallicity(3.0, 3.0, 1.0, branch="lower")
    assert float(forced) == pytest.approx(float(low))


def test_pyneb_diagnostics_match_pyneb():
    pn = pytest.importorskip("pyneb")
    ratio = np.array([1.3, 1.0, 0.7])
    ne, ne_err = nebular.sii_density(ratio, np.ones(3), 0.02 * ratio, 0.02 * np.ones(3))
    ref = pn.Atom("S", 2).getTemDen(ratio, tem=1e4, wave1=6716, wave2=6731)
    # table interpolation (Δlog n = 0.1) against PyNeb's own solver: 2 %
    np.testing.assert_allclose(ne.to_value(u.cm**-3), ref, rtol=0.02)
    assert np.all(ne_err > 0)
    te, _ = nebular.oiii_temperature(0.02, 1.0)
    ref_t = pn.Atom("O", 3).getTemDen(0.02 / (1 + nebular.OIII_4959_5007), den=100.0,
                                      to_eval="L(4363)/(L(5007)+L(4959))")
    assert te[0].to_value(u.K) == pytest.approx(ref_t, rel=0.01)
    # direct method: O++/H+ as PyNeb's getIonAbundance; O+ adds to it
    oh, oh_err, t3, _ = nebular.direct_metallicity(1e-9, 0.02, 4.0, 1.0)
    opp = pn.Atom("O", 3).getIonAbundance(int_ratio=400.0, tem=t3[0].to_value(u.K), den=100.0,
                                          wave=5007, Hbeta=100.0)
    assert float(oh[0]) == pytest.approx(12 + np.log10(opp), abs=0.01)
    oh2, *_ = nebular.direct_metallicity(1.0, 0.02, 4.0, 1.0)
    assert oh2[0] > oh[0]


# --------------------------------------------------------------------------
# grids
# --------------------------------------------------------------------------
@needs_grid
def test_grid_nodes_and_holdout():
    from spectralnn.datasets import NebularGrid

    grid = NebularGrid.from_nebulabayes("HII", lines=["Hbeta", "[NII]6583", "[OIII]5007"])
    assert grid.shape == (9, 12, 12)
    params, ratios = grid.nodes()
    assert np.all(ratios["Hbeta"] == 0)  # normalised to Hβ
    interp = grid(*params.T)
    np.testing.assert_allclose(interp["[NII]6583"], ratios["[NII]6583"], atol=1e-12)
    train, held = grid.holdout(0.1, seed=1)
    assert np.all((held > 0) & (held < np.array(grid.shape) - 1))  # interior only
    # the training grid does not depend on the withheld models' values
    poisoned = NebularGrid(grid.axes, {k: v.copy() for k, v in grid.values.items()})
    for cube in poisoned.values.values():
        cube[tuple(held.T)] = 99.0
    again = poisoned.without(held)
    for name in grid.lines:
        np.testing.assert_array_equal(again.values[name], train.values[name])
    # ...and interpolates them from neighbours, not exactly
    p, truth = grid.nodes(held)
    assert np.abs(train(*p.T)["[NII]6583"] - truth["[NII]6583"]).max() > 0


# --------------------------------------------------------------------------
# trees as arrays
# --------------------------------------------------------------------------
def test_tree_arrays_reproduce_sklearn():
    pytest.importorskip("sklearn")
    from sklearn.ensemble import AdaBoostRegressor
    from sklearn.tree import DecisionTreeRegressor

    from spectralnn.estimators.ism import _TreeEnsemble

    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 4)).astype(np.float32)
    y = x[:, 0] ** 2 + np.sin(3 * x[:, 1]) + 0.1 * rng.normal(size=2000)
    model = AdaBoostRegressor(DecisionTreeRegressor(max_depth=5, min_samples_leaf=20),
                              n_estimators=12, random_state=0).fit(x, y)
    arrays = _TreeEnsemble.from_sklearn(model, 5)
    test = rng.normal(size=(500, 4)).astype(np.float32)
    np.testing.assert_allclose(arrays.predict(test), model.predict(test), rtol=1e-5,
                               atol=1e-5)


# --------------------------------------------------------------------------
# the estimator
# --------------------------------------------------------------------------
def _held_out_inputs(est, realisations=3, seed=0, extra=()):
    from spectralnn.datasets import NebularGrid
    from spectralnn.estimators.ism import MODEL_LINES

    held = np.asarray(est.metadata["training_set"]["held_out_index"], dtype=int)
    grid = NebularGrid.from_nebulabayes("HII", lines=list(MODEL_LINES) + list(extra))
    params, ratios = grid.nodes(held)
    rng = np.random.default_rng(seed)
    flux = {k: np.repeat(10.0**v, realisations) for k, v in ratios.items()}
    noisy = {k: v * (1 + 0.1 * rng.standard_normal(v.size)) for k, v in flux.items()}
    error = {k: 0.1 * np.abs(v) for k, v in noisy.items()}  # quoted from the measurement
    return np.repeat(params, realisations, axis=0), noisy, error


@needs_grid
def test_default_recovers_held_out_grid_models():
    from spectralnn.estimators import ISMEstimator

    est = ISMEstimator(deredden=False)
    truth, flux, error = _held_out_inputs(est)
    t = est.predict_fluxes(flux, error)
    assert isinstance(t, QTable)
    for name in ("log_OH", "log_U", "log_P_k", "n_e", "log_OH_N2", "log_OH_R23"):
        assert name in t.colnames and f"{name}_err" in t.colnames
    assert t["n_e"].unit == u.cm**-3
    r_oh = t["log_OH"] - truth[:, 2]
    r_u = t["log_U"] - truth[:, 0]
    # issue 8 targets are 0.1 and 0.15 dex on the full benchmark; this small
    # sample (210 line sets) gets a 30 % margin for sampling noise
    assert np.sqrt(np.mean(r_oh**2)) < 0.13
    assert np.sqrt(np.mean(r_u**2)) < 0.2
    cover = np.mean(np.abs(r_oh) < t["log_OH_err"])
    assert 0.5 < cover < 0.85
    # the trees beat the best strong-line calibration on these models
    r_o3n2 = np.asarray(t["log_OH_O3N2"]) - truth[:, 2]
    ok = np.isfinite(r_o3n2)
    assert np.sqrt(np.mean(r_oh[ok] ** 2)) < np.sqrt(np.mean(r_o3n2[ok] ** 2))


@needs_grid
def test_missing_lines_use_their_subset_model():
    from spectralnn.estimators import ISMEstimator

    est = ISMEstimator(deredden=False, train_missing=False, baselines=False)
    truth, flux, error = _held_out_inputs(est, realisations=1)
    flux = dict(flux)
    n = len(truth)
    flux["[OI]6300"] = np.where(np.arange(n) % 2 == 0, np.nan, flux["[OI]6300"])
    flux["Hbeta"][0] = np.nan
    flux["Halpha"][0] = np.nan  # no reference line at all
    t = est.predict_fluxes(flux, error)
    assert "[OI]6300" not in t["lines_used"][2] and "[OI]6300" in t["lines_used"][1]
    assert t["flags"][0] & Flag.NO_DATA and np.isnan(t["log_OH"][0])
    good = np.arange(1, n)
    assert np.all(np.isfinite(t["log_OH"][good]))
    assert np.sqrt(np.mean((t["log_OH"][good] - truth[good, 2]) ** 2)) < 0.15


@needs_grid
def test_table_input_and_dereddening():
    from spectralnn.estimators import ISMEstimator
    from spectralnn.estimators.ism import _balmer_correct

    est = ISMEstimator(deredden=False, baselines=False)
    truth, flux, error = _held_out_inputs(est, realisations=1)
    ref = est.predict_fluxes(flux, error)
    # a measure_lines-like table: [O II] as two components, fluxes with units
    unit = u.Unit("1e-17 erg / (s cm2)")
    prefixes = {"Hbeta": "Hbeta", "[OIII]5007": "OIII_5007", "[OI]6300": "OI_6300",
                "Halpha": "Halpha", "[NII]6583": "NII_6583", "[SII]6716": "SII_6716",
                "[SII]6731": "SII_6731"}
    table = QTable()
    for name, prefix in prefixes.items():
        table[f"{prefix}_flux"] = flux[name] * unit
        table[f"{prefix}_flux_err"] = error[name] * unit
    for prefix, share in (("OII_3726", 0.4), ("OII_3729", 0.6)):
        table[f"{prefix}_flux"] = share * flux["[OII]3726,29"] * unit
        table[f"{prefix}_flux_err"] = share * error["[OII]3726,29"] * unit
    got = est.predict(table)
    np.testing.assert_allclose(got["log_OH"], ref["log_OH"], atol=0.05)
    # redden by E(B-V) = 0.3 (CCM89): deredden=True recovers it and the answer
    names = list(prefixes) + ["[OII]3726,29"]
    f = np.stack([flux[k] for k in names], 1)
    e = np.stack([error[k] for k in names], 1)
    _, _, ebv0 = _balmer_correct(f, e, names)  # small: model Hα/Hβ is not exactly 2.86
    dim = {}
    from spectralnn.lines import get_line
    from spectralnn.preprocessing.dereddening import extinction_model

    curve = extinction_model("CCM89", r_v=3.1)
    for name in names:
        key = "[OII]3726" if name == "[OII]3726,29" else name
        a = 3.1 * float(curve(get_line(key)["wavelength"]))
        dim[name] = flux[name] * 10 ** (-0.4 * 0.3 * a)
    est.deredden = True
    red = est.predict_fluxes(dim, {k: v * dim[k] / flux[k] for k, v in error.items()})
    assert np.median(red["ebv"].to_value(u.mag) - ebv0) == pytest.approx(0.3, abs=0.01)
    est.deredden = False
    plain = est.predict_fluxes(dim, {k: v * dim[k] / flux[k] for k, v in error.items()})
    err_red = np.sqrt(np.mean((red["log_OH"] - truth[:, 2]) ** 2))
    err_plain = np.sqrt(np.mean((plain["log_OH"] - truth[:, 2]) ** 2))
    assert err_red < err_plain


@needs_grid
def test_fit_save_load_roundtrip(tmp_path):
    pytest.importorskip("sklearn")
    from spectralnn.estimators import ISMEstimator

    subset = ("Hbeta", "[OIII]5007", "Halpha", "[NII]6583")
    est = ISMEstimator(None, n_train=1500, n_estimators=4, max_depth=4, deredden=False,
                       train_missing=False)
    est.fit(subsets=[subset], holdout=0.1)
    path = est.save(tmp_path / "tiny")
    assert path.with_suffix(".npz").is_file()
    again = ISMEstimator(tmp_path / "tiny", deredden=False, train_missing=False)
    rng = np.random.default_rng(3)
    flux = {k: rng.uniform(0.2, 3.0, 20) for k in subset}
    flux["Hbeta"][:] = 1.0
    error = {k: 0.1 * v for k, v in flux.items()}
    a, b = est.predict_fluxes(flux, error), again.predict_fluxes(flux, error)
    np.testing.assert_allclose(a["log_OH"], b["log_OH"], rtol=1e-6)
    assert np.all(np.isfinite(a["log_OH"]))
    assert a["log_OH"].std() > 0  # the model responds to its inputs
    npz = tmp_path / "tiny.npz"
    data = bytearray(npz.read_bytes())
    data[-20] ^= 0xFF
    npz.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="sha256"):
        ISMEstimator(tmp_path / "tiny")


def test_settings_are_validated():
    from spectralnn.estimators import ISMEstimator

    with pytest.raises(ValueError, match="method"):
        ISMEstimator(None, method="forest")
    with pytest.raises(ValueError, match="max_depth"):
        ISMEstimator(None, max_depth=20)


# --------------------------------------------------------------------------
# cubes and profiles
# --------------------------------------------------------------------------
def test_radial_profile_recovers_gradient():
    from spectralnn.estimators.ism import radial_profile

    yy, xx = np.indices((51, 61))
    rng = np.random.default_rng(1)
    image = 8.8 - 0.015 * np.hypot(xx - 30, yy - 25) + 0.02 * rng.standard_normal(xx.shape)
    image[0, 0] = np.nan
    p = radial_profile(image, (30, 25), bin_width=2, error=np.full(image.shape, 0.02),
                       statistic="mean", pixel_scale=0.5 * u.arcsec)
    assert p["radius"].unit == u.arcsec
    assert p.meta["gradient"] == pytest.approx(-0.015, abs=0.002)  # per pixel
    assert np.all(p["n_pixels"][1:10] > 0)


@needs_grid
def test_cube_maps():
    from astropy.nddata import StdDevUncertainty
    from specutils import Spectrum

    from spectralnn.datasets import NebularGrid
    from spectralnn.estimators import ISMEstimator
    from spectralnn.lines import get_line

    names = ["[OII]3726", "[OII]3729", "Hbeta", "[OIII]5007", "[OI]6300", "Halpha",
             "[NII]6583", "[SII]6716", "[SII]6731"]
    grid = NebularGrid.from_nebulabayes("HII", lines=names)
    ny, nx = 4, 5
    oh = np.linspace(8.0, 9.0, nx)[None, :].repeat(ny, 0)
    ratios = grid(np.full(oh.size, -3.0), np.full(oh.size, 6.2), oh.ravel())
    wave = np.arange(3650.0, 6800.0, 1.0)
    flux = np.full((oh.size, wave.size), 0.2)
    for name in names:
        lam = get_line(name)["wavelength"].to_value(u.AA)
        flux += (50 * 10 ** ratios[name] / (np.sqrt(2 * np.pi) * 1.5))[:, None] * np.exp(
            -0.5 * ((wave - lam) / 1.5) ** 2)
    rng = np.random.default_rng(2)
    flux += 0.02 * rng.standard_normal(flux.shape)
    cube = Spectrum(flux=flux.reshape(ny, nx, -1) * u.Unit("1e-17 erg/(s cm2 AA)"),
                    spectral_axis=wave * u.AA,
                    uncertainty=StdDevUncertainty(np.full((ny, nx, wave.size), 0.02)))
    maps = ISMEstimator(deredden=False, baselines=False).map(cube, z=0.0)
    assert maps["log_OH"].shape == (ny, nx) and maps["n_e"].shape == (ny, nx)
    assert maps["n_e"].unit == u.cm**-3
    # the metallicity gradient along x is recovered
    assert np.all(np.diff(np.nanmedian(maps["log_OH"], axis=0)) > 0)
    assert np.nanmax(np.abs(maps["log_OH"] - oh)) < 0.3


@needs_grid
def test_cube_maps_via_linear_line_fluxes_by_default(monkeypatch):
    from astropy.nddata import StdDevUncertainty
    from specutils import Spectrum

    import spectralnn.preprocessing.line_fluxes as lf
    from spectralnn.datasets import NebularGrid
    from spectralnn.estimators import ISMEstimator
    from spectralnn.lines import get_line

    calls = []
    real = lf.linear_line_fluxes

    def spy(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(lf, "linear_line_fluxes", spy)
    names = ["[OII]3726", "[OII]3729", "Hbeta", "[OIII]5007", "[OI]6300", "Halpha",
             "[NII]6583", "[SII]6716", "[SII]6731"]
    grid = NebularGrid.from_nebulabayes("HII", lines=names)
    ny, nx = 3, 4
    oh = np.linspace(8.1, 8.9, nx)[None, :].repeat(ny, 0)
    ratios = grid(np.full(oh.size, -3.0), np.full(oh.size, 6.2), oh.ravel())
    fluxes = {k: 40 * 10 ** ratios[k] for k in names}
    fluxes["[OIII]4959"] = fluxes["[OIII]5007"] / 2.98
    fluxes["[NII]6548"] = fluxes["[NII]6583"] / 3.05
    wave = np.arange(3650.0, 6800.0, 1.0)
    flux = np.full((oh.size, wave.size), 0.2)
    for name, f in fluxes.items():
        lam = get_line(name)["wavelength"].to_value(u.AA)
        flux += (f / (np.sqrt(2 * np.pi) * 1.5))[:, None] * np.exp(
            -0.5 * ((wave - lam) / 1.5) ** 2)
    flux += 0.03 * np.random.default_rng(5).standard_normal(flux.shape)
    flux = flux.reshape(ny, nx, -1)
    flux[0, 0] = 0.2  # an empty spaxel: flagged, not garbage
    cube = Spectrum(flux=flux * u.Unit("1e-17 erg/(s cm2 AA)"), spectral_axis=wave * u.AA,
                    uncertainty=StdDevUncertainty(np.full(flux.shape, 0.03)))
    est = ISMEstimator(deredden=False, baselines=False)
    assert est.line_fit == "auto"
    maps = est.map(cube, z=0.0)
    assert calls  # the cube's lines went through linear_line_fluxes
    assert np.isnan(maps["log_OH"][0, 0]) and maps["flags"][0, 0] & Flag.NO_DATA
    good = np.ones((ny, nx), bool)
    good[0, 0] = False
    assert np.all(np.isfinite(maps["log_OH"][good]))
    assert np.nanmax(np.abs(maps["log_OH"] - oh)) < 0.3
    assert np.all(np.diff(np.nanmedian(maps["log_OH"], axis=0)) > 0)
    with pytest.raises(ValueError, match="line_fit"):
        ISMEstimator(None, line_fit="spline")
