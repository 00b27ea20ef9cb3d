"""
Search network hyperparameters with keras-tuner.

``spectralnn tune classifier --data train.h5 --trials 20 --directory tuning``
preprocesses the dataset once (as `spectralnn train` does), holds out a
validation fraction and runs a keras-tuner search (Bayesian optimisation by
default, O'Malley et al. 2019) over the ``resnet1d`` trunk: filters, stages,
kernel size, dense units, dropout and the learning rate, each trial trained
with early stopping and scored by its best validation loss. The search is
resumable: run the same command again with ``--resume`` and the trials
already in ``--directory`` are kept and the search goes on to ``--trials``.
The best hyperparameters are written as JSON (``best.json`` in the
directory) in the form ``spectralnn train --options`` reads, and the command
that trains the final model with them is logged.

Needs ``keras-tuner`` (``pip install "spectralnn[tune]"``).
"""

import json
import warnings
from pathlib import Path

import numpy as np

from ..logger import log

__all__ = ["add_arguments", "run", "SEARCH_SPACE"]

#: the ``resnet1d`` options searched: name -> ("choice", values) or
#: ("float", low, high[, "log"])
SEARCH_SPACE = {
    "filters": ("choice", [8, 16, 24, 32, 48]),
    "stages": ("choice", [2, 3, 4, 5]),
    "kernel_size": ("choice", [5, 7, 9, 11]),
    "dense_units": ("choice", [32, 64, 128]),
    "dropout": ("float", 0.0, 0.4),
    "learning_rate": ("float", 1e-4, 3e-3, "log"),
}


def add_arguments(parser):
    """
    Declare the options of ``spectralnn tune``.

    Parameters
    ----------
    parser : `argparse.ArgumentParser`
        The subcommand's parser.

    Examples
    --------
    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="spectralnn tune")
    >>> add_arguments(parser)
    >>> args = parser.parse_args(["classifier", "--data", "d.h5", "--trials", "5"])
    >>> args.task, args.trials, args.algorithm
    ('classifier', 5, 'bayesian')
    """
    from .train import _TASKS

    parser.add_argument("task", choices=sorted(t for t in _TASKS if t != "dla"),
                        help="what to tune")
    parser.add_argument("--data", required=True, help="training HDF5 dataset")
    parser.add_argument("--directory", default="spectralnn-tuning",
                        help="folder of the search state (default: spectralnn-tuning)")
    parser.add_argument("--trials", type=int, default=10,
                        help="number of hyperparameter sets to try (default 10)")
    parser.add_argument("--algorithm", choices=["bayesian", "random", "hyperband"],
                        default="bayesian", help="search algorithm (default: bayesian)")
    parser.add_argument("--epochs", type=int, default=10,
                        help="maximum epochs per trial (default 10)")
    parser.add_argument("--patience", type=int, default=3,
                        help="early-stopping patience per trial (default 3)")
    parser.add_argument("--batch-size", type=int, default=128,
                        help="training batch size (default 128)")
    parser.add_argument("--validation", type=float, default=0.2,
                        help="fraction held out to score the trials (default 0.2)")
    parser.add_argument("--max-spectra", type=int, default=None,
                        help="use only the first N spectra of the dataset")
    parser.add_argument("--target", default=None,
                        help="truth column to learn (as in spectralnn train)")
    parser.add_argument("--preprocessing", default=None,
                        help="preprocessing as JSON (as in spectralnn train)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the search stored in --directory")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")


def _hyperparameter(hp, name, spec):
    if spec[0] == "choice":
        return hp.Choice(name, spec[1])
    return hp.Float(name, spec[1], spec[2], sampling="log" if spec[3:] == ("log",)
                    else "linear")


def _hypermodel(cls, template, x, y):
    """A keras-tuner hypermodel building compiled networks of ``template``'s task."""
    import keras_tuner

    class _Model(keras_tuner.HyperModel):
        def build(self, hp):
            values = {name: _hyperparameter(hp, name, spec)
                      for name, spec in SEARCH_SPACE.items()}
            learning_rate = values.pop("learning_rate")
            est = cls("resnet1d", architecture_options=values,
                      preprocessing=template.pipeline.spec)
            est.metadata["labels"] = template.metadata.get("labels")
            est._build(x, y)
            est._compile(est._schedule(learning_rate))
            return est._keras

    return _Model()


