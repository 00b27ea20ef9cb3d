"""
Network architectures for 1-D spectra, built by name.

Three architectures are provided, each ending in a
`~spectralnn.models.heads.HeteroscedasticHead` (a mean and a log-variance per
target) trained with the Gaussian negative log-likelihood:

``"wren2021"``
    The CNN-LSTM of Wren (2021, "Quasar mass machine learning") [1]_: three
    ``Conv1D`` layers with batch normalisation on the middle one, two ``LSTM``
    layers and two ``Dense`` layers, trained with Nadam at a learning rate of
    1e-3 and then 1e-5. The layer sequence and optimiser follow the thesis;
    widths, kernel sizes and the pooling that shortens the sequence before the
    LSTMs are options of `build_model` with our defaults.
``"resnet1d"`` (alias ``"default"``)
    A residual 1-D convolutional network (He et al. 2016 [2]_) with strided stages
    and global average + max pooling: fast on CPU, no recurrence, and
    insensitive to where a line falls on the grid. With ``n_scalars > 0`` it
    has a second input of per-spectrum numbers (e.g. the log luminosity and
    redshift that median normalisation removes), joined to the pooled
    spectral features before the dense layer and again before the head.
``"epoch_pooling"``
    For several epochs of one object: the ``resnet1d`` encoder applied to every
    epoch, then `~spectralnn.models.layers.MaskedAttentionPooling` over the
    epochs (masked, so objects can have different numbers of epochs).

`build_autoencoder` builds a convolutional encoder and a dense decoder
around a small latent vector (`spectralnn.estimators.SpectrumAutoencoder`);
it has its own options and is not one of the regression architectures above.

`build_classifier` puts a softmax head on the ``resnet1d`` trunk instead, for
classification (`spectralnn.estimators.SpectralClassifier`), and
`build_position_regressor` flattens the trunk's last feature map instead of
pooling it, for targets that are positions on the grid (a redshift on a
log-λ grid is a shift: `spectralnn.estimators.RedshiftEstimator`), as
QuasarNET does (Busca & Balland 2018).

Keras is imported only when a network is built, so this module is cheap to
import.

References
----------
.. [1] Wren, J. 2021, "Quasar mass machine learning", thesis
.. [2] He, K., Zhang, X., Ren, S. & Sun, J. 2016, "Deep residual learning for
   image recognition", CVPR

Examples
--------
>>> from spectralnn.models.architectures import available_architectures
>>> available_architectures()
['default', 'epoch_pooling', 'resnet1d', 'wren2021']
"""

__all__ = [
    "available_architectures",
    "build_classifier",
    "autoencoder_rest_grid",
    "build_autoencoder",
    "build_model",
    "build_position_regressor",
    "resolve_architecture",
    "training_schedule",
]

_ALIASES = {"default": "resnet1d"}

#: options of each architecture and their defaults (checked by build_model)
_DEFAULT_OPTIONS = {
    "resnet1d": {
        "filters": 32,
        "stages": 4,
        "blocks_per_stage": 1,
        "kernel_size": 7,
        "dense_units": 64,
        "dropout": 0.1,
    },
    "wren2021": {
        "conv_filters": [32, 64, 64],
        "kernel_sizes": [7, 5, 3],
        "pool_size": 4,
        "lstm_units": [64, 32],
        "dense_units": [64, 32],
    },
    "epoch_pooling": {
        "filters": 32,
        "stages": 4,
        "blocks_per_stage": 1,
        "kernel_size": 7,
        "dense_units": 64,
        "dropout": 0.1,
        "attention_units": 32,
    },
}

#: optimiser and learning-rate schedule of each architecture
_SCHEDULES = {
    "resnet1d": {"optimizer": "adam", "learning_rate": 1e-3, "final_learning_rate": 1e-5},
    # Wren (2021): Nadam at 1e-3, then 1e-5
    "wren2021": {"optimizer": "nadam", "learning_rate": 1e-3, "final_learning_rate": 1e-5},
    "epoch_pooling": {"optimizer": "adam", "learning_rate": 1e-3,
                      "final_learning_rate": 1e-5},
}


