"""
SDSS and BOSS ``spec-PLATE-MJD-FIBER.fits`` files (full and "lite").

The spectrum itself is read by specutils' own ``"SDSS-III/IV spec"`` loader;
this module adds what that loader leaves behind: the pipeline labels and
photometry of the one-row table in HDU 2 (``SPECOBJ`` in DR8-DR16 files,
``SPALL`` in DR17 BOSS/eBOSS files). See the data model at
https://data.sdss.org/datamodel/files/BOSS_SPECTRO_REDUX/RUN2D/spectra/PLATE4/spec.html
"""

import warnings

import numpy as np
from astropy import units as u
from astropy.io import fits
from astropy.table import QTable

from ..errors import SpectrumFileError
from ..logger import log
from ._fits import file_errors, open_fits, path_name, source_name

__all__ = [
    "read_sdss",
    "is_sdss_spec",
    "SDSS_BANDS",
    "EXTINCTION_COEFFICIENTS",
    "BAD_PIXEL_BITS",
    "BAD_PIXEL_MASK",
]

#: The five SDSS imaging bands, in the order of every 5-vector column.
SDSS_BANDS = ("u", "g", "r", "i", "z")

#: A_band / E(B-V)_SFD for the SDSS bands. ``"SF11"``: Schlafly & Finkbeiner
#: (2011, ApJ 737, 103), Table 6, R_V = 3.1 (used by the DR17 ``SPALL``
#: ``EXTINCTION`` column); ``"SFD98"``: Schlegel, Finkbeiner & Davis (1998,
#: ApJ 500, 525), Table 6 (used by earlier SDSS data releases).
EXTINCTION_COEFFICIENTS = {
    "SF11": np.array([4.239, 3.303, 2.285, 1.698, 1.263]),
    "SFD98": np.array([5.155, 3.793, 2.751, 2.086, 1.479]),
}

#: photometric 5-vector columns of HDU 2 -> (meta name, unit, is inverse variance)
_PHOTOMETRY = {
    "SPECTROFLUX": ("spectroflux", u.nanomaggy),
    "CALIBFLUX": ("calibflux", u.nanomaggy),
    "PSFMAG": ("psfmag", u.mag),
    "EXTINCTION": ("extinction", u.mag),
}
_PHOTOMETRY_ERRORS = {
    "SPECTROFLUX": ("SPECTROFLUX_IVAR", "ivar"),
    "CALIBFLUX": ("CALIBFLUX_IVAR", "ivar"),
    "PSFMAG": ("PSFMAGERR", "err"),
}

_LOADER = "SDSS-III/IV spec"

#: SDSS spectroscopic pixel-mask bits (SPPIXMASK) that mean the pixel's data
#: are bad. The others (MANYBADCOLUMNS 4, MANYREJECTED 5, NEARBADPIXEL 16,
#: LOWFLAT 17, PARTIALREJECT 19, SCATTEREDLIGHT 20, CROSSTALK 21,
#: REDMONSTER 28, ...) are informational: legacy spectra carry some of them
#: over whole CCD halves whose pixels are fine.
BAD_PIXEL_BITS = {
    "NOPLUG": 0,
    "BADTRACE": 1,
    "BADFLAT": 2,
    "BADARC": 3,
    "FULLREJECT": 18,
    "NOSKY": 22,
    "BRIGHTSKY": 23,
    "NODATA": 24,
    "COMBINEREJ": 25,
    "BADFLUXFACTOR": 26,
    "BADSKYCHI": 27,
}
BAD_PIXEL_MASK = sum(1 << bit for bit in BAD_PIXEL_BITS.values())


