"""
Measure emission lines and classic virial black-hole masses of spectrum files.

``spectralnn measure FILES... -o lines.ecsv`` needs no network (and no Keras):
for every spectrum it runs `spectralnn.physics.virial_black_hole_mass`
(columns prefixed ``virial_``) and `spectralnn.preprocessing.measure_lines`
(flux, EW, FWHM, ... per line), in batches, and writes one row per spectrum
(ECSV or FITS). The redshift comes from each file (or ``--z``).
"""

import numpy as np

from ..logger import log
from ._common import (
    add_io_arguments,
    process_files,
)

__all__ = ["add_arguments", "run", "DEFAULT_MEASURE_LINES"]

#: lines measured unless --lines is given: the virial lines and [O III] 5007
DEFAULT_MEASURE_LINES = ("CIV", "MgII", "Hbeta", "[OIII]5007", "Halpha")

#: meta columns copied once, in front of the measurements
_ID_COLUMNS = ("object_id", "source", "plate", "mjd", "fiber", "z")


def add_arguments(parser):
    """
    Declare the options of ``spectralnn measure``.

    Parameters
    ----------
    parser : `argparse.ArgumentParser`
        The subcommand's parser.

    Examples
    --------
    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="spectralnn measure")
    >>> add_arguments(parser)
    >>> args = parser.parse_args(["spec-0332-52367-0639.fits", "-o", "lines.ecsv"])
    >>> args.files, args.profile
    (['spec-0332-52367-0639.fits'], 'double_gaussian')
    """
    add_io_arguments(parser, batch_size=128)
    parser.add_argument("--lines", nargs="+", default=list(DEFAULT_MEASURE_LINES),
                        help="lines to measure (names of spectralnn.lines.LINES; "
                             f"default: {' '.join(DEFAULT_MEASURE_LINES)})")
    parser.add_argument("--profile", choices=("gaussian", "double_gaussian",
                                              "nonparametric"),
                        default="double_gaussian",
                        help="line model of measure_lines (default: double_gaussian)")
    parser.add_argument("--no-virial", action="store_true",
                        help="skip the virial black-hole masses")


def measure_batch(batch, *, z=None, lines=DEFAULT_MEASURE_LINES,
                  profile="double_gaussian", virial=True):
    """
    The measurement table of one batch (virial masses and lines).

    Parameters
    ----------
    batch : `~spectralnn.SpectrumBatch`
        Observed-frame spectra.
    z : float, optional
        Redshift of every spectrum (default: ``meta['z']``).
    lines : sequence of str, optional
        Lines to measure.
    profile : str, optional
        Line model of `~spectralnn.preprocessing.measure_lines`.
    virial : bool, optional
        Add the ``virial_*`` columns. Default True.

    Returns
    -------
    table : `~astropy.table.QTable`
        The identifying meta columns, ``virial_*``, the line columns and one
        ``flags`` column (the spectrum's flags ORed with the virial ones;
        every line has its own ``P_flags`` and ``lines_flags`` ORs them).
    """
    from astropy.table import QTable

    from ..preprocessing import measure_lines

    table = QTable()
    for name in _ID_COLUMNS:
        if name in batch.meta.colnames:
            table[name] = batch.meta[name]
    flags = np.asarray(batch.flags, dtype=np.int64).copy()
    if virial:
        from ..physics.blackhole import virial_black_hole_mass

        vt = virial_black_hole_mass(batch, z=z)
        for name in vt.colnames:
            if name in _ID_COLUMNS:
                continue
            if name == "flags":
                flags |= np.asarray(vt[name], dtype=np.int64)
                table["virial_flags"] = vt[name]
                continue
            table[f"virial_{name}"] = vt[name]
    if lines:
        lt = measure_lines(batch, list(lines), z=z, profile=profile)
        for name in lt.colnames:
            if name in _ID_COLUMNS:
                continue
            # the per-line P_flags columns say why a line is missing (e.g. C IV
            # at low z); they are not ORed into the spectrum's flags
            table["lines_flags" if name == "flags" else name] = lt[name]
    if "z" not in table.colnames and z is not None:
        table["z"] = np.full(len(batch), float(z))
    table["flags"] = flags
    return table


def run(args):
    """
    Run ``spectralnn measure``.

    Parameters
    ----------
    args : `argparse.Namespace`
        Parsed options.

    Returns
    -------
    status : int
        0 on success, 1 when nothing could be measured.

    Examples
    --------
    >>> import argparse
    >>> from astropy.table import QTable
    >>> from spectralnn.datasets import example_spectrum_path
    >>> parser = argparse.ArgumentParser(prog="spectralnn measure")
    >>> add_arguments(parser)
    >>> out = getfixture("tmp_path") / "lines.ecsv"
    >>> run(parser.parse_args([str(example_spectrum_path()), "-o", str(out)]))
    0
    >>> str(QTable.read(out)["virial_line"][0])
    'Hbeta'
    """
    from .. import __version__
    from ..lines import get_line

    for name in args.lines:
        try:
            get_line(name)
        except KeyError:
            log.error("unknown line %r (see spectralnn.lines.LINES)", name)
            return 1
    return process_files(
        args,
        "measure",
        lambda batch: measure_batch(batch, z=args.z, lines=args.lines,
                                    profile=args.profile, virial=not args.no_virial),
        meta={
            "spectralnn_version": __version__,
            "task": "measure",
            "lines": list(args.lines),
            "profile": args.profile,
        },
    )
