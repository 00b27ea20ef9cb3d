"""
Internal FITS helpers of `spectralnn.io`: safe opening and unit parsing.

Not public API. Every reader opens its file through `open_fits`, so that a
missing, truncated or corrupt file always raises
`~spectralnn.errors.SpectrumFileError` naming the file, and wraps its parsing
in `file_errors`, which turns low-level failures (a missing column, an array
of the wrong size) into the same error.
"""

import contextlib
import os
import re
import warnings

from astropy import units as u
from astropy.io import fits

from ..errors import SpectralNNError, SpectrumFileError
from ..logger import log

__all__ = []

#: substrings of astropy warnings that mean the file is damaged
_DAMAGE_MESSAGES = ("truncated", "corrupt", "header size is not multiple")

#: low-level exceptions that mean "this file does not hold what we expect"
_FILE_EXCEPTIONS = (
    OSError,
    ValueError,
    KeyError,
    IndexError,
    TypeError,
    AttributeError,
)


def path_name(path):
    """Return the path as a string for messages (an HDUList gives its file)."""
    if isinstance(path, fits.HDUList):
        return path.filename() or "<in-memory HDUList>"
    return os.fspath(path)


def source_name(path):
    """Return the file name (no folders) recorded as ``source`` in meta."""
    return os.path.basename(path_name(path))


@contextlib.contextmanager
def file_errors(path, what="read"):
    """Turn low-level exceptions raised inside the block into SpectrumFileError."""
    try:
        yield
    except SpectralNNError:
        raise
    except _FILE_EXCEPTIONS as exc:
        raise SpectrumFileError(
            f"{path_name(path)}: could not {what} the file "
            f"({type(exc).__name__}: {exc})"
        ) from exc


@contextlib.contextmanager
def open_fits(path):
    """
    Open a FITS file completely, or raise SpectrumFileError naming it.

    All headers are read at once (``lazy_load_hdus=False``), so a truncated
    file is detected here: astropy's "file may have been truncated" and
    "header size is not multiple of 2880" warnings become errors. Other
    warnings raised while opening are logged at DEBUG level.
    """
    if isinstance(path, fits.HDUList):
        yield path
        return
    name = os.fspath(path)
    if not os.path.exists(name):
        raise SpectrumFileError(f"{name}: no such file")
    if os.path.isdir(name):
        raise SpectrumFileError(f"{name}: is a directory, not a spectrum file")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            hdul = fits.open(name, memmap=False, lazy_load_hdus=False)
        except _FILE_EXCEPTIONS as exc:
            raise SpectrumFileError(
                f"{name}: not a readable FITS file ({type(exc).__name__}: {exc})"
            ) from exc
    damaged = [
        str(w.message)
        for w in caught
        if any(m in str(w.message).lower() for m in _DAMAGE_MESSAGES)
    ]
    if damaged:
        hdul.close()
        first = damaged[0].splitlines()[0]
        raise SpectrumFileError(
            f"{name}: the FITS file is truncated or corrupt ({first})"
        )
    for w in caught:
        log.debug("%s: %s: %s", name, w.category.__name__, w.message)
    try:
        yield hdul
    finally:
        hdul.close()


_ANGSTROM_TOKENS = re.compile(
    r"(?<![A-Za-z])(A|AA|Ang|Angs|Angstroms|angstroms)(?![A-Za-z])"
)


def parse_flux_unit(text):
    """
    Parse a BUNIT string as written in spectrum files.

    Handles the common non-standard spellings: several slashes
    (``erg/cm2/s/A``), ``A`` or ``Ang`` for Ångström (never ampere in a flux
    density) and ``cm^2``.

    Parameters
    ----------
    text : str
        The header value.

    Returns
    -------
    unit : `~astropy.units.UnitBase`

    Raises
    ------
    ValueError
        If the string is not a unit even after these fixes.

    Examples
    --------
    >>> from spectralnn.io._fits import parse_flux_unit
    >>> parse_flux_unit("1E-17 erg/cm^2/s/Ang")
    Unit("1e-17 erg / (Angstrom s cm2)")
    >>> parse_flux_unit("erg/cm2/s/A")
    Unit("erg / (Angstrom s cm2)")
    """
    text = text.strip()
    text = _ANGSTROM_TOKENS.sub("Angstrom", text)
    parts = [p.strip() for p in text.split("/")]
    if len(parts) > 2:
        text = f"{parts[0]} / ({' '.join(parts[1:])})"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", u.UnitsWarning)
        return u.Unit(text, parse_strict="raise")


def header_unit(header, key="BUNIT"):
    """Return the unit in ``header[key]``, or None when absent or empty."""
    value = header.get(key)
    if value is None or not str(value).strip():
        return None
    return parse_flux_unit(str(value))