def is_sdss_spec(hdul):
    """
    Whether an open FITS file is an SDSS/BOSS ``spec`` file.

    Uses specutils' own identifier (telescope, pipeline version, fiber and a
    binary table with an ``ivar`` column in HDU 1).

    Parameters
    ----------
    hdul : `~astropy.io.fits.HDUList`
        The open file.

    Returns
    -------
    bool

    Examples
    --------
    >>> from astropy.io import fits
    >>> is_sdss_spec(fits.HDUList([fits.PrimaryHDU()]))
    False
    """
    from specutils.io.default_loaders.sdss import spec_identify

    try:
        return bool(spec_identify("read", hdul))
    except Exception:  # noqa: BLE001 - an identifier failing means "not this format"
        return False


def _text(value):
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    return str(value).strip()


def _ebv_from_extinction(extinction):
    """Return E(B-V)_SFD from the 5-band EXTINCTION column, or None if none fits."""
    extinction = np.asarray(extinction, dtype=np.float64)
    if extinction.shape != (5,) or not np.all(np.isfinite(extinction)):
        return None
    if np.all(extinction == 0):
        return 0.0
    for name, coeff in EXTINCTION_COEFFICIENTS.items():
        ebv = extinction / coeff
        # the five bands must give one E(B-V) (the column is float32: 1e-3 suffices)
        if np.ptp(ebv) <= 1e-3 * max(np.median(ebv), 1e-6) + 1e-6:
            log.debug("EXTINCTION column matches the %s coefficients", name)
            return float(np.median(ebv))
    log.debug("EXTINCTION column matches no known coefficient set; ebv not set")
    return None


def _photometry(row, names):
    """Scalar meta entries and a per-band QTable from the 5-vector columns."""
    scalars = {}
    table = QTable()
    table["band"] = list(SDSS_BANDS)
    for column, (name, unit) in _PHOTOMETRY.items():
        if column not in names:
            continue
        values = np.asarray(row[column], dtype=np.float64)
        if values.shape != (5,):
            continue
        table[name] = values * unit
        for band, v in zip(SDSS_BANDS, values, strict=False):
            scalars[f"{name}_{band}"] = float(v)
        if column in _PHOTOMETRY_ERRORS:
            err_column, kind = _PHOTOMETRY_ERRORS[column]
            if err_column in names:
                err = np.asarray(row[err_column], dtype=np.float64)
                if kind == "ivar":
                    with np.errstate(divide="ignore", invalid="ignore"):
                        err = np.where(
                            err > 0, 1.0 / np.sqrt(np.where(err > 0, err, 1.0)), np.nan
                        )
                table[f"{name}_err"] = err * unit
                for band, v in zip(SDSS_BANDS, err, strict=False):
                    scalars[f"{name}_{band}_err"] = float(v)
    return scalars, (table if len(table.colnames) > 1 else None)


