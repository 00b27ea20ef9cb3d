"""
Custom Keras layers of spectralnn networks.

`MaskedAttentionPooling` pools a variable number of per-epoch embeddings of one
object (several spectra taken at different times) into one embedding: a
deep-sets pooling (Zaheer et al. 2017 [1]_) whose weights are learned by attention
(Ilse, Tomczak & Welling 2018 [2]_), with a mask so that padded epochs are ignored.

Like `spectralnn.models.heads`, this module imports Keras and is only loaded
when a network is built or read; it uses ``keras.ops`` only.

References
----------
.. [1] Zaheer, M. et al. 2017, "Deep Sets", NeurIPS 30
.. [2] Ilse, M., Tomczak, J. M. & Welling, M. 2018, "Attention-based deep
   multiple instance learning", ICML

Examples
--------
>>> import numpy as np
>>> from spectralnn.models.layers import MaskedAttentionPooling
>>> emb = np.random.default_rng(0).normal(size=(2, 5, 8)).astype("float32")
>>> mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype="float32")
>>> tuple(MaskedAttentionPooling(hidden_units=4)([emb, mask]).shape)
(2, 16)
"""

import keras
from keras import ops

__doctest_requires__ = {"*": ["keras"]}

__all__ = ["MaskedAttentionPooling", "RedshiftResample"]


@keras.saving.register_keras_serializable(package="spectralnn")
class MaskedAttentionPooling(keras.layers.Layer):
    """
    Attention-weighted and mean pooling over a masked set of embeddings.

    Input ``[embeddings, mask]`` with shapes ``(batch, n_epochs, d)`` and
    ``(batch, n_epochs)`` (1 for a real epoch, 0 for padding). Output shape
    ``(batch, 2 * d)``: the attention-weighted mean, then the plain mean of the
    unmasked embeddings. The result does not depend on the order of the
    epochs nor on how much padding there is.

    Parameters
    ----------
    hidden_units : int, optional
        Width of the attention scoring network. Default 32.
    **kwargs
        Passed to `keras.layers.Layer`.

    Examples
    --------
    >>> import numpy as np
    >>> pool = MaskedAttentionPooling(hidden_units=4)
    >>> emb = np.ones((1, 3, 2), dtype="float32")
    >>> out = pool([emb, np.array([[1, 1, 0]], dtype="float32")])
    >>> np.asarray(out).round(6).tolist()
    [[1.0, 1.0, 1.0, 1.0]]
    """

    def __init__(self, hidden_units=32, **kwargs):
        super().__init__(**kwargs)
        self.hidden_units = int(hidden_units)
        self.score_hidden = keras.layers.Dense(self.hidden_units, activation="tanh",
                                               name="score_hidden")
        self.score = keras.layers.Dense(1, name="score")

    def build(self, input_shape):
        """Create the attention weights for ``[embeddings, mask]`` shapes."""
        emb_shape = input_shape[0]
        self.score_hidden.build(emb_shape)
        self.score.build((*emb_shape[:-1], self.hidden_units))

    def call(self, inputs):
        """Pool ``[embeddings (N, E, D), mask (N, E)]`` into ``(N, 2 D)``."""
        embeddings, mask = inputs
        mask = ops.cast(mask, embeddings.dtype)
        scores = ops.squeeze(self.score(self.score_hidden(embeddings)), axis=-1)
        # masked softmax: padded epochs get no weight
        scores = ops.where(mask > 0, scores, ops.full_like(scores, -1e9))
        scores = scores - ops.max(scores, axis=-1, keepdims=True)
        weights = ops.exp(scores) * mask
        weights = weights / ops.maximum(ops.sum(weights, axis=-1, keepdims=True), 1e-12)
        attended = ops.sum(embeddings * weights[..., None], axis=1)
        count = ops.maximum(ops.sum(mask, axis=-1, keepdims=True), 1.0)
        mean = ops.sum(embeddings * mask[..., None], axis=1) / count
        return ops.concatenate([attended, mean], axis=-1)

    def compute_output_shape(self, input_shape):
        """``(N, 2 D)`` for embeddings of shape ``(N, E, D)``."""
        emb_shape = input_shape[0]
        return (emb_shape[0], 2 * emb_shape[-1])

    def get_config(self):
        config = super().get_config()
        config["hidden_units"] = self.hidden_units
        return config


