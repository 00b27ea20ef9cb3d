"""Tests of SpectrumAutoencoder: χ² honesty, rest-frame decoding, anomalies, weights."""

import numpy as np
import pytest
from astropy import units as u
from astropy.table import QTable

from spectralnn import SpectrumBatch
from spectralnn.batch import FLUX_UNIT
from spectralnn.errors import ModelFileError
from spectralnn.estimators import SpectrumAutoencoder, inject_anomalies
from spectralnn.estimators.autoencoder import AUTOENCODER_PREPROCESSING, _chi2
from spectralnn.flags import Flag

keras = pytest.importorskip("keras")

#: a 97-pixel grid keeps the toy networks fast
TOY_PREPROCESSING = {
    "steps": ["resample", "normalize"],
    "grid": {"start": 4000.0, "stop": 5000.0, "dloglam": 1e-3},
    "normalization": "median",
    "channels": ["flux", "mask", "ivar"],
    "min_good_fraction": 0.5,
}
TOY_OPTIONS = {"filters": [16, 16], "kernel_size": 5, "decoder_units": [32, 64],
               "z_min": 0.0, "z_max": 0.3}
#: rest wavelength (Å) of the toy emission line
TOY_LINE = 3900.0


def toy_batch(n, *, seed, snr=5.0, z=None):
    """A sloped continuum and one Gaussian line at rest 3900 Å, at z in 0.05-0.2, with noise."""
    rng = np.random.default_rng(seed)
    wave = 4000.0 * 10 ** (1e-4 * np.arange(969))  # 4000-4999 Å
    slope = rng.uniform(-0.5, 0.5, n)
    amplitude = rng.uniform(0.5, 3.0, n)
    z = rng.uniform(0.05, 0.2, n) if z is None else np.broadcast_to(z, (n,)).astype(float)
    x = (wave - 4500.0) / 500.0
    centre = TOY_LINE * (1.0 + z)
    model = 1.0 + slope[:, None] * x + amplitude[:, None] * np.exp(
        -0.5 * ((wave - centre[:, None]) / (10.0 * (1 + z[:, None]))) ** 2)
    sigma = 1.0 / snr
    flux = (model + sigma * rng.standard_normal(model.shape)) * 3.0
    ivar = np.full(flux.shape, 1.0 / (3.0 * sigma) ** 2)
    meta = QTable({"object_id": np.arange(n), "amplitude": amplitude, "z": z})
    return SpectrumBatch(wave * u.AA, flux * FLUX_UNIT, ivar, meta=meta)


def roc_auc(normal, anomalous):
    """Probability that an anomaly scores above a normal spectrum (ties count half)."""
    a = np.asarray(anomalous)[:, None]
    b = np.asarray(normal)[None, :]
    return float(np.mean((a > b) + 0.5 * (a == b)))


@pytest.fixture(scope="module")
def toy_model():
    ae = SpectrumAutoencoder("autoencoder", latent_dim=2, preprocessing=TOY_PREPROCESSING,
                             architecture_options=TOY_OPTIONS, min_rest_wavelength=None)
    ae.fit(toy_batch(600, seed=1), epochs=40, patience=40, seed=0, batch_size=32,
           loss="log_chi2", learning_rate=3e-3)
    return ae


def test_redshift_resample_places_rest_features():
    from spectralnn.models.layers import RedshiftResample

    # a rest spectrum that is its own log-wavelength: the output must be
    # log10(lambda_obs / (1 + z)) at every observed pixel
    rest_start, step, n_rest = np.log10(3000.0), 1e-4, 4000
    rest = (rest_start + step * np.arange(n_rest))[None].astype("float32")
    layer = RedshiftResample(rest_start, step, n_rest, np.log10(4000.0), 2e-4, 500)
    obs = np.log10(4000.0) + 2e-4 * np.arange(500)
    for z in (0.0, 0.1234):
        out = np.asarray(layer([rest, np.array([[z]], dtype="float32")]))[0]
        assert np.allclose(out, obs - np.log10(1 + z), atol=1e-5)


