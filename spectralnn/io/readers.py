"""
Read any supported spectrum file, or many files into one batch.

`read_spectrum` identifies the format of one file (SDSS/BOSS ``spec``, DESI
coadd, 1-D FITS image) and returns specutils objects; `read_spectra` reads many
files into one `~spectralnn.SpectrumBatch`, keeping a flagged placeholder row
for every file that cannot be read so that row ``i`` of the batch is always
file ``i``.
"""

import os
import warnings

import numpy as np

from ..batch import SpectrumBatch, concatenate
from ..errors import BatchItemWarning, SpectralNNError, SpectrumFileError
from ..flags import Flag
from ..logger import log
from ._fits import open_fits, path_name, source_name
from .desi import _read_desi_hdul, is_desi_coadd
from .fits_image import _read_image_hdul, is_fits_image_spectrum
from .sdss import _read_sdss_hdul, is_sdss_spec

__all__ = ["FORMATS", "identify_format", "read_spectrum", "read_spectra"]

#: Formats `read_spectrum` and `read_spectra` know, most specific first.
FORMATS = ("sdss", "desi", "fits-image")

_IDENTIFIERS = {
    "sdss": is_sdss_spec,
    "desi": is_desi_coadd,
    "fits-image": is_fits_image_spectrum,
}

#: meta keys of an SDSS spectrum copied into the batch besides batch._META_KEYS
_EXTRA_BATCH_KEYS = ("survey", "program", "instrument", "run2d")


def _identify_hdul(hdul, path):
    for name in FORMATS:
        if _IDENTIFIERS[name](hdul):
            return name
    raise SpectrumFileError(
        f"{path_name(path)}: unknown spectrum format (not an SDSS/BOSS spec file, a "
        "DESI coadd or a 1-D FITS image spectrum)"
    )


def _check_format(format):
    if format is not None and format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS} or None, not {format!r}")


def identify_format(path):
    """
    Identify the format of a spectrum file, as one of `FORMATS`.

    Parameters
    ----------
    path : str or path-like
        The file.

    Returns
    -------
    format : str
        ``'sdss'``, ``'desi'`` or ``'fits-image'``.

    Raises
    ------
    spectralnn.errors.SpectrumFileError
        If the file is missing, unreadable or of none of these formats.

    Examples
    --------
    >>> from spectralnn.io import identify_format
    >>> identify_format("spec-0332-52367-0639.fits")  # doctest: +SKIP
    'sdss'
    """
    with open_fits(path) as hdul:
        return _identify_hdul(hdul, path)


def read_spectrum(path, format=None, **kwargs):
    """
    Read one spectrum file, identifying its format.

    Parameters
    ----------
    path : str or path-like
        The file.
    format : {'sdss', 'desi', 'fits-image'}, optional
        Skip identification. Default: identified from the file's content.
    **kwargs
        Passed to the format's reader: ``targets``, ``rows``, ``redrock`` for
        DESI (see `read_desi_coadd`); ``error``, ``flux_unit`` for 1-D images
        (see `read_fits_image_spectrum`).

    Returns
    -------
    spectrum : `specutils.Spectrum` or `specutils.SpectrumList`
        A `~specutils.Spectrum` for SDSS and 1-D image files (see `read_sdss`
        for the meta keys); for a DESI coadd, a `~specutils.SpectrumList` with
        one arm-merged `~specutils.Spectrum` per target (`read_desi_coadd`
        returns the same as a `~spectralnn.SpectrumBatch`).

    Raises
    ------
    spectralnn.errors.SpectrumFileError
        If the file is missing, truncated, corrupt or of an unknown format.

    Examples
    --------
    >>> from spectralnn.io import read_spectrum
    >>> spec = read_spectrum("spec-0332-52367-0639.fits")  # doctest: +SKIP
    >>> spec.meta["class"]  # doctest: +SKIP
    'QSO'
    """
    from specutils import SpectrumList

    _check_format(format)
    with open_fits(path) as hdul:
        fmt = format or _identify_hdul(hdul, path)
        if fmt == "sdss":
            return _read_sdss_hdul(hdul, path, **kwargs)
        if fmt == "fits-image":
            return _read_image_hdul(hdul, path, **kwargs)
        batch = _read_desi_hdul(hdul, path, **kwargs)
    return SpectrumList(batch.to_spectra())


def _read_batch(path, format, kwargs):
    """One file as a SpectrumBatch (any format)."""
    with open_fits(path) as hdul:
        fmt = format or _identify_hdul(hdul, path)
        if fmt == "desi":
            return _read_desi_hdul(hdul, path, **kwargs)
        if fmt == "sdss":
            spectrum = _read_sdss_hdul(hdul, path, **kwargs)
        else:
            spectrum = _read_image_hdul(hdul, path, **kwargs)
    extra = {k: spectrum.meta[k] for k in _EXTRA_BATCH_KEYS if k in spectrum.meta}
    return SpectrumBatch.from_spectrum(spectrum, on_invalid="flag", meta=extra)


