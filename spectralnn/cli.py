"""
The ``spectralnn`` command line.

Each subcommand lives in its own module under `spectralnn.commands` with two
functions, ``add_arguments(parser)`` and ``run(args)``, and calls the same
public API that users call. ``main(argv)`` is testable in-process.

Examples
--------
>>> from spectralnn.cli import main
>>> main(["--version"])  # doctest: +SKIP
"""

import argparse
import importlib
import logging
import sys

from . import __version__
from .errors import SpectralNNError
from .logger import log

__all__ = ["main"]

#: subcommand name -> (module under spectralnn.commands, one-line help)
SUBCOMMANDS = {
    "example": ("example", "measure the bundled example spectrum"),
    "measure": ("measure", "measure lines and virial masses of spectra"),
    "simulate": ("simulate", "simulate spectra into an HDF5 dataset"),
    "predict": ("predict", "run a trained model on spectra"),
    "train": ("train", "train a model"),
    "tune": ("tune", "search network hyperparameters (keras-tuner)"),
}


def _build_parser():
    parser = argparse.ArgumentParser(
        prog="spectralnn",
        description="Neural networks and spectral physics for survey spectra.",
    )
    parser.add_argument("--version", action="version", version=f"spectralnn {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more log output (-v INFO, -vv DEBUG)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        try:
            module = importlib.import_module(f"spectralnn.commands.{module_name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"spectralnn.commands.{module_name}":
                continue  # subcommand not available in this build
            raise
        p = sub.add_parser(name, help=help_text, description=module.__doc__)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv=None):
    """
    Run the ``spectralnn`` command line.

    Parameters
    ----------
    argv : list of str, optional
        Arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    status : int
        0 on success, 1 on a user error (reported through the log, no traceback).

    Examples
    --------
    The same as ``spectralnn measure SPEC -o lines.ecsv`` in a shell:

    >>> from spectralnn.datasets import example_spectrum_path
    >>> out = getfixture("tmp_path") / "lines.ecsv"
    >>> main(["measure", str(example_spectrum_path()), "-o", str(out)])
    0
    >>> out.exists()
    True
    """
    parser = _build_parser()
    args = parser.parse_args(argv)
    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    # one handler per call, on the stderr of this call (tests capture it)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    previous_level = log.level
    log.addHandler(handler)
    log.setLevel(level)
    try:
        return _run(parser, args)
    finally:
        log.removeHandler(handler)
        log.setLevel(previous_level)


def _run(parser, args):
    if getattr(args, "_run", None) is None:
        parser.print_help()
        return 0
    try:
        return int(args._run(args) or 0)
    except SpectralNNError as exc:
        log.error(str(exc))
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
