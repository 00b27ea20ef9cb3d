"""
Heteroscedastic Gaussian output head and its negative log-likelihood loss.

Every spectralnn regression network ends in `HeteroscedasticHead`: for each
target it predicts a mean and a log-variance, so every number the estimators
return carries its own uncertainty. The head is trained with the Gaussian
negative log-likelihood `GaussianNLL` (Nix & Weigend 1994 [1]_; Kendall & Gal
2017 [2]_), which lets the network learn how uncertain it is on each spectrum.

This module imports Keras (it defines Keras classes); the rest of
`spectralnn.models` imports it lazily. Everything uses ``keras.ops`` only, so
saved models run under the TensorFlow, JAX and PyTorch backends.

References
----------
.. [1] Nix, D. A. & Weigend, A. S. 1994, "Estimating the mean and variance of
   the target probability distribution", Proc. IEEE ICNN, 1, 55
.. [2] Kendall, A. & Gal, Y. 2017, "What uncertainties do we need in Bayesian
   deep learning for computer vision?", NeurIPS 30

Examples
--------
>>> import numpy as np
>>> from spectralnn.models.heads import gaussian_nll
>>> y_pred = np.array([[1.0, 0.0]], dtype="float32")  # mean 1, log-variance 0
>>> float(gaussian_nll(np.array([[1.0]], dtype="float32"), y_pred)[0])
0.0
"""

import math

import keras
from keras import ops

__doctest_requires__ = {"*": ["keras"]}

__all__ = ["HeteroscedasticHead", "GaussianNLL", "gaussian_nll", "split_mean_log_var"]

#: Bounds of the predicted log-variance (in units of the standardised target):
#: keeps exp(-log_var) finite early in training.
LOG_VAR_MIN = -14.0
LOG_VAR_MAX = 8.0


def split_mean_log_var(y_pred):
    """
    Split a head output of shape ``(..., 2 * k)`` into mean and log-variance.

    Parameters
    ----------
    y_pred : array-like or tensor
        Output of `HeteroscedasticHead`: the ``k`` means, then the ``k``
        log-variances.

    Returns
    -------
    mean, log_var : tensors
        Each of shape ``(..., k)``.

    Examples
    --------
    >>> import numpy as np
    >>> mean, log_var = split_mean_log_var(np.array([[8.5, -2.0]]))
    >>> float(mean[0, 0]), float(log_var[0, 0])
    (8.5, -2.0)
    """
    k = y_pred.shape[-1] // 2
    return y_pred[..., :k], y_pred[..., k:]


@keras.saving.register_keras_serializable(package="spectralnn")
def gaussian_nll(y_true, y_pred):
    """
    Gaussian negative log-likelihood per sample (without the constant).

    ``0.5 * (log_var + (y - mean)**2 / exp(log_var))`` averaged over targets.

    Parameters
    ----------
    y_true : tensor
        Targets, shape ``(batch, k)``.
    y_pred : tensor
        Head output, shape ``(batch, 2 * k)`` (means, then log-variances).

    Returns
    -------
    loss : tensor
        Shape ``(batch,)``.

    Examples
    --------
    >>> import numpy as np
    >>> y_pred = np.array([[0.0, math.log(4.0)]], dtype="float32")
    >>> float(gaussian_nll(np.array([[2.0]], dtype="float32"), y_pred)[0])  # doctest: +FLOAT_CMP
    1.1931471
    """
    y_pred = ops.convert_to_tensor(y_pred)
    y_true = ops.cast(ops.convert_to_tensor(y_true), y_pred.dtype)
    mean, log_var = split_mean_log_var(y_pred)
    y_true = ops.reshape(y_true, ops.shape(mean))
    nll = 0.5 * (log_var + ops.square(y_true - mean) * ops.exp(-log_var))
    return ops.mean(nll, axis=-1)


@keras.saving.register_keras_serializable(package="spectralnn")
class GaussianNLL(keras.losses.Loss):
    """
    Gaussian negative log-likelihood loss for a `HeteroscedasticHead`.

    Parameters
    ----------
    name : str, optional
        Loss name. Default ``'gaussian_nll'``.
    **kwargs
        Passed to `keras.losses.Loss` (e.g. ``reduction``).

    Examples
    --------
    >>> import numpy as np
    >>> loss = GaussianNLL()
    >>> float(loss(np.array([[1.0]]), np.array([[1.0, 0.0]])))
    0.0
    """

    def __init__(self, name="gaussian_nll", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        """Per-sample loss: `gaussian_nll` of the targets and the head's output."""
        return gaussian_nll(y_true, y_pred)


@keras.saving.register_keras_serializable(package="spectralnn")
class HeteroscedasticHead(keras.layers.Layer):
    """
    Dense output layer predicting a Gaussian mean and log-variance per target.

    The layer learns a standardised mean ``m`` and log-variance ``s`` and
    returns ``loc + scale * m`` and ``s + 2 log(scale)``, so the network works
    with numbers of order one while the saved model outputs physical values
    (e.g. log black-hole mass in dex) on its own, with no separate scaler file.

    Parameters
    ----------
    units : int, optional
        Number of targets ``k``. Default 1. The output has ``2 * k`` columns:
        the means, then the log-variances.
    loc, scale : float or list of float, optional
        Target offset and scale (typically the training-set mean and standard
        deviation). Default 0 and 1.
    **kwargs
        Passed to `keras.layers.Layer`.

    Examples
    --------
    >>> import numpy as np
    >>> head = HeteroscedasticHead(loc=8.0, scale=0.5)
    >>> tuple(head(np.zeros((3, 4), dtype="float32")).shape)
    (3, 2)
    """

    def __init__(self, units=1, loc=0.0, scale=1.0, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)
        if self.units < 1:
            raise ValueError(f"units must be at least 1, got {units}")
        self.loc = [float(v) for v in _as_list(loc, self.units)]
        self.scale = [float(v) for v in _as_list(scale, self.units)]
        if not all(s > 0 and math.isfinite(s) for s in self.scale):
            raise ValueError(f"scale must be positive and finite, got {scale}")
        self.dense = keras.layers.Dense(2 * self.units, name="mean_log_var")

    def build(self, input_shape):
        """Create the weights of the dense layer for ``input_shape``."""
        self.dense.build(input_shape)

    def call(self, inputs):
        """Means and log-variances, ``(..., 2 * units)``, in the target units."""
        raw = self.dense(inputs)
        mean, log_var = split_mean_log_var(raw)
        loc = ops.convert_to_tensor(self.loc, dtype=raw.dtype)
        scale = ops.convert_to_tensor(self.scale, dtype=raw.dtype)
        log_var = ops.clip(log_var, LOG_VAR_MIN, LOG_VAR_MAX)
        return ops.concatenate(
            [loc + scale * mean, log_var + 2.0 * ops.log(scale)], axis=-1
        )

    def compute_output_shape(self, input_shape):
        """The input shape with the last axis replaced by ``2 * units``."""
        return (*input_shape[:-1], 2 * self.units)

    def get_config(self):
        config = super().get_config()
        config.update({"units": self.units, "loc": self.loc, "scale": self.scale})
        return config


def _as_list(value, n):
    values = list(value) if isinstance(value, (list, tuple)) else [value] * n
    if len(values) != n:
        raise ValueError(f"expected {n} values, got {len(values)}")
    return values