def test_chi2_uses_the_resampled_ivar_and_excludes_masked_pixels():
    # data = truth + noise drawn with the reported ivar on the SDSS grid: on
    # the 1,792-pixel model grid (2.14 SDSS pixels per bin) the χ² per pixel of
    # the truth against the *resampled* ivar is 1 within its spread sqrt(2/N)
    rng = np.random.default_rng(3)
    wave = 3800.0 * 10 ** (1e-4 * np.arange(3840))
    truth = 2.0 + np.sin(wave / 300.0)
    sigma = 0.2
    flux = truth + sigma * rng.standard_normal((20, wave.size))
    ivar = np.full(flux.shape, sigma**-2)
    mask = np.zeros(flux.shape, dtype=bool)
    mask[:, 1000:1100] = True
    flux[:, 1000:1100] = 1e3  # masked garbage: must not count
    batch = SpectrumBatch(wave * u.AA, flux * FLUX_UNIT, ivar, mask=mask)
    ae = SpectrumAutoencoder("autoencoder")
    prepared = ae.pipeline(batch)
    assert prepared.inputs.shape == (20, 1792, 3)
    resampled_truth = np.interp(ae.wavelength.value, wave, truth)
    from spectralnn.estimators.autoencoder import _norm

    recon = resampled_truth[None, :] / _norm(prepared)[:, None]
    chi2, n_good = _chi2(prepared, recon)
    assert np.all(n_good < 1792) and np.all(n_good > 1700)  # the masked run is left out
    # 20 spectra: the mean χ² is 1 within 4 sigma of sqrt(2 / (20 N))
    assert abs(np.mean(chi2) - 1.0) < 4 * np.sqrt(2.0 / (20 * n_good.mean())) + 0.01
    # the raw SDSS ivar (not resampled) would give a χ² per pixel of about 1/2.14
    assert np.all(chi2 > 0.8)


def test_settings_are_validated():
    with pytest.raises(ValueError, match="latent_dim"):
        SpectrumAutoencoder("autoencoder", latent_dim=0)
    with pytest.raises(ValueError, match="unknown architecture options"):
        SpectrumAutoencoder("autoencoder", architecture_options={"depth": 3})
    with pytest.raises(ValueError, match="observed-frame"):
        SpectrumAutoencoder("autoencoder", preprocessing={"steps": ["normalize"]})
    with pytest.raises(ValueError, match="min_rest_wavelength"):
        SpectrumAutoencoder("autoencoder", min_rest_wavelength=-1)
    ae = SpectrumAutoencoder("autoencoder", latent_dim=4)
    assert ae.latent_dim == 4 and ae.pipeline.n_pixels == 1792
    assert ae.metadata["preprocessing"]["grid"] == AUTOENCODER_PREPROCESSING["grid"]
    # the rest grid covers the observed grid from z_min to z_max
    rest = ae.rest_wavelength.to_value(u.AA)
    assert rest[0] <= 3802.0 / 6.0 and rest[-1] >= 9190.0 / 0.99
    assert ae.min_rest_wavelength == 1216.0
    with pytest.raises(ModelFileError, match="no weights yet"):
        ae.encode(toy_batch(2, seed=0))
    with pytest.raises(ValueError, match="targets must be None"):
        ae.fit(toy_batch(10, seed=0), targets=np.ones(10))


