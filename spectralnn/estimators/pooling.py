"""
Learned pooling of the per-epoch masses of one object.

`EpochPooling` combines the single-epoch network masses ``m_i`` (with their
uncertainties ``σ_i`` and the spectra's S/N) of one object into one mass. It
is a small permutation-invariant network (a per-epoch dense layer, masked
attention pooling, a heteroscedastic head) that predicts the *correction*
to the inverse-variance weighted mean and its uncertainty, so it starts from
the classical combination and learns what it misses: errors that are
correlated between epochs, epochs whose quoted error is too small, the
information in how much the epochs disagree.

It is trained on simulated multi-epoch sets of quasars
(`spectralnn.simulate.simulate_quasar_epochs`) through
`MassEstimator.fit_pooling <spectralnn.estimators.MassEstimator.fit_pooling>`
and shipped beside the mass network as ``<name>-pooling.keras``;
`MassEstimator.predict_epochs <spectralnn.estimators.MassEstimator.predict_epochs>`
reports both combinations.

Examples
--------
.. doctest-requires:: keras

    >>> import numpy as np
    >>> from spectralnn.estimators.pooling import EpochPooling
    >>> rng = np.random.default_rng(0)
    >>> truth = rng.normal(8.5, 0.4, 300)
    >>> m = truth[:, None] + rng.normal(0, 0.1, (300, 3))
    >>> s = np.full((300, 3), 0.1)
    >>> pool = EpochPooling().fit(m, s, np.full((300, 3), 10.0), truth, epochs=5, seed=0)
    >>> mean, err = pool.predict(m[:2], s[:2], np.full((2, 3), 10.0))
    >>> mean.shape, bool(np.all(err > 0))
    ((2,), True)
"""

import json
from pathlib import Path

import numpy as np

from ..errors import ModelFileError

__all__ = ["EpochPooling", "inverse_variance_mean"]

#: Scale (dex) of the per-epoch offsets from the weighted mean fed to the network.
_OFFSET_SCALE = 0.1


def inverse_variance_mean(mean, std, mask=None):
    """
    Inverse-variance weighted mean of each row and its uncertainty.

    Parameters
    ----------
    mean, std : array-like, shape (N, E)
        Per-epoch values and 1σ uncertainties (E epochs per object).
    mask : array-like of bool, shape (N, E), optional
        True for the epochs to use. Default: finite values with ``std > 0``.

    Returns
    -------
    ivw, ivw_err : `~numpy.ndarray`, shape (N,)
        Weighted means and their uncertainties (NaN for rows without epochs).

    Examples
    --------
    >>> import numpy as np
    >>> m, e = inverse_variance_mean([[8.0, 8.2]], [[0.1, 0.1]])
    >>> float(m[0]), round(float(e[0]), 4)
    (8.1, 0.0707)
    """
    mean = np.asarray(mean, dtype=np.float64)
    std = np.asarray(std, dtype=np.float64)
    ok = np.isfinite(mean) & np.isfinite(std) & (std > 0)
    if mask is not None:
        ok &= np.asarray(mask, dtype=bool)
    w = np.where(ok, 1.0 / np.where(ok, std, 1.0) ** 2, 0.0)
    total = w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ivw = np.where(total > 0, (w * np.where(ok, mean, 0.0)).sum(axis=1) / total, np.nan)
        err = np.where(total > 0, 1.0 / np.sqrt(total), np.nan)
    return ivw, err


