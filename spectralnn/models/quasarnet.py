"""
A Keras 3 replica of QuasarNET, to compare spectralnn with a published peer.

QuasarNET (Busca & Balland 2018, arXiv:1808.09955 [1]_) poses quasar
classification and redshifting as line *detection*: the observed-frame
spectrum, rebinned onto 443 log-λ pixels (3600–10000 Å, Δlog10λ = 1e-3) and
normalised to zero mean and unit rms (inverse-variance weighted), goes
through a stack of ``Conv1D`` layers (kernel 10, stride 2, each followed by
batch normalisation and ReLU; dropout 0.2 in training), a flattening, one
dense layer with batch normalisation and ReLU, and then, for every line
(Lyα, C IV, C III], Mg II, Hβ, Hα and a BAL C IV feature), two dense
sigmoid layers over ``n_boxes`` = 13 boxes that tile the grid: the
confidence that the line sits in each box, and its offset inside the box.
The offsets of the trained networks are mapped from (0, 1) to (-0.1, 1.1)
(``-0.1 + 1.2 × sigmoid``), so a line can sit slightly outside its box.

This module rebuilds that network with named Keras 3 layers, loads the
weights of a Keras 2 HDF5 file with `h5py` alone (arrays only: no pickled or
marshalled code is run, and the file's ``Lambda`` layer is recognised from
its numeric constants, not executed), implements QuasarNET's preprocessing
of a spectrum (its bin assignment and normalisation, vectorised) and its
decision rule (`quasarnet_redshift`). It exists to benchmark spectralnn's
`~spectralnn.estimators.SpectralClassifier` and
`~spectralnn.estimators.RedshiftEstimator` against the peer on the same
spectra (``benchmarks/bench_classify.py``, ``docs/quasarnet.rst``).

The conventions (bin assignment, the ivar-weighted sums, the box decoding,
the line list and its rest wavelengths) follow the QuasarNET and QuasarNP
(the DESI NumPy port [2]_) documentation; the rest
wavelengths are QuasarNET's own (``Halpha`` 6562.8 Å is the air value
QuasarNET uses; the vacuum value is 6564.61 Å), kept so that redshifts match
the peer's.

References
----------
.. [1] Busca, N. & Balland, C. 2018, "QuasarNET: Human-level spectral
   classification and redshifting with Deep Neural Networks",
   arXiv:1808.09955
.. [2] QuasarNP, https://github.com/desihub/QuasarNP (MIT licence)

Examples
--------
>>> import numpy as np
>>> from spectralnn.models.quasarnet import quasarnet_wavelength
>>> wave = quasarnet_wavelength()
>>> wave.size, round(float(wave[0].value)), round(float(wave[-1].value))
(443, 3600, 9961)
"""

import json
import os
import struct

import numpy as np
from astropy import units as u
from astropy.table import QTable

from ..errors import InvalidSpectrumError, ModelFileError

__all__ = [
    "QUASARNET_LINES",
    "QUASARNET_BAL_LINES",
    "quasarnet_wavelength",
    "build_quasarnet",
    "read_quasarnet_config",
    "load_quasarnet_weights",
    "load_quasarnet",
    "quasarnet_preprocess",
    "quasarnet_redshift",
]

#: log10 of the first wavelength (Å) and the step of the QuasarNET grid
_LOG_MIN = np.log10(3600.0)
_LOG_MAX = np.log10(10000.0)
_DLOG = 1e-3
#: 443: the bins of width 1e-3 in log10 λ that fit in 3600–10000 Å
N_PIXELS = int((_LOG_MAX - _LOG_MIN) / _DLOG)

#: Emission lines of the trained QuasarNET networks, in output order, with
#: QuasarNET's rest wavelengths (Å).
QUASARNET_LINES = {
    "LYA": 1215.67 * u.AA,
    "CIV": 1548.2049 * u.AA,
    "CIII": 1908.734 * u.AA,
    "MgII": 2796.3511 * u.AA,
    "Hbeta": 4862.68 * u.AA,
    "Halpha": 6562.8 * u.AA,
}