def test_toy_reconstruction_reaches_the_noise(toy_model):
    test = toy_batch(200, seed=2)
    score = toy_model.anomaly_score(test)
    # a flat spectrum (the median) is the trivial reconstruction
    prepared = toy_model.pipeline(test)
    flat = _chi2(prepared, np.ones((len(test), toy_model.pipeline.n_pixels)))[0]
    assert np.median(flat) > 10
    # the decoder draws the spectra to within their noise
    assert np.median(score) < 1.3
    assert np.median(score) < np.median(flat) / 10
    # the two latents carry the line amplitude: it is a smooth function of them
    latents = toy_model.encode(test)
    assert latents.shape == (200, 2)
    design = np.column_stack([np.ones(200), latents, latents**2, latents[:, :1] * latents[:, 1:]])
    coef, *_ = np.linalg.lstsq(design, test.meta["amplitude"], rcond=None)
    resid = test.meta["amplitude"] - design @ coef
    assert np.std(resid) < 0.3 * np.std(test.meta["amplitude"])


@pytest.mark.parametrize("z", [0.07, 0.17])
def test_rest_frame_line_lands_at_its_observed_wavelength(toy_model, z):
    # the decoder draws the line once, in the rest frame: the reconstruction
    # peaks at 3900 (1 + z) Å for either redshift
    test = toy_batch(20, seed=3, z=z)
    recon = toy_model.reconstruct(test)
    wave = recon.wavelength
    slope_free = recon.flux - np.median(recon.flux, axis=1, keepdims=True)
    peak = wave[np.argmax(slope_free, axis=1)]
    pixel = wave * (10 ** 1e-3 - 1)  # one model pixel in Å
    assert np.all(np.abs(peak - TOY_LINE * (1 + z)) < 1.5 * pixel[np.argmax(slope_free, axis=1)])
    # the rest-frame decoding puts it at 3900 Å whatever z (on the part of
    # the rest grid this spectrum covers: the rest is unconstrained)
    rest = toy_model.decode(toy_model.encode(test), z=z, frame="rest")
    on = (rest.wavelength > 4000 / (1 + z) + 20) & (rest.wavelength < 5000 / (1 + z) - 20)
    rest_peak = rest.wavelength[on][np.argmax(rest.flux[:, on], axis=1)]
    assert np.all(np.abs(rest_peak - TOY_LINE) < 10.0)


def test_missing_redshift_is_flagged(toy_model):
    test = toy_batch(3, seed=9)
    test.meta["z"] = [0.1, np.nan, 0.1]
    with pytest.warns(Warning, match="could not be used"):
        table = toy_model.predict(test)
    assert np.isnan(table["chi2_per_pixel"][1]) and table["flags"][1] & Flag.NO_REDSHIFT
    assert np.isfinite(table["chi2_per_pixel"][[0, 2]]).all()
    # z= overrides the meta column
    assert np.isfinite(toy_model.anomaly_score(test, z=0.1)).all()


def test_toy_glitches_rank_above_normal_spectra(toy_model):
    test = toy_batch(100, seed=4)
    glitched = inject_anomalies(test, "glitch", seed=5)
    assert roc_auc(toy_model.anomaly_score(test),
                   toy_model.anomaly_score(glitched)) >= 0.95
    # the local score (worst window) separates them at least as well
    local = roc_auc(toy_model.anomaly_score(test, local=True),
                    toy_model.anomaly_score(glitched, local=True))
    assert local >= 0.95