def available_architectures():
    """
    Names accepted by `build_model`.

    Returns
    -------
    names : list of str
        Sorted, including the alias ``'default'``.

    Examples
    --------
    >>> "wren2021" in available_architectures()
    True
    """
    return sorted(set(_DEFAULT_OPTIONS) | set(_ALIASES))


def resolve_architecture(name, options=None):
    """
    Canonical architecture name and its full option dictionary.

    Parameters
    ----------
    name : str
        Architecture name or alias (see `available_architectures`).
    options : dict, optional
        Options overriding the defaults.

    Returns
    -------
    name : str
        Canonical name (aliases resolved).
    options : dict
        Defaults updated with ``options``.

    Raises
    ------
    ValueError
        If the name or an option is unknown.

    Examples
    --------
    >>> resolve_architecture("default", {"filters": 8})[1]["filters"]
    8
    """
    if not isinstance(name, str):
        raise TypeError(f"architecture must be a string, got {type(name).__name__}")
    canonical = _ALIASES.get(name, name)
    if canonical not in _DEFAULT_OPTIONS:
        raise ValueError(
            f"unknown architecture {name!r}; choose one of {available_architectures()}"
        )
    merged = dict(_DEFAULT_OPTIONS[canonical])
    for key, value in (options or {}).items():
        if key not in merged:
            raise ValueError(
                f"unknown option {key!r} for architecture {canonical!r}; "
                f"valid options: {sorted(merged)}"
            )
        merged[key] = value
    return canonical, merged


def training_schedule(name):
    """
    Optimiser and learning rates used to train an architecture.

    Parameters
    ----------
    name : str
        Architecture name or alias.

    Returns
    -------
    schedule : dict
        ``optimizer`` (Keras name), ``learning_rate`` (initial) and
        ``final_learning_rate`` (after the plateau drop).

    Examples
    --------
    >>> training_schedule("wren2021")["optimizer"]
    'nadam'
    """
    canonical, _ = resolve_architecture(name)
    return dict(_SCHEDULES[canonical])


def build_model(
    architecture,
    input_length,
    *,
    n_channels=2,
    n_targets=1,
    n_scalars=0,
    target_loc=0.0,
    target_scale=1.0,
    options=None,
    seed=None,
    name=None,
):
    """
    Build an (untrained) Keras model by architecture name.

    Parameters
    ----------
    architecture : str
        One of `available_architectures`.
    input_length : int
        Number of pixels of the input grid.
    n_channels : int, optional
        Channels per pixel (e.g. normalised flux and mask). Default 2.
    n_targets : int, optional
        Number of regression targets. Default 1.
    n_scalars : int, optional
        Number of scalar inputs per spectrum (a second input, ``resnet1d``
        only). Default 0.
    target_loc, target_scale : float, optional
        Offset and scale of the targets (training mean and standard
        deviation), built into the head. Default 0 and 1.
    options : dict, optional
        Architecture options overriding the defaults (see
        `resolve_architecture`).
    seed : int, optional
        Seed of the weight initialisation, for reproducible models.
    name : str, optional
        Keras model name. Default: the architecture name.

    Returns
    -------
    model : `keras.Model`
        Single-epoch architectures take input ``(batch, input_length,
        n_channels)``, plus ``(batch, n_scalars)`` as a second input when
        ``n_scalars > 0``; ``'epoch_pooling'`` takes ``[(batch, n_epochs,
        input_length, n_channels), (batch, n_epochs)]`` (spectra and epoch
        mask). The output is ``(batch, 2 * n_targets)``: means, then
        log-variances.

    Examples
    --------
    >>> model = build_model("resnet1d", 256, options={"filters": 4, "stages": 2},
    ...                     seed=0)  # doctest: +SKIP
    >>> model.output_shape  # doctest: +SKIP
    (None, 2)
    """
    import keras

    canonical, opts = resolve_architecture(architecture, options)
    input_length = int(input_length)
    if input_length < 8:
        raise ValueError(f"input_length must be at least 8 pixels, got {input_length}")
    if seed is not None:
        keras.utils.set_random_seed(int(seed))
    n_scalars = int(n_scalars)
    if n_scalars < 0:
        raise ValueError(f"n_scalars must be non-negative, got {n_scalars}")
    if n_scalars and canonical != "resnet1d":
        raise ValueError(
            f"scalar inputs are supported by 'resnet1d' only, not {canonical!r}"
        )
    builder = {
        "resnet1d": _build_resnet1d,
        "wren2021": _build_wren2021,
        "epoch_pooling": _build_epoch_pooling,
    }[canonical]
    args = (input_length, int(n_channels), int(n_targets), target_loc, target_scale,
            opts, name or canonical)
    if n_scalars:
        return builder(*args, n_scalars=n_scalars)
    return builder(*args)


