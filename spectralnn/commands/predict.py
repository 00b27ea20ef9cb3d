"""
Run a trained network on spectrum files and write one table row per spectrum.

``spectralnn predict mass FILES... -o masses.ecsv`` reads the files (SDSS/BOSS
spec files, DESI coadds, FITS images, or spectralnn HDF5 datasets) in batches,
runs `spectralnn.estimators.MassEstimator` (the installed default weights, or
``--model PATH``) and writes the result table with `astropy.table.QTable.write`
(ECSV or FITS). Unreadable files and unusable spectra become flagged rows of
NaN; the run goes on.
"""

from ..errors import ModelFileError
from ..logger import log
from ._common import (
    add_io_arguments,
    check_io_arguments,
    process_files,
)

__all__ = ["add_arguments", "run"]

#: task name on the command line -> estimator class in spectralnn.estimators
TASKS = {"mass": "MassEstimator"}


def add_arguments(parser):
    """
    Declare the options of ``spectralnn predict``.

    Parameters
    ----------
    parser : `argparse.ArgumentParser`
        The subcommand's parser.
    """
    parser.add_argument("task", choices=tuple(TASKS), help="what to predict")
    add_io_arguments(parser)
    parser.add_argument("--model", default="default",
                        help="trained .keras file (with its .json) or shipped model "
                             "name (default: the installed default weights)")
    parser.add_argument("--no-virial", action="store_true",
                        help="mass: skip the classic virial columns")


def _estimator(args):
    from .. import estimators

    cls = getattr(estimators, TASKS[args.task])
    options = {"batch_size": args.batch_size}
    if args.task == "mass":
        options["virial"] = not args.no_virial
    try:
        return cls(args.model, **options)
    except ModelFileError as exc:
        hint = ""
        if args.model == "default" and args.task == "mass":
            hint = ("; give a trained model with --model PATH, or use "
                    "'spectralnn measure' for classic virial masses (no network)")
        raise ModelFileError(f"{exc}{hint}") from exc


def run(args):
    """
    Run ``spectralnn predict``.

    Parameters
    ----------
    args : `argparse.Namespace`
        Parsed options.

    Returns
    -------
    status : int
        0 on success, 1 when nothing could be predicted.
    """
    problem = check_io_arguments(args)
    if problem:
        log.error(problem)
        return 1
    estimator = _estimator(args)
    log.info("predicting %s with %r", args.task, estimator)
    return process_files(args, f"predict {args.task}",
                         lambda batch: estimator.predict(batch, z=args.z))
