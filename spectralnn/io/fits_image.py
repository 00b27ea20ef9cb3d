"""
One-dimensional FITS image spectra (IRAF/``onedspec`` style), e.g. Keck/ESI.

Many reduced spectra are stored as a 1-D primary image whose wavelength is
given by the header: linear ``CRVAL1 + CDELT1 * (p - CRPIX1)`` for 1-based
pixel ``p``, or log-linear ``10**(...)`` when IRAF's ``DC-FLAG = 1`` (even
though ``CTYPE1 = 'LINEAR'``). The errors are often in a second file with the
same grid (XIDL convention: ``NAME_f.fits`` flux, ``NAME_e.fits`` 1-σ error).

specutils' ``"wcs1d-fits"`` loader ignores ``DC-FLAG`` (it returns the
log10 values as wavelengths) and reads ``erg/cm2/s/A`` with ``A`` as ampere,
so this reader builds the wavelength grid itself. For a standard FITS
spectral WCS (``CTYPE1 = 'WAVE'``, ``'WAVE-LOG'``, ``'AWAV'``) the axis is
computed by `astropy.wcs` as usual.
"""

import os
import warnings

import numpy as np
from astropy import units as u
from astropy.coordinates import Angle
from astropy.nddata import StdDevUncertainty
from astropy.wcs import WCS, FITSFixedWarning

from ..errors import SpectralNNWarning, SpectrumFileError
from ..logger import log
from ._fits import file_errors, header_unit, open_fits, path_name, source_name

__all__ = ["read_fits_image_spectrum", "is_fits_image_spectrum"]

_IRAF_CTYPES = ("", "LINEAR", "PIXEL", "WAVELENGTH", "LAMBDA", "ANGSTROM")


def is_fits_image_spectrum(hdul):
    """
    Whether an open FITS file holds a 1-D spectrum as its primary image.

    Parameters
    ----------
    hdul : `~astropy.io.fits.HDUList`
        The open file.

    Returns
    -------
    bool

    Examples
    --------
    >>> import numpy as np
    >>> from astropy.io import fits
    >>> hdu = fits.PrimaryHDU(np.ones(10))
    >>> hdu.header["CRVAL1"], hdu.header["CDELT1"] = 4000.0, 1.0
    >>> is_fits_image_spectrum(fits.HDUList([hdu]))
    True
    """
    header = hdul[0].header
    data = hdul[0].data
    if data is None:
        return False
    shape = tuple(s for s in np.shape(data) if s != 1)
    return (
        len(shape) == 1
        and "CRVAL1" in header
        and ("CDELT1" in header or "CD1_1" in header)
    )


def _wavelength(header, n, name):
    """Compute the wavelength grid (Å) of a 1-D image header."""
    ctype = str(header.get("CTYPE1", "")).strip().upper()
    if ctype in _IRAF_CTYPES:
        crval = float(header["CRVAL1"])
        cdelt = float(header.get("CDELT1", header.get("CD1_1", 0.0)))
        crpix = float(header.get("CRPIX1", 1.0))
        if cdelt == 0:
            raise SpectrumFileError(
                f"{name}: CDELT1/CD1_1 is zero; no wavelength solution"
            )
        x = crval + cdelt * (np.arange(n) + 1.0 - crpix)
        if int(header.get("DC-FLAG", 0)) == 1:
            x = 10.0**x
        unit = header.get("CUNIT1")
        if unit is None:
            wat = str(header.get("WAT1_001", ""))
            unit = "Angstrom"
            if "units=" in wat:
                unit = wat.split("units=")[1].split()[0]
            else:
                log.debug(
                    "%s: no wavelength unit in the header; assuming Angstrom", name
                )
        if str(unit).lower() in ("angstroms", "angstrom", "a"):
            unit = "Angstrom"
        return (x * u.Unit(unit)).to_value(u.AA, equivalencies=u.spectral())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        wcs = WCS(header, naxis=1)
    world = wcs.pixel_to_world_values(np.arange(n))
    unit = wcs.wcs.cunit[0] or u.m
    return (np.asarray(world, dtype=np.float64) * u.Unit(unit)).to_value(
        u.AA, equivalencies=u.spectral()
    )


def _default_error_path(path):
    """XIDL sibling error file: NAME_f.fits -> NAME_e.fits, if it exists."""
    head, tail = os.path.split(path_name(path))
    for flux_tag, err_tag in (("_f.", "_e."), ("_F.", "_E.")):
        if flux_tag in tail:
            candidate = os.path.join(head, tail.replace(flux_tag, err_tag, 1))
            if os.path.exists(candidate):
                return candidate
    return None


def _image(hdul, path):
    data = np.asarray(hdul[0].data, dtype=np.float64).ravel()
    return data, hdul[0].header


