"""
`DLAFinder`: damped Lyα absorbers (DLAs) in quasar sight-lines.

A DLA is an intervening H I absorber with log N_HI ≥ 20.3 (Wolfe et al. 2005,
ARA&A 43, 861); its Lyα line is saturated over ≳ 10 Å (rest) with damping
wings, which is what the network looks for.

Design. Each sight-line is shifted to the quasar rest frame and resampled onto
a log-λ grid over 900–1600 Å (Δlog10 λ = 2e-4, median-normalised; flux and
error channels): the Lyα forest where DLAs sit, plus the N V, Si IV and C IV
region where broad absorption lines (BALs) show. A fully convolutional 1-D
network (a strided convolution, then residual dilated convolutions whose
receptive field spans the damping wings, plus a global branch that sees the
whole sight-line) predicts for every output cell, in one pass:

* the probability that an absorber centre with log N_HI ≥ ``label_log_nhi``
  (20.0 by default: DLAs and the strongest sub-DLAs) lies within
  ``radius`` cells of it;
* the offset from the cell to that centre and log N_HI, each with its own
  Gaussian uncertainty (a heteroscedastic head, Nix & Weigend 1994);
* the probability that the quasar is a BAL quasar (from the global branch).

This is the sliding-window CNN of Parks et al. (2018, MNRAS 476, 1151) done
as dense prediction: every window position in one forward pass, as a
one-dimensional object detector. Absorbers are the local maxima of the
probability above ``threshold``, one per ``nms_velocity`` (non-maximum
suppression); the redshift and column density are averages of the
probability-weighted predictions of the cells around each maximum. The
network is trained on simulated sight-lines (`spectralnn.simulate.simulate_quasars`
with an enhanced ``dla_rate``) whose Lyman-limit systems, sub-DLAs, metal
doublets and BAL troughs are the negatives that teach it what is *not* a DLA.

Matching rule (used by `match_absorbers` and the benchmark): a detection
matches a true absorber when |Δz| ≤ 0.01; completeness is the fraction of true
DLAs (log N_HI ≥ 20.3) matched by a detection; purity is the fraction of
detections with predicted log N_HI ≥ 20.3 that match a true absorber.

Examples
--------
>>> from spectralnn.estimators import DLAFinder
>>> finder = DLAFinder("dla_cnn", architecture_options={"filters": 8})
>>> finder.pipeline.steps, finder.pipeline.n_pixels
(['rest_frame', 'resample', 'normalize'], 1250)
"""

import functools

import numpy as np
from astropy import units as u
from astropy.table import QTable

from ..batch import as_batch
from ..logger import log
from ..models.pipeline import Pipeline
from .base import Estimator

__all__ = ["DLAFinder", "DLA_PREPROCESSING", "match_absorbers", "truth_absorbers"]

_LYA = 1215.6701
_C_KMS = 299792.458
_LYMAN_LIMIT = 911.753
#: Column density from which an absorber is a DLA (Wolfe et al. 2005).
DLA_LOG_NHI = 20.3
#: Absorbers this close to the quasar (km/s) are proximate: not searched.
_PROXIMATE_KMS = 3000.0

#: Name of the detection architecture (built by this module).
ARCHITECTURE = "dla_cnn"

#: Preprocessing of the DLA network: quasar rest frame, log-λ grid 900–1600 Å
#: (Δlog10 λ = 2e-4, 138 km/s), median normalisation, flux and error channels.
DLA_PREPROCESSING = {
    "steps": ["rest_frame", "resample", "normalize"],
    "grid": {"start": 900.0, "stop": 1600.0, "dloglam": 2e-4},
    "normalization": "median",
    "channels": ["flux", "ivar"],
    "min_good_fraction": 0.05,
}

#: Architecture and labelling options of a new network.
_DEFAULT_OPTIONS = {
    "filters": 32,
    "stride": 2,
    "kernel_size": 3,
    "dilations": [1, 2, 4, 8, 16, 32],
    "batch_norm_momentum": 0.99,
    # labels: positive cells within `radius` cells of an absorber with
    # log N_HI >= label_log_nhi; absorbers between ignore_log_nhi and
    # label_log_nhi are neither positive nor negative
    "radius": 2,
    "label_log_nhi": 20.0,
    "ignore_log_nhi": 19.7,
    # standardisation of the log N_HI output
    "log_nhi_loc": 20.6,
    "log_nhi_scale": 0.5,
    # loss weights
    "positive_weight": 5.0,
    "bal_weight": 0.5,
}

