"""
Run a trained network on spectrum files and write one table row per spectrum.

``spectralnn predict mass FILES... -o masses.ecsv`` reads the files (SDSS/BOSS
spec files, DESI coadds, FITS images, or spectralnn HDF5 datasets) in batches,
runs `spectralnn.estimators.MassEstimator` (``classify``:
`~spectralnn.estimators.SpectralClassifier`, ``redshift``:
`~spectralnn.estimators.RedshiftEstimator`; the installed default weights, or
``--model PATH``) and writes the result table with `astropy.table.QTable.write`
(ECSV or FITS). Unreadable files and unusable spectra become flagged rows of
NaN; the run goes on.

With ``--scheduler local`` (or ``--workers N``) the same work runs on a Dask
`~distributed.LocalCluster` of N single-threaded worker processes, and with
``--scheduler tcp://HOST:8786`` on an existing Dask cluster (whose workers
must see the files): see `spectralnn.distributed.predict_many`. Finished
partitions are written to ``OUTPUT.parts/`` as they come in; running the same
command again after an interruption resumes from there (``--overwrite``
starts afresh), and the folder is removed once the table is written.
"""

import shutil
from pathlib import Path

from ..errors import ModelFileError
from ..logger import log
from ._common import (
    add_io_arguments,
    check_io_arguments,
    process_files,
)

__all__ = ["add_arguments", "run"]

#: task name on the command line -> estimator class in spectralnn.estimators
TASKS = {"mass": "MassEstimator", "classify": "SpectralClassifier",
         "redshift": "RedshiftEstimator"}


def add_arguments(parser):
    """
    Declare the options of ``spectralnn predict``.

    Parameters
    ----------
    parser : `argparse.ArgumentParser`
        The subcommand's parser.

    Examples
    --------
    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="spectralnn predict")
    >>> add_arguments(parser)
    >>> args = parser.parse_args(["mass", "spec-1.fits", "spec-2.fits", "-o", "masses.ecsv"])
    >>> args.task, args.files, args.model
    ('mass', ['spec-1.fits', 'spec-2.fits'], 'default')
    """
    parser.add_argument("task", choices=tuple(TASKS), help="what to predict")
    add_io_arguments(parser)
    parser.add_argument("--model", default="default",
                        help="trained .keras file (with its .json) or shipped model "
                             "name (default: the installed default weights)")
    parser.add_argument("--no-virial", action="store_true",
                        help="mass: skip the classic virial columns")
    dask = parser.add_argument_group("scale-out on Dask")
    dask.add_argument("--scheduler", default=None, metavar="ADDRESS|local",
                      help="run on a Dask cluster: a scheduler address "
                           "(tcp://host:8786) or 'local' for a LocalCluster on this "
                           "machine (default: no cluster, one process)")
    dask.add_argument("--workers", type=int, default=None, metavar="N",
                      help="worker processes of the local cluster (default: the CPU "
                           "cores); implies --scheduler local")
    dask.add_argument("--partition-size", type=int, default=512, metavar="N",
                      help="files (or dataset rows) per cluster task (default: 512)")


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

    Examples
    --------
    .. doctest-requires:: keras

        >>> import argparse
        >>> from astropy.table import QTable
        >>> from spectralnn.datasets import example_spectrum_path
        >>> parser = argparse.ArgumentParser(prog="spectralnn predict")
        >>> add_arguments(parser)
        >>> out = getfixture("tmp_path") / "masses.ecsv"
        >>> run(parser.parse_args(["mass", str(example_spectrum_path()), "-o", str(out)]))
        0
        >>> QTable.read(out)["log_mbh"].unit
        Unit("dex(solMass)")
    """
    problem = check_io_arguments(args)
    if problem:
        log.error(problem)
        return 1
    if args.scheduler is not None or args.workers is not None:
        return _run_distributed(args)
    estimator = _estimator(args)
    log.info("predicting %s with %r", args.task, estimator)
    return process_files(args, f"predict {args.task}",
                         lambda batch: estimator.predict(batch, z=args.z))


def _run_distributed(args):
    """``spectralnn predict`` on a Dask cluster (`spectralnn.distributed.predict_many`)."""
    from ..distributed import predict_many
    from ._common import write_table

    if args.workers is not None and args.workers < 1:
        log.error("--workers must be positive, got %d", args.workers)
        return 1
    if args.partition_size < 1:
        log.error("--partition-size must be positive, got %d", args.partition_size)
        return 1
    if args.scheduler not in (None, "local") and args.workers is not None:
        log.error("--workers sets the size of a local cluster; it cannot be combined "
                  "with --scheduler %s", args.scheduler)
        return 1
    model = args.model
    if model != "default" and Path(model).exists():
        model = str(Path(model).resolve())  # the workers may run elsewhere
    options = {"model": model, "batch_size": args.batch_size}
    if args.task == "mass":
        options["virial"] = not args.no_virial
    parts = Path(f"{args.output}.parts")
    client = None
    if args.scheduler not in (None, "local"):
        from distributed import Client

        client = Client(args.scheduler)
    try:
        log.info("predicting %s on %s; partitions in %s", args.task,
                 args.scheduler or "local", parts)
        table = predict_many(args.files, [(args.task, options)], client=client,
                             n_workers=args.workers, output=parts,
                             partition_size=args.partition_size, z=args.z,
                             overwrite=args.overwrite)
    finally:
        if client is not None:
            client.close()
    write_table(table, args)
    shutil.rmtree(parts)
    return 0