def test_predict_table_decode_and_reconstruct(toy_model):
    test = toy_batch(5, seed=6)
    empty = SpectrumBatch(test.wavelength * u.AA, np.zeros((1, test.n_pixels)) * FLUX_UNIT,
                          np.zeros((1, test.n_pixels)), meta=QTable({"z": [0.1]}))
    from spectralnn.batch import concatenate

    with pytest.warns(Warning, match="could not be used"):
        table = toy_model.predict(concatenate([test, empty]))
    assert table["latent"].shape == (6, 2)
    assert np.all(np.isfinite(table["chi2_per_pixel"][:5]))
    assert np.all(table["chi2_local"][:5] >= table["chi2_per_pixel"][:5] * 0.5)
    assert np.isnan(table["chi2_per_pixel"][5]) and table["flags"][5] != 0
    assert np.allclose(table["chi2_per_pixel_err"][:5], np.sqrt(2.0 / table["n_good"][:5]))
    assert np.allclose(table["z_used"][:5], test.meta["z"])
    assert table.meta["task"] == "autoencoder"
    decoded = toy_model.decode(table["latent"][:5], z=test.meta["z"])
    assert decoded.flux.shape == (5, toy_model.pipeline.n_pixels)
    recon = toy_model.reconstruct(test)
    # the reconstruction, scaled back, matches the decoded normalised flux
    assert np.allclose(recon.flux / np.median(recon.flux, axis=1, keepdims=True),
                       decoded.flux / np.median(decoded.flux, axis=1, keepdims=True),
                       rtol=0.05)
    with pytest.raises(ValueError, match="latents must have shape"):
        toy_model.decode(np.zeros((2, 3)), z=0.1)
    with pytest.raises(ValueError, match="frame"):
        toy_model.decode(table["latent"][:1], z=0.1, frame="cmb")


def test_forest_pixels_can_be_left_out(toy_model):
    # min_rest_wavelength removes the pixels bluer than it (rest frame) from the χ²
    test = toy_batch(4, seed=12, z=0.1)
    prepared, z = toy_model._prepare(test, None, None)
    weight = np.ones((4, toy_model.pipeline.n_pixels))
    toy_model.metadata["score"]["min_rest_wavelength"] = 4000.0
    try:
        cut = toy_model._score_weight(weight, z)
    finally:
        toy_model.metadata["score"]["min_rest_wavelength"] = None
    rest = toy_model.wavelength.value / 1.1
    assert np.all(cut[:, rest < 4000.0] == 0) and np.all(cut[:, rest >= 4000.0] == 1)


def test_save_load_roundtrip_and_tampering(toy_model, tmp_path):
    path = toy_model.save(tmp_path / "toy-ae", name="toy-ae")
    loaded = SpectrumAutoencoder.load(path)
    test = toy_batch(4, seed=7)
    assert np.allclose(loaded.encode(test), toy_model.encode(test), atol=1e-5)
    assert np.allclose(loaded.anomaly_score(test), toy_model.anomaly_score(test), rtol=1e-4)
    assert loaded.metadata["sha256"] and loaded.latent_dim == 2
    with open(path, "ab") as f:
        f.write(b"x")
    with pytest.raises(ModelFileError, match="sha256"):
        SpectrumAutoencoder.load(path)


def test_inject_anomalies_kinds():
    test = toy_batch(3, seed=8)
    glitch = inject_anomalies(test, "glitch", seed=0)
    jump = (glitch.flux - test.flux) * np.sqrt(test.ivar)
    assert np.allclose(np.sort(jump, axis=1)[:, -25:], 5.0)
    assert np.allclose(np.sort(jump, axis=1)[:, :-25], 0.0)
    line = inject_anomalies(test, "broad_line", seed=0)
    assert np.all(line.flux >= test.flux)
    moved = inject_anomalies(test, "wrong_class", seed=0)
    ratio = moved.wavelength_2d / test.wavelength_2d
    assert np.all((ratio > 1.3 - 1e-9) & (ratio < 2.0))
    assert np.allclose(moved.meta["z"], ratio[:, 0] - 1)
    with pytest.raises(ValueError, match="kind must be one of"):
        inject_anomalies(test, "cosmic")


# --------------------------------------------------------- the shipped model
@pytest.fixture(scope="module")
def shipped():
    return SpectrumAutoencoder()


@pytest.fixture(scope="module")
def holdout():
    """Mixed simulated spectra with a seed never used in training (seed 1)."""
    from spectralnn.batch import concatenate
    from spectralnn.simulate import simulate_spectra

    return concatenate(list(simulate_spectra("mixed", 150, seed=424242)))


