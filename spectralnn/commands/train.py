"""
Train a model on an HDF5 dataset of simulated spectra.

``spectralnn train mass --data qso.h5 -o mass.keras`` reads the dataset in
chunks, runs the estimator's preprocessing on each (so training sees exactly
what prediction will), holds out a validation fraction, trains with early
stopping and per-epoch checkpoints, rescales the predicted uncertainties on
the validation set (`~spectralnn.estimators.Estimator.calibrate_uncertainties`)
and writes the ``.keras`` + ``.json`` pair. ``mass``, ``redshift`` and
``classifier`` (its classes balanced by oversampling, its probabilities
temperature-scaled) share this path; ``dla`` has its own.

Datasets larger than memory are streamed (``--stream``): instead of holding
every preprocessed input, `~spectralnn.estimators.Estimator.fit` reads and
preprocesses ``--chunk-size`` spectra at a time, every epoch, in a new
seeded order; the validation rows (the dataset's ``split`` column when it
has one, else a seeded split by object) are run through the network chunk by
chunk for the metrics and the calibration. Without ``--stream`` or
``--no-stream`` the dataset is streamed when its network inputs would take
more than `STREAM_THRESHOLD` bytes (2 GiB, about 230,000 spectra for the mass
network). Streaming costs the preprocessing of every spectrum at every epoch.
"""

import argparse
import json

import numpy as np

from ..logger import log

__all__ = ["add_arguments", "run", "prepare_dataset", "STREAM_THRESHOLD"]

#: task name on the command line -> (estimator class path, default target column;
#: None: the classifier's labels from the truth columns class, subclass, bal)
_TASKS = {
    "mass": ("spectralnn.estimators.mass:MassEstimator", "virial_log_mbh"),
    "redshift": ("spectralnn.estimators.redshift:RedshiftEstimator", "z"),
    "classifier": ("spectralnn.estimators.classify:SpectralClassifier", None),
    # trained on the simulator's absorber truth columns (dla1_z, ...)
    "dla": ("spectralnn.estimators.dla:DLAFinder", "dla1_z"),
}

#: network inputs (bytes) above which the dataset is streamed by default
STREAM_THRESHOLD = 2 * 1024**3


def add_arguments(parser):
    """
    Declare the options of ``spectralnn train``.

    Parameters
    ----------
    parser : `argparse.ArgumentParser`
        The subcommand's parser.

    Examples
    --------
    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="spectralnn train")
    >>> add_arguments(parser)
    >>> args = parser.parse_args(["mass", "--data", "qso.h5", "-o", "mass.keras"])
    >>> args.task, args.architecture, args.epochs
    ('mass', 'resnet1d', 30)
    """
    parser.add_argument("task", choices=sorted(_TASKS), help="what to train")
    parser.add_argument("--data", required=True, help="training HDF5 dataset")
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        help="output model (.keras; a .json is written beside it)",
    )
    parser.add_argument(
        "--target",
        default=None,
        help="truth column to learn (mass: virial_log_mbh, redshift: z; classifier: "
        "labels from class, subclass, bal)",
    )
    parser.add_argument(
        "--architecture",
        default="resnet1d",
        help="network architecture (default: resnet1d)",
    )
    parser.add_argument(
        "--options",
        default=None,
        help="architecture options as JSON, e.g. '{\"filters\": 16}'",
    )
    parser.add_argument(
        "--preprocessing",
        default=None,
        help="preprocessing of the new network as JSON, overriding the task's default "
        "key by key, e.g. '{\"grid\": {\"start\": 3600, \"stop\": 10000, "
        "\"dloglam\": 5e-4}}'",
    )
    parser.add_argument(
        "--epochs", type=int, default=30, help="maximum epochs (default 30)"
    )
    parser.add_argument(
        "--batch-size", type=int, default=128, help="training batch size (default 128)"
    )
    parser.add_argument(
        "--learning-rate",
        type=float,
        default=None,
        help="initial learning rate (default: the architecture's)",
    )
    parser.add_argument(
        "--patience",
        type=int,
        default=6,
        help="epochs without improvement before stopping (default 6)",
    )
    parser.add_argument(
        "--validation",
        type=float,
        default=0.1,
        help="fraction held out for early stopping and calibration",
    )
    parser.add_argument(
        "--max-spectra",
        type=int,
        default=None,
        help="use only the first N spectra of the dataset",
    )
    parser.add_argument(
        "--checkpoint-dir",
        default=None,
        help="folder for per-epoch checkpoints (enables --resume)",
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue from --checkpoint-dir"
    )
    parser.add_argument(
        "--time-limit",
        type=float,
        default=None,
        help="stop after this many minutes of training (the best "
        "epoch's weights are kept)",
    )
    parser.add_argument(
        "--stream",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="read and preprocess the dataset a chunk at a time at every epoch instead "
        "of holding it in memory (default: stream when the network inputs would take "
        "more than 2 GiB)",
    )
    parser.add_argument(
        "--chunk-size",
        type=int,
        default=1024,
        help="spectra read and preprocessed at a time (default 1024)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--name", default=None, help="model name in the metadata")
    parser.add_argument(
        "--version", default="1.0.0", help="model version (default 1.0.0)"
    )