@keras.saving.register_keras_serializable(package="spectralnn")
class RedshiftResample(keras.layers.Layer):
    r"""
    Redshift a rest-frame spectrum and interpolate it onto an observed grid.

    Input ``[rest_flux, z]`` with shapes ``(batch, n_rest)`` (a spectrum on a
    rest-frame grid uniform in :math:`\log_{10}\lambda`) and ``(batch, 1)``
    (the redshift of each spectrum). Output ``(batch, n_observed)``: the rest
    spectrum placed at :math:`\lambda_{obs} = (1 + z)\lambda_{rest}` and
    linearly interpolated (differentiably, ``keras.ops`` only) at the
    observed grid's wavelengths, as the decoder of spender does (Melchior et
    al. 2023, AJ 166, 74). Observed pixels that fall outside the rest grid
    take the value of its nearest edge.

    Parameters
    ----------
    rest_start : float
        :math:`\log_{10}` of the first rest wavelength (Å).
    rest_step : float
        Rest-grid spacing in :math:`\log_{10}\lambda`.
    n_rest : int
        Rest pixels.
    observed_start : float
        :math:`\log_{10}` of the first observed wavelength (Å).
    observed_step : float
        Observed-grid spacing in :math:`\log_{10}\lambda`.
    n_observed : int
        Observed pixels.
    **kwargs
        Passed to `keras.layers.Layer`.

    Examples
    --------
    >>> import numpy as np
    >>> layer = RedshiftResample(3.0, 0.01, 50, 3.1, 0.01, 10)
    >>> rest = np.arange(50, dtype="float32")[None]  # rest pixel i holds i
    >>> out = layer([rest, np.array([[10 ** 0.05 - 1]], dtype="float32")])
    >>> np.asarray(out).round(3)[0, :3].tolist()  # observed pixel j sees rest j + 10 - 5
    [5.0, 6.0, 7.0]
    """

    def __init__(self, rest_start, rest_step, n_rest, observed_start, observed_step,
                 n_observed, **kwargs):
        super().__init__(**kwargs)
        self.rest_start = float(rest_start)
        self.rest_step = float(rest_step)
        self.n_rest = int(n_rest)
        self.observed_start = float(observed_start)
        self.observed_step = float(observed_step)
        self.n_observed = int(n_observed)
        if self.n_rest < 2 or self.n_observed < 1 or self.rest_step <= 0 \
                or self.observed_step <= 0:
            raise ValueError("RedshiftResample needs n_rest >= 2, n_observed >= 1 and "
                             "positive steps")

    def call(self, inputs):
        """Resample ``[rest_flux (N, R), z (N, 1)]`` into ``(N, M)``."""
        rest, z = inputs
        z = ops.reshape(ops.cast(z, rest.dtype), (-1, 1))
        loglam = self.observed_start + self.observed_step * ops.cast(
            ops.arange(self.n_observed), rest.dtype)
        shift = ops.log(1.0 + z) / ops.log(10.0)
        position = (loglam[None, :] - shift - self.rest_start) / self.rest_step
        position = ops.clip(position, 0.0, self.n_rest - 1.0)
        left = ops.clip(ops.floor(position), 0.0, self.n_rest - 2.0)
        frac = position - left
        index = ops.cast(left, "int32")
        lo = ops.take_along_axis(rest, index, axis=1)
        hi = ops.take_along_axis(rest, index + 1, axis=1)
        return lo + frac * (hi - lo)

    def compute_output_shape(self, input_shape):
        """``(N, n_observed)``."""
        return (input_shape[0][0], self.n_observed)

    def get_config(self):
        """The layer's settings (for saving)."""
        config = super().get_config()
        config.update(rest_start=self.rest_start, rest_step=self.rest_step,
                      n_rest=self.n_rest, observed_start=self.observed_start,
                      observed_step=self.observed_step, n_observed=self.n_observed)
        return config