def tune(estimator, x, y, *, directory, trials=10, algorithm="bayesian", epochs=10,
         patience=3, batch_size=128, validation=0.2, resume=False, seed=0):
    """
    Search the ``resnet1d`` hyperparameters of an estimator's task.

    Parameters
    ----------
    estimator : `~spectralnn.estimators.Estimator`
        An untrained estimator of the task (its class, preprocessing and, for
        the classifier, labels are used).
    x, y : `~numpy.ndarray`
        Network inputs and targets (as from `spectralnn.commands.train.prepare_dataset`).
    directory : str or `~pathlib.Path`
        Folder of the search state.
    trials : int, optional
        Number of hyperparameter sets. Default 10.
    algorithm : {'bayesian', 'random', 'hyperband'}, optional
        keras-tuner search algorithm. Default ``'bayesian'``.
    epochs, patience, batch_size : int, optional
        Training of each trial.
    validation : float, optional
        Fraction held out to score the trials. Default 0.2.
    resume : bool, optional
        Continue the search already in ``directory``. Default False (a new
        search; the old state is overwritten).
    seed : int, optional
        Seed of the split and the search.

    Returns
    -------
    best : dict
        ``options`` (architecture options), ``learning_rate``, ``val_loss`` and
        ``trials`` (number of completed trials).

    Examples
    --------
    A two-trial search on a tiny dataset (tests/test_cli_tune.py runs it):

        >>> import numpy as np
        >>> from spectralnn.estimators import RedshiftEstimator
        >>> rng = np.random.default_rng(0)
        >>> x = rng.normal(size=(64, 32, 3)).astype("float32")
        >>> y = rng.normal(size=(64, 1)).astype("float32")
        >>> est = RedshiftEstimator("resnet1d", preprocessing={
        ...     "steps": ["normalize"], "channels": ["flux", "mask", "ivar"]})
        >>> best = tune(est, x, y, directory="tuning", trials=2,
        ...             algorithm="random", epochs=1)  # doctest: +SKIP
        >>> best["trials"], sorted(best["options"])  # doctest: +SKIP
        (2, ['dense_units', 'dropout', 'filters', 'kernel_size', 'stages'])
    """
    import keras
    import keras_tuner

    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    n_val = max(1, int(round(validation * len(y))))
    val, train = order[:n_val], order[n_val:]
    hypermodel = _hypermodel(type(estimator), estimator, x, y)
    common = {"objective": "val_loss", "directory": str(directory),
              "project_name": f"{estimator.task}-resnet1d", "overwrite": not resume,
              "seed": int(seed)}
    if algorithm == "bayesian":
        tuner = keras_tuner.BayesianOptimization(hypermodel, max_trials=int(trials), **common)
    elif algorithm == "random":
        tuner = keras_tuner.RandomSearch(hypermodel, max_trials=int(trials), **common)
    elif algorithm == "hyperband":
        tuner = keras_tuner.Hyperband(hypermodel, max_epochs=int(epochs),
                                      hyperband_iterations=max(1, int(trials) // 10),
                                      **common)
    else:
        raise ValueError(f"unknown algorithm {algorithm!r}")
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=int(patience),
                                         restore_best_weights=True)
    with warnings.catch_warnings():
        # keras-tuner 1.4 still calls threading.currentThread().getName()
        warnings.filterwarnings("ignore", "(currentThread|getName)", DeprecationWarning)
        tuner.search(x[train], y[train], validation_data=(x[val], y[val]),
                     epochs=int(epochs), batch_size=int(batch_size), callbacks=[stop],
                     verbose=0)
    done = [t for t in tuner.oracle.trials.values() if t.status == "COMPLETED"]
    if not done:
        raise RuntimeError("no trial completed: see the keras-tuner log above")
    hp = tuner.get_best_hyperparameters(1)[0].values
    best_trial = min(done, key=lambda t: t.score)
    options = {k: v for k, v in hp.items() if k in SEARCH_SPACE and k != "learning_rate"}
    return {"options": options, "learning_rate": float(hp["learning_rate"]),
            "val_loss": float(best_trial.score), "trials": len(done)}


def run(args):
    """
    Run ``spectralnn tune``.

    Parameters
    ----------
    args : `argparse.Namespace`
        Parsed options.

    Returns
    -------
    status : int
        0 on success, 1 if keras-tuner is missing or the options are invalid.

    Examples
    --------
    An invalid option is refused before anything is read:

    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="spectralnn tune")
    >>> add_arguments(parser)
    >>> run(parser.parse_args(["mass", "--data", "none.h5", "--validation", "2"]))
    1
    """
    try:
        import keras_tuner  # noqa: F401
    except ImportError:
        log.error('spectralnn tune needs keras-tuner: pip install "spectralnn[tune]"')
        return 1
    from .train import _TASKS, _estimator_class, _preprocessing_option, prepare_dataset

    if not 0 < args.validation < 1:
        log.error("--validation must be in (0, 1), got %s", args.validation)
        return 1
    cls = _estimator_class(args.task)
    est = cls("resnet1d", preprocessing=_preprocessing_option(cls, args.preprocessing))
    target = args.target or _TASKS[args.task][1]
    x, y, _, _ = prepare_dataset(est, args.data, target, max_spectra=args.max_spectra)
    if isinstance(x, list):
        log.error("tuning networks with several inputs is not supported")
        return 1
    best = tune(est, x, y, directory=args.directory, trials=args.trials,
                algorithm=args.algorithm, epochs=args.epochs, patience=args.patience,
                batch_size=args.batch_size, validation=args.validation,
                resume=args.resume, seed=args.seed)
    out = Path(args.directory) / "best.json"
    out.write_text(json.dumps({"task": args.task, **best}, indent=2) + "\n")
    log.info("best of %d trials: val_loss %.4g with %s, learning rate %.3g (%s)",
             best["trials"], best["val_loss"], json.dumps(best["options"]),
             best["learning_rate"], out)
    log.info("train the final model with: spectralnn train %s --data %s -o MODEL.keras "
             "--options '%s' --learning-rate %.3g", args.task, args.data,
             json.dumps(best["options"]), best["learning_rate"])
    return 0