def _sdss_meta(hdul, path):
    """Collect the meta entries spectralnn adds to an SDSS spectrum."""
    header = hdul[0].header
    meta = {"source": source_name(path)}
    row = None
    names = ()
    if (
        len(hdul) > 2
        and isinstance(hdul[2], fits.BinTableHDU)
        and len(hdul[2].data) >= 1
    ):
        row = hdul[2].data[0]
        names = hdul[2].columns.names
        meta["label_hdu"] = hdul[2].name
    else:
        log.warning(
            "%s: no SPECOBJ/SPALL table in HDU 2; redshift and class unknown",
            meta["source"],
        )

    def get(column, header_key=None):
        if column in names:
            return row[column]
        if header_key is not None and header_key in header:
            return header[header_key]
        return None

    plate, mjd, fiber = (
        get("PLATE", "PLATEID"),
        get("MJD", "MJD"),
        get("FIBERID", "FIBERID"),
    )
    for key, value in (("plate", plate), ("mjd", mjd), ("fiber", fiber)):
        if value is not None:
            meta[key] = int(value)
    for key, column in (("z", "Z"), ("z_err", "Z_ERR")):
        value = get(column)
        if value is not None:
            meta[key] = float(value)
    if get("ZWARNING") is not None:
        meta["zwarning"] = int(get("ZWARNING"))
    for key, column in (("class", "CLASS"), ("subclass", "SUBCLASS")):
        value = get(column)
        if value is not None:
            meta[key] = _text(value)
    # the fibre position (PLUG_RA/DEC); the primary header's RA/DEC is the plate centre
    for key, column in (("ra", "PLUG_RA"), ("dec", "PLUG_DEC")):
        value = get(column, column)
        if value is not None:
            meta[key] = float(value)
    run2d = get("RUN2D", "RUN2D")
    if run2d is not None:
        meta["run2d"] = _text(run2d)
    if get("SURVEY") is not None:
        meta["survey"] = _text(get("SURVEY")).lower()
    if get("PROGRAMNAME") is not None:
        meta["program"] = _text(get("PROGRAMNAME"))
    if get("INSTRUMENT") is not None:
        meta["instrument"] = _text(get("INSTRUMENT")).upper()
    elif "run2d" in meta:
        # DR17 SPALL has no INSTRUMENT column: RUN2D v5_* reductions are of the
        # BOSS spectrograph, integer RUN2D (26, 103, 104) of the SDSS one
        meta["instrument"] = "BOSS" if meta["run2d"].startswith("v") else "SDSS"
    if "EXTINCTION" in names:
        ebv = _ebv_from_extinction(row["EXTINCTION"])
        if ebv is not None:
            meta["ebv"] = ebv
    if row is not None:
        scalars, table = _photometry(row, names)
        meta.update(scalars)
        if table is not None:
            meta["photometry"] = table
    if {"plate", "mjd", "fiber"} <= set(meta):
        meta["object_id"] = f"SDSS_{meta['plate']}-{meta['mjd']}-{meta['fiber']}"
    return meta


def _exact_log_grid(hdul):
    """
    Return the exact log10 wavelengths ``COEFF0 + COEFF1 * i``, or None.

    HDU 1 stores ``loglam`` in float32, whose rounding (~2e-7 in log10) breaks
    the exact 1e-4 step that lets spectra from different plates share one
    grid. The primary header's COEFF0/COEFF1 give the exact solution; it is
    used only where it reproduces every stored ``loglam`` to float32 precision.
    """
    header = hdul[0].header
    if "COEFF0" not in header or "COEFF1" not in header:
        return None
    c0, c1 = float(header["COEFF0"]), float(header["COEFF1"])
    loglam = np.asarray(hdul[1].data["loglam"], dtype=np.float64)
    if c1 <= 0 or loglam.size < 2:
        return None
    index = np.round((loglam - c0) / c1)
    exact = c0 + c1 * index
    if np.all(np.diff(index) == 1) and np.all(np.abs(exact - loglam) < 1e-6):
        return exact
    log.debug("COEFF0/COEFF1 do not reproduce loglam; keeping the stored grid")
    return None


def _read_sdss_hdul(hdul, path):
    """Read an open SDSS file (shared by `read_sdss` and `read_spectrum`)."""
    from specutils import Spectrum

    if not is_sdss_spec(hdul):
        raise SpectrumFileError(
            f"{path_name(path)}: not an SDSS/BOSS spec file (specutils' "
            f"'{_LOADER}' identifier rejects it)"
        )
    with file_errors(path):
        with warnings.catch_warnings():
            # SDSS BUNIT '1E-17 erg/cm^2/s/Ang' has several slashes: benign
            warnings.filterwarnings("ignore", ".*multiple slashes", u.UnitsWarning)
            spectrum = Spectrum.read(hdul, format=_LOADER)
        exact = _exact_log_grid(hdul)
        coadd = hdul[1].data
        and_mask = np.asarray(coadd["and_mask"]).astype(np.int64)
        mask = (and_mask & BAD_PIXEL_MASK) != 0
        spectrum = Spectrum(
            flux=spectrum.flux,
            spectral_axis=(
                10.0**exact * u.AA if exact is not None else spectrum.spectral_axis
            ),
            uncertainty=spectrum.uncertainty,
            mask=mask,
            meta=spectrum.meta,
        )
        spectrum.meta["and_mask"] = and_mask
        spectrum.meta.update(_sdss_meta(hdul, path))
    log.debug("read %s (%s)", path, spectrum.meta.get("object_id", "?"))
    return spectrum