class EpochPooling:
    """
    Learned combination of per-epoch masses of one object.

    Parameters
    ----------
    units : int, optional
        Width of the per-epoch dense layer. Default 32.
    attention_units : int, optional
        Width of the attention scoring network. Default 16.

    Examples
    --------
    >>> from spectralnn.estimators.pooling import EpochPooling
    >>> EpochPooling(units=16).is_trained
    False
    """

    def __init__(self, units: int = 32, attention_units: int = 16):
        self.units = int(units)
        self.attention_units = int(attention_units)
        self.model = None
        self.metrics = {}

    @property
    def is_trained(self) -> bool:
        """Whether the network exists (trained or loaded)."""
        return self.model is not None

    @staticmethod
    def _features(mean, std, snr):
        """(N, E, 3) features, (N, E) mask and the (N,) IVW means."""
        mean = np.atleast_2d(np.asarray(mean, dtype=np.float64))
        std = np.atleast_2d(np.asarray(std, dtype=np.float64))
        snr = np.atleast_2d(np.asarray(snr, dtype=np.float64))
        if not (mean.shape == std.shape == snr.shape):
            raise ValueError(
                f"mean, std and snr must have one shape (N, epochs), got {mean.shape}, "
                f"{std.shape}, {snr.shape}"
            )
        mask = np.isfinite(mean) & np.isfinite(std) & (std > 0)
        ivw, _ = inverse_variance_mean(mean, std, mask)
        with np.errstate(invalid="ignore", divide="ignore"):
            x = np.stack(
                [
                    (mean - ivw[:, None]) / _OFFSET_SCALE,
                    np.log10(np.where(mask, std, 1.0)) + 1.0,
                    np.log10(np.clip(np.nan_to_num(snr, nan=1.0), 0.1, 1e3)) - 1.0,
                ],
                axis=-1,
            )
        x = np.where(mask[..., None], x, 0.0).astype(np.float32)
        return x, mask.astype(np.float32), ivw

    def _build(self, seed):
        import keras
        from keras import layers

        from ..models.heads import HeteroscedasticHead
        from ..models.layers import MaskedAttentionPooling

        if seed is not None:
            keras.utils.set_random_seed(int(seed))
        x_in = keras.Input((None, 3), name="epoch_features")
        m_in = keras.Input((None,), name="epoch_mask")
        h = layers.Dense(self.units, activation="relu", name="epoch_dense")(x_in)
        pooled = MaskedAttentionPooling(self.attention_units, name="pool")([h, m_in])
        h = layers.Dense(self.units, activation="relu", name="object_dense")(pooled)
        out = HeteroscedasticHead(1, loc=0.0, scale=_OFFSET_SCALE, name="head")(h)
        return keras.Model([x_in, m_in], out, name="epoch_pooling_of_predictions")

    def fit(self, mean, std, snr, target, *, epochs: int = 60, batch_size: int = 256,
            learning_rate: float = 3e-3, validation: float = 0.15, seed: int | None = None):
        """
        Train on per-epoch predictions of objects with known masses.

        Parameters
        ----------
        mean, std, snr : array-like, shape (N, E)
            Per-epoch network masses, their uncertainties and the spectra's
            S/N (NaN pads objects with fewer epochs).
        target : array-like, shape (N,)
            The objects' true (catalogue-style) masses.
        epochs, batch_size, learning_rate : optional
            Training settings (Adam, early stopping on the validation loss).
        validation : float, optional
            Fraction of objects held out for early stopping. Default 0.15.
        seed : int, optional
            Seed of the weights and of the split.

        Returns
        -------
        self : `EpochPooling`
        """
        import keras

        from ..models.heads import GaussianNLL

        x, mask, ivw = self._features(mean, std, snr)
        y = np.asarray(target, dtype=np.float64) - ivw
        keep = np.isfinite(y) & (mask.sum(axis=1) > 0)
        if keep.sum() < 10:
            raise ValueError("EpochPooling.fit needs at least 10 objects with usable epochs")
        x, mask, y = x[keep], mask[keep], y[keep].astype(np.float32)[:, None]
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(y))
        n_val = int(round(validation * len(y))) if validation else 0
        val, train = order[:n_val], order[n_val:]
        self.model = self._build(seed)
        self.model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=GaussianNLL())
        callbacks = []
        val_data = None
        if n_val:
            val_data = ([x[val], mask[val]], y[val])
            callbacks.append(keras.callbacks.EarlyStopping(patience=8,
                                                           restore_best_weights=True))
        self.model.fit([x[train], mask[train]], y[train], epochs=epochs,
                       batch_size=batch_size, validation_data=val_data,
                       callbacks=callbacks, verbose=0, shuffle=True)
        return self

    def predict(self, mean, std, snr):
        """
        Pooled mass and uncertainty of each object.

        Parameters
        ----------
        mean, std, snr : array-like, shape (N, E) or (E,)
            Per-epoch masses, uncertainties and S/N of N objects (one object
            for 1-D input); NaN marks missing epochs.

        Returns
        -------
        mean, err : `~numpy.ndarray`, shape (N,)
            NaN for objects without a usable epoch.
        """
        if self.model is None:
            raise ModelFileError("EpochPooling has no network: fit or load it first")
        x, mask, ivw = self._features(mean, std, snr)
        out = np.asarray(self.model.predict([x, mask], verbose=0), dtype=np.float64)
        delta, err = out[:, 0], np.sqrt(np.exp(out[:, 1]))
        has = mask.sum(axis=1) > 0
        return np.where(has, ivw + delta, np.nan), np.where(has, err, np.nan)

    def save(self, path, metadata):
        """
        Write ``<path>.keras`` and its metadata ``<path>.json`` (with sha256).

        Parameters
        ----------
        path : str or `~pathlib.Path`
            Destination (``.keras`` suffix optional).
        metadata : dict
            Complete model metadata (see `spectralnn.models.registry`).

        Returns
        -------
        path : `~pathlib.Path`
            The ``.keras`` file.
        """
        from ..models.registry import save_model

        if self.model is None:
            raise ModelFileError("EpochPooling has no network to save")
        meta = json.loads(json.dumps(metadata))
        meta["architecture"] = {"name": "epoch_pooling_of_predictions",
                                "options": {"units": self.units,
                                            "attention_units": self.attention_units}}
        meta["task"] = "black_hole_mass_pooling"
        meta.setdefault("metrics", {}).update(self.metrics)
        return save_model(self.model, Path(path), meta)

    @classmethod
    def load(cls, path):
        """
        Read a pooling network written by `save` (sha256-checked, safe mode).

        Parameters
        ----------
        path : str or `~pathlib.Path`
            The ``.keras`` file, its ``.json`` or a registered model name.

        Returns
        -------
        pooling : `EpochPooling`
        """
        from ..models.registry import load_model

        loaded = load_model(path, task="black_hole_mass_pooling", compile=False)
        opts = loaded.metadata["architecture"].get("options", {})
        pool = cls(units=opts.get("units", 32), attention_units=opts.get("attention_units", 16))
        pool.model = loaded.model
        pool.metrics = loaded.metadata.get("metrics", {})
        return pool