def prepare_dataset(estimator, path, target, *, max_spectra=None, chunk_size=5000):
    """
    Network inputs and targets of an HDF5 dataset, preprocessed in chunks.

    Parameters
    ----------
    estimator : `~spectralnn.estimators.Estimator`
        Its pipeline does the preprocessing.
    path : str or `~pathlib.Path`
        The dataset (`spectralnn.datasets.SpectrumDataset`).
    target : str or None
        Truth column holding the targets (None: the estimator's default, e.g.
        the classifier's labels).
    max_spectra : int, optional
        Read only the first ``max_spectra`` spectra.
    chunk_size : int, optional
        Spectra preprocessed at a time (bounds the memory). Default 5000.

    Returns
    -------
    x : `~numpy.ndarray` or list of `~numpy.ndarray`
        Network inputs of the usable spectra with a finite target.
    y : `~numpy.ndarray`
        Targets as the estimator trains on them, float32, shape ``(n, k)``.
    rows : `~numpy.ndarray`
        Their row numbers in the dataset.
    provenance : dict
        The dataset's provenance attributes.

    Examples
    --------
    >>> from spectralnn.datasets import write_dataset
    >>> from spectralnn.estimators import MassEstimator
    >>> from spectralnn.simulate import simulate_quasars
    >>> path = write_dataset(simulate_quasars(4, seed=1, z_range=(0.5, 1.0)),
    ...                      getfixture("tmp_path") / "qso.h5")
    >>> x, y, rows, provenance = prepare_dataset(MassEstimator("resnet1d"), path,
    ...                                          "virial_log_mbh")
    >>> y.shape, rows.tolist()
    ((4, 1), [0, 1, 2, 3])
    """
    from ..datasets import SpectrumDataset
    from ..estimators._streaming import dataset_targets

    with SpectrumDataset(path) as ds:
        n = len(ds) if max_spectra is None else min(int(max_spectra), len(ds))
        provenance = dict(ds.provenance)
        # from the label column alone (the classifier fixes its labels here)
        y_all = dataset_targets(estimator, ds, np.arange(n), target)
        parts, ys, rows = [], [], []
        for start in range(0, n, chunk_size):
            index = np.arange(start, min(start + chunk_size, n))
            batch = ds.read(index)
            y = y_all[index]
            prepared = estimator.pipeline(batch)
            keep = prepared.usable & np.all(np.isfinite(y), axis=1)
            x = prepared.network_inputs
            parts.append([a[keep] for a in x] if isinstance(x, list) else [x[keep]])
            ys.append(y[keep])
            rows.append(index[keep])
            log.info("preprocessed %d / %d spectra", index[-1] + 1, n)
    x = [np.concatenate([p[i] for p in parts]) for i in range(len(parts[0]))]
    x = x if len(x) > 1 else x[0]
    y = np.concatenate(ys).astype(np.float32)
    return x, y, np.concatenate(rows), provenance