def read_sdss(path):
    """
    Read an SDSS/BOSS ``spec-PLATE-MJD-FIBER.fits`` file with its pipeline labels.

    The flux, inverse variance and mask come from specutils' loader
    (``Spectrum.read(path, format="SDSS-III/IV spec")``): flux in
    1e-17 erg s⁻¹ cm⁻² Å⁻¹ on the vacuum wavelength grid ``10**loglam``,
    `~astropy.nddata.InverseVariance` uncertainty. The mask is True where
    ``and_mask`` has one of the `BAD_PIXEL_BITS` set (specutils' loader masks
    every non-zero ``and_mask``, which in SDSS-legacy spectra hides whole CCD
    halves flagged only with informational bits such as MANYBADCOLUMNS or
    NEARBADPIXEL); the full ``and_mask`` stays in ``meta['and_mask']`` for
    users who want to be stricter. Pixels with zero inverse variance carry no
    weight anyway. The wavelengths are recomputed in float64 from the
    header's ``COEFF0 + COEFF1 * i`` (when that reproduces the float32
    ``loglam`` column), so spectra from different plates fall on exactly one
    log-λ grid and `~spectralnn.SpectrumBatch.from_spectra` aligns them
    without resampling.

    Parameters
    ----------
    path : str or path-like
        The file (full or lite).

    Returns
    -------
    spectrum : `specutils.Spectrum`
        Its ``meta`` holds, besides specutils' ``header`` (the primary header):

        - ``z``, ``z_err``, ``zwarning``, ``class``, ``subclass`` (stripped):
          the pipeline labels of HDU 2;
        - ``plate``, ``mjd``, ``fiber`` (int); ``ra``, ``dec`` (fibre position,
          deg); ``object_id`` (``"SDSS_PLATE-MJD-FIBER"``); ``source`` (file
          name); ``run2d``; ``program``; ``instrument`` (``"SDSS"`` or
          ``"BOSS"``, inferred from RUN2D when HDU 2 has no INSTRUMENT column);
          ``survey`` when HDU 2 has a SURVEY column;
        - ``ebv``: E(B-V) (SFD98 scale) derived from the 5-band ``EXTINCTION``
          column when present (DR17 ``SPALL``), identifying whether the
          Schlafly & Finkbeiner (2011) or the SFD98 coefficients were used
          (see `EXTINCTION_COEFFICIENTS`); DR8-DR16 ``SPECOBJ`` tables have
          no such column, so ``ebv`` is then absent;
        - photometry where HDU 2 has it: ``spectroflux_u`` ... ``_z`` and
          ``calibflux_*`` (nanomaggies) with ``*_err`` (from the inverse
          variances), ``psfmag_*`` with ``psfmag_*_err`` and ``extinction_*``
          (mag), as plain floats; and ``photometry``, the same as a `QTable`
          with one row per band and units;
        - ``label_hdu``: ``"SPECOBJ"`` or ``"SPALL"``.

    Raises
    ------
    spectralnn.errors.SpectrumFileError
        If the file is missing, truncated, corrupt or not an SDSS spec file.

    Examples
    --------
    >>> from spectralnn.io import read_sdss
    >>> spec = read_sdss("spec-0332-52367-0639.fits")  # doctest: +SKIP
    >>> spec.meta["z"], spec.meta["class"], spec.meta["object_id"]  # doctest: +SKIP
    (0.10061..., 'QSO', 'SDSS_332-52367-639')
    """
    with open_fits(path) as hdul:
        return _read_sdss_hdul(hdul, path)