def _head(x, n_targets, loc, scale):
    from .heads import HeteroscedasticHead

    return HeteroscedasticHead(n_targets, loc=loc, scale=scale, name="head")(x)


def _resnet_encoder(x, opts, scalars=None, *, keep_position=False):
    """
    Residual 1-D CNN trunk ending in a feature vector (joined to ``scalars``).

    With ``keep_position`` the last feature map is flattened instead of
    globally pooled, so the features know *where* on the grid a line is
    (what a redshift needs; global pooling is translation invariant).
    """
    from keras import layers

    filters = int(opts["filters"])
    k = int(opts["kernel_size"])
    x = layers.Conv1D(filters, k, strides=2, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)
    for stage in range(int(opts["stages"])):
        for block in range(int(opts["blocks_per_stage"])):
            stride = 2 if block == 0 else 1
            width = filters * 2 ** min(stage, 3)
            shortcut = x
            y = layers.Conv1D(width, 3, strides=stride, padding="same", use_bias=False)(x)
            y = layers.BatchNormalization()(y)
            y = layers.Activation("relu")(y)
            y = layers.Conv1D(width, 3, padding="same", use_bias=False)(y)
            y = layers.BatchNormalization()(y)
            if stride != 1 or shortcut.shape[-1] != width:
                # average-pool then 1x1 conv (the "ResNet-D" shortcut): no input
                # pixel is skipped, unlike a strided 1x1 convolution
                if stride != 1:
                    shortcut = layers.AveragePooling1D(stride, padding="same")(shortcut)
                shortcut = layers.Conv1D(width, 1, use_bias=False)(shortcut)
                shortcut = layers.BatchNormalization()(shortcut)
            x = layers.Activation("relu")(layers.Add()([y, shortcut]))
    if keep_position:
        x = layers.Flatten()(x)
    else:
        x = layers.Concatenate()(
            [layers.GlobalAveragePooling1D()(x), layers.GlobalMaxPooling1D()(x)]
        )
    if scalars is not None:
        x = layers.Concatenate()([x, scalars])
    x = layers.Dense(int(opts["dense_units"]), activation="relu")(x)
    if opts["dropout"]:
        x = layers.Dropout(float(opts["dropout"]))(x)
    if scalars is not None:
        # a direct path: a virial mass is linear in log L
        x = layers.Concatenate()([x, scalars])
    return x


def _build_resnet1d(length, channels, n_targets, loc, scale, opts, name, n_scalars=0):
    import keras

    inputs = keras.Input((length, channels), name="spectrum")
    if n_scalars:
        scalars = keras.Input((n_scalars,), name="scalars")
        features = _resnet_encoder(inputs, opts, scalars)
        inputs = [inputs, scalars]
    else:
        features = _resnet_encoder(inputs, opts)
    return keras.Model(inputs, _head(features, n_targets, loc, scale), name=name)