def test_shipped_model_metadata(shipped):
    meta = shipped.metadata
    assert meta["task"] == "autoencoder" and len(meta["sha256"]) == 64
    assert meta["architecture"]["options"]["frame"] == "rest"
    assert shipped.latent_dim == meta["latent_size"]["chosen"]
    assert shipped.pipeline.n_pixels == 1792
    holdout_metrics = meta["metrics"]["holdout"]
    assert holdout_metrics["seed"] != 1 and holdout_metrics["n"] >= 1000
    assert 0 < meta["decision"]["threshold"]
    assert meta["score"]["min_rest_wavelength"] == 1216.0


def test_shipped_model_reaches_the_noise(shipped, holdout):
    # the target: median χ²/pixel <= 1.2 on simulated spectra
    score = shipped.anomaly_score(holdout)
    assert np.isfinite(score).all()
    assert 0.8 < np.median(score) < 1.2
    # far better than the mean spectrum
    prepared = shipped.pipeline(holdout)
    from spectralnn.estimators.autoencoder import _normalised

    flux, weight = _normalised(prepared)
    good = weight > 0
    mean = np.sum(flux * good, axis=0) / np.maximum(good.sum(axis=0), 1)
    trivial = _chi2(prepared, np.broadcast_to(mean, flux.shape))[0]
    assert np.median(score) < 0.2 * np.nanmedian(trivial)


def test_injected_anomalies_raise_the_score_of_their_spectrum(shipped, holdout):
    # paired: the same spectrum with and without the anomaly
    normal = shipped.anomaly_score(holdout)
    for kind in ("broad_line", "glitch"):
        odd = shipped.anomaly_score(inject_anomalies(holdout, kind, seed=11))
        ok = np.isfinite(normal) & np.isfinite(odd)
        assert np.mean(odd[ok] > normal[ok]) > 0.9, kind
    stars = holdout[np.flatnonzero(np.asarray(holdout.meta["class"]) == "STAR")]
    import warnings

    with warnings.catch_warnings():  # stars moved to z > 0.9 cover < 30 % of the grid
        warnings.simplefilter("ignore")
        moved = shipped.anomaly_score(inject_anomalies(stars, "wrong_class", seed=12))
    assert np.nanmedian(moved) > 2 * np.median(shipped.anomaly_score(stars))


def test_latents_separate_the_classes(shipped, holdout):
    from spectralnn.visualization import plot_latent_space

    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    latents = shipped.encode(holdout)
    labels = np.asarray(holdout.meta["class"]).astype(str)
    ok = np.all(np.isfinite(latents), axis=1)
    latents, labels = latents[ok], labels[ok]
    # nearest neighbour in the standardised latents (leave-one-out): the
    # latents carry the class although the network never saw a label
    z = (latents - latents.mean(0)) / latents.std(0)
    dist = np.sum((z[:, None] - z[None]) ** 2, axis=-1)
    np.fill_diagonal(dist, np.inf)
    assert np.mean(labels[np.argmin(dist, axis=1)] == labels) > 0.8
    ax = plot_latent_space(latents, labels)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert [t.split(" ")[0] for t in legend] == ["GALAXY", "QSO", "STAR"]
    import matplotlib.pyplot as plt

    plt.close("all")


def test_analysis_anomaly_score_passes_the_redshift(shipped, holdout):
    # the analyzer takes z like the estimator; without one it reads meta['z']
    from spectralnn.analysis import anomaly_score

    some = holdout[:4]
    z = np.asarray(some.meta["z"], dtype=float)
    direct = shipped.anomaly_score(some, z=z)
    via = anomaly_score(some, z=z, estimator=shipped)
    np.testing.assert_allclose(np.asarray(via), direct, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(anomaly_score(some, estimator=shipped)), direct,
                               rtol=1e-6)
    # a wrong redshift draws the lines in the wrong place: a worse score
    shifted = np.asarray(anomaly_score(some, z=z + 0.05, estimator=shipped))
    assert np.all(shifted > direct)
