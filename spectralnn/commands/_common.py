"""
Helpers shared by the ``predict`` and ``measure`` subcommands.

Not public API: input chunking, progress reporting and table writing.
"""

import os
import warnings
from pathlib import Path

import numpy as np
from astropy.table import QTable, vstack

from ..errors import SpectrumFileError
from ..logger import log

__all__ = []

#: what astropy says, harmlessly, when a result table goes to FITS
_EXPECTED_FITS_WARNINGS = ("could not be saved in native FITS",
                           "a HIERARCH card will be created")

#: --format choice -> astropy table writer
TABLE_FORMATS = {"ecsv": "ascii.ecsv", "fits": "fits"}


def add_io_arguments(parser, *, batch_size=256):
    """Declare FILES, -o, --format, --z, --batch-size and --overwrite."""
    parser.add_argument("files", nargs="+", metavar="FILES",
                        help="spectrum files (SDSS/BOSS spec, DESI coadd, FITS image) "
                             "or spectralnn HDF5 datasets (.h5)")
    parser.add_argument("-o", "--output", required=True,
                        help="output table (.ecsv or .fits)")
    parser.add_argument("--format", choices=tuple(TABLE_FORMATS), default=None,
                        help="output format (default: from the output suffix, "
                             "else ecsv)")
    parser.add_argument("--z", type=float, default=None,
                        help="redshift of every spectrum (default: each file's own)")
    parser.add_argument("--batch-size", type=int, default=batch_size,
                        help=f"spectra processed at a time (default: {batch_size})")
    parser.add_argument("--overwrite", action="store_true", help="replace the output")


def check_io_arguments(args):
    """Validate the shared options; return an error message or None."""
    if args.batch_size < 1:
        return f"--batch-size must be positive, got {args.batch_size}"
    if Path(args.output).exists() and not args.overwrite:
        return f"{args.output} exists (use --overwrite to replace it)"
    if args.z is not None and not (np.isfinite(args.z) and args.z >= 0):
        return f"--z must be a non-negative number, got {args.z}"
    return None


def output_format(args):
    """The astropy writer name for ``args.output`` and ``args.format``."""
    if args.format is not None:
        return TABLE_FORMATS[args.format]
    suffix = Path(args.output).suffix.lower()
    if suffix in (".fits", ".fit", ".fts"):
        return TABLE_FORMATS["fits"]
    return TABLE_FORMATS["ecsv"]


def iter_file_batches(files, batch_size):
    """
    Yield ``(n_files, batch)``: the input files as batches of spectra.

    FITS files are read ``batch_size`` files at a time with
    `spectralnn.io.read_spectra` (unreadable ones become flagged placeholder
    rows); HDF5 datasets are streamed ``batch_size`` rows at a time.
    ``n_files`` is the number of files finished with this batch (for a
    progress bar over files).
    """
    from ..estimators._streaming import is_dataset_input, iter_input_batches
    from ..io import read_spectra

    pending = []

    def flush():
        chunk = list(pending)
        pending.clear()
        try:
            return read_spectra(chunk)
        except SpectrumFileError as exc:
            log.error("skipped %d file(s): %s", len(chunk), exc)
            return None

    for path in files:
        if is_dataset_input(path):
            if pending:
                n = len(pending)
                batch = flush()
                yield n, batch
            chunks = iter_input_batches(os.fspath(path), batch_size)
            for batch in chunks:
                yield 0, batch
            yield 1, None  # the dataset is finished: one more file done
            continue
        pending.append(os.fspath(path))
        if len(pending) >= batch_size:
            n = len(pending)
            yield n, flush()
    if pending:
        n = len(pending)
        yield n, flush()


class Progress:
    """A tqdm bar over ``total`` files when tqdm is installed, else INFO log lines."""

    def __init__(self, total, desc):
        self.total, self.done, self.desc = total, 0, desc
        try:
            from tqdm import tqdm
        except ImportError:
            self.bar = None
        else:
            self.bar = tqdm(total=total, unit="files", desc=desc, disable=None)

    def update(self, n_files, n_spectra):
        """Advance by ``n_files`` files holding ``n_spectra`` spectra."""
        self.done += n_files
        if self.bar is not None:
            self.bar.update(n_files)
        elif n_files:
            log.info("%s: %d / %d files (%d spectra in this batch)", self.desc,
                     self.done, self.total, n_spectra)

    def close(self):
        """Close the bar."""
        if self.bar is not None:
            self.bar.close()


def join_tables(tables):
    """Stack per-batch result tables (same columns) into one."""
    if len(tables) == 1:
        return tables[0]
    # identifiers can be integers in one input (an HDF5 dataset) and strings
    # in another (SDSS files): such columns become strings
    for name in tables[0].colnames:
        kinds = {t[name].dtype.kind for t in tables if name in t.colnames}
        if len(kinds) > 1 and kinds & {"U", "S"}:
            for t in tables:
                if name in t.colnames:
                    t[name] = np.asarray(t[name]).astype(str)
    # every part has the same meta (model, version): no conflict to report
    return QTable(vstack(tables, metadata_conflicts="silent"))


def write_table(table, args):
    """Write the result with `astropy.table.QTable.write` (ECSV or FITS)."""
    fmt = output_format(args)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table.write(args.output, format=fmt, overwrite=args.overwrite)
    for w in caught:
        text = str(w.message)
        if fmt == "fits" and any(s in text for s in _EXPECTED_FITS_WARNINGS):
            # dex units and long meta keys (HIERARCH cards) round-trip in astropy
            log.debug("FITS output: %s", text)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    log.info("wrote %d rows to %s", len(table), args.output)


def process_files(args, label, func, *, meta=None):
    """
    Apply ``func(batch) -> QTable`` to the files of ``args`` in chunks, then write.

    Reads ``args.files`` ``args.batch_size`` at a time with a progress bar,
    joins the tables, adds ``meta`` and writes with `write_table`.

    Parameters
    ----------
    args : `argparse.Namespace`
        Options of `add_io_arguments`.
    label : str
        Progress-bar label.
    func : callable
        Turns one `~spectralnn.SpectrumBatch` into a table.
    meta : dict, optional
        Entries added to the joined table's ``meta``.

    Returns
    -------
    status : int
        0 on success, 1 when no spectrum could be read.
    """
    problem = check_io_arguments(args)
    if problem:
        log.error(problem)
        return 1
    tables = []
    progress = Progress(len(args.files), label)
    try:
        for n_files, batch in iter_file_batches(args.files, args.batch_size):
            if batch is not None:
                tables.append(func(batch))
            progress.update(n_files, 0 if batch is None else len(batch))
    finally:
        progress.close()
    if not tables:
        log.error("no spectrum could be read from the %d file(s)", len(args.files))
        return 1
    table = join_tables(tables)
    table.meta.update(meta or {})
    write_table(table, args)
    return 0