def _read_image_hdul(hdul, path, *, error="auto", flux_unit=None):
    """Read an open 1-D image file (shared with `read_spectrum`)."""
    from specutils import Spectrum

    name = path_name(path)
    if not is_fits_image_spectrum(hdul):
        raise SpectrumFileError(
            f"{name}: the primary HDU is not a 1-D spectrum with a "
            "CRVAL1/CDELT1 wavelength solution"
        )
    with file_errors(path):
        flux, header = _image(hdul, path)
        wave = _wavelength(header, flux.size, name)
        if flux_unit is None:
            flux_unit = header_unit(header)
            if flux_unit is None:
                warnings.warn(
                    f"{source_name(path)}: no BUNIT; the flux is taken as "
                    "dimensionless (pass flux_unit= to set it)",
                    SpectralNNWarning,
                    stacklevel=3,
                )
                flux_unit = u.dimensionless_unscaled
        flux_unit = u.Unit(flux_unit)
    if error == "auto":
        error = _default_error_path(path)
    sigma = None
    if error is not None:
        with open_fits(error) as ehdul, file_errors(error):
            if not is_fits_image_spectrum(ehdul):
                raise SpectrumFileError(f"{path_name(error)}: not a 1-D image spectrum")
            sigma, eheader = _image(ehdul, error)
            ewave = _wavelength(eheader, sigma.size, path_name(error))
        if sigma.size != flux.size or not np.allclose(ewave, wave, rtol=1e-7, atol=0):
            raise SpectrumFileError(
                f"{path_name(error)}: the error spectrum is not on the grid of {name}"
            )
        log.debug("%s: errors from %s", name, error)
    if sigma is not None:
        mask = ~np.isfinite(flux) | ~np.isfinite(sigma) | ~(sigma > 0)
        uncertainty = StdDevUncertainty(np.where(mask, np.inf, sigma) * flux_unit)
    else:
        mask = ~np.isfinite(flux)
        uncertainty = None
    meta = {"header": header, "source": source_name(path)}
    if error is not None:
        meta["error_source"] = source_name(error)
    obj = str(header.get("OBJECT", "")).strip()
    if obj:
        meta["object"] = obj
        meta["object_id"] = obj
    for key, card in (("telescope", "TELESCOP"), ("instrument", "INSTRUME")):
        if card in header:
            meta[key] = str(header[card]).strip()
    try:
        if "RA" in header and "DEC" in header:
            ra, dec = header["RA"], header["DEC"]
            if isinstance(ra, str):
                meta["ra"] = float(Angle(ra, unit=u.hourangle).deg)
                meta["dec"] = float(Angle(dec, unit=u.deg).deg)
            else:
                meta["ra"], meta["dec"] = float(ra), float(dec)
    except (ValueError, TypeError):
        log.debug(
            "%s: could not parse RA/DEC %r %r",
            name,
            header.get("RA"),
            header.get("DEC"),
        )
    return Spectrum(
        flux=np.where(np.isfinite(flux), flux, 0.0) * flux_unit,
        spectral_axis=wave * u.AA,
        uncertainty=uncertainty,
        mask=mask,
        meta=meta,
    )


def read_fits_image_spectrum(path, error="auto", *, flux_unit=None):
    """
    Read a spectrum stored as a 1-D FITS image, with an optional error file.

    Parameters
    ----------
    path : str or path-like
        The flux file.
    error : str, path-like, None or 'auto', optional
        A file with the 1-σ errors on the same grid. ``'auto'`` (the default)
        uses the XIDL sibling ``NAME_e.fits`` of ``NAME_f.fits`` when it
        exists; None reads no errors (the inverse variance is then estimated
        when the spectrum enters a `~spectralnn.SpectrumBatch`).
    flux_unit : `~astropy.units.Unit` or str, optional
        Override the header's BUNIT, e.g. ``u.dimensionless_unscaled`` for a
        continuum-normalised spectrum whose header still carries the flux unit
        (as Keck/ESI ``PH957_f.fits``). Without BUNIT and without this
        argument the flux is dimensionless, with a
        `~spectralnn.errors.SpectralNNWarning`.

    Returns
    -------
    spectrum : `specutils.Spectrum`
        With `~astropy.nddata.StdDevUncertainty` when errors are read; pixels
        with non-finite flux or non-positive error are masked. ``meta`` holds
        ``header``, ``source``, ``error_source``, ``object`` / ``object_id``
        (OBJECT), ``telescope``, ``instrument``, ``ra``, ``dec`` (deg) when in
        the header. The wavelengths are as in the file (air or vacuum: the
        header does not say for IRAF files).

    Raises
    ------
    spectralnn.errors.SpectrumFileError
        If a file is missing, truncated, corrupt, not a 1-D spectrum, or the
        error file is on another grid.

    Examples
    --------
    >>> import numpy as np
    >>> from astropy.io import fits
    >>> hdu = fits.PrimaryHDU(np.ones(5, dtype=np.float32))
    >>> hdu.header.update(CRVAL1=3.6, CDELT1=1e-4, CRPIX1=1, CTYPE1="LINEAR")
    >>> hdu.header["DC-FLAG"] = 1
    >>> hdu.header["BUNIT"] = "erg/cm2/s/A"
    >>> spec = read_fits_image_spectrum(fits.HDUList([hdu]), error=None)
    >>> spec.spectral_axis[0]  # doctest: +FLOAT_CMP
    <SpectralAxis 3981.07170553 Angstrom>
    >>> spec.flux.unit
    Unit("erg / (Angstrom s cm2)")
    """
    with open_fits(path) as hdul:
        return _read_image_hdul(hdul, path, error=error, flux_unit=flux_unit)