def _build_wren2021(length, channels, n_targets, loc, scale, opts, name):
    import keras
    from keras import layers

    filters, kernels = opts["conv_filters"], opts["kernel_sizes"]
    if len(filters) != 3 or len(kernels) != 3:
        raise ValueError("wren2021 has exactly three Conv1D layers: give three "
                         "conv_filters and three kernel_sizes")
    if len(opts["lstm_units"]) != 2 or len(opts["dense_units"]) != 2:
        raise ValueError("wren2021 has two LSTM and two Dense layers: give two "
                         "lstm_units and two dense_units")
    pool = int(opts["pool_size"])
    inputs = keras.Input((length, channels), name="spectrum")
    x = layers.Conv1D(filters[0], kernels[0], padding="same", activation="relu")(inputs)
    x = layers.MaxPooling1D(pool)(x)
    x = layers.Conv1D(filters[1], kernels[1], padding="same")(x)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)
    x = layers.MaxPooling1D(pool)(x)
    x = layers.Conv1D(filters[2], kernels[2], padding="same", activation="relu")(x)
    x = layers.LSTM(int(opts["lstm_units"][0]), return_sequences=True)(x)
    x = layers.LSTM(int(opts["lstm_units"][1]))(x)
    x = layers.Dense(int(opts["dense_units"][0]), activation="relu")(x)
    x = layers.Dense(int(opts["dense_units"][1]), activation="relu")(x)
    return keras.Model(inputs, _head(x, n_targets, loc, scale), name=name)


def _build_epoch_pooling(length, channels, n_targets, loc, scale, opts, name):
    import keras
    from keras import layers

    from .layers import MaskedAttentionPooling

    single = keras.Input((length, channels), name="epoch_spectrum")
    encoder = keras.Model(single, _resnet_encoder(single, opts), name="epoch_encoder")
    spectra = keras.Input((None, length, channels), name="spectra")
    mask = keras.Input((None,), name="epoch_mask")
    embeddings = layers.TimeDistributed(encoder, name="encode_epochs")(spectra)
    pooled = MaskedAttentionPooling(int(opts["attention_units"]), name="pool")(
        [embeddings, mask]
    )
    x = layers.Dense(int(opts["dense_units"]), activation="relu")(pooled)
    return keras.Model([spectra, mask], _head(x, n_targets, loc, scale), name=name)


def build_classifier(
    architecture,
    input_length,
    *,
    n_classes,
    n_channels=2,
    options=None,
    seed=None,
    name=None,
):
    """
    Build an (untrained) classification network: a trunk and a softmax head.

    The trunk is the ``resnet1d`` encoder (residual 1-D convolutions, global
    average + max pooling and a dense layer, see `build_model`); the head is
    one ``Dense`` layer with a softmax over ``n_classes`` labels, trained with
    the categorical cross-entropy. `spectralnn.estimators.SpectralClassifier`
    uses joint (class, subclass) labels, so one softmax gives the class
    probabilities (sums over a class's labels) and the subclass probabilities
    at once.

    Parameters
    ----------
    architecture : str
        ``'resnet1d'`` (or its alias ``'default'``): the only trunk with a
        classification head so far.
    input_length : int
        Number of pixels of the input grid.
    n_classes : int
        Number of labels of the softmax (at least 2).
    n_channels : int, optional
        Channels per pixel. Default 2.
    options : dict, optional
        Options of the trunk (see `resolve_architecture`).
    seed : int, optional
        Seed of the weight initialisation.
    name : str, optional
        Keras model name. Default ``'<architecture>_classifier'``.

    Returns
    -------
    model : `keras.Model`
        Input ``(batch, input_length, n_channels)``, output ``(batch,
        n_classes)``: probabilities summing to one.

    Raises
    ------
    ValueError
        If the architecture has no classification head or ``n_classes < 2``.

    Examples
    --------
    >>> model = build_classifier("resnet1d", 64, n_classes=4,
    ...                          options={"filters": 4, "stages": 1})  # doctest: +SKIP
    >>> model.output_shape  # doctest: +SKIP
    (None, 4)
    """
    import keras
    from keras import layers

    canonical, opts = resolve_architecture(architecture, options)
    if canonical != "resnet1d":
        raise ValueError(
            f"a classification head is available for 'resnet1d' only, not {canonical!r}"
        )
    n_classes = int(n_classes)
    if n_classes < 2:
        raise ValueError(f"n_classes must be at least 2, got {n_classes}")
    input_length = int(input_length)
    if input_length < 8:
        raise ValueError(f"input_length must be at least 8 pixels, got {input_length}")
    if seed is not None:
        keras.utils.set_random_seed(int(seed))
    inputs = keras.Input((input_length, int(n_channels)), name="spectrum")
    features = _resnet_encoder(inputs, opts)
    probabilities = layers.Dense(n_classes, activation="softmax", name="probabilities")(
        features)
    return keras.Model(inputs, probabilities, name=name or f"{canonical}_classifier")


