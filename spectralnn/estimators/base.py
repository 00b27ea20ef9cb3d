"""
`Estimator`: what every spectralnn predictor shares.

An estimator holds one Keras model and the metadata that describes it (see
`spectralnn.models.registry`). Settings are validated in ``__init__``; data
goes to `Estimator.predict` (also spelled ``estimator(spectra)``), which

1. converts the input once with `spectralnn.batch.as_batch` (a
   `specutils.Spectrum`, a list, a `~spectralnn.SpectrumBatch`, file paths);
2. runs the preprocessing the model's metadata declares
   (`spectralnn.models.pipeline.Pipeline`);
3. sends the usable spectra through the network in batches of ``batch_size``;
4. builds one `~astropy.table.QTable` with units, an ``*_err`` column for
   every value, a ``flags`` column and provenance in ``table.meta``. A spectrum
   that cannot be used becomes a flagged row of NaN; the batch goes on.

`Estimator.fit` trains (or fine-tunes) the network with early stopping, a
learning-rate drop on plateau, per-epoch checkpoints and resumption, without
modifying the caller's spectra or targets; `Estimator.save` writes the
``.keras`` + ``.json`` pair and `Estimator.load` reads it back.

A subclass declares its task: ``task``, ``target_names``/``target_units``,
the default preprocessing and, optionally, extra columns (`_extra_columns`).

Examples
--------
>>> from spectralnn.estimators import MassEstimator
>>> est = MassEstimator("resnet1d")  # an untrained network, to be fitted
>>> est.is_trained
False
"""

import json
import os
import warnings
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.table import QTable

from ..batch import as_batch
from ..errors import BatchItemWarning, ModelFileError
from ..logger import log
from ..models._compat import keras_numpy_warnings as _keras_numpy_warnings
from ..models.architectures import available_architectures, resolve_architecture
from ..models.pipeline import Pipeline
from ..models.registry import LoadedModel, load_model, save_model
from ._streaming import (
    NetworkOutputs,
    check_chunk_size,
    dataset_targets,
    epoch_callback,
    is_dataset_input,
    iter_input_batches,
    open_rows,
    split_dataset_rows,
    stream_outputs,
    training_stream,
)

__all__ = ["Estimator"]

#: meta columns copied to the front of every result table when present
_ID_COLUMNS = ("object_id", "source", "plate", "mjd", "fiber", "z")

_FLAG_UNUSABLE = "spectra could not be used (see the flags column)"

#: truth column each task learns when `Estimator.fit` is given no targets
#: (the simulators' columns; a subclass may set ``default_target_column``)
_DEFAULT_TARGET_COLUMNS = {"black_hole_mass": "virial_log_mbh", "redshift": "z"}


#: Preprocessing of estimators that work before the redshift is known
#: (classification, redshift): Galactic dereddening, resampling onto the
#: observed-frame log-λ grid 3600–10000 Å with Δlog10λ = 1e-3 (QuasarNET's),
#: median normalisation; flux, mask and error channels; 30 % coverage.
OBSERVED_FRAME_PREPROCESSING = {
    "steps": ["deredden", "resample", "normalize"],
    "grid": {"start": 3600.0, "stop": 10000.0, "dloglam": 1e-3},
    "normalization": "median",
    "channels": ["flux", "mask", "ivar"],
    "min_good_fraction": 0.3,
}