#: Training schedule of the detector.
_SCHEDULE = {"optimizer": "adam", "learning_rate": 2e-3, "final_learning_rate": 2e-5}

_N_OUT = 6  # logit, offset, offset log-variance, log N, log N log-variance, BAL logit
_N_LABEL = 6  # label, class weight, offset, log N, regression weight, BAL


class DLAFinder(Estimator):
    """
    Find damped Lyα absorbers in quasar spectra.

    Parameters
    ----------
    model : str, `~pathlib.Path` or `~spectralnn.models.LoadedModel`, optional
        ``'default'`` (the shipped ``dla-default`` weights), the path of a
        trained ``.keras`` file, or ``'dla_cnn'`` for a new, untrained
        detection network to `fit`.
    batch_size : int, optional
        Sight-lines per forward pass. Default 256.
    threshold : float, optional
        Minimum detection probability of a reported absorber. Default: the
        operating point stored with the model (``metadata['decision']``,
        chosen on simulated validation sight-lines), else 0.5.
    min_log_nhi : float, optional
        Detections whose predicted log N_HI is below this are dropped.
        Default 20.0 (sub-DLAs above it are reported with ``is_dla`` False).
    nms_velocity : `~astropy.units.Quantity` or float, optional
        Two maxima closer than this (km/s if a bare number) are one
        absorber. Default 2000 km/s.
    preprocessing : dict, optional
        Preprocessing of a new network. Default `DLA_PREPROCESSING`.
    architecture_options : dict, optional
        Options of a new network: ``filters`` (32), ``stride`` (2),
        ``kernel_size`` (3), ``dilations`` ([1, 2, 4, 8, 16, 32]),
        ``batch_norm_momentum`` (0.99; lower it for very short trainings),
        ``radius`` (2 cells), ``label_log_nhi`` (20.0), ``ignore_log_nhi``
        (19.7), ``positive_weight`` (5), ``bal_weight`` (0.5).

    Raises
    ------
    spectralnn.errors.ModelFileError
        If the weights are missing, corrupt or for another task.
    ValueError
        If a setting is invalid.

    Examples
    --------
    >>> DLAFinder("dla_cnn", batch_size=64)
    <DLAFinder: model 'dla-dla_cnn' (dla_cnn, untrained), batch_size=64>
    """

    task = "dla"
    target_names = ("z_abs", "log_nhi")
    target_units = ("", "dex(cm-2)")
    default_model_name = "dla-default"
    target_calibration = "DLA redshift and H I column density (simulated sight-lines)"
    default_preprocessing = DLA_PREPROCESSING

    def __init__(
        self,
        model="default",
        *,
        batch_size: int = 256,
        threshold: float | None = None,
        min_log_nhi: float = 20.0,
        nms_velocity=2000.0 * u.km / u.s,
        preprocessing: dict | None = None,
        architecture_options: dict | None = None,
    ):
        if threshold is not None and not 0 < float(threshold) < 1:
            raise ValueError(f"threshold must be in (0, 1), got {threshold}")
        velocity = u.Quantity(nms_velocity, u.km / u.s)
        if velocity.size != 1 or not 0 < velocity.value < _C_KMS:
            raise ValueError(f"nms_velocity must be one positive velocity, got {velocity}")
        if isinstance(model, str) and model == ARCHITECTURE:
            # the detector is built here, not by spectralnn.models.architectures
            unknown = set(architecture_options or {}) - set(_DEFAULT_OPTIONS)
            if unknown:
                raise ValueError(f"unknown architecture options {sorted(unknown)}; "
                                 f"known: {sorted(_DEFAULT_OPTIONS)}")
            super().__init__("resnet1d", batch_size=batch_size,
                             preprocessing=preprocessing or DLA_PREPROCESSING)
            options = {**_DEFAULT_OPTIONS, **(architecture_options or {})}
            self.metadata = self._new_metadata(
                ARCHITECTURE, options, preprocessing or DLA_PREPROCESSING)
            self.pipeline = Pipeline(self.metadata["preprocessing"])
        else:
            super().__init__(model, batch_size=batch_size, preprocessing=preprocessing,
                             architecture_options=architecture_options)
        if self.pipeline.grid is None or "rest_frame" not in self.pipeline.steps:
            raise ValueError("a DLA network needs the 'rest_frame' and 'resample' steps")
        if threshold is None:  # the operating point chosen for the model, else 0.5
            threshold = self.metadata.get("decision", {}).get("threshold", 0.5)
        self.threshold = float(threshold)
        self.min_log_nhi = float(min_log_nhi)
        self.nms_velocity = velocity

    # ------------------------------------------------------------- geometry
    @property
    def options(self):
        """Architecture and labelling options of the network."""
        return {**_DEFAULT_OPTIONS, **self.metadata["architecture"]["options"]}

    @property
    def _grid(self):
        grid = self.metadata["preprocessing"]["grid"]
        return np.log10(grid["start"]), grid["dloglam"]

    def _n_cells(self):
        stride = int(self.options["stride"])
        return -(-self.pipeline.n_pixels // stride)

    def _cell_loglam(self, position):
        """Rest-frame log10 λ of a (fractional) cell position."""
        start, step = self._grid
        stride = int(self.options["stride"])
        return start + step * (np.asarray(position) * stride + 0.5 * (stride - 1))

    def _cell_position(self, loglam):
        start, step = self._grid
        stride = int(self.options["stride"])
        return ((np.asarray(loglam) - start) / step - 0.5 * (stride - 1)) / stride

    def _cell_good(self, good):
        """Cells with at least one good input pixel, (N, L), from pixel masks (N, M)."""
        stride = int(self.options["stride"])
        n, m = good.shape
        pad = self._n_cells() * stride - m
        padded = np.concatenate([good, np.zeros((n, pad), dtype=bool)], axis=1)
        return padded.reshape(n, -1, stride).any(axis=2)

    def _search_cells(self, z_qso):
        """(N, L) bool: cells inside the searched rest range for each quasar."""
        lam = 10.0 ** self._cell_loglam(np.arange(self._n_cells()))
        hi = _LYA * (1.0 - _PROXIMATE_KMS / _C_KMS)
        inside = (lam >= _LYMAN_LIMIT) & (lam <= hi)
        return np.broadcast_to(inside, (len(z_qso), lam.size))

    # ------------------------------------------------------------ prediction
    def __call__(self, spectra, *, z_qso=None, summary=False, z=None):
        """Alias of `predict`."""
        return self.predict(spectra, z_qso=z_qso, summary=summary, z=z)

    def predict(self, spectra, *, z_qso=None, summary=False, z=None):
        """
        Find the DLAs in quasar spectra.

        Parameters
        ----------
        spectra : `specutils.Spectrum`, list, `~spectralnn.SpectrumBatch` or path(s)
            Observed-frame quasar spectra (fluxed or continuum-normalised).
        z_qso : float or array-like, optional
            Quasar emission redshift per spectrum. Default ``meta['z']``;
            spectra without one are flagged ``NO_REDSHIFT`` and searched
            nowhere.
        summary : bool, optional
            Also return the per-sight-line summary. Default False.
        z : float or array-like, optional
            Another name of ``z_qso`` (the keyword of the other estimators);
            give one or the other.

        Returns
        -------
        absorbers : `~astropy.table.QTable`
            One row per detected absorber (an empty table with the same
            columns when nothing is found): ``spectrum`` (row of the input),
            the identifying meta columns present, ``z_qso``, ``z_abs``,
            ``z_abs_err``, ``log_nhi`` and ``log_nhi_err`` (dex(cm⁻²)),
            ``probability``, ``is_dla`` (``log_nhi >= 20.3``) and the
            sight-line's ``flags``.
        sightlines : `~astropy.table.QTable`
            Only with ``summary=True``: one row per spectrum with
            ``spectrum``, identifying meta columns, ``z_qso``, ``n_dla``,
            ``n_absorbers``, ``dz_searched`` (redshift path searched),
            ``snr_forest`` (median S/N per pixel at rest 1040–1190 Å),
            ``bal_probability``, ``bal`` (flagged as a BAL quasar) and
            ``flags``.

        Examples
        --------
        A new network must be trained first (see `fit`); with the shipped
        weights: ``DLAFinder().predict(spectrum, z_qso=2.68)``.

        >>> finder = DLAFinder("dla_cnn")
        >>> finder.is_trained
        False
        """
        if z is not None:
            if z_qso is not None:
                raise ValueError("give z_qso or z, not both")
            z_qso = z
        self._require_trained()
        batch = as_batch(spectra, on_invalid="flag")
        absorbers, sightlines = self._find(batch, z_qso)
        return (absorbers, sightlines) if summary else absorbers

    def _find(self, batch, z_qso):
        from .._utils import per_spectrum

        zq = per_spectrum(batch, z_qso, "z", default=np.nan)
        prepared = self.pipeline(batch, z=zq)
        usable = prepared.usable
        n = len(batch)
        out = np.zeros((n, self._n_cells(), _N_OUT))
        rows = np.flatnonzero(usable)
        if rows.size:
            out[rows] = self._forward(prepared.inputs[rows])
        good = self._cell_good(prepared.batch.good) & usable[:, None]
        search = self._search_cells(zq) & good
        found = self._decode(out, search, zq)
        flags = np.asarray(prepared.flags, dtype=np.int64)
        bal_p = _sigmoid(out[:, :, 5].mean(axis=1))
        bal_p[~usable] = np.nan
        sight = QTable()
        sight["spectrum"] = np.arange(n)
        _copy_ids(sight, batch.meta, np.arange(n))
        sight["z_qso"] = zq
        keep = found["log_nhi"] >= self.min_log_nhi
        found = {k: v[keep] for k, v in found.items()}
        is_dla = found["log_nhi"] >= DLA_LOG_NHI
        sight["n_dla"] = np.bincount(found["spectrum"][is_dla], minlength=n)
        sight["n_absorbers"] = np.bincount(found["spectrum"], minlength=n)
        sight["dz_searched"] = self._path_length(search, zq)
        sight["snr_forest"] = _forest_snr(prepared.batch)
        sight["bal_probability"] = bal_p
        sight["bal"] = bal_p >= 0.5
        sight["flags"] = flags

        table = QTable()
        idx = found["spectrum"]
        table["spectrum"] = idx
        _copy_ids(table, batch.meta, idx)
        table["z_qso"] = zq[idx]
        table["z_abs"] = found["z_abs"]
        table["z_abs_err"] = found["z_abs_err"]
        dex = u.dex(u.cm**-2)
        table["log_nhi"] = found["log_nhi"] * dex
        table["log_nhi_err"] = found["log_nhi_err"] * u.dex
        table["probability"] = found["probability"]
        table["is_dla"] = is_dla
        table["flags"] = flags[idx]
        meta = self._table_meta()
        meta.update(threshold=self.threshold, min_log_nhi=self.min_log_nhi,
                    nms_velocity_kms=float(self.nms_velocity.value),
                    matching_rule="|dz| <= 0.01")
        table.meta.update(meta)
        sight.meta.update(meta)
        self._report_unusable(usable, flags)
        log.debug("%d absorbers in %d sight-lines", len(table), n)
        return table, sight

    def _decode(self, out, search, zq):
        """Peaks of the probability map -> absorber arrays (vectorised)."""
        from scipy.ndimage import maximum_filter1d

        opts = self.options
        logit = np.where(search, out[:, :, 0], -np.inf)
        nms = self._nms_cells()
        peak = (logit == maximum_filter1d(logit, size=2 * nms + 1, axis=1, mode="nearest"))
        peak &= logit >= np.log(self.threshold / (1.0 - self.threshold))
        # one of equal neighbouring maxima (a plateau) is kept: the first
        plateau = np.zeros_like(peak)
        plateau[:, 1:] = peak[:, :-1] & (logit[:, 1:] == logit[:, :-1])
        peak &= ~plateau
        spec, cell = np.nonzero(peak)
        radius = int(opts["radius"])
        offsets = np.arange(-radius, radius + 1)
        idx = np.clip(cell[:, None] + offsets[None, :], 0, out.shape[1] - 1)
        inside = (cell[:, None] + offsets[None, :] == idx) & search[spec[:, None], idx]
        prob = _sigmoid(out[spec[:, None], idx, 0]) * inside
        weight = prob / np.maximum(prob.sum(axis=1, keepdims=True), 1e-12)
        cells = idx + out[spec[:, None], idx, 1]
        position = np.sum(weight * cells, axis=1)
        pos_var = np.sum(weight * (np.exp(np.clip(out[spec[:, None], idx, 2], -6, 4))
                                   + (cells - position[:, None]) ** 2), axis=1)
        std_n = out[spec[:, None], idx, 3]
        mean_n = np.sum(weight * std_n, axis=1)
        var_n = np.sum(weight * (np.exp(np.clip(out[spec[:, None], idx, 4], -6, 4))
                                 + (std_n - mean_n[:, None]) ** 2), axis=1)
        loc, scale = float(opts["log_nhi_loc"]), float(opts["log_nhi_scale"])
        loglam = self._cell_loglam(position)
        _, step = self._grid
        z_abs = 10.0 ** loglam * (1.0 + zq[spec]) / _LYA - 1.0
        z_err = np.log(10.0) * step * int(opts["stride"]) * np.sqrt(pos_var) * (1.0 + z_abs)
        return {
            "spectrum": spec.astype(np.int64),
            "z_abs": z_abs,
            "z_abs_err": z_err,
            "log_nhi": loc + scale * mean_n,
            "log_nhi_err": scale * np.sqrt(var_n),
            "probability": _sigmoid(out[spec, cell, 0]),
        }

    def _forward(self, x):
        """Network output in batches through Keras' compiled predict step.

        About twice the throughput of the base class's eager calls for this
        fully convolutional network on CPU (measured with TensorFlow 2.21).
        """
        parts = [np.asarray(self._keras.predict_on_batch(x[start:start + self.batch_size]),
                            dtype=np.float64)
                 for start in range(0, len(x), self.batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0, self._n_cells(), _N_OUT))

    def _nms_cells(self):
        _, step = self._grid
        dlog = np.log10(1.0 + self.nms_velocity.to_value(u.km / u.s) / _C_KMS)
        return max(1, int(round(dlog / (step * int(self.options["stride"])))))

    def _path_length(self, search, zq):
        """Redshift path Δz of the searched cells of each sight-line."""
        _, step = self._grid
        lam = 10.0 ** self._cell_loglam(np.arange(search.shape[1]))
        dz_cell = lam * np.log(10.0) * step * int(self.options["stride"]) / _LYA
        with np.errstate(invalid="ignore"):
            return np.where(np.isfinite(zq), (search * dz_cell).sum(axis=1) * (1.0 + zq),
                            0.0)

    # ------------------------------------------------------------- training
    def fit(self, spectra, targets=None, **kwargs):
        """
        Train the detector on sight-lines with known absorbers.

        Parameters
        ----------
        spectra : `specutils.Spectrum`, list, `~spectralnn.SpectrumBatch` or path(s)
            Training quasar spectra (with ``meta['z']``, or pass ``z``).
        targets : array-like, optional
            True absorbers, shape ``(N, K, 2)``: (z_abs, log N_HI), NaN-padded.
            Default: the simulator's truth columns ``dla1_z``,
            ``dla1_log_nhi``, ``dla2_z``, ... (`truth_absorbers`). The BAL
            label comes from ``meta['bal']`` when present.
        **kwargs
            As `Estimator.fit` (``validation``, ``epochs``, ``batch_size``,
            ``patience``, ``checkpoint_dir``, ``seed``, ``z`` ...).

        Returns
        -------
        self : `DLAFinder`

        Examples
        --------
        >>> from spectralnn.simulate import simulate_quasars
        >>> qsos = simulate_quasars(8, seed=1, z_range=(2.5, 3.5), dla_rate=5.0)
        >>> finder = DLAFinder("dla_cnn", architecture_options={"filters": 4,
        ...                                                     "dilations": [1]})
        >>> finder.fit(qsos, epochs=1, validation=None).is_trained
        True
        """
        return super().fit(spectra, targets, **kwargs)

    def _prepare_training(self, spectra, targets, z=None, ebv=None):
        from .._utils import per_spectrum

        batch = as_batch(spectra, on_invalid="flag")
        truth = truth_absorbers(batch) if targets is None else np.asarray(targets, float)
        if truth.ndim != 3 or truth.shape[0] != len(batch) or truth.shape[2] != 2:
            raise ValueError(f"targets must have shape ({len(batch)}, K, 2), got {truth.shape}")
        zq = per_spectrum(batch, z, "z", default=np.nan)
        prepared = self.pipeline(batch, z=zq)
        bal = (np.asarray(batch.meta["bal"], dtype=float) if "bal" in batch.meta.colnames
               else np.zeros(len(batch)))
        y = self.labels(truth, zq, self._cell_good(prepared.batch.good), bal)
        keep = prepared.usable
        if not keep.any():
            raise ValueError("no spectrum is usable for training")
        return prepared.inputs[keep], y[keep]

    def labels(self, truth, z_qso, cell_good, bal=None):
        """
        Per-cell training labels of sight-lines with known absorbers.

        Parameters
        ----------
        truth : ndarray
            (z_abs, log N_HI) of the absorbers, shape ``(N, K, 2)``, NaN-padded.
        z_qso : ndarray
            Quasar redshifts, shape ``(N,)``.
        cell_good : ndarray
            Bool, ``(N, L)``: output cells with data.
        bal : ndarray, optional
            BAL label per sight-line (0 or 1). Default 0.

        Returns
        -------
        labels : ndarray
            float32, ``(N, L, 6)``: class label, class weight, offset (cells),
            standardised log N_HI, regression weight, BAL label.

        Examples
        --------
        >>> import numpy as np
        >>> finder = DLAFinder("dla_cnn")
        >>> good = np.ones((1, 625), dtype=bool)
        >>> y = finder.labels(np.array([[[2.2, 21.0]]]), np.array([3.0]), good)
        >>> int(y[0, :, 0].sum())  # 2 * radius + 1 positive cells
        5
        """
        opts = self.options
        n, n_cells = cell_good.shape
        radius = int(opts["radius"])
        y = np.zeros((n, n_cells, _N_LABEL), dtype=np.float32)
        y[:, :, 1] = 1.0
        y[:, :, 5] = 0.0 if bal is None else np.asarray(bal, dtype=np.float32)[:, None]
        cells = np.arange(n_cells)
        for k in range(truth.shape[1]):
            za, logn = truth[:, k, 0], truth[:, k, 1]
            has = np.isfinite(za) & np.isfinite(logn) & np.isfinite(z_qso)
            with np.errstate(invalid="ignore"):
                loglam = np.log10(_LYA * (1.0 + za) / (1.0 + z_qso))
            centre = np.where(has, self._cell_position(loglam), -1e6)
            dist = centre[:, None] - cells[None, :]
            near = np.abs(dist) <= radius + 0.5
            near &= has[:, None]
            seen = (near & cell_good).any(axis=1)
            strong = (logn >= float(opts["label_log_nhi"]))[:, None] & near
            weak = ((logn >= float(opts["ignore_log_nhi"]))[:, None] & near) & ~strong
            y[:, :, 0] = np.where(strong & seen[:, None], 1.0, y[:, :, 0])
            y[:, :, 1] = np.where(weak | (strong & ~seen[:, None]), 0.0, y[:, :, 1])
            reg = (strong | weak) & seen[:, None]
            y[:, :, 2] = np.where(reg, dist, y[:, :, 2])
            y[:, :, 3] = np.where(
                reg, ((logn - float(opts["log_nhi_loc"])) / float(opts["log_nhi_scale"]))[
                    :, None], y[:, :, 3])
            y[:, :, 4] = np.where(reg, 1.0, y[:, :, 4])
        return y

    def _build(self, x, y):
        self._keras = build_dla_network(
            x.shape[1], x.shape[2], self.options, name=self.metadata["name"].replace(" ", "_"))

    def _base_schedule(self):
        """The detector's own schedule (`_SCHEDULE`), not the architecture's."""
        return dict(_SCHEDULE)

    def _loss(self):
        opts = self.options
        return _loss_class()(float(opts["positive_weight"]), float(opts["bal_weight"]))

    def _fit_arrays(self, x, y, **kwargs):
        _loss_class()  # registered before a checkpoint that names it is resumed
        return super()._fit_arrays(x, y, **kwargs)

    def _metrics(self, x, y):
        """Cell-level detection and regression scores on (x, y)."""
        out = self._forward(x)
        prob = _sigmoid(out[:, :, 0])
        w = y[:, :, 1] > 0
        pos = (y[:, :, 0] > 0.5) & w
        neg = (y[:, :, 0] < 0.5) & w
        reg = y[:, :, 4] > 0
        scale = float(self.options["log_nhi_scale"])
        bal_p = _sigmoid(out[:, :, 5].mean(axis=1))
        return {"cells": {
            "n": int(len(y)),
            "recall_positive_cells": float(np.mean(prob[pos] >= 0.5)) if pos.any() else None,
            "false_positive_cell_rate": float(np.mean(prob[neg] >= 0.5)) if neg.any() else None,
            "rmse_offset_cells": float(np.sqrt(np.mean((out[:, :, 1] - y[:, :, 2])[reg] ** 2)))
            if reg.any() else None,
            "rmse_log_nhi": float(scale * np.sqrt(np.mean((out[:, :, 3] - y[:, :, 3])[reg] ** 2)))
            if reg.any() else None,
            "bal_accuracy": float(np.mean((bal_p >= 0.5) == (y[:, 0, 5] > 0.5))),
        }}

    def calibrate_uncertainties(self, *args, **kwargs):
        """Not available for the detector (its errors come from its own variance heads)."""
        raise NotImplementedError("DLAFinder uncertainties are not temperature-scaled")

    def save(self, path, **kwargs):
        """
        Write the network and its metadata (``<path>.keras`` + ``<path>.json``).

        The network is saved without its training configuration (the loss
        is a spectralnn function), so it loads in Keras' safe mode.

        Parameters
        ----------
        path : str or `~pathlib.Path`
            Destination.
        **kwargs
            ``name``, ``version``, ``training_set`` as `Estimator.save`.

        Returns
        -------
        path : `~pathlib.Path`
            The ``.keras`` file.

        Examples
        --------
        >>> finder = DLAFinder("dla_cnn")
        >>> finder.save("dla.keras")
        Traceback (most recent call last):
        ...
        spectralnn.errors.ModelFileError: DLAFinder with a new 'dla_cnn' network has no weights ...
        """
        self._require_trained()
        trained = self._keras
        self._keras = _uncompiled_copy(trained)
        try:
            return super().save(path, **kwargs)
        finally:
            self._keras = trained


def build_dla_network(n_pixels, n_channels, options, *, name="dla_cnn"):
    """The fully convolutional detector: (N, M, C) -> (N, ceil(M / stride), 6)."""
    import keras
    from keras import layers

    opts = {**_DEFAULT_OPTIONS, **options}
    filters, stride = int(opts["filters"]), int(opts["stride"])
    momentum = float(opts["batch_norm_momentum"])
    inp = keras.Input((n_pixels, n_channels), name="spectrum")
    x = layers.Conv1D(max(filters // 2, 4), 7, padding="same", activation="relu")(inp)
    x = layers.Conv1D(filters, 5, strides=stride, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization(momentum=momentum)(x)
    x = layers.Activation("relu")(x)
    for rate in opts["dilations"]:
        h = layers.Conv1D(filters, int(opts["kernel_size"]), dilation_rate=int(rate),
                          padding="same", use_bias=False)(x)
        h = layers.BatchNormalization(momentum=momentum)(h)
        h = layers.Activation("relu")(h)
        x = layers.Add()([x, h])
    n_cells = -(-n_pixels // stride)
    # a global branch: what the whole sight-line looks like (BAL troughs
    # far from a candidate, the forest depth), broadcast back to every cell
    g = layers.Concatenate()([layers.GlobalAveragePooling1D()(x),
                              layers.GlobalMaxPooling1D()(x)])
    g = layers.Dense(filters, activation="relu")(g)
    bal = layers.Dense(1)(g)
    g = layers.UpSampling1D(n_cells)(layers.Reshape((1, filters))(g))
    bal = layers.UpSampling1D(n_cells)(layers.Reshape((1, 1))(bal))
    h = layers.Concatenate()([x, g])
    h = layers.Conv1D(filters, 1, activation="relu")(h)
    # absorbers are rare: start from a low prior probability (p ≈ 0.02)
    logit = layers.Conv1D(1, 1, bias_initializer=keras.initializers.Constant(-4.0))(h)
    h = layers.Conv1D(_N_OUT - 2, 1)(h)
    out = layers.Concatenate(name="cells")([logit, h, bal])
    return keras.Model(inp, out, name=name)


@functools.lru_cache(maxsize=1)
def _loss_class():
    """The detector loss as a registered Keras `Loss` (defined at first use: Keras is lazy)."""
    import keras
    from keras import ops

    @keras.saving.register_keras_serializable(package="spectralnn")
    class DLALoss(keras.losses.Loss):
        """Weighted cross-entropy + Gaussian NLL of offset and log N + BAL cross-entropy."""

        def __init__(self, positive_weight=5.0, bal_weight=0.5, name="dla_loss", **kwargs):
            super().__init__(name=name, **kwargs)
            self.positive_weight = float(positive_weight)
            self.bal_weight = float(bal_weight)

        def call(self, y_true, y_pred):
            label, cw = y_true[..., 0], y_true[..., 1]
            bce = ops.binary_crossentropy(label, y_pred[..., 0], from_logits=True)
            det = ops.sum(cw * (1.0 + (self.positive_weight - 1.0) * label) * bce,
                          axis=1) / 20.0
            rw = y_true[..., 4]
            norm = ops.maximum(ops.sum(rw, axis=1), 1.0)
            reg = 0.0
            for target, mean, logvar in ((2, 1, 2), (3, 3, 4)):
                lv = ops.clip(y_pred[..., logvar], -6.0, 4.0)
                nll = 0.5 * (lv + ops.square(y_true[..., target] - y_pred[..., mean])
                             * ops.exp(-lv))
                reg = reg + ops.sum(rw * nll, axis=1) / norm
            bal = ops.mean(ops.binary_crossentropy(y_true[..., 5], y_pred[..., 5],
                                                   from_logits=True), axis=1)
            return det + reg + self.bal_weight * bal

        def get_config(self):
            return {**super().get_config(), "positive_weight": self.positive_weight,
                    "bal_weight": self.bal_weight}

    return DLALoss


def _uncompiled_copy(model):
    import keras

    # from the architecture alone: clone_model would also copy the compile
    # configuration (with the loss function that safe mode cannot load)
    copy = keras.Model.from_config(model.get_config())
    copy.set_weights(model.get_weights())
    return copy


def _sigmoid(x):
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


def _copy_ids(table, meta, rows):
    from .base import _ID_COLUMNS

    for name in _ID_COLUMNS:
        if name in meta.colnames and name != "z":
            table[name] = np.asarray(meta[name])[rows]


def _forest_snr(batch):
    """Median S/N per pixel at rest 1040–1190 Å (NaN without good pixels there)."""
    wave = batch.wavelength_2d
    good = batch.good & (wave >= 1040.0) & (wave <= 1190.0)
    snr = np.where(good, np.abs(batch.flux) * np.sqrt(np.clip(batch.ivar, 0, None)), np.nan)
    from ..models.pipeline import _row_nanmedian

    return _row_nanmedian(snr)


def truth_absorbers(batch):
    """
    True absorbers from the simulator's truth columns, as an ``(N, K, 2)`` array.

    Parameters
    ----------
    batch : `~spectralnn.SpectrumBatch`
        Simulated quasars (meta columns ``dla1_z``, ``dla1_log_nhi``,
        ``dla2_z``, ...).

    Returns
    -------
    truth : ndarray
        (z_abs, log N_HI) per absorber slot, NaN where empty.

    Raises
    ------
    ValueError
        If the batch has no ``dla1_z`` column.

    Examples
    --------
    >>> from spectralnn.simulate import simulate_quasars
    >>> truth_absorbers(simulate_quasars(3, seed=2, z_range=(2, 3))).shape
    (3, 2, 2)
    """
    names = batch.meta.colnames
    if "dla1_z" not in names:
        raise ValueError("no truth columns dla1_z, dla1_log_nhi: pass targets explicitly")
    k = 1
    parts = []
    while f"dla{k}_z" in names:
        parts.append(np.stack([np.asarray(batch.meta[f"dla{k}_z"], dtype=float),
                               np.asarray(batch.meta[f"dla{k}_log_nhi"], dtype=float)],
                              axis=-1))
        k += 1
    return np.stack(parts, axis=1)


def match_absorbers(spectrum, z_abs, truth_spectrum, truth_z, *, dz=0.01):
    """
    Match detections to true absorbers (the rule used by every DLA metric).

    A detection matches a true absorber of the same sight-line when
    ``|z_abs - truth_z| <= dz``; each true absorber is matched at most once,
    to its closest detection, and each detection to at most one absorber.

    Parameters
    ----------
    spectrum, z_abs : array-like
        Sight-line index and redshift of each detection.
    truth_spectrum, truth_z : array-like
        Sight-line index and redshift of each true absorber.
    dz : float, optional
        Matching tolerance. Default 0.01.

    Returns
    -------
    detection_match : ndarray
        For each detection, the index of its true absorber or -1.
    truth_match : ndarray
        For each true absorber, the index of its detection or -1.

    Examples
    --------
    >>> d, t = match_absorbers([0, 0, 1], [2.300, 2.9, 3.1], [0, 1], [2.305, 3.5])
    >>> d.tolist(), t.tolist()
    ([0, -1, -1], [0, -1])
    """
    s, z = np.asarray(spectrum), np.asarray(z_abs, dtype=float)
    ts, tz = np.asarray(truth_spectrum), np.asarray(truth_z, dtype=float)
    det = np.full(s.size, -1, dtype=np.int64)
    tru = np.full(ts.size, -1, dtype=np.int64)
    if s.size == 0 or ts.size == 0:
        return det, tru
    # candidate pairs on the same sight-line, closest first (greedy matching)
    order_t = np.argsort(ts, kind="stable")
    lo = np.searchsorted(ts[order_t], s, side="left")
    hi = np.searchsorted(ts[order_t], s, side="right")
    pairs_d = np.repeat(np.arange(s.size), hi - lo)
    pairs_t = order_t[np.concatenate([np.arange(a, b) for a, b in zip(lo, hi, strict=True)])
                      if pairs_d.size else np.array([], dtype=np.int64)]
    dist = np.abs(z[pairs_d] - tz[pairs_t])
    ok = dist <= dz
    pairs_d, pairs_t, dist = pairs_d[ok], pairs_t[ok], dist[ok]
    for i in np.argsort(dist, kind="stable"):
        a, b = pairs_d[i], pairs_t[i]
        if det[a] < 0 and tru[b] < 0:
            det[a], tru[b] = b, a
    return det, tru