#: BAL features (outputs after the emission lines).
QUASARNET_BAL_LINES = {"CIV": 1548.2049 * u.AA}

#: offset = a + b * sigmoid in the trained networks (a Keras ``Lambda``)
_OFFSET_TRANSFORM = (-0.1, 1.2)


def quasarnet_wavelength() -> u.Quantity:
    """
    The QuasarNET wavelength grid: pixel start wavelengths, 10**(log10 3600 + 1e-3 i).

    Returns
    -------
    wave : `~astropy.units.Quantity`
        Shape ``(443,)``, in Å (the lower edge of each pixel, as in QuasarNET:
        a wavelength λ falls in pixel ``floor((log10 λ - log10 3600) / 1e-3)``).

    Examples
    --------
    >>> quasarnet_wavelength()[:2]
    <Quantity [3600.        , 3608.29885708] Angstrom>
    """
    return 10 ** (_LOG_MIN + _DLOG * np.arange(N_PIXELS)) * u.AA


# ------------------------------------------------------------------ network
def build_quasarnet(
    n_layers: int = 4,
    *,
    filters: int = 100,
    kernel_size: int = 10,
    strides: int = 2,
    padding: str = "same",
    dense_units: int = 100,
    n_lines: int = 7,
    n_boxes: int = 13,
    n_pixels: int = N_PIXELS,
    dropout: float = 0.2,
    offset_transform: tuple | None = _OFFSET_TRANSFORM,
    name: str = "QuasarNET",
):
    """
    Build the QuasarNET network (Busca & Balland 2018) as a Keras 3 model.

    Parameters
    ----------
    n_layers : int, optional
        Number of ``Conv1D`` + batch-norm + ReLU (+ dropout) blocks. Default
        4 (the paper); DESI also trained 6-layer networks.
    filters : int, optional
        Filters per convolution. Default 100 (the paper).
    kernel_size, strides : int, optional
        Convolution kernel and stride. Default 10 and 2 (the paper).
    padding : {'same', 'valid'}, optional
        Convolution padding. Default ``'same'``; some trained files use
        ``'valid'`` (see `read_quasarnet_config`).
    dense_units : int, optional
        Width of the common dense layer. Default 100.
    n_lines : int, optional
        Number of line outputs (emission lines plus BAL features). Default 7.
    n_boxes : int, optional
        Boxes tiling the grid per line. Default 13.
    n_pixels : int, optional
        Input length. Default 443.
    dropout : float, optional
        Dropout rate after each convolution block (active in training only).
        Default 0.2.
    offset_transform : tuple of two floats or None, optional
        ``(a, b)``: box offsets are ``a + b * sigmoid``. Default (-0.1, 1.2),
        as in the trained networks; None for plain sigmoid offsets.
    name : str, optional
        Model name. Default ``'QuasarNET'``.

    Returns
    -------
    model : `keras.Model`
        Input ``(n_pixels, 1)``, the normalised flux (`quasarnet_preprocess`);
        ``n_lines`` outputs ``conc_box_k`` of shape ``(N, 2 * n_boxes)``: the
        box confidences then the box offsets of line ``k``. Layers are named
        as in QuasarNET files (``conv_i``, ``fc_common``, ``fc_box_k``,
        ``fc_offset_k``), so `load_quasarnet_weights` can fill them.

    Examples
    --------
    >>> from spectralnn.models.quasarnet import build_quasarnet
    >>> model = build_quasarnet(6)
    >>> len(model.outputs), tuple(model.outputs[0].shape)
    (7, (None, 26))
    """
    import keras

    if n_layers < 1 or filters < 1 or dense_units < 1 or n_lines < 1 or n_boxes < 1:
        raise ValueError("n_layers, filters, dense_units, n_lines and n_boxes must be >= 1")
    if padding not in ("same", "valid"):
        raise ValueError(f"padding must be 'same' or 'valid', not {padding!r}")
    layers = keras.layers
    inputs = keras.Input((n_pixels, 1), name="flux")
    x = inputs
    for i in range(1, n_layers + 1):
        x = layers.Conv1D(filters, kernel_size, strides=strides, padding=padding,
                          name=f"conv_{i}")(x)
        x = layers.BatchNormalization(epsilon=1e-3, name=f"bn_conv_{i}")(x)
        x = layers.Activation("relu", name=f"relu_{i}")(x)
        if dropout:
            x = layers.Dropout(dropout, name=f"dropout_{i}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(dense_units, name="fc_common")(x)
    x = layers.BatchNormalization(epsilon=1e-3, name="bn_fc")(x)
    x = layers.Activation("relu", name="fc_activation")(x)
    outputs = []
    for k in range(n_lines):
        box = layers.Dense(n_boxes, activation="sigmoid", name=f"fc_box_{k}")(x)
        offset = layers.Dense(n_boxes, activation="sigmoid", name=f"fc_offset_{k}")(x)
        if offset_transform is not None:
            a, b = (float(v) for v in offset_transform)
            offset = layers.Rescaling(scale=b, offset=a, name=f"rescale_offset_{k}")(offset)
        outputs.append(layers.Concatenate(name=f"conc_box_{k}")([box, offset]))
    return keras.Model(inputs, outputs, name=name)


def _h5_text(value):
    return value.decode() if isinstance(value, bytes) else str(value)


def _offset_transform_of(lambda_config):
    """(-0.1, 1.2) if a Keras 2 Lambda holds those constants, else None.

    The Lambda is a marshalled Python function; it is never unmarshalled or
    run. Its float constants are stored as little-endian doubles after a
    ``'g'`` type byte, so the trained QuasarNET rescaling is recognised by
    looking for those two byte strings.
    """
    import base64

    function = lambda_config.get("function")
    if isinstance(function, (list, tuple)):
        function = function[0]
    try:
        raw = base64.b64decode(function)
    except (TypeError, ValueError):
        return None
    a, b = _OFFSET_TRANSFORM
    if struct.pack("<d", a) in raw and struct.pack("<d", b) in raw:
        return _OFFSET_TRANSFORM
    return None


def read_quasarnet_config(path: str | os.PathLike) -> dict:
    """
    Architecture of a QuasarNET Keras 2 HDF5 file, as `build_quasarnet` keywords.

    Reads the file's ``model_config`` attribute (JSON, parsed with `json`;
    nothing in it is executed) and checks that it is a QuasarNET network:
    ``Conv1D`` blocks, one common dense layer, ``fc_box_k``/``fc_offset_k``
    pairs.

    Parameters
    ----------
    path : str or path-like
        The ``.h5`` file (a full model file, or weights with a
        ``model_config`` attribute).

    Returns
    -------
    config : dict
        ``n_layers``, ``filters``, ``kernel_size``, ``strides``, ``padding``,
        ``dense_units``, ``n_lines``, ``n_boxes``, ``n_pixels``,
        ``offset_transform``.

    Raises
    ------
    spectralnn.errors.ModelFileError
        If the file is missing, not HDF5, has no ``model_config``, or is not
        a QuasarNET network (for example a ``Lambda`` this module does not
        recognise).

    Examples
    --------
    >>> from spectralnn.models.quasarnet import read_quasarnet_config
    >>> try:
    ...     read_quasarnet_config("no-such-file.h5")
    ... except Exception as exc:
    ...     print(type(exc).__name__)
    ModelFileError
    """
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if "model_config" not in f.attrs:
                raise ModelFileError(f"{path}: no model_config attribute (not a Keras file)")
            config = json.loads(_h5_text(f.attrs["model_config"]))
    except (OSError, ValueError) as exc:
        if isinstance(exc, ModelFileError):
            raise
        raise ModelFileError(f"{path}: cannot read a QuasarNET HDF5 file ({exc})") from exc
    try:
        return _config_from_json(config, path)
    except (KeyError, TypeError, IndexError, AttributeError) as exc:
        raise ModelFileError(f"{path}: malformed QuasarNET model_config ({exc!r})") from exc


def _config_from_json(config, path):
    """`build_quasarnet` keywords from a parsed Keras 2 model_config."""
    layers = config.get("config", {}).get("layers", [])
    convs = [layer["config"] for layer in layers if layer.get("class_name") == "Conv1D"]
    dense = {layer["config"]["name"]: layer["config"] for layer in layers
             if layer.get("class_name") == "Dense"}
    lambdas = [layer["config"] for layer in layers if layer.get("class_name") == "Lambda"]
    inputs = [layer["config"] for layer in layers if layer.get("class_name") == "InputLayer"]
    boxes = sorted(name for name in dense if name.startswith("fc_box_"))
    if not convs or "fc_common" not in dense or not boxes:
        raise ModelFileError(f"{path}: not a QuasarNET network (Conv1D/fc_common/fc_box_*)")
    first = convs[0]
    for conv in convs:
        for key in ("filters", "kernel_size", "strides", "padding"):
            if conv[key] != first[key]:
                raise ModelFileError(f"{path}: convolutions differ in {key}; not supported")
    offset_transform = None
    if lambdas:
        transforms = {_offset_transform_of(lam) for lam in lambdas}
        if len(transforms) != 1 or None in transforms:
            raise ModelFileError(
                f"{path}: the offsets pass through a Lambda layer whose function is not "
                "QuasarNET's -0.1 + 1.2 x; it is not run, so it cannot be reproduced"
            )
        offset_transform = transforms.pop()
    shape = (inputs[0].get("batch_input_shape") or inputs[0].get("batch_shape")
             if inputs else [None, N_PIXELS, 1])
    return {
        "n_layers": len(convs),
        "filters": int(first["filters"]),
        "kernel_size": int(np.ravel(first["kernel_size"])[0]),
        "strides": int(np.ravel(first["strides"])[0]),
        "padding": str(first["padding"]),
        "dense_units": int(dense["fc_common"]["units"]),
        "n_lines": len(boxes),
        "n_boxes": int(dense[boxes[0]]["units"]),
        "n_pixels": int(shape[1]),
        "offset_transform": offset_transform,
    }


def _read_h5_weights(path):
    """{layer name: {weight suffix: array}} and the layer order, from a Keras 2 file."""
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot open as HDF5 ({exc})") from exc
    with f:
        group = f["model_weights"] if "model_weights" in f else f
        if "layer_names" not in group.attrs:
            raise ModelFileError(f"{path}: no Keras 2 weights (layer_names attribute missing)")
        order = [_h5_text(name) for name in group.attrs["layer_names"]]
        weights = {}
        for name in order:
            if name not in group:
                raise ModelFileError(f"{path}: layer {name!r} listed but not stored")
            layer = group[name]
            names = [_h5_text(n) for n in layer.attrs.get("weight_names", [])]
            if not names:
                continue
            values = {}
            for full in names:
                data = layer.get(full)
                if not isinstance(data, h5py.Dataset):
                    raise ModelFileError(f"{path}: {name}/{full} is not a dataset")
                values[full.rsplit("/", 1)[-1].split(":")[0]] = np.asarray(data[()])
            weights[name] = values
    return weights, order


_BN_ORDER = ("gamma", "beta", "moving_mean", "moving_variance")
_DENSE_ORDER = ("kernel", "bias")


def load_quasarnet_weights(model, path: str | os.PathLike):
    """
    Fill a `build_quasarnet` model with the weights of a QuasarNET HDF5 file.

    The file is read with `h5py` as plain arrays (``model_weights`` group of a
    Keras 2 model file, or the root of a weights file). Convolution and dense
    layers are matched by name (``conv_i``, ``fc_common``, ``fc_box_k``,
    ``fc_offset_k``); batch normalisations by order (their names depend on
    the Keras version that wrote the file): one after each convolution, then
    the one after ``fc_common``. Every weighted layer of the model must be
    filled with arrays of the right shape.

    Parameters
    ----------
    model : `keras.Model`
        From `build_quasarnet` with the file's architecture (see
        `read_quasarnet_config`).
    path : str or path-like
        The ``.h5`` file.

    Returns
    -------
    model : `keras.Model`
        The same model, with its weights set.

    Raises
    ------
    spectralnn.errors.ModelFileError
        If the file cannot be read, lacks a layer of the model, or a shape
        does not match.

    Examples
    --------
    >>> from spectralnn.models.quasarnet import build_quasarnet, load_quasarnet_weights
    >>> model = build_quasarnet(4, filters=25, dense_units=25, padding="valid")
    >>> try:
    ...     load_quasarnet_weights(model, "no-such-file.h5")
    ... except Exception as exc:
    ...     print(type(exc).__name__)
    ModelFileError
    """
    weights, order = _read_h5_weights(path)
    bn_file = [name for name in order
               if name in weights and set(weights[name]) >= set(_BN_ORDER)]
    bn_model = [layer.name for layer in model.layers
                if layer.name.startswith("bn_") and layer.weights]
    if len(bn_file) != len(bn_model):
        raise ModelFileError(
            f"{path}: {len(bn_file)} batch normalisations in the file, "
            f"{len(bn_model)} in the model; build the model with read_quasarnet_config"
        )
    source = dict(zip(bn_model, bn_file, strict=True))
    for layer in model.layers:
        if not layer.weights:
            continue
        name = source.get(layer.name, layer.name)
        if name not in weights:
            raise ModelFileError(f"{path}: no weights for layer {layer.name!r}")
        keys = _BN_ORDER if layer.name.startswith("bn_") else _DENSE_ORDER
        arrays = []
        for key, variable in zip(keys, layer.weights, strict=True):
            if key not in weights[name]:
                raise ModelFileError(f"{path}: layer {name!r} has no {key!r} weights")
            value = weights[name][key]
            if tuple(value.shape) != tuple(variable.shape):
                raise ModelFileError(
                    f"{path}: {name}/{key} has shape {value.shape}, the model expects "
                    f"{tuple(variable.shape)}; build it with read_quasarnet_config"
                )
            arrays.append(value)
        layer.set_weights(arrays)
    return model


def load_quasarnet(path: str | os.PathLike):
    """
    Build a QuasarNET replica with the architecture of an HDF5 file and load its weights.

    Parameters
    ----------
    path : str or path-like
        A QuasarNET Keras 2 ``.h5`` file.

    Returns
    -------
    model : `keras.Model`
        See `build_quasarnet`.

    Raises
    ------
    spectralnn.errors.ModelFileError
        See `read_quasarnet_config` and `load_quasarnet_weights`.

    Examples
    --------
    >>> from spectralnn.models.quasarnet import load_quasarnet
    >>> model = load_quasarnet("test_weights_6_layer.h5")  # doctest: +SKIP
    >>> len(model.outputs)  # doctest: +SKIP
    7
    """
    config = read_quasarnet_config(path)
    model = build_quasarnet(**config)
    return load_quasarnet_weights(model, path)


# ------------------------------------------------------------ preprocessing
def _as_angstrom(wave):
    if isinstance(wave, u.Quantity):
        return np.asarray(wave.to_value(u.AA, equivalencies=u.spectral()), dtype=np.float64)
    return np.asarray(wave, dtype=np.float64)


def _concat_arms(values):
    """One 2-D float array from an array or a sequence of per-arm arrays (joined on pixels)."""
    if isinstance(values, (list, tuple)):
        return np.concatenate([np.atleast_2d(np.asarray(
            v.value if isinstance(v, u.Quantity) else v, dtype=np.float64)) for v in values],
            axis=-1)
    return np.atleast_2d(np.asarray(values.value if isinstance(values, u.Quantity) else values,
                                    dtype=np.float64))


def quasarnet_preprocess(wave, flux, ivar, mask=None) -> tuple[np.ndarray, np.ndarray]:
    """
    QuasarNET's input from spectra: rebin onto its log-λ grid, then normalise.

    As in QuasarNET and QuasarNP: every input pixel goes to the grid pixel
    ``floor((log10 λ - log10 3600) / 1e-3)`` (pixels outside 0–442 are
    dropped); a grid pixel holds ``Σ flux·ivar / Σ ivar`` over its input
    pixels (0 where ``Σ ivar = 0``); then each spectrum has its
    inverse-variance weighted mean subtracted and is divided by its weighted
    rms. Several spectrograph arms can be given as sequences: their
    overlapping pixels add up, as when QuasarNP sums the rebinned arms of a
    DESI coadd. Vectorised over spectra (sums over runs of input pixels).

    Parameters
    ----------
    wave : `~astropy.units.Quantity`, array-like or sequence of them
        Observed wavelengths (Å if not a Quantity), shape ``(M,)``, or one
        array per arm.
    flux : array-like or sequence of array-like
        Shape ``(N, M)`` (or ``(M,)`` for one spectrum), or one per arm. Any
        unit: the normalisation removes it.
    ivar : array-like or sequence of array-like
        Inverse variances, same shapes.
    mask : array-like of bool or sequence, optional
        True for bad pixels (given zero weight). Non-finite fluxes and
        inverse variances and negative inverse variances are always given
        zero weight.

    Returns
    -------
    x : `~numpy.ndarray`
        Shape ``(N, 443)``, float64: the network input (add a trailing axis
        of 1 for the model). Rows of unusable spectra are zero.
    usable : `~numpy.ndarray` of bool
        Shape ``(N,)``: False where a spectrum has no weight on the grid (the
        rows QuasarNP drops) or a zero rms.

    Raises
    ------
    spectralnn.errors.InvalidSpectrumError
        If the shapes do not agree.

    Examples
    --------
    >>> import numpy as np
    >>> from spectralnn.models.quasarnet import quasarnet_preprocess
    >>> wave = np.arange(3600.0, 9824.0, 0.8)
    >>> flux = np.vstack([1 + np.sin(wave / 50.0), np.zeros_like(wave)])
    >>> x, usable = quasarnet_preprocess(wave, flux, np.ones_like(flux))
    >>> x.shape, usable.tolist()
    ((2, 443), [True, False])
    """
    if isinstance(wave, (list, tuple)):
        wave = np.concatenate([_as_angstrom(w) for w in wave])
    else:
        wave = _as_angstrom(wave)
    flux = _concat_arms(flux)
    ivar = _concat_arms(ivar)
    if wave.ndim != 1 or flux.shape[-1] != wave.size or ivar.shape != flux.shape:
        raise InvalidSpectrumError(
            f"shapes disagree: wavelength {wave.shape}, flux {flux.shape}, ivar {ivar.shape}"
        )
    with np.errstate(invalid="ignore", divide="ignore"):
        bins = np.floor((np.log10(wave) - _LOG_MIN) / _DLOG)
    on = np.isfinite(bins) & (bins >= 0) & (bins < N_PIXELS)
    # input pixels on the grid, ordered by grid pixel (a no-op for one sorted grid)
    cols = np.flatnonzero(on)
    order = np.argsort(bins[cols], kind="stable")
    cols, pix = cols[order], bins[cols][order].astype(np.int64)
    shape = flux.shape
    gather = not (cols.size == wave.size and np.all(order == np.arange(cols.size)))
    if gather:
        flux, ivar = flux[:, cols], ivar[:, cols]
    if mask is not None:
        mask = _concat_arms(mask).astype(bool)
        if mask.shape != shape:
            raise InvalidSpectrumError(f"mask shape {mask.shape} != flux shape {shape}")
        if gather:
            mask = mask[:, cols]
    with np.errstate(invalid="ignore", over="ignore"):
        good = ivar > 0  # False for NaN
        good &= np.isfinite(flux * ivar)
    if mask is not None:
        good &= ~mask
    weight = np.where(good, ivar, 0.0)
    weighted = np.where(good, flux, 0.0)
    weighted *= weight
    # sums over the runs of input pixels sharing a grid pixel
    num = np.zeros((flux.shape[0], N_PIXELS))
    den = np.zeros_like(num)
    if cols.size:
        starts = np.flatnonzero(np.r_[True, pix[1:] != pix[:-1]])
        num[:, pix[starts]] = np.add.reduceat(weighted, starts, axis=1)
        den[:, pix[starts]] = np.add.reduceat(weight, starts, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        rebinned = np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)
        total = den.sum(axis=1)
        mean = (den * rebinned).sum(axis=1) / total
        rms = np.sqrt((den * (rebinned - mean[:, None]) ** 2).sum(axis=1) / total)
        usable = (total > 0) & np.isfinite(rms) & (rms > 0)
        x = np.where(usable[:, None],
                     (rebinned - mean[:, None]) / np.where(usable, rms, 1.0)[:, None], 0.0)
    return x, usable


# ----------------------------------------------------------------- decision
def _line_table(lines, default):
    if lines is None:
        lines = default
    out = {}
    for name, wavelength in dict(lines).items():
        out[str(name)] = float(u.Quantity(wavelength, u.AA).value)
    return out


def _stack_outputs(outputs, n_lines):
    if isinstance(outputs, (list, tuple)):
        arr = np.stack([np.asarray(o, dtype=np.float64) for o in outputs])
    else:
        arr = np.asarray(outputs, dtype=np.float64)
    if arr.ndim != 3 or arr.shape[0] != n_lines or arr.shape[2] % 2:
        raise ValueError(
            f"outputs must be {n_lines} arrays of shape (N, 2 * n_boxes), got shape "
            f"{arr.shape}"
        )
    return arr


def _decode(out, rest):
    """Confidence and redshift of one line from its outputs (N, 2 * n_boxes)."""
    n_boxes = out.shape[1] // 2
    rows = np.arange(out.shape[0])
    box = np.argmax(out[:, :n_boxes], axis=1)
    conf = out[rows, box]
    offset = out[rows, n_boxes + box]
    # position on the grid in pixels; np.interp holds the ends (as QuasarNET)
    pixel = (box + offset) * N_PIXELS / n_boxes
    grid = quasarnet_wavelength().value
    observed = np.interp(pixel, np.arange(N_PIXELS), grid)
    return conf, observed / rest - 1.0


def quasarnet_redshift(
    outputs,
    *,
    lines: dict | None = None,
    bal_lines: dict | None = None,
    c_th: float = 0.8,
    n_lines: int = 1,
    bal_th: float = 0.5,
) -> QTable:
    """
    QuasarNET's decision: line confidences and redshifts, class and best z.

    For each line the most confident box ``j`` gives the line's confidence
    ``c`` and, with the offset ``o`` of that box, its observed position on
    the grid, pixel ``(j + o) × 443 / n_boxes`` (linearly interpolated in
    wavelength, held at the grid ends), hence ``z = λ_obs / λ_rest - 1``. The
    redshift of a spectrum is that of its most confident emission line; it
    is a quasar when at least ``n_lines`` emission lines have ``c > c_th``
    (Busca & Balland 2018), and a BAL quasar when its BAL feature's
    confidence also exceeds ``bal_th``.

    Positions beyond the last grid pixel are held at its wavelength, as in
    QuasarNP; the original QuasarNET decoder extrapolates there, so a line
    predicted off the red end (z > 5.4 for C IV) can differ from it by up to
    ~0.03 in z.

    Parameters
    ----------
    outputs : sequence of array-like or array-like
        The network outputs: one ``(N, 2 * n_boxes)`` array per line
        (emission lines, then BAL features), or one array
        ``(n_lines, N, 2 * n_boxes)``.
    lines : dict, optional
        Emission-line name -> rest wavelength (`~astropy.units.Quantity` or
        Å), in output order. Default `QUASARNET_LINES`.
    bal_lines : dict, optional
        BAL features, after the lines. Default `QUASARNET_BAL_LINES`.
    c_th : float, optional
        Confidence above which a line is detected. Default 0.8; QuasarNP's
        documentation calls 0.5 with one line reasonable for DESI.
    n_lines : int, optional
        Lines that must be detected for a quasar. Default 1.
    bal_th : float, optional
        Confidence above which the BAL feature is detected. Default 0.5.

    Returns
    -------
    table : `~astropy.table.QTable`
        One row per spectrum: ``z`` (of the most confident line), ``is_qso``,
        ``n_detected`` (lines with ``c > c_th``), ``best_line``, ``is_bal``;
        per line ``conf_<name>`` and ``z_<name>``; per BAL feature
        ``conf_BAL_<name>`` and ``z_BAL_<name>``. QuasarNET gives no
        redshift uncertainty, so there is no ``z_err`` column.

    Examples
    --------
    A line of the first box with offset 0.5, seen with confidence 0.9 (all
    other boxes near 0):

    >>> import numpy as np
    >>> from spectralnn.models.quasarnet import quasarnet_redshift
    >>> out = np.full((7, 1, 26), 0.01)
    >>> out[0, 0, 0], out[0, 0, 13] = 0.9, 0.5      # Lyα in box 0
    >>> table = quasarnet_redshift(out)
    >>> bool(table["is_qso"][0]), str(table["best_line"][0]), round(float(table["z"][0]), 3)
    (True, 'LYA', 2.08)
    """
    lines = _line_table(lines, QUASARNET_LINES)
    bal_lines = _line_table(bal_lines, QUASARNET_BAL_LINES)
    if not 0 <= float(c_th) <= 1 or not 0 <= float(bal_th) <= 1:
        raise ValueError("c_th and bal_th must be in [0, 1]")
    if int(n_lines) < 1:
        raise ValueError(f"n_lines must be >= 1, got {n_lines}")
    arr = _stack_outputs(outputs, len(lines) + len(bal_lines))
    n = arr.shape[1]
    conf = np.empty((len(lines), n))
    zline = np.empty((len(lines), n))
    for k, rest in enumerate(lines.values()):
        conf[k], zline[k] = _decode(arr[k], rest)
    names = np.array(list(lines))
    best = np.argmax(conf, axis=0) if len(lines) else np.zeros(n, dtype=int)
    detected = np.sum(conf > c_th, axis=0)
    table = QTable()
    table["z"] = zline[best, np.arange(n)]
    table["is_qso"] = detected >= int(n_lines)
    table["n_detected"] = detected
    table["best_line"] = names[best]
    bal = {name: _decode(arr[len(lines) + k], rest)
           for k, (name, rest) in enumerate(bal_lines.items())}
    bal_conf = np.max([c for c, _ in bal.values()], axis=0) if bal else np.zeros(n)
    table["is_bal"] = table["is_qso"] & (bal_conf > bal_th)
    for k, name in enumerate(names):
        table[f"conf_{name}"] = conf[k]
        table[f"z_{name}"] = zline[k]
    for name, (c, z) in bal.items():
        table[f"conf_BAL_{name}"] = c
        table[f"z_BAL_{name}"] = z
    table.meta["decision"] = {"c_th": float(c_th), "n_lines": int(n_lines),
                              "bal_th": float(bal_th)}
    return table
