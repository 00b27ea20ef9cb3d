"""The Keras 3 QuasarNET replica: stored outputs, preprocessing and decoder."""

import warnings

import numpy as np
import pytest

from spectralnn.errors import ModelFileError
from spectralnn.models.quasarnet import (
    QUASARNET_LINES,
    build_quasarnet,
    load_quasarnet,
    load_quasarnet_weights,
    quasarnet_preprocess,
    quasarnet_redshift,
    quasarnet_wavelength,
    read_quasarnet_config,
)

pytest.importorskip("keras")
h5py = pytest.importorskip("h5py")


@pytest.fixture(scope="module")
def qnp(real_data):
    """QuasarNP's test files (weights, inputs, reference outputs)."""
    folder = real_data / "desi" / "quasarnp"
    if not (folder / "test_weights_6_layer.h5").exists():
        pytest.skip(f"QuasarNP test files not available in {folder}")
    return folder


def _run(model, x):
    out = model(x[:, :, None].astype("float32"), training=False)
    return np.stack([np.asarray(o, dtype=np.float64) for o in out])


# ------------------------------------------------------- stored raw outputs
def test_six_layer_replica_reproduces_stored_outputs(qnp):
    # the reference was computed by the original TensorFlow QuasarNET on these inputs
    x = np.load(qnp / "coadd_x.npy")
    expected = np.load(qnp / "qnet_output_6_layer.npy")
    model = load_quasarnet(qnp / "test_weights_6_layer.h5")
    got = _run(model, x)
    assert got.shape == expected.shape == (7, 24, 26)
    assert np.max(np.abs(got - expected)) < 1e-4


def _numpy_quasarnet(path, x):
    """Independent NumPy forward pass straight from the HDF5 arrays (valid padding)."""
    with h5py.File(path, "r") as f:
        g = f["model_weights"]
        names = [n.decode() if isinstance(n, bytes) else n for n in g.attrs["layer_names"]]

        def w(layer, key):
            return np.asarray(g[layer][layer][f"{key}:0"], dtype=np.float64)

        bns = [n for n in names if n.startswith("batch_normalization")]
        convs = [n for n in names if n.startswith("conv_")]
        h = x[:, :, None]
        for conv, bn in zip(convs, bns, strict=False):
            kernel, bias = w(conv, "kernel"), w(conv, "bias")
            k = kernel.shape[0]
            windows = np.lib.stride_tricks.sliding_window_view(h, k, axis=1)[:, ::2]
            h = np.einsum("nlck,kcf->nlf", windows, kernel) + bias
            h = (h - w(bn, "moving_mean")) / np.sqrt(w(bn, "moving_variance") + 1e-3)
            h = np.maximum(h * w(bn, "gamma") + w(bn, "beta"), 0.0)
        h = h.reshape(len(h), -1) @ w("fc_common", "kernel") + w("fc_common", "bias")
        bn = bns[len(convs)]
        h = (h - w(bn, "moving_mean")) / np.sqrt(w(bn, "moving_variance") + 1e-3)
        h = np.maximum(h * w(bn, "gamma") + w(bn, "beta"), 0.0)
        out = []
        for i in range(7):
            box = 1 / (1 + np.exp(-(h @ w(f"fc_box_{i}", "kernel") + w(f"fc_box_{i}", "bias"))))
            off = 1 / (1 + np.exp(-(h @ w(f"fc_offset_{i}", "kernel")
                                    + w(f"fc_offset_{i}", "bias"))))
            out.append(np.concatenate([box, -0.1 + 1.2 * off], axis=1))
    return np.stack(out)


def test_four_layer_replica_matches_numpy_forward_pass(qnp):
    # no stored TensorFlow output ships for test_weights.h5: compare with an
    # independent NumPy evaluation of the same HDF5 arrays on the real inputs
    path = qnp / "test_weights.h5"
    config = read_quasarnet_config(path)
    assert (config["n_layers"], config["filters"], config["padding"]) == (4, 25, "valid")
    x = np.load(qnp / "coadd_x.npy")
    got = _run(load_quasarnet(path), x)
    expected = _numpy_quasarnet(path, x)
    assert np.max(np.abs(got - expected)) < 1e-4
    assert np.ptp(got[:, :, :13]) > 0.1  # real, varying confidences, not a constant


def test_load_rejects_wrong_architecture(qnp):
    model = build_quasarnet(4, filters=100, dense_units=100, padding="valid")
    with pytest.raises(ModelFileError, match="shape"):
        load_quasarnet_weights(model, qnp / "test_weights.h5")
    with pytest.raises(ModelFileError, match="batch normalisations"):
        load_quasarnet_weights(build_quasarnet(3, filters=25, dense_units=25),
                               qnp / "test_weights.h5")


# ------------------------------------------------------------ preprocessing
def test_preprocess_reproduces_quasarnp_inputs(qnp):
    from astropy.io import fits

    expected = np.load(qnp / "coadd_x.npy")
    with fits.open(qnp / "test_coadd.fits") as hdul:
        arms = [[hdul[f"{arm}_{kind}"].data for arm in "BRZ"]
                for kind in ("WAVELENGTH", "FLUX", "IVAR")]
    x, usable = quasarnet_preprocess(*arms)
    assert np.flatnonzero(~usable).tolist() == [11]  # QuasarNP drops fibre 11
    # float32 file values: agreement to ~1e-6 of values up to ~30
    assert np.max(np.abs(x[usable] - expected)) < 1e-5

    # the same through spectralnn.io (arms merged by inverse-variance weight)
    from spectralnn.io import read_desi_coadd

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        batch = read_desi_coadd(qnp / "test_coadd.fits")
    x2, usable2 = quasarnet_preprocess(batch.wavelength, batch.flux, batch.ivar,
                                       mask=batch.mask)
    np.testing.assert_array_equal(usable2, usable)
    assert np.max(np.abs(x2[usable] - expected)) < 1e-5