def _placeholders(paths, errors, template):
    """All-masked rows flagged READ_ERROR on the template's grid."""
    from astropy.table import QTable

    n, m = len(paths), template.n_pixels
    meta = QTable()
    meta["source"] = np.array([source_name(p) for p in paths])
    meta["read_error"] = np.array([str(e) for e in errors])
    meta["flags"] = np.full(n, int(Flag.READ_ERROR | Flag.NO_DATA), dtype=np.int64)
    return SpectrumBatch._from_arrays_unchecked(
        template.wavelength.copy(),
        np.zeros((n, m)),
        np.zeros((n, m)),
        np.ones((n, m), dtype=bool),
        meta,
        template.flux_unit,
        template.frame,
    )


def read_spectra(paths, *, grid=None, on_error="flag", format=None, **kwargs):
    """
    Read many spectrum files into one `~spectralnn.SpectrumBatch`.

    Each file is read with the reader of its format (a DESI coadd gives one
    row per target); the batches are joined with
    `spectralnn.batch.concatenate`: SDSS/BOSS log-λ grids are aligned exactly,
    other grids are resampled onto ``grid``.

    Parameters
    ----------
    paths : str, path-like or sequence of them
        The files.
    grid : `~astropy.units.Quantity`, optional
        Common wavelength grid. Default: the files' own grid when they share
        one, else a log-λ grid spanning them all.
    on_error : {'flag', 'raise'}, optional
        What to do with a file that cannot be read. ``'flag'`` (the default):
        log it, issue a `~spectralnn.errors.BatchItemWarning`, and keep an
        all-masked placeholder row (zero flux and inverse variance) on the
        batch grid, flagged `~spectralnn.flags.Flag.READ_ERROR` and
        ``NO_DATA``, with ``source`` (the file name) and ``read_error`` (the
        message) set; the other files go on. ``'raise'``: re-raise the
        `~spectralnn.errors.SpectrumFileError`.
    format : {'sdss', 'desi', 'fits-image'}, optional
        Force one format for all files. Default: identified per file.
    **kwargs
        Passed to every file's reader (see `read_spectrum`).

    Returns
    -------
    batch : `~spectralnn.SpectrumBatch`
        One row per spectrum, in the order of ``paths``; ``meta`` has the
        columns described in `read_sdss` and `read_desi_coadd` that go into a
        batch (``z``, ``z_err``, ``class``, ``subclass``, ``zwarning``,
        ``object_id``, ``source``, ``plate``, ``mjd``, ``fiber``, ``ra``,
        ``dec``, ``ebv``, ``survey``, ``program``, ``instrument``, ...), and
        ``read_error`` when a file failed.

    Raises
    ------
    spectralnn.errors.SpectrumFileError
        With ``on_error='raise'``, the first file that cannot be read; with
        ``'flag'``, when no file at all could be read and no ``grid`` is given.
    spectralnn.errors.SpectralUnitsError
        If the files' flux units cannot be joined (e.g. a continuum-normalised
        spectrum with flux-calibrated ones).

    Examples
    --------
    >>> from spectralnn.io import read_spectra
    >>> files = ["spec-0332-52367-0639.fits", "missing.fits"]
    >>> batch = read_spectra(files)  # doctest: +SKIP
    >>> batch.meta["object_id", "flags"]  # doctest: +SKIP
    """
    if on_error not in ("flag", "raise"):
        raise ValueError(f"on_error must be 'flag' or 'raise', not {on_error!r}")
    _check_format(format)
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = list(paths)
    if not paths:
        raise ValueError("no files given")
    parts = []  # (position, batch) of good files
    failed = []  # (position, path, error)
    for position, path in enumerate(paths):
        try:
            parts.append((position, _read_batch(path, format, kwargs)))
        except SpectralNNError as exc:
            if on_error == "raise":
                raise
            if not isinstance(exc, SpectrumFileError):
                exc = SpectrumFileError(f"{path_name(path)}: {exc}")
            log.warning("skipping unreadable file: %s", exc)
            warnings.warn(
                f"file {position} could not be read and is flagged READ_ERROR: {exc}",
                BatchItemWarning,
                stacklevel=2,
            )
            failed.append((position, path, exc))
    log.info("read %d of %d files", len(parts), len(paths))
    if not parts:
        if grid is None:
            raise SpectrumFileError(
                f"none of the {len(paths)} files could be read (first: {failed[0][2]})"
            )
        from astropy import units as u

        template = SpectrumBatch(
            grid,
            np.zeros(np.shape(grid)),
            np.ones(np.shape(grid)),
            flux_unit=u.dimensionless_unscaled,
        )
        return _placeholders(
            [p for _, p, _ in failed], [e for _, _, e in failed], template
        )
    good = (
        concatenate([b for _, b in parts], grid=grid)
        if (len(parts) > 1 or grid is not None)
        else parts[0][1]
    )
    if not failed:
        return good
    bad = _placeholders([p for _, p, _ in failed], [e for _, _, e in failed], good)
    joined = concatenate([good, bad])
    # put the placeholders back at the positions of their files
    sizes = [len(b) for _, b in parts]
    row_of = []
    start = 0
    for (position, _), size in zip(parts, sizes, strict=False):
        row_of.extend((position, k, start + k) for k in range(size))
        start += size
    row_of.extend(
        (position, 0, len(good) + i) for i, (position, _, _) in enumerate(failed)
    )
    order = np.array([r for _, _, r in sorted(row_of)])
    return joined[order]