def build_position_regressor(
    architecture,
    input_length,
    *,
    n_channels=2,
    n_targets=1,
    target_loc=0.0,
    target_scale=1.0,
    options=None,
    seed=None,
    name=None,
):
    """
    Build a ``resnet1d`` regressor whose features keep the position on the grid.

    The residual stages of ``resnet1d`` are followed by a ``Flatten`` of the
    last feature map (not a global pooling, which is translation invariant),
    a dense layer and a `~spectralnn.models.heads.HeteroscedasticHead`. A
    redshift moves every line by the same amount on a log-λ grid, so it is
    read from *where* the features fire: QuasarNET (Busca & Balland 2018,
    arXiv:1808.09955) flattens its convolutional features for the same
    reason.

    Parameters
    ----------
    architecture : str
        ``'resnet1d'`` (or ``'default'``).
    input_length : int
        Number of pixels of the input grid.
    n_channels : int, optional
        Channels per pixel. Default 2.
    n_targets : int, optional
        Number of targets. Default 1.
    target_loc, target_scale : float, optional
        Offset and scale of the targets, built into the head.
    options : dict, optional
        Options of the trunk (see `resolve_architecture`).
    seed : int, optional
        Seed of the weight initialisation.
    name : str, optional
        Keras model name.

    Returns
    -------
    model : `keras.Model`
        Input ``(batch, input_length, n_channels)``, output ``(batch, 2 *
        n_targets)``: means, then log-variances.

    Examples
    --------
    >>> model = build_position_regressor("resnet1d", 64,
    ...                                  options={"filters": 4})  # doctest: +SKIP
    >>> model.output_shape  # doctest: +SKIP
    (None, 2)
    """
    import keras

    canonical, opts = resolve_architecture(architecture, options)
    if canonical != "resnet1d":
        raise ValueError(
            f"a position-keeping regressor is available for 'resnet1d' only, not "
            f"{canonical!r}"
        )
    input_length = int(input_length)
    if input_length < 8:
        raise ValueError(f"input_length must be at least 8 pixels, got {input_length}")
    if seed is not None:
        keras.utils.set_random_seed(int(seed))
    inputs = keras.Input((input_length, int(n_channels)), name="spectrum")
    features = _resnet_encoder(inputs, opts, keep_position=True)
    return keras.Model(inputs, _head(features, int(n_targets), target_loc, target_scale),
                       name=name or f"{canonical}_position")


#: options of `build_autoencoder` and their defaults
AUTOENCODER_OPTIONS = {
    "latent_dim": 10,
    "filters": [16, 32, 32, 64, 64],
    "kernel_size": 5,
    "frame": "rest",
    "decoder": "dense",
    "decoder_units": [64, 256, 512],
    "condition_on_z": True,
    "z_min": -0.01,
    "z_max": 5.0,
    "rest_oversample": 1,
}


def autoencoder_rest_grid(grid, options=None):
    r"""
    The rest-frame grid of a rest-frame autoencoder decoder.

    It is uniform in :math:`\log_{10}\lambda` with the observed grid's
    spacing divided by ``rest_oversample``, from ``start / (1 + z_max)`` to
    ``stop / (1 + z_min)``: every observed pixel of a spectrum with
    ``z_min <= z <= z_max`` falls on it.

    Parameters
    ----------
    grid : dict
        The observed grid: ``start``, ``stop`` (Å) and ``dloglam``.
    options : dict, optional
        `build_autoencoder` options (``z_min``, ``z_max``, ``rest_oversample``).

    Returns
    -------
    log_start, step, n : float, float, int
        :math:`\log_{10}` of the first rest wavelength (Å), the spacing in
        :math:`\log_{10}\lambda` and the number of rest pixels.

    Examples
    --------
    >>> grid = {"start": 3802.0, "stop": 9190.0, "dloglam": 2.14e-4}
    >>> log_start, step, n = autoencoder_rest_grid(grid)
    >>> round(10 ** log_start, 1), n
    (633.7, 5450)
    """
    import math

    opts = {**AUTOENCODER_OPTIONS, **(options or {})}
    z_min, z_max = float(opts["z_min"]), float(opts["z_max"])
    oversample = int(opts["rest_oversample"])
    if not -0.5 < z_min < z_max or oversample < 1:
        raise ValueError(f"need -0.5 < z_min < z_max and rest_oversample >= 1, got "
                         f"{z_min}, {z_max}, {oversample}")
    step = float(grid["dloglam"]) / oversample
    log_start = math.log10(float(grid["start"]) / (1.0 + z_max))
    log_stop = math.log10(float(grid["stop"]) / (1.0 + z_min))
    return log_start, step, int(math.ceil((log_stop - log_start) / step)) + 2