def test_preprocess_normalises_and_is_scale_free():
    rng = np.random.default_rng(1)
    wave = np.arange(3600.0, 9824.0, 0.8)
    flux = 5 + np.sin(wave / 70.0)[None, :] + rng.normal(0, 0.3, (3, wave.size))
    ivar = rng.uniform(1, 4, flux.shape)
    x, usable = quasarnet_preprocess(wave, flux, ivar)
    assert usable.all()
    # rebinned weights: each grid pixel's summed ivar
    bins = np.floor(np.log10(wave / 3600.0) / 1e-3).astype(int)
    den = np.stack([np.bincount(bins, weights=row, minlength=443)[:443] for row in ivar])
    np.testing.assert_allclose(np.sum(den * x, axis=1) / den.sum(axis=1), 0, atol=1e-10)
    np.testing.assert_allclose(np.sum(den * x**2, axis=1) / den.sum(axis=1), 1, rtol=1e-10)
    # a flux unit (any scale) and an offset-free rescaling change nothing
    x10, _ = quasarnet_preprocess(wave, 10 * flux, ivar / 100)
    np.testing.assert_allclose(x10, x, atol=1e-10)
    # masked pixels count as zero weight
    mask = np.zeros(flux.shape, bool)
    mask[:, 100:200] = True
    xm, _ = quasarnet_preprocess(wave, np.where(mask, 1e6, flux), ivar, mask=mask)
    xz, _ = quasarnet_preprocess(wave, flux, np.where(mask, 0.0, ivar))
    np.testing.assert_allclose(xm, xz, atol=1e-10)
    # split into two overlapping arms: overlaps add, as QuasarNP sums arms
    a, b = slice(0, 3000), slice(2900, wave.size)
    xa, _ = quasarnet_preprocess([wave[a], wave[b]], [flux[:, a], flux[:, b]],
                                 [ivar[:, a], ivar[:, b]])
    iv2 = ivar.copy()
    iv2[:, 2900:3000] *= 2
    np.testing.assert_allclose(xa, quasarnet_preprocess(wave, flux, iv2)[0], atol=1e-10)


# ----------------------------------------------------------------- decoder
def _outputs_for(z, confident):
    """Network outputs placing every line at its observed position for redshift z."""
    n = len(z)
    out = np.full((7, n, 26), 0.02)
    rest = [q.to_value("AA") for q in QUASARNET_LINES.values()] + [1548.2049]
    for k, lam in enumerate(rest):
        pixel = np.log10(lam * (1 + z) / 3600.0) / 1e-3
        pos = pixel * 13 / 443
        inside = (pos >= 0) & (pos < 13)
        box = np.clip(np.floor(pos), 0, 12).astype(int)
        rows = np.flatnonzero(inside)
        out[k, rows, box[rows]] = np.where(confident[rows], 0.97, 0.3)
        out[k, rows, 13 + box[rows]] = (pos - box)[rows]
    return out


def test_decoder_recovers_redshift_on_synthetic_outputs():
    z = np.array([0.3, 1.1, 2.4, 3.5, 1.8])
    confident = np.array([True, True, True, True, False])
    table = quasarnet_redshift(_outputs_for(z, confident))
    assert table["is_qso"].tolist() == confident.tolist()
    # linear interpolation of λ between pixels vs the exact log grid: < 1e-3 in z
    np.testing.assert_allclose(table["z"][confident], z[confident], atol=2e-3)
    # at z = 2.4 Lyα, C IV, C III] and Mg II fall on the grid; Hβ and Hα do not
    row = table[2]
    assert row["n_detected"] == 4 and row["conf_Hbeta"] < 0.1
    np.testing.assert_allclose([row["z_LYA"], row["z_CIV"], row["z_CIII"], row["z_MgII"]],
                               2.4, atol=2e-3)
    # lines on the grid: 3 (z=0.3), 2 (1.1), 4 (2.4), 3 (3.5): only z=2.4 has four
    strict = quasarnet_redshift(_outputs_for(z, confident), n_lines=4)
    assert strict["is_qso"].tolist() == [False, False, True, False, False]
    # the BAL C IV box is confident where C IV is on the grid (z > 1.33)
    assert table["is_bal"].tolist() == [False, False, True, True, False]
    # a low threshold also accepts the weak (0.3) lines of the last spectrum
    assert quasarnet_redshift(_outputs_for(z, confident), c_th=0.2)["is_qso"].all()


def test_decoder_matches_quasarnp_reference(qnp):
    preds = np.load(qnp / "predict_data.npy")
    conf = np.load(qnp / "predict_lya.npy")
    z_bal = np.load(qnp / "predict_bal.npy")[0]
    table = quasarnet_redshift(list(preds))
    got = np.stack([table[f"conf_{name}"] for name in QUASARNET_LINES])
    np.testing.assert_allclose(got, conf, rtol=0, atol=1e-12)
    # one C IV beyond the red end of the grid (z > 5.4) is held there, not extrapolated
    on_grid = z_bal < (quasarnet_wavelength()[-1].value / 1548.2049 - 1)
    np.testing.assert_allclose(table["z_BAL_CIV"][on_grid], z_bal[on_grid], atol=1e-10)
    np.testing.assert_allclose(table["z_BAL_CIV"], z_bal, rtol=1e-2)


def test_decoder_validates_outputs():
    with pytest.raises(ValueError, match="7 arrays"):
        quasarnet_redshift(np.zeros((6, 2, 26)))
    with pytest.raises(ValueError, match="c_th"):
        quasarnet_redshift(np.zeros((7, 2, 26)), c_th=2.0)