def _time_limit(minutes):
    """Build a callback ending training after ``minutes``, best weights restored."""
    if minutes is None:
        return None
    import time

    import keras

    class _TimeLimit(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.start = time.monotonic()
            self.best, self.weights = np.inf, None

        def on_epoch_end(self, epoch, logs=None):
            loss = (logs or {}).get("val_loss", np.inf)
            if loss < self.best:
                self.best, self.weights = loss, self.model.get_weights()
            if time.monotonic() - self.start > 60 * minutes:
                log.info(
                    "time limit of %.1f min reached after epoch %d", minutes, epoch + 1
                )
                self.model.stop_training = True

        def on_train_end(self, logs=None):
            if self.weights is not None:
                self.model.set_weights(self.weights)

    return [_TimeLimit()]


def _plain(value):
    """Return a JSON-friendly copy of an HDF5 attribute."""
    if hasattr(value, "item") and np.ndim(value) == 0:
        value = value.item()
    return value if isinstance(value, (str, int, float, bool)) else str(value)


def _preprocessing_option(cls, text):
    """The ``--preprocessing`` JSON over the task's default, key by key (None if unset)."""
    if not text:
        return None
    return {**cls.default_preprocessing, **json.loads(text)}


def _estimator_class(task):
    import importlib

    module, name = _TASKS[task][0].split(":")
    return getattr(importlib.import_module(module), name)


def run(args):
    """
    Run ``spectralnn train``.

    Parameters
    ----------
    args : `argparse.Namespace`
        Parsed options.

    Returns
    -------
    status : int
        0 on success.

    Examples
    --------
    Train a tiny network for one epoch on a small simulated dataset:

    .. doctest-requires:: keras

        >>> import argparse
        >>> from spectralnn.datasets import write_dataset
        >>> from spectralnn.simulate import simulate_quasars
        >>> folder = getfixture("tmp_path")
        >>> data = write_dataset(simulate_quasars(40, seed=1, z_range=(0.5, 1.5)),
        ...                      folder / "qso.h5")
        >>> parser = argparse.ArgumentParser(prog="spectralnn train")
        >>> add_arguments(parser)
        >>> import contextlib, io
        >>> with contextlib.redirect_stdout(io.StringIO()):  # Keras' progress lines
        ...     status = run(parser.parse_args([
        ...         "mass", "--data", str(data), "-o", str(folder / "mass.keras"),
        ...         "--options", '{"filters": 4, "stages": 1, "dense_units": 8}',
        ...         "--epochs", "1", "--batch-size", "16", "--validation", "0.3"]))
        >>> status
        0
        >>> sorted(p.name for p in folder.glob("mass.*"))
        ['mass.json', 'mass.keras']
    """
    if args.task == "dla":
        return _run_dla(args)
    cls = _estimator_class(args.task)
    target = args.target or _TASKS[args.task][1]
    options = json.loads(args.options) if args.options else None
    est = cls(args.architecture, architecture_options=options,
              preprocessing=_preprocessing_option(cls, getattr(args, "preprocessing", None)))
    if not 0 < args.validation < 1:
        log.error("--validation must be in (0, 1), got %s", args.validation)
        return 1
    stream = args.stream
    if stream is None:
        stream = _inputs_too_big(est, args.data, args.max_spectra)
    fit_options = {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "patience": args.patience,
        "callbacks": _time_limit(args.time_limit),
        "checkpoint_dir": args.checkpoint_dir,
        "resume": args.resume,
        "verbose": 2,
    }
    fit = _fit_streaming if stream else _fit_in_memory
    done = fit(est, args, target, fit_options)
    if done is None:
        return 1
    val_rows, how, n_spectra, provenance, x_val, y_val = done
    _calibrate(est, args.data, val_rows, target, x_val, y_val)
    training_set = {
        "dataset": str(args.data),
        "target": target if target is not None else "class, subclass, bal",
        "n_spectra": int(n_spectra),
        "validation_rows": how,
        "streamed": bool(stream),
        "provenance": {k: _plain(v) for k, v in provenance.items()},
        "history": {
            k: [round(float(v), 5) for v in vals] for k, vals in est.history.items()
        },
    }
    path = est.save(
        args.output, name=args.name, version=args.version, training_set=training_set
    )
    m = est.metadata["metrics"]
    log.info("wrote %s: validation %s", path, json.dumps(m))
    return 0


def _inputs_too_big(estimator, path, max_spectra):
    """Whether the network inputs of a dataset exceed `STREAM_THRESHOLD` bytes."""
    from ..datasets import SpectrumDataset

    with SpectrumDataset(path) as ds:
        n = len(ds) if max_spectra is None else min(int(max_spectra), len(ds))
        pixels = estimator.pipeline.n_pixels or ds.n_pixels
    pipe = estimator.pipeline
    need = n * (pixels * pipe.n_channels + pipe.n_scalars) * 4  # float32
    big = need > STREAM_THRESHOLD
    log.info("the network inputs of %d spectra take %.2f GB: %s", n, need / 1e9,
             "streaming the dataset" if big else "holding them in memory")
    return big


def _oversampler(estimator):
    """``(y, rng) -> rows`` balancing the classifier's classes, or None."""
    from ..estimators.classify import SpectralClassifier, _balanced_rows

    if not isinstance(estimator, SpectralClassifier):
        return None
    return lambda y, rng: _balanced_rows(estimator._groups(y[:, 0]), rng)


def _split_column(path, rows):
    """The dataset's ``split`` column at ``rows`` (None when it has none)."""
    from ..datasets import SpectrumDataset

    with SpectrumDataset(path) as ds:
        if "split" not in ds.read_meta(slice(0, 0)).colnames:
            return None
        return np.char.strip(np.asarray(ds.read_meta(rows, columns=["split"])["split"],
                                        dtype=str))


def _fit_in_memory(est, args, target, fit_options):
    """Preprocess the whole dataset once, hold it in memory and train."""
    x, y, rows, provenance = prepare_dataset(
        est, args.data, target, max_spectra=args.max_spectra, chunk_size=args.chunk_size
    )
    log.info("%d usable spectra with a finite %s", len(y), target or "label")
    rng = np.random.default_rng(args.seed)
    split = _split_column(args.data, rows)
    if split is not None:
        train, val = np.flatnonzero(split == "train"), np.flatnonzero(split == "validation")
        how = "the dataset's split column ('train' / 'validation' rows)"
    else:
        order = rng.permutation(len(y))
        n_val = int(round(args.validation * len(y)))
        val, train = order[:n_val], order[n_val:]
        how = f"random fraction {args.validation:.3f}, seed {args.seed}"
    if not (len(val) and len(train)):
        log.error("the validation split (%s) leaves no training or validation spectra", how)
        return None
    oversample = _oversampler(est)
    if oversample is not None:
        train = train[oversample(y[train], rng)]

    def take(a, idx):
        return [v[idx] for v in a] if isinstance(a, list) else a[idx]

    x_val, y_val = take(x, val), y[val]
    est._fit_arrays(take(x, train), y[train], validation=(x_val, y_val), seed=args.seed,
                    **fit_options)
    return rows[val], how, len(y), provenance, x_val, y_val


def _fit_streaming(est, args, target, fit_options):
    """Train from the dataset a chunk at a time (`Estimator.fit` on a dataset)."""
    from ..datasets import SpectrumDataset
    from ..estimators._streaming import DatasetRows, dataset_targets, split_dataset_rows

    with SpectrumDataset(args.data) as ds:
        n = len(ds) if args.max_spectra is None else min(int(args.max_spectra), len(ds))
        provenance = dict(ds.provenance)
        rows = np.arange(n)
        y = dataset_targets(est, ds, rows, target)
        rows = rows[np.all(np.isfinite(y), axis=1)]
        log.info("%d spectra with a finite %s", len(rows), target or "label")
        try:
            train, val, how = split_dataset_rows(ds, rows, args.validation, args.seed)
        except ValueError as exc:
            log.error("%s", exc)
            return None
    # the split is made here (not by fit) to calibrate on the same rows after
    est._fit_dataset(
        DatasetRows(args.data, rows[train]), target,
        validation=(DatasetRows(args.data, rows[val]), target), z=None, ebv=None,
        seed=args.seed, chunk_size=args.chunk_size, oversample=_oversampler(est),
        **fit_options,
    )
    return rows[val], how, len(rows), provenance, None, None


def _calibrate(est, data, val_rows, target, x_val=None, y_val=None):
    """
    Calibrate the uncertainties on the validation rows and record the metrics.

    Estimators with their own calibration (the classifier's temperature)
    run it on the validation rows, streamed; the others are rescaled from
    ``x_val``/``y_val`` (network inputs, or streamed outputs when None).
    """
    from ..estimators._streaming import DatasetRows
    from ..estimators.base import Estimator

    view = DatasetRows(data, val_rows)
    if type(est).calibrate_uncertainties is not Estimator.calibrate_uncertainties:
        est.calibrate_uncertainties(view, target)
    if x_val is None:
        x_val, y_val = est._prepare_training(view, target)
    if type(est).calibrate_uncertainties is Estimator.calibrate_uncertainties:
        est._calibrate_arrays(x_val, y_val)
    est.metadata["metrics"] = {
        "evaluated_on": "validation",
        **est._metrics(est._network_input(x_val), y_val),
    }


def _run_dla(args):
    """``spectralnn train dla``: the DLA detector on a simulated quasar dataset."""
    from ..datasets import SpectrumDataset
    from ..estimators.dla import ARCHITECTURE, DLAFinder

    options = json.loads(args.options) if args.options else None
    architecture = ARCHITECTURE if args.architecture == "resnet1d" else args.architecture
    est = DLAFinder(architecture, architecture_options=options)
    xs, ys = [], []
    with SpectrumDataset(args.data) as ds:
        n = len(ds) if args.max_spectra is None else min(int(args.max_spectra), len(ds))
        provenance = dict(ds.provenance)
        for start in range(0, n, 5000):
            x, y = est._prepare_training(ds.read(np.arange(start, min(start + 5000, n))), None)
            xs.append(x)
            ys.append(y)
            log.info("preprocessed %d / %d spectra", min(start + 5000, n), n)
    x, y = np.concatenate(xs), np.concatenate(ys)
    order = np.random.default_rng(args.seed).permutation(len(y))
    n_val = int(round(args.validation * len(y)))
    if not 0 < n_val < len(y):
        log.error("--validation %.3f leaves no training or validation spectra",
                  args.validation)
        return 1
    val, train = order[:n_val], order[n_val:]
    est._fit_arrays(
        x[train], y[train], validation=(x[val], y[val]), epochs=args.epochs,
        batch_size=args.batch_size, learning_rate=args.learning_rate,
        patience=args.patience, callbacks=_time_limit(args.time_limit),
        checkpoint_dir=args.checkpoint_dir, resume=args.resume, seed=args.seed, verbose=2,
    )
    training_set = {
        "dataset": str(args.data),
        "target": "dla*_z, dla*_log_nhi, bal",
        "n_spectra": int(len(y)),
        "validation_rows": f"random fraction {args.validation:.3f}, seed {args.seed}",
        "provenance": {k: _plain(v) for k, v in provenance.items()},
        "history": {k: [round(float(v), 5) for v in vals] for k, vals in est.history.items()},
    }
    path = est.save(args.output, name=args.name, version=args.version,
                    training_set=training_set)
    log.info("wrote %s: validation %s", path, json.dumps(est.metadata["metrics"]))
    return 0