class Estimator:
    """
    Base class of the spectralnn predictors.

    Parameters
    ----------
    model : str, `~pathlib.Path` or `~spectralnn.models.LoadedModel`, optional
        ``'default'`` (the shipped weights for the task), the name of another
        shipped model, the path of a ``.keras`` file with its ``.json``
        metadata, or an architecture name (``'resnet1d'``, ``'wren2021'``,
        ...: an untrained network, built at the first `fit`).
    batch_size : int, optional
        Spectra per forward pass. Default 256.
    preprocessing : dict, optional
        Preprocessing declaration for a new network (see
        `spectralnn.models.pipeline.validate_preprocessing`). Default: the
        subclass's. Ignored (must be None) for trained models, which carry
        their own.
    architecture_options : dict, optional
        Options of a new network (see
        `spectralnn.models.architectures.resolve_architecture`).

    Raises
    ------
    spectralnn.errors.ModelFileError
        If the weights are missing, corrupt (sha256 mismatch), unsafe or for
        another task.
    ValueError
        If a setting is invalid.

    Examples
    --------
    `Estimator` is not used on its own: each task subclasses it and declares
    its targets, preprocessing and default weights.

    >>> from spectralnn.estimators import Estimator, MassEstimator
    >>> issubclass(MassEstimator, Estimator)
    True
    >>> MassEstimator.task, MassEstimator.target_names, MassEstimator.default_model_name
    ('black_hole_mass', ('log_mbh',), 'mass-default')
    """

    #: task string written to and checked against the model metadata
    task = None
    #: output column names and units of the network targets
    target_names = ("value",)
    target_units = ("",)
    #: name of the shipped model used by ``model='default'``
    default_model_name = None
    #: preprocessing of new networks (subclasses override)
    default_preprocessing = {"steps": ["normalize"]}
    #: what the target mimics, e.g. a virial calibration (for table meta)
    target_calibration = ""
    #: meta column learned by `fit` when no targets are given (None: per task)
    default_target_column = None

    def __init__(
        self,
        model="default",
        *,
        batch_size: int = 256,
        preprocessing: dict | None = None,
        architecture_options: dict | None = None,
    ):
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
            raise TypeError(f"batch_size must be an integer, got {batch_size!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.batch_size = int(batch_size)
        #: training history: metric name -> list of per-epoch values
        self.history = {}
        self._keras = None
        if isinstance(model, LoadedModel):
            self._set_loaded(model, preprocessing, architecture_options)
        elif isinstance(model, str) and model in available_architectures() and (
            model != "default"
        ):
            name, options = resolve_architecture(model, architecture_options)
            spec = preprocessing if preprocessing is not None else self.default_preprocessing
            self.metadata = self._new_metadata(name, options, spec)
        elif isinstance(model, (str, os.PathLike)):
            if model == "default":
                loaded = self._load_default()
            else:
                loaded = load_model(model, task=self.task)
            self._set_loaded(loaded, preprocessing, architecture_options)
        else:
            raise TypeError(
                "model must be 'default', a model name or path, an architecture name "
                f"({available_architectures()}) or a LoadedModel; got "
                f"{type(model).__name__}"
            )
        self.pipeline = Pipeline(self.metadata["preprocessing"])

    # ----------------------------------------------------------------- setup
    def _load_default(self):
        from ..models.registry import find_model, list_models

        installed = list(list_models()["name"])
        if self.default_model_name is None or self.default_model_name not in installed:
            raise ModelFileError(
                f"no default weights are installed yet for {type(self).__name__} "
                f"(looked for {self.default_model_name!r} in spectralnn/data/weights); "
                "pass the path of a trained .keras file, or train a network: "
                f"{type(self).__name__}('resnet1d').fit(spectra, targets)"
            )
        # by its installed path: a same-named file in the working directory
        # must not shadow the shipped weights
        return load_model(find_model(self.default_model_name), task=self.task)

    def _set_loaded(self, loaded, preprocessing, architecture_options):
        if preprocessing is not None or architecture_options is not None:
            raise ValueError(
                "preprocessing and architecture_options apply to new networks only; "
                "a trained model carries its own"
            )
        if self.task is not None and loaded.metadata["task"] != self.task:
            raise ModelFileError(
                f"model {loaded.metadata['name']!r} is for task "
                f"{loaded.metadata['task']!r}, not {self.task!r}"
            )
        self._keras = loaded.model
        self.metadata = dict(loaded.metadata)
        self.path = loaded.path

    def _new_metadata(self, architecture, options, preprocessing):
        from ..models.pipeline import validate_preprocessing

        return {
            "format_version": 1,
            "name": f"{self.task}-{architecture}",
            "version": "0.0.0",
            "task": self.task,
            "architecture": {"name": architecture, "options": options},
            "preprocessing": validate_preprocessing(preprocessing),
            "target": {
                "names": list(self.target_names),
                "units": [str(u.Unit(unit)) for unit in self.target_units],
                "calibration": self.target_calibration,
            },
            "training_set": {},
            "metrics": {},
            "sha256": "",
        }

    # ------------------------------------------------------------ properties
    @property
    def model(self):
        """The Keras model (None before the first `fit` of a new network)."""
        return self._keras

    @property
    def is_trained(self):
        """True once the estimator holds a network (loaded or fitted)."""
        return self._keras is not None

    @property
    def architecture(self):
        """Name of the network architecture."""
        return self.metadata["architecture"]["name"]

    @property
    def _epoch_model(self):
        return self.architecture == "epoch_pooling"

    def __repr__(self):
        state = "trained" if self.is_trained else "untrained"
        return (f"<{type(self).__name__}: model {self.metadata['name']!r} "
                f"({self.architecture}, {state}), batch_size={self.batch_size}>")

    # ------------------------------------------------------------ prediction
    def __call__(self, spectra, *, z=None, ebv=None):
        """Alias of `predict`."""
        return self.predict(spectra, z=z, ebv=ebv)

    def predict(self, spectra, *, z=None, ebv=None, **options):
        """
        Run the network on spectra and return one table row per spectrum.

        Parameters
        ----------
        spectra : `specutils.Spectrum`, list, `~spectralnn.SpectrumBatch` or path(s)
            The spectra.
        z : float or array-like, optional
            Redshift per spectrum (default: ``meta['z']``).
        ebv : float or array-like, optional
            Galactic E(B-V) per spectrum (default: ``meta['ebv']``, else 0).
        **options
            Per-spectrum or scalar options of a subclass's prediction (e.g.
            ``spectype`` of `RedshiftEstimator.predict`).

        Returns
        -------
        table : `~astropy.table.QTable`
            The target columns with their ``*_err`` columns, ``snr`` and
            ``flags``; rows of unusable spectra hold NaN and carry a flag.
        """
        self._require_trained()
        if is_dataset_input(spectra):
            return self._predict_streaming(spectra, z=z, ebv=ebv, **options)
        return self._predict_batch(as_batch(spectra, on_invalid="flag"), z=z, ebv=ebv,
                                   **options)

    def _predict_streaming(self, spectra, *, z, ebv, **options):
        """Predict an HDF5 dataset chunk by chunk (never all in memory)."""
        from astropy.table import vstack

        parts = []
        start = 0
        for chunk in iter_input_batches(spectra, self.batch_size):
            stop = start + len(chunk)
            parts.append(self._predict_batch(
                chunk, z=_chunk_of(z, start, stop), ebv=_chunk_of(ebv, start, stop),
                **{k: _chunk_of(v, start, stop) for k, v in options.items()}))
            start = stop
        table = QTable(vstack(parts, metadata_conflicts="silent"))
        table.meta.update(parts[0].meta if parts else {})
        return table

    def _predict_batch(self, batch, *, z, ebv):
        """Prediction table of one `SpectrumBatch` (subclasses extend this)."""
        prepared = self.pipeline(batch, z=z, ebv=ebv)
        mean, std = self._run_network(prepared.network_inputs, prepared.usable)
        self._report_unusable(prepared.usable, prepared.flags)
        return self._build_table(batch, prepared, mean, std)

    def _require_trained(self):
        if self._keras is None:
            raise ModelFileError(
                f"{type(self).__name__} with a new {self.architecture!r} network has "
                "no weights yet: call fit(spectra, targets) first"
            )

    def _run_network(self, inputs, usable):
        """Means and (calibrated) standard deviations (N, k); NaN for unusable rows."""
        n, k = len(usable), len(self.metadata["target"]["names"])
        mean = np.full((n, k), np.nan)
        std = np.full((n, k), np.nan)
        rows = np.flatnonzero(usable)
        if rows.size:
            x = _take(inputs, rows)
            if self._epoch_model:  # each spectrum as an object of one epoch
                x = [x[:, None], np.ones((rows.size, 1), dtype=np.float32)]
            out = self._forward(x)
            mean[rows], std[rows] = _mean_std(out, k)
            std[rows] *= self.sigma_scale
        return mean, std

    @property
    def sigma_scale(self):
        """
        Factor applied to the network's standard deviations (1 if uncalibrated).

        Set by `calibrate_uncertainties` (post-hoc temperature scaling) and
        stored in the model metadata under ``uncertainty``.
        """
        return float(self.metadata.get("uncertainty", {}).get("sigma_scale", 1.0))

    def _forward(self, x):
        """Network output for inputs already on the model grid, in batches."""
        if isinstance(x, NetworkOutputs):  # a streamed dataset, already run
            return x.outputs
        parts = []
        n = len(x[0]) if isinstance(x, list) else len(x)
        for start in range(0, n, self.batch_size):
            sl = slice(start, start + self.batch_size)
            chunk = [a[sl] for a in x] if isinstance(x, list) else x[sl]
            parts.append(np.asarray(self._keras(chunk, training=False), dtype=np.float64))
        log.debug("ran %s on %d inputs", self.metadata["name"], n)
        return np.concatenate(parts)

    @staticmethod
    def _report_unusable(usable, flags):
        if not usable.all():
            rows = np.flatnonzero(~usable)
            warnings.warn(
                f"{rows.size} {_FLAG_UNUSABLE}: rows {rows[:10].tolist()}"
                f"{'...' if rows.size > 10 else ''}; their values are NaN",
                BatchItemWarning,
                stacklevel=3,
            )

    def _extra_columns(self, batch, prepared, *, z=None, ebv=None):
        """Columns a subclass adds after the network values (dict name -> column)."""
        return {}

    def _build_table(self, batch, prepared, mean, std, extra=None):
        """The one place a result table is assembled."""
        table = QTable()
        for name in _ID_COLUMNS:
            if name in batch.meta.colnames:
                table[name] = batch.meta[name]
        target = self.metadata["target"]
        for i, (name, unit) in enumerate(zip(target["names"], target["units"], strict=True)):
            unit = u.Unit(unit)
            table[name] = mean[:, i] * unit
            table[f"{name}_err"] = std[:, i] * _error_unit(unit)
        for name, column in (extra or {}).items():
            table[name] = column
        table["snr"] = prepared.snr
        table["flags"] = np.asarray(prepared.flags, dtype=np.int64)
        table.meta.update(self._table_meta())
        return table

    def _table_meta(self):
        from .. import __version__

        meta = self.metadata
        return {
            "spectralnn_version": __version__,
            "task": meta["task"],
            "model_name": meta["name"],
            "model_version": meta["version"],
            "model_sha256": meta.get("sha256") or "unsaved",
            "architecture": meta["architecture"]["name"],
            "calibration": meta["target"].get("calibration", ""),
        }

    # --------------------------------------------------------------- training
    def _default_targets(self):
        """The meta column learned when no targets are given (None if none)."""
        return self.default_target_column or _DEFAULT_TARGET_COLUMNS.get(self.task)

    def _targets(self, targets, batch):
        """Targets as a float (N, k) array in the target units (a copy)."""
        names = self.metadata["target"]["names"]
        units = [u.Unit(unit) for unit in self.metadata["target"]["units"]]
        if targets is None:
            raise ValueError(
                f"{type(self).__name__}.fit needs targets: an array, or the name of a "
                "meta (truth) column")
        if isinstance(targets, str):
            targets = batch.meta[targets]
        if isinstance(targets, u.Quantity):
            if len(units) != 1:
                raise ValueError("give a plain (N, k) array for several targets")
            values = _strip(targets, units[0], names[0])
        else:
            values = np.array(targets, dtype=np.float64)
        if values.ndim == 1:
            values = values[:, None]
        if values.shape != (len(batch), len(names)):
            raise ValueError(
                f"targets must have shape ({len(batch)},) or ({len(batch)}, {len(names)}) "
                f"for {len(batch)} spectra, got {values.shape}"
            )
        return values

    def _prepare_training(self, spectra, targets, z=None, ebv=None, *, chunk_size=None):
        """
        Network inputs and targets of the usable spectra with a finite target.

        For an HDF5 dataset (which is never read whole) the network is run
        over it chunk by chunk and its outputs (`_streaming.NetworkOutputs`)
        stand in for the inputs: `_forward` passes them through, so metrics
        and calibration work unchanged. That needs a trained network.
        """
        if targets is None:
            targets = self._default_targets()
        if is_dataset_input(spectra):
            if self._keras is None:
                raise ValueError(
                    "evaluating a dataset needs a trained network; fit(dataset) streams "
                    "the dataset itself")
            chunk = check_chunk_size(chunk_size)
            with open_rows(spectra) as (ds, rows):
                y = dataset_targets(self, ds, rows, targets)
                return stream_outputs(self, ds, rows, y, chunk_size=chunk,
                                      z=_per_file_row(z, rows, len(ds)),
                                      ebv=_per_file_row(ebv, rows, len(ds)))
        batch = as_batch(spectra, on_invalid="flag")
        y = self._targets(targets, batch)
        prepared = self.pipeline(batch, z=z, ebv=ebv)
        keep = prepared.usable & np.all(np.isfinite(y), axis=1)
        if not keep.any():
            raise ValueError("no spectrum is usable for training (all flagged or NaN targets)")
        dropped = int((~keep).sum())
        if dropped:
            log.info("%d spectra left out of training (unusable or NaN target)", dropped)
        return _take(prepared.network_inputs, keep), y[keep].astype(np.float32)

    def fit(
        self,
        spectra,
        targets=None,
        *,
        validation=0.1,
        epochs: int = 100,
        batch_size: int | None = None,
        learning_rate: float | None = None,
        patience: int = 10,
        callbacks=None,
        checkpoint_dir=None,
        resume: bool = False,
        z=None,
        ebv=None,
        seed: int | None = None,
        verbose: int = 0,
        chunk_size: int | None = None,
    ):
        """
        Train the network (building it first for a new architecture).

        Parameters
        ----------
        spectra : `specutils.Spectrum`, list, `~spectralnn.SpectrumBatch`, path(s) or dataset
            Training spectra (not modified). An HDF5 dataset
            (`~spectralnn.datasets.SpectrumDataset`, or the path of a ``.h5``
            file) is streamed: read and preprocessed ``chunk_size`` spectra at
            a time, never loaded whole (see Notes).
        targets : array-like, `~astropy.units.Quantity` or str, optional
            Target per spectrum, shape ``(N,)`` or ``(N, k)``, in the target
            units (a Quantity is converted), or the name of a meta (truth)
            column. Default: the estimator's truth column
            (``virial_log_mbh`` for `~spectralnn.estimators.MassEstimator`,
            ``z`` for `~spectralnn.estimators.RedshiftEstimator`). Rows with
            NaN targets are left out.
        validation : float, tuple or None, optional
            Fraction of the spectra held out at random (default 0.1), or a
            ``(spectra, targets)`` tuple, or None for no validation set.
            For a dataset, its ``split`` column is used when it has one,
            else the fraction is held out by object (see Notes).
            Early stopping and the learning-rate drop monitor the validation
            loss when there is one, the training loss otherwise.
        epochs : int, optional
            Maximum number of epochs (counted from the start when resuming).
            Default 100.
        batch_size : int, optional
            Training batch size. Default: the estimator's ``batch_size``
            (capped at 64).
        learning_rate : float, optional
            Initial learning rate. Default: the architecture's (1e-3).
        patience : int, optional
            Epochs without improvement before stopping; the learning rate is
            divided by 100 (to the architecture's final rate, 1e-5) after
            ``patience // 2`` such epochs. Default 10.
        callbacks : list of `keras.callbacks.Callback`, optional
            Extra callbacks.
        checkpoint_dir : str or `~pathlib.Path`, optional
            Folder where ``last.keras``, ``best.keras`` and ``state.json`` are
            written after every epoch.
        resume : bool, optional
            Continue from ``checkpoint_dir/last.keras`` (weights, optimiser,
            epoch count and history) if it exists. Default False.
        z, ebv : float or array-like, optional
            Redshift and E(B-V) of the training spectra (default: their meta).
        seed : int, optional
            Seed of the validation split, weight initialisation and shuffling.
        verbose : int, optional
            Keras verbosity. Default 0.
        chunk_size : int, optional
            For a dataset: spectra read and preprocessed at a time, which
            bounds the memory (the preprocessing of SDSS-length spectra, 3840
            pixels, needs about 0.6 MB per spectrum while it runs). Default
            1024.

        Returns
        -------
        self : `Estimator`
            The fitted estimator; ``history`` and ``metadata['metrics']`` are
            updated.

        Notes
        -----
        Training from a dataset streams it through a `keras.utils.PyDataset`:
        the targets (and their mean and spread, which set the output
        scaling) come from the label column alone; each epoch the file's
        blocks of rows (its HDF5 chunks) are visited in a new seeded order,
        grouped into chunks of ``chunk_size`` spectra, preprocessed and
        shuffled within the chunk. Spectra the preprocessing cannot use are
        given a zero weight in their batch. The validation rows come from the
        dataset's ``split`` column ('train' / 'validation'; 'test' rows are
        never read) when it has one, else a fraction ``validation`` of the
        objects is held out with `spectralnn.datasets.split_by_object`
        (seeded; epochs of one object stay together). The metrics are
        computed by running the network over the validation rows chunk by
        chunk.

        Examples
        --------
        Train a tiny network for one epoch, streaming a small dataset:

        .. doctest-requires:: keras

            >>> from spectralnn.datasets import write_dataset
            >>> from spectralnn.estimators import MassEstimator
            >>> from spectralnn.simulate import simulate_quasars
            >>> path = write_dataset(simulate_quasars(20, seed=1, z_range=(0.5, 1.5)),
            ...                      getfixture("tmp_path") / "qso.h5")
            >>> est = MassEstimator("resnet1d", architecture_options={
            ...     "filters": 4, "stages": 1, "dense_units": 8})
            >>> est.fit(path, epochs=1, chunk_size=8, seed=0).is_trained
            True
            >>> est.metadata["training_set"]["chunk_size"]
            8
        """
        if is_dataset_input(spectra):
            return self._fit_dataset(
                spectra, targets, validation=validation, z=z, ebv=ebv, seed=seed,
                chunk_size=chunk_size, epochs=epochs, batch_size=batch_size,
                learning_rate=learning_rate, patience=patience, callbacks=callbacks,
                checkpoint_dir=checkpoint_dir, resume=resume, verbose=verbose,
            )
        x, y = self._prepare_training(spectra, targets, z, ebv)
        if isinstance(validation, tuple):
            source, val_targets = validation
            if is_dataset_input(source):  # in-memory training: read it too
                from ..batch import concatenate

                source = concatenate(list(iter_input_batches(source, 4096)))
            validation = self._prepare_training(source, val_targets)
        return self._fit_arrays(
            x, y, validation=validation, epochs=epochs, batch_size=batch_size,
            learning_rate=learning_rate, patience=patience, callbacks=callbacks,
            checkpoint_dir=checkpoint_dir, resume=resume, seed=seed, verbose=verbose,
        )

    def _fit_dataset(self, spectra, targets, *, validation, z, ebv, seed, chunk_size,
                     epochs, batch_size, learning_rate, patience, callbacks,
                     checkpoint_dir, resume, verbose, oversample=None):
        """
        Train on an HDF5 dataset, streamed (see `fit`).

        ``oversample(y, rng)``, when given, returns the positions (with
        repeats) of the training rows to use, from their targets (e.g. class
        balancing); it is applied once, after the validation split.
        """
        import contextlib

        import keras

        _check_fit_options(epochs, resume, checkpoint_dir)
        chunk = check_chunk_size(chunk_size)
        if seed is not None:
            keras.utils.set_random_seed(int(seed))
        train_batch = int(batch_size or min(self.batch_size, 64))
        if targets is None:
            targets = self._default_targets()
        with contextlib.ExitStack() as stack:
            ds, rows = stack.enter_context(open_rows(spectra))
            z_file, ebv_file = (_per_file_row(v, rows, len(ds)) for v in (z, ebv))
            y = dataset_targets(self, ds, rows, targets)
            finite = np.all(np.isfinite(y), axis=1)
            if not finite.any():
                raise ValueError(f"no spectrum of {ds.path} has a finite target")
            if not finite.all():
                log.info("%d spectra left out of training (NaN target)", int((~finite).sum()))
            rows, y = rows[finite], y[finite].astype(np.float32)

            def streamed(d, r, t, **kw):  # validation: batches as Keras' default
                return training_stream(d, r, t, self, batch_size=train_batch,
                                       chunk_size=chunk, shuffle=False, seed=0, **kw)

            on_arrays = on_rows = None  # what the metrics are computed on
            if isinstance(validation, tuple):
                train, _, how = split_dataset_rows(ds, rows, None, seed)
                source, val_targets = validation
                val_targets = targets if val_targets is None else val_targets
                if is_dataset_input(source):
                    vds, vrows = stack.enter_context(open_rows(source))
                    vy = dataset_targets(self, vds, vrows, val_targets)
                    ok = np.all(np.isfinite(vy), axis=1)
                    on_rows = (vds, vrows[ok], vy[ok].astype(np.float32), None, None)
                    val_data = streamed(*on_rows[:3])
                else:
                    xv, yv = self._prepare_training(source, val_targets)
                    on_arrays = val_data = (self._network_input(xv), yv)
                n_val = len(val_data[1]) if on_arrays else len(on_rows[1])
                how += "; validation spectra given"
            else:
                train, val, how = split_dataset_rows(ds, rows, validation, seed)
                val_data, n_val = None, 0
                if val is not None:
                    on_rows = (ds, rows[val], y[val], z_file, ebv_file)
                    val_data = streamed(*on_rows[:3], z=z_file, ebv=ebv_file)
                    n_val = len(val)
            train_rows, train_y = rows[train], y[train]
            if on_rows is None and on_arrays is None:
                on_rows = (ds, train_rows, train_y, z_file, ebv_file)

            def evaluate():
                if on_arrays is not None:
                    return on_arrays
                d, r, t, z_rows, ebv_rows = on_rows
                return stream_outputs(self, d, r, t, chunk_size=chunk, z=z_rows, ebv=ebv_rows)

            if oversample is not None:
                picked = np.asarray(oversample(train_y, np.random.default_rng(seed)))
                train_rows, train_y = train_rows[picked], train_y[picked]
            stream = training_stream(ds, train_rows, train_y, self, batch_size=train_batch,
                                     chunk_size=chunk, shuffle=True, seed=seed,
                                     z=z_file, ebv=ebv_file)
            log.info("training on %d spectra of %s streamed in chunks of %d (validation: %s)",
                     len(train_rows), ds.path.name, chunk, how)
            self._train(
                # Keras must not shuffle the batches: the stream orders them by chunk
                {"x": stream, "shuffle": False}, val_data,
                build=lambda: (_as_list(stream[0][0]), train_y), evaluate=evaluate,
                n_train=len(train_rows), n_validation=n_val, epochs=epochs,
                learning_rate=learning_rate, patience=patience, callbacks=callbacks,
                checkpoint_dir=checkpoint_dir, resume=resume, verbose=verbose,
            )
        if stream.n_unusable:
            log.info("%d training spectra were unusable after preprocessing (weight 0)",
                     stream.n_unusable)
        self.metadata["training_set"] = {
            **self.metadata.get("training_set", {}),
            "streamed": True,
            "chunk_size": chunk,
            "validation_rows": how,
            "n_unusable": stream.n_unusable,
        }
        return self

    def _fit_arrays(self, x, y, *, validation, epochs, batch_size, learning_rate,
                    patience, callbacks, checkpoint_dir, resume, seed, verbose):
        """Train on network inputs ``x`` (array or list of arrays) and targets ``y``."""
        import keras

        _check_fit_options(epochs, resume, checkpoint_dir)
        rng = np.random.default_rng(seed)
        if seed is not None:
            keras.utils.set_random_seed(int(seed))
        x = self._network_input(x)
        x_val = y_val = None
        if isinstance(validation, tuple):
            x_val, y_val = self._network_input(validation[0]), validation[1]
        elif validation:
            if not 0 < float(validation) < 1:
                raise ValueError(f"validation fraction must be in (0, 1), got {validation}")
            order = rng.permutation(len(y))
            n_val = max(1, int(round(float(validation) * len(y))))
            if n_val >= len(y):
                raise ValueError("too few spectra to hold out a validation set")
            x_val, y_val = _take(x, order[:n_val]), y[order[:n_val]]
            x, y = _take(x, order[n_val:]), y[order[n_val:]]
        train_batch = int(batch_size or min(self.batch_size, 64))
        return self._train(
            {"x": x, "y": y, "batch_size": train_batch, "shuffle": True},
            None if x_val is None else (x_val, y_val),
            build=lambda: (x, y),
            evaluate=lambda: (x, y) if x_val is None else (x_val, y_val),
            n_train=len(y), n_validation=0 if y_val is None else len(y_val),
            epochs=epochs, learning_rate=learning_rate, patience=patience,
            callbacks=callbacks, checkpoint_dir=checkpoint_dir, resume=resume,
            verbose=verbose,
        )

    def _train(self, data, validation_data, *, build, evaluate, n_train, n_validation,
               epochs, learning_rate, patience, callbacks, checkpoint_dir, resume, verbose):
        """
        The Keras training loop shared by in-memory and streamed training.

        ``data`` holds the arguments of `keras.Model.fit` that carry the
        training data (arrays with a batch size, or a ``PyDataset``);
        ``build()`` returns the ``(x, y)`` a new network is built from (input
        shape, target mean and spread); ``evaluate()`` the ``(x, y)`` the
        metrics are computed on.
        """
        import keras

        schedule = self._schedule(learning_rate)
        initial_epoch, history = 0, {}
        checkpoint = Path(checkpoint_dir) if checkpoint_dir is not None else None
        if resume and (checkpoint / "last.keras").is_file():
            self._keras, initial_epoch, history = _load_checkpoint(checkpoint)
            log.info("resuming training from epoch %d (%s)", initial_epoch, checkpoint)
        elif self._keras is None:
            self._build(*build())
        if initial_epoch == 0 or not self._keras.compiled:
            self._compile(schedule)
        if initial_epoch >= epochs:
            log.info("nothing to do: checkpoint already at epoch %d", initial_epoch)
            self.history = history
            return self

        monitor = "val_loss" if validation_data is not None else "loss"
        cbs = [
            keras.callbacks.EarlyStopping(monitor=monitor, patience=patience,
                                          restore_best_weights=True),
            keras.callbacks.ReduceLROnPlateau(
                monitor=monitor,
                factor=schedule["final_learning_rate"] / schedule["learning_rate"],
                patience=max(1, patience // 2),
                min_lr=schedule["final_learning_rate"],
            ),
            keras.callbacks.TerminateOnNaN(),
        ]
        if checkpoint is not None:
            checkpoint.mkdir(parents=True, exist_ok=True)
            cbs += [
                keras.callbacks.ModelCheckpoint(checkpoint / "best.keras",
                                                monitor=monitor, save_best_only=True),
                _state_callback(checkpoint, history),
            ]
        cbs += list(callbacks or [])
        if hasattr(data["x"], "set_epoch"):  # a stream: a new order at every epoch
            cbs.insert(0, epoch_callback(data["x"]))
        with _keras_numpy_warnings():
            result = self._keras.fit(
                **data,
                validation_data=validation_data,
                epochs=int(epochs),
                initial_epoch=initial_epoch,
                callbacks=cbs,
                verbose=verbose,
            )
        for key, values in result.history.items():
            history.setdefault(key, []).extend(float(v) for v in values)
        self.history = history
        self.metadata.pop("uncertainty", None)  # new weights: recalibrate
        x_eval, y_eval = evaluate()
        self.metadata["metrics"] = {
            "evaluated_on": "validation" if validation_data is not None else "training",
            **self._metrics(x_eval, y_eval),
        }
        self.metadata["training_set"] = {
            **self.metadata.get("training_set", {}),
            "n_train": int(n_train),
            "n_validation": int(n_validation),
            "epochs_run": len(history.get("loss", [])),
        }
        self.metadata["sha256"] = ""  # the weights changed: no file matches them
        return self

    def _base_schedule(self):
        """The optimiser schedule before any ``learning_rate`` override (a new dict)."""
        from ..models.architectures import training_schedule

        return training_schedule(self.architecture)

    def _schedule(self, learning_rate):
        schedule = self._base_schedule()
        if learning_rate is not None:
            if not learning_rate > 0:
                raise ValueError(f"learning_rate must be positive, got {learning_rate}")
            schedule["learning_rate"] = float(learning_rate)
            schedule["final_learning_rate"] = min(schedule["final_learning_rate"],
                                                  float(learning_rate))
        return schedule

    def _build(self, x, y):
        x = x[0] if isinstance(x, list) else x
        from ..models.architectures import build_model

        loc = np.mean(y, axis=0)
        scale = np.std(y, axis=0)
        scale = np.where(scale > 0, scale, 1.0)
        self._keras = build_model(
            self.architecture,
            x.shape[-2],
            n_channels=self.pipeline.n_channels,
            n_targets=y.shape[1],
            n_scalars=self.pipeline.n_scalars,
            target_loc=[float(v) for v in loc],
            target_scale=[float(v) for v in scale],
            options=self.metadata["architecture"]["options"],
            name=self.metadata["name"].replace(" ", "_"),
        )

    def _compile(self, schedule):
        import keras

        optimizer = keras.optimizers.get(
            {"class_name": schedule["optimizer"],
             "config": {"learning_rate": schedule["learning_rate"]}}
        )
        self._keras.compile(optimizer=optimizer, loss=self._loss())

    def _loss(self):
        """Training loss: Gaussian negative log-likelihood of the mean/variance head."""
        from ..models.heads import GaussianNLL

        return GaussianNLL()

    def _network_input(self, x):
        if self._epoch_model and not isinstance(x, (list, NetworkOutputs)):
            return [x[:, None], np.ones((len(x), 1), dtype=np.float32)]
        return x

    def _metrics(self, x, y):
        """Accuracy and uncertainty calibration of the network on (x, y)."""
        k = y.shape[1]
        mean, std = _mean_std(self._forward(x), k)
        std = std * self.sigma_scale
        metrics = {}
        for i, name in enumerate(self.metadata["target"]["names"]):
            resid = mean[:, i] - y[:, i]
            var = np.var(y[:, i])
            metrics[name] = {
                "n": int(len(y)),
                "rmse": float(np.sqrt(np.mean(resid**2))),
                "mae": float(np.mean(np.abs(resid))),
                "bias": float(np.mean(resid)),
                "r2": float(1 - np.mean(resid**2) / var) if var > 0 else float("nan"),
                "median_err": float(np.median(std[:, i])),
                # ≈1 when the predicted uncertainties are calibrated
                "pull_std": float(np.std(resid / std[:, i])),
                "coverage_68": float(np.mean(np.abs(resid) < std[:, i])),
            }
        return metrics

    def calibrate_uncertainties(self, spectra, targets, *, z=None, ebv=None):
        """
        Rescale the predicted uncertainties so that 68.27 % intervals cover.

        Post-hoc temperature scaling (Guo et al. 2017, ICML; Kuleshov et al.
        2018, ICML): one factor ``T`` multiplies every predicted standard
        deviation, chosen on held-out spectra (never the training set) as the
        68.27th percentile of ``|prediction - target| / sigma``, so that
        ``|residual| < T sigma`` for 68.27 % of them. The means are unchanged.

        Parameters
        ----------
        spectra : `specutils.Spectrum`, list, `~spectralnn.SpectrumBatch` or path(s)
            Validation spectra.
        targets : array-like, `~astropy.units.Quantity` or str
            Their targets (as in `fit`).
        z, ebv : float or array-like, optional
            Redshift and E(B-V) (default: the spectra's meta).

        Returns
        -------
        self : `Estimator`
            With ``metadata['uncertainty']`` holding ``sigma_scale`` and the
            coverage before and after.
        """
        x, y = self._prepare_training(spectra, targets, z, ebv)
        return self._calibrate_arrays(x, y)

    def _calibrate_arrays(self, x, y):
        self._require_trained()
        k = y.shape[1]
        mean, std = _mean_std(self._forward(self._network_input(x)), k)
        ratio = np.abs(mean - y) / std
        ratio = ratio[np.all(np.isfinite(ratio), axis=1)]
        if len(ratio) < 10:
            raise ValueError("calibrating uncertainties needs 10 or more usable spectra")
        scale = float(np.percentile(ratio, 68.27))
        self.metadata["uncertainty"] = {
            "sigma_scale": scale,
            "method": "temperature scaling: 68.27th percentile of |residual|/sigma",
            "n": int(len(ratio)),
            "coverage_68_before": float(np.mean(ratio < 1.0)),
            "coverage_68_after": float(np.mean(ratio < scale)),
        }
        log.info("uncertainties scaled by %.3f (from %d spectra)", scale, len(ratio))
        return self

    # ------------------------------------------------------------- save/load
    def save(self, path, *, name=None, version=None, training_set=None):
        """
        Write the network and its metadata (``<path>.keras`` + ``<path>.json``).

        Parameters
        ----------
        path : str or `~pathlib.Path`
            Destination (a ``.keras`` suffix is optional).
        name, version : str, optional
            Model name and version written to the metadata.
        training_set : dict, optional
            Description of the training set (merged into the metadata).

        Returns
        -------
        path : `~pathlib.Path`
            The ``.keras`` file.
        """
        self._require_trained()
        metadata = json.loads(json.dumps(self.metadata))
        if name is not None:
            metadata["name"] = str(name)
        if version is not None:
            metadata["version"] = str(version)
        if training_set:
            metadata["training_set"] = {**metadata["training_set"], **training_set}
        written = save_model(self._keras, path, metadata)
        saved = json.loads(written.with_suffix(".json").read_text())
        self.metadata = saved
        self.path = written
        return written

    @classmethod
    def load(cls, path, **kwargs):
        """
        Read an estimator saved with `save` (sha256-checked, safe mode).

        Parameters
        ----------
        path : str or `~pathlib.Path`
            The ``.keras`` file (or its ``.json``, or their common stem).
        **kwargs
            Other settings of the estimator (e.g. ``batch_size``).

        Returns
        -------
        estimator : `Estimator`
        """
        return cls(model=load_model(path, task=cls.task), **kwargs)


def _take(x, rows):
    """Rows of an input array, or of each array of a multi-input list."""
    return [a[rows] for a in x] if isinstance(x, list) else x[rows]


def _mean_std(out, k):
    mean = out[:, :k]
    std = np.sqrt(np.exp(out[:, k:2 * k]))
    return mean, std


def _error_unit(unit):
    """Unit of the uncertainty of a value in ``unit`` (dex for logarithmic units)."""
    if isinstance(unit, u.LogUnit):
        return unit._default_function_unit
    return unit


def _strip(quantity, unit, name):
    try:
        return np.array(quantity.to_value(unit), dtype=np.float64)
    except u.UnitsError as exc:
        raise u.UnitsError(f"{name} targets must be in {unit}, got {quantity.unit}") from exc


def _state_callback(folder, history):
    """A callback writing last.keras and state.json after every epoch."""
    import keras

    class _State(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.history = {k: list(v) for k, v in history.items()}

        def on_epoch_end(self, epoch, logs=None):
            for key, value in (logs or {}).items():
                self.history.setdefault(key, []).append(float(value))
            self.model.save(folder / "last.keras")
            state = {"epoch": epoch + 1, "history": self.history}
            tmp = folder / "state.json.tmp"
            tmp.write_text(json.dumps(state))
            os.replace(tmp, folder / "state.json")

    return _State()


def _load_checkpoint(folder):
    """(model, next epoch, history) from a checkpoint folder (safe mode)."""
    import keras

    from ..models.registry import _custom_objects

    state_path = folder / "state.json"
    if not state_path.is_file():
        raise ModelFileError(f"checkpoint {folder} has last.keras but no state.json")
    state = json.loads(state_path.read_text())
    try:
        with _keras_numpy_warnings():
            model = keras.saving.load_model(folder / "last.keras",
                                            custom_objects=_custom_objects(),
                                            safe_mode=True)
    except (ValueError, TypeError, OSError) as exc:
        raise ModelFileError(f"cannot resume from {folder}: {exc}") from exc
    history = {k: [float(x) for x in v] for k, v in state.get("history", {}).items()}
    return model, int(state["epoch"]), history


def _as_list(x):
    """Several network inputs as a list (a stream yields them as a tuple)."""
    return list(x) if isinstance(x, tuple) else x


def _check_fit_options(epochs, resume, checkpoint_dir):
    if epochs < 1:
        raise ValueError(f"epochs must be positive, got {epochs}")
    if resume and checkpoint_dir is None:
        raise ValueError("resume=True needs checkpoint_dir")


def _per_file_row(value, rows, n_file):
    """
    A per-spectrum argument of a dataset input, indexed by file row.

    ``value`` has one entry per selected row (in ``rows`` order); scalars and
    None pass through.
    """
    if value is None or np.ndim(value) == 0:
        return value
    value = np.asarray(value, dtype=np.float64)
    if value.shape != (len(rows),):
        raise ValueError(f"got {value.shape[0]} values for {len(rows)} spectra")
    out = np.full(n_file, np.nan)
    out[rows] = value
    return out


def _chunk_of(value, start, stop):
    """The rows ``start:stop`` of a per-spectrum argument (scalars pass through)."""
    if value is None or np.ndim(value) == 0:
        return value
    return value[start:stop]
