"""Tests of SpectrumAutoencoder: χ² honesty, training, anomalies, weights."""

import numpy as np
import pytest
from astropy import units as u
from astropy.table import QTable

from spectralnn import SpectrumBatch
from spectralnn.batch import FLUX_UNIT
from spectralnn.errors import ModelFileError
from spectralnn.estimators import SpectrumAutoencoder, inject_anomalies
from spectralnn.estimators.autoencoder import AUTOENCODER_PREPROCESSING, _chi2

keras = pytest.importorskip("keras")

#: a 97-pixel grid keeps the toy networks fast
TOY_PREPROCESSING = {
    "steps": ["resample", "normalize"],
    "grid": {"start": 4000.0, "stop": 5000.0, "dloglam": 1e-3},
    "normalization": "median",
    "channels": ["flux", "mask", "ivar"],
    "min_good_fraction": 0.5,
}
TOY_OPTIONS = {"filters": [16, 16], "kernel_size": 5, "decoder_units": [64]}


def toy_batch(n, *, seed, snr=5.0):
    """A two-parameter family: a sloped continuum and one Gaussian line, with noise."""
    rng = np.random.default_rng(seed)
    wave = 4000.0 * 10 ** (1e-4 * np.arange(969))  # 4000-4999 Å
    slope = rng.uniform(-0.5, 0.5, n)
    amplitude = rng.uniform(0.0, 3.0, n)
    x = (wave - 4500.0) / 500.0
    model = 1.0 + slope[:, None] * x + amplitude[:, None] * np.exp(
        -0.5 * ((wave - 4500.0) / 15.0) ** 2)
    sigma = 1.0 / snr
    flux = (model + sigma * rng.standard_normal(model.shape)) * 3.0
    ivar = np.full(flux.shape, 1.0 / (3.0 * sigma) ** 2)
    meta = QTable({"object_id": np.arange(n), "amplitude": amplitude})
    return SpectrumBatch(wave * u.AA, flux * FLUX_UNIT, ivar, meta=meta)


def roc_auc(normal, anomalous):
    """Probability that an anomaly scores above a normal spectrum (ties count half)."""
    a = np.asarray(anomalous)[:, None]
    b = np.asarray(normal)[None, :]
    return float(np.mean((a > b) + 0.5 * (a == b)))


@pytest.fixture(scope="module")
def toy_model():
    ae = SpectrumAutoencoder("autoencoder", latent_dim=2, preprocessing=TOY_PREPROCESSING,
                             architecture_options=TOY_OPTIONS)
    ae.fit(toy_batch(600, seed=1), epochs=60, patience=60, seed=0, batch_size=32,
           loss="log_chi2")
    return ae


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
    ae = SpectrumAutoencoder("autoencoder", latent_dim=4)
    assert ae.latent_dim == 4 and ae.pipeline.n_pixels == 1792
    assert ae.metadata["preprocessing"]["grid"] == AUTOENCODER_PREPROCESSING["grid"]
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


def test_toy_glitches_rank_above_normal_spectra(toy_model):
    test = toy_batch(100, seed=4)
    glitched = inject_anomalies(test, "glitch", seed=5)
    assert roc_auc(toy_model.anomaly_score(test),
                   toy_model.anomaly_score(glitched)) >= 0.95


def test_predict_table_decode_and_reconstruct(toy_model):
    test = toy_batch(5, seed=6)
    empty = SpectrumBatch(test.wavelength * u.AA, np.zeros((1, test.n_pixels)) * FLUX_UNIT,
                          np.zeros((1, test.n_pixels)))
    from spectralnn.batch import concatenate

    with pytest.warns(Warning, match="could not be used"):
        table = toy_model.predict(concatenate([test, empty]))
    assert table["latent"].shape == (6, 2)
    assert np.all(np.isfinite(table["chi2_per_pixel"][:5]))
    assert np.isnan(table["chi2_per_pixel"][5]) and table["flags"][5] != 0
    assert np.allclose(table["chi2_per_pixel_err"][:5], np.sqrt(2.0 / table["n_good"][:5]))
    assert table.meta["task"] == "autoencoder"
    decoded = toy_model.decode(table["latent"][:5])
    assert decoded.flux.shape == (5, toy_model.pipeline.n_pixels)
    recon = toy_model.reconstruct(test)
    # the reconstruction, scaled back, matches the decoded normalised flux
    assert np.allclose(recon.flux / np.median(recon.flux, axis=1, keepdims=True),
                       decoded.flux / np.median(decoded.flux, axis=1, keepdims=True),
                       rtol=0.05)
    with pytest.raises(ValueError, match="latents must have shape"):
        toy_model.decode(np.zeros((2, 3)))


def test_save_load_roundtrip_and_tampering(toy_model, tmp_path):
    path = toy_model.save(tmp_path / "toy-ae", name="toy-ae")
    loaded = SpectrumAutoencoder.load(path)
    test = toy_batch(4, seed=7)
    assert np.allclose(loaded.encode(test), toy_model.encode(test), atol=1e-5)
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
    assert shipped.latent_dim == 10 and shipped.pipeline.n_pixels == 1792
    holdout_metrics = meta["metrics"]["holdout"]
    assert holdout_metrics["seed"] != 1 and holdout_metrics["n"] >= 1000
    assert 0 < meta["decision"]["threshold"]


def test_shipped_model_reconstructs_better_than_the_mean_spectrum(shipped, holdout):
    score = shipped.anomaly_score(holdout)
    prepared = shipped.pipeline(holdout)
    from spectralnn.estimators.autoencoder import _normalised

    flux, weight = _normalised(prepared)
    good = weight > 0
    mean = np.sum(flux * good, axis=0) / np.maximum(good.sum(axis=0), 1)
    trivial = _chi2(prepared, np.broadcast_to(mean, flux.shape))[0]
    assert np.nanmedian(score) < 0.25 * np.nanmedian(trivial)
    # stars, the simplest family, are drawn closest to their noise
    star = np.asarray(holdout.meta["class"]) == "STAR"
    assert np.nanmedian(score[star]) < np.nanmedian(score[~star])


def test_injected_anomalies_raise_the_score_of_their_spectrum(shipped, holdout):
    # paired: the same spectrum with and without the anomaly
    normal = shipped.anomaly_score(holdout)
    for kind in ("broad_line", "glitch"):
        odd = shipped.anomaly_score(inject_anomalies(holdout, kind, seed=11))
        ok = np.isfinite(normal) & np.isfinite(odd)
        assert np.mean(odd[ok] > normal[ok]) > 0.9, kind


def test_latents_separate_the_classes(shipped, holdout):
    from spectralnn.visualization import plot_latent_space

    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    latents = shipped.encode(holdout)
    labels = np.asarray(holdout.meta["class"]).astype(str)
    ok = np.all(np.isfinite(latents), axis=1)
    latents, labels = latents[ok], labels[ok]
    # nearest neighbour in the standardised latents (leave-one-out): the 10
    # numbers carry the class although the network never saw a label (0.91
    # here; 0.99 for the 3,000 spectra of the documentation's hold-out)
    z = (latents - latents.mean(0)) / latents.std(0)
    dist = np.sum((z[:, None] - z[None]) ** 2, axis=-1)
    np.fill_diagonal(dist, np.inf)
    assert np.mean(labels[np.argmin(dist, axis=1)] == labels) > 0.8
    ax = plot_latent_space(latents, labels)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert [t.split(" ")[0] for t in legend] == ["GALAXY", "QSO", "STAR"]
    import matplotlib.pyplot as plt

    plt.close("all")
