"""
Train a model on an HDF5 dataset of simulated spectra.

``spectralnn train mass --data qso.h5 -o mass.keras`` reads the dataset in
chunks, runs the estimator's preprocessing on each (so training sees exactly
what prediction will), holds out a validation fraction, trains with early
stopping and per-epoch checkpoints, rescales the predicted uncertainties on
the validation set (`~spectralnn.estimators.Estimator.calibrate_uncertainties`)
and writes the ``.keras`` + ``.json`` pair.
"""

import json

import numpy as np

from ..logger import log

__all__ = ["add_arguments", "run", "prepare_dataset"]

#: task name on the command line -> (estimator class path, default target column)
_TASKS = {"mass": ("spectralnn.estimators.mass:MassEstimator", "virial_log_mbh")}


def add_arguments(parser):
    """
    Declare the options of ``spectralnn train``.

    Parameters
    ----------
    parser : `argparse.ArgumentParser`
        The subcommand's parser.
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
        "--target", default=None, help="truth column to learn (mass: virial_log_mbh)"
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
    target : str
        Truth column holding the targets.
    max_spectra : int, optional
        Read only the first ``max_spectra`` spectra.
    chunk_size : int, optional
        Spectra preprocessed at a time (bounds the memory). Default 5000.

    Returns
    -------
    x : `~numpy.ndarray` or list of `~numpy.ndarray`
        Network inputs of the usable spectra with a finite target.
    y : `~numpy.ndarray`
        Targets, float32, shape ``(n, 1)``.
    rows : `~numpy.ndarray`
        Their row numbers in the dataset.
    provenance : dict
        The dataset's provenance attributes.
    """
    from ..datasets import SpectrumDataset

    with SpectrumDataset(path) as ds:
        n = len(ds) if max_spectra is None else min(int(max_spectra), len(ds))
        provenance = dict(ds.provenance)
        if target not in ds.meta.colnames:
            raise ValueError(f"{path} has no truth column {target!r}")
        parts, ys, rows = [], [], []
        for start in range(0, n, chunk_size):
            index = np.arange(start, min(start + chunk_size, n))
            batch = ds.read(index)
            y = np.asarray(batch.meta[target], dtype=np.float64)
            prepared = estimator.pipeline(batch)
            keep = prepared.usable & np.isfinite(y)
            x = prepared.network_inputs
            parts.append([a[keep] for a in x] if isinstance(x, list) else [x[keep]])
            ys.append(y[keep])
            rows.append(index[keep])
            log.info("preprocessed %d / %d spectra", index[-1] + 1, n)
    x = [np.concatenate([p[i] for p in parts]) for i in range(len(parts[0]))]
    x = x if len(x) > 1 else x[0]
    y = np.concatenate(ys).astype(np.float32)[:, None]
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
    """
    cls = _estimator_class(args.task)
    target = args.target or _TASKS[args.task][1]
    options = json.loads(args.options) if args.options else None
    est = cls(args.architecture, architecture_options=options)
    x, y, rows, provenance = prepare_dataset(
        est, args.data, target, max_spectra=args.max_spectra
    )
    log.info("%d usable spectra with a finite %s", len(y), target)
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(y))
    n_val = int(round(args.validation * len(y)))
    if not 0 < n_val < len(y):
        log.error(
            "--validation %.3f leaves no training or validation spectra",
            args.validation,
        )
        return 1
    val, train = order[:n_val], order[n_val:]

    def take(a, idx):
        return [v[idx] for v in a] if isinstance(a, list) else a[idx]

    x_val, y_val = take(x, val), y[val]
    est._fit_arrays(
        take(x, train),
        y[train],
        validation=(x_val, y_val),
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        patience=args.patience,
        callbacks=_time_limit(args.time_limit),
        checkpoint_dir=args.checkpoint_dir,
        resume=args.resume,
        seed=args.seed,
        verbose=2,
    )
    est._calibrate_arrays(x_val, y_val)
    est.metadata["metrics"] = {
        "evaluated_on": "validation",
        **est._metrics(est._network_input(x_val), y_val),
    }
    training_set = {
        "dataset": str(args.data),
        "target": target,
        "n_spectra": int(len(y)),
        "validation_rows": f"random fraction {args.validation:.3f}, seed {args.seed}",
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