def build_autoencoder(input_length, *, n_channels=3, grid=None, options=None, seed=None,
                      name="autoencoder"):
    r"""
    Build an (untrained) spectrum autoencoder: a Conv1D encoder and a dense decoder.

    The encoder is a stack of ``Conv1D`` + ``MaxPooling1D(2)`` stages (one
    per entry of ``filters``), as in the Conv1D autoencoders of SDSS spectra
    whose bottleneck is a handful of numbers (Wren 2021), whose flattened
    features, with the redshift, go through a ``Dense`` layer to
    ``latent_dim`` linear latents.

    With ``frame='rest'`` (the default) the decoder is that of spender
    (Melchior et al. 2023, AJ 166, 74): a multi-layer perceptron draws the
    *rest-frame* spectrum from the latents (and, with ``condition_on_z``,
    the redshift) on a log-λ grid wide enough for every observed pixel of a
    spectrum at ``z_min <= z <= z_max`` (`autoencoder_rest_grid`); a
    `~spectralnn.models.layers.RedshiftResample` layer then redshifts it by
    the spectrum's known z and interpolates it onto the observed grid. A line
    is thus drawn once, at its rest wavelength, and lands wherever z puts it.
    With ``frame='observed'`` the decoder draws the observed-frame pixels
    directly (dense, or ``decoder='conv'``: the encoder's stages mirrored).

    Parameters
    ----------
    input_length : int
        Pixels of the input grid (at least ``2 ** len(filters)``).
    n_channels : int, optional
        Channels per input pixel (e.g. flux, mask, error weight). Default 3.
    grid : dict, optional
        The observed grid (``start``, ``stop`` in Å, ``dloglam``); required
        with ``frame='rest'``.
    options : dict, optional
        ``latent_dim`` (default 10), ``filters`` (list, one encoder stage
        each; default ``[16, 32, 32, 64, 64]``), ``kernel_size`` (default
        5), ``frame`` (``'rest'`` or ``'observed'``), ``decoder``
        (``'dense'`` or, observed frame only, ``'conv'``), ``decoder_units``
        (hidden widths of the dense decoder; default ``[64, 256, 512]``),
        ``condition_on_z`` (the decoder also reads z; default True),
        ``z_min``, ``z_max`` (default -0.01, 5) and ``rest_oversample``
        (rest pixels per observed pixel in log λ; default 1).
    seed : int, optional
        Seed of the weight initialisation.
    name : str, optional
        Keras model name. Default ``'autoencoder'``.

    Returns
    -------
    model : `keras.Model`
        Inputs ``[spectrum (batch, input_length, n_channels), z (batch,
        1)]``, output ``(batch, input_length)``: the reconstructed
        (normalised) flux on the observed grid. Its layers ``'encoder'``
        (``[spectrum, z] -> latents``) and ``'decoder'`` (``[latents, z] ->
        flux``) are models of their own; with ``frame='rest'`` the decoder
        holds ``'rest_decoder'`` (``[latents, z] -> rest-frame flux``).

    Raises
    ------
    ValueError
        If an option is unknown or out of range.

    Examples
    --------
    >>> grid = {"start": 4000.0, "stop": 5000.0, "dloglam": 1e-3}
    >>> model = build_autoencoder(97, grid=grid, options={
    ...     "latent_dim": 4, "filters": [4, 4], "decoder_units": [8]})  # doctest: +SKIP
    >>> model.get_layer("encoder").output.shape  # doctest: +SKIP
    (None, 4)
    """
    import math

    import keras
    from keras import layers

    from .layers import RedshiftResample

    unknown = set(options or {}) - set(AUTOENCODER_OPTIONS)
    if unknown:
        raise ValueError(f"unknown autoencoder options {sorted(unknown)}; "
                         f"valid options: {sorted(AUTOENCODER_OPTIONS)}")
    opts = {**AUTOENCODER_OPTIONS, **(options or {})}
    latent = int(opts["latent_dim"])
    filters = [int(f) for f in opts["filters"]]
    if latent < 1 or not filters or min(filters) < 1:
        raise ValueError("latent_dim and every entry of filters must be positive")
    length = int(input_length)
    if length < 2 ** len(filters):
        raise ValueError(f"input_length {length} is too short for {len(filters)} "
                         "pooling stages")
    if opts["frame"] not in ("rest", "observed"):
        raise ValueError(f"frame must be 'rest' or 'observed', not {opts['frame']!r}")
    if opts["decoder"] not in ("dense", "conv") or (
            opts["frame"] == "rest" and opts["decoder"] != "dense"):
        raise ValueError(f"decoder must be 'dense' (or 'conv' in the observed frame), "
                         f"not {opts['decoder']!r}")
    if opts["frame"] == "rest" and grid is None:
        raise ValueError("a rest-frame decoder needs the observed grid")
    if seed is not None:
        keras.utils.set_random_seed(int(seed))
    spectrum = keras.Input((length, int(n_channels)), name="spectrum")
    z_in = keras.Input((1,), name="z")
    x = spectrum
    for width in filters:
        x = layers.Conv1D(width, int(opts["kernel_size"]), padding="same",
                          activation="relu")(x)
        x = layers.MaxPooling1D(2, padding="same")(x)
    x = layers.Flatten()(x)
    # z of order 1 (0-5 -> 0-2) next to the convolutional features
    x = layers.Concatenate()([x, layers.Rescaling(0.4)(z_in)])
    code = layers.Dense(latent, name="latent")(x)
    encoder = keras.Model([spectrum, z_in], code, name="encoder")

    latents = keras.Input((latent,), name="latents")
    z_dec = keras.Input((1,), name="z")
    y = latents
    if opts["condition_on_z"]:
        y = layers.Concatenate()([y, layers.Rescaling(0.4)(z_dec)])
    if opts["frame"] == "rest":
        log_start, step, n_rest = autoencoder_rest_grid(grid, opts)
        for width in opts["decoder_units"]:
            y = layers.Dense(int(width), activation="leaky_relu")(y)
        y = layers.Dense(n_rest, bias_initializer="ones", name="rest_flux")(y)
        rest = keras.Model([latents, z_dec], y, name="rest_decoder")
        observed = RedshiftResample(log_start, step, n_rest,
                                    math.log10(float(grid["start"])),
                                    float(grid["dloglam"]), length, name="redshift")(
            [rest([latents, z_dec]), z_dec])
    elif opts["decoder"] == "dense":
        for width in opts["decoder_units"]:
            y = layers.Dense(int(width), activation="relu")(y)
        observed = layers.Dense(length, name="flux")(y)
    else:
        # the encoder mirrored: upsampling convolutions draw a feature the
        # same way wherever it falls on the grid
        cells = -(-length // 2 ** len(filters))
        y = layers.Dense(cells * filters[-1], activation="relu")(y)
        y = layers.Reshape((cells, filters[-1]))(y)
        for width in filters[::-1]:
            y = layers.UpSampling1D(2)(y)
            y = layers.Conv1D(width, int(opts["kernel_size"]), padding="same",
                              activation="relu")(y)
        y = layers.Conv1D(1, int(opts["kernel_size"]), padding="same")(y)
        observed = layers.Flatten(name="flux")(
            layers.Cropping1D((0, y.shape[1] - length))(y))
    decoder = keras.Model([latents, z_dec], observed, name="decoder")
    return keras.Model([spectrum, z_in], decoder([encoder([spectrum, z_in]), z_in]),
                       name=name)
