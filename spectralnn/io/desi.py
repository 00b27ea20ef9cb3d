"""
DESI coadd files: the B, R and Z arms merged into one spectrum per target.

specutils reads a DESI coadd as a `~specutils.SpectrumList` with one 2-D
spectrum (targets × pixels) per camera. `read_desi_coadd` builds on that
loader, merges the three arms onto one wavelength grid, weighting the arms by
their inverse variance where they overlap, and returns a
`~spectralnn.SpectrumBatch` with the FIBERMAP facts (and, optionally, the
redrock redshifts) in its meta table. The data model is described at
https://desidatamodel.readthedocs.io (``coadd-SURVEY-PROGRAM-PIXNUM.fits``).
"""

import warnings

import numpy as np
from astropy import units as u
from astropy.table import QTable, Table

from ..batch import FLUX_UNIT, SpectrumBatch
from ..errors import (
    InvalidSpectrumError,
    SpectralNNWarning,
    SpectrumFileError,
)
from ..logger import log
from ._fits import file_errors, header_unit, open_fits, path_name, source_name

__all__ = ["read_desi_coadd", "merge_arms", "is_desi_coadd"]

_ARMS = ("B", "R", "Z")
_LOADER = "DESI coadd"


def is_desi_coadd(hdul):
    """
    Whether an open FITS file holds DESI B/R/Z camera spectra.

    True for coadd (and per-exposure ``spectra``) files, including stripped
    ones without FIBERMAP: the test is the presence of the
    ``{B,R,Z}_WAVELENGTH``, ``_FLUX`` and ``_IVAR`` HDUs.

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
    >>> is_desi_coadd(fits.HDUList([fits.PrimaryHDU()]))
    False
    """
    names = {hdu.name for hdu in hdul}
    return any(f"{arm}_FLUX" in names for arm in _ARMS) and all(
        f"{arm}_{kind}" in names
        for arm in _ARMS
        if f"{arm}_FLUX" in names
        for kind in ("WAVELENGTH", "IVAR")
    )


def merge_arms(wavelengths, fluxes, ivars, masks=None):
    """
    Merge spectrograph arms that share one wavelength lattice.

    Where arms overlap, the flux is the inverse-variance weighted mean of the
    unmasked arms and the inverse variances add; a pixel is masked only where
    no arm has a good (unmasked, positive inverse variance) value. Vectorised
    over targets.

    Parameters
    ----------
    wavelengths : sequence of array-like
        One increasing, evenly spaced wavelength array per arm (same unit, same
        step, starting on the same lattice: DESI arms are on a 0.8 Å lattice).
    fluxes, ivars : sequence of array-like
        Per arm, shape ``(N, M_arm)``.
    masks : sequence of array-like of bool, optional
        Per arm, True for bad pixels. Default: none masked.

    Returns
    -------
    wavelength : `~numpy.ndarray`
        Shape ``(M,)``, the union of the arm grids.
    flux, ivar : `~numpy.ndarray`
        Shape ``(N, M)``.
    mask : `~numpy.ndarray` of bool
        Shape ``(N, M)``.

    Raises
    ------
    spectralnn.errors.InvalidSpectrumError
        If the arms are not evenly spaced with one step on one lattice (merging
        them would need resampling), or shapes disagree.

    Examples
    --------
    >>> import numpy as np
    >>> from spectralnn.io import merge_arms
    >>> wb, wr = np.arange(10.0), np.arange(8.0, 15.0)
    >>> fb, fr = np.ones((1, 10)), np.full((1, 7), 3.0)
    >>> ib, ir = np.ones((1, 10)), np.ones((1, 7))
    >>> w, f, iv, m = merge_arms([wb, wr], [fb, fr], [ib, ir])
    >>> w.size, f[0, 8], iv[0, 8]   # overlap: mean of 1 and 3, ivar 1 + 1
    (15, np.float64(2.0), np.float64(2.0))
    """
    waves = [np.asarray(w, dtype=np.float64) for w in wavelengths]
    fluxes = [np.atleast_2d(np.asarray(f, dtype=np.float64)) for f in fluxes]
    ivars = [np.atleast_2d(np.asarray(i, dtype=np.float64)) for i in ivars]
    if masks is None:
        masks = [np.zeros(f.shape, dtype=bool) for f in fluxes]
    masks = [np.atleast_2d(np.asarray(m, dtype=bool)) for m in masks]
    if not (len(waves) == len(fluxes) == len(ivars) == len(masks)) or not waves:
        raise InvalidSpectrumError(
            "merge_arms needs one wavelength, flux, ivar and mask per arm"
        )
    n = fluxes[0].shape[0]
    for w, f, i, m in zip(waves, fluxes, ivars, masks, strict=False):
        if (
            w.ndim != 1
            or f.shape != (n, w.size)
            or i.shape != f.shape
            or m.shape != f.shape
        ):
            raise InvalidSpectrumError(
                f"arm shapes disagree: wavelength {w.shape}, flux {f.shape}, ivar "
                f"{i.shape}, mask {m.shape} (expected ({n}, {w.size}))"
            )
    step = np.diff(waves[0]).mean() if waves[0].size > 1 else None
    start = min(w[0] for w in waves)
    offsets = []
    for w in waves:
        d = np.diff(w)
        if step is None or not np.allclose(d, step, rtol=1e-6, atol=0):
            raise InvalidSpectrumError(
                "the arms are not evenly spaced with one common step; merging them "
                "needs resampling (see spectralnn.preprocessing)"
            )
        off = (w[0] - start) / step
        if abs(off - round(off)) > 1e-3:
            raise InvalidSpectrumError(
                f"arm starting at {w[0]} is off the common wavelength lattice "
                f"(start {start}, step {step}); merging it needs resampling"
            )
        offsets.append(int(round(off)))
    total = max(o + w.size for o, w in zip(offsets, waves, strict=False))
    wave = start + step * np.arange(total)
    num = np.zeros((n, total))
    den = np.zeros((n, total))
    for off, w, f, i, m in zip(offsets, waves, fluxes, ivars, masks, strict=False):
        sl = slice(off, off + w.size)
        wave[sl] = w  # keep the file's own values, not a recomputed lattice
        good = ~m & (i > 0) & np.isfinite(f) & np.isfinite(i)
        weight = np.where(good, i, 0.0)
        num[:, sl] += weight * np.where(good, f, 0.0)
        den[:, sl] += weight
    mask = ~(den > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        flux = np.where(mask, 0.0, num / np.where(mask, 1.0, den))
    return wave, flux, den, mask


def _arms_from_specutils(hdul, path):
    """Arms and fibermap read with specutils' DESI coadd loader."""
    from specutils import SpectrumList

    with warnings.catch_warnings():
        # extra HDUs (e.g. REDSHIFTS) are skipped by the loader with a warning
        warnings.filterwarnings("ignore", ".*will not be read", Warning)
        spectra = SpectrumList.read(hdul, format=_LOADER)
    flux_unit = spectra[0].flux.unit
    arms = []
    for spec in spectra:
        scale = (1.0 * spec.flux.unit).to_value(flux_unit)
        unc = spec.uncertainty
        ivar = np.asarray(unc.array, dtype=np.float64)
        if unc.unit is not None:
            ivar = (ivar * unc.unit).to_value(spec.flux.unit**-2)
        mask = spec.mask if spec.mask is not None else np.zeros(spec.flux.shape, bool)
        arms.append(
            (
                spec.spectral_axis.to_value(u.AA),
                np.atleast_2d(spec.flux.value) * scale,
                np.atleast_2d(ivar) / scale**2,
                np.atleast_2d(mask),
            )
        )
    meta = spectra[0].meta
    return arms, flux_unit, meta.get("fibermap"), meta.get("header")


def _arms_from_astropy(hdul, path):
    """Fallback for stripped files the specutils loader rejects."""
    arms = []
    flux_unit = None
    assumed = False
    for arm in _ARMS:
        if f"{arm}_FLUX" not in hdul:
            continue
        wave_hdu, flux_hdu, ivar_hdu = (
            hdul[f"{arm}_{k}"] for k in ("WAVELENGTH", "FLUX", "IVAR")
        )
        wave_unit = header_unit(wave_hdu.header) or u.AA
        unit = header_unit(flux_hdu.header)
        if unit is None:
            unit = FLUX_UNIT
            assumed = True
        if flux_unit is None:
            flux_unit = unit
        scale = (1.0 * unit).to_value(flux_unit)
        flux = np.atleast_2d(np.asarray(flux_hdu.data, dtype=np.float64)) * scale
        ivar = np.atleast_2d(np.asarray(ivar_hdu.data, dtype=np.float64)) / scale**2
        if f"{arm}_MASK" in hdul:
            mask = np.atleast_2d(np.asarray(hdul[f"{arm}_MASK"].data)) != 0
        else:
            mask = np.zeros(flux.shape, dtype=bool)
        wave = (np.asarray(wave_hdu.data, dtype=np.float64) * wave_unit).to_value(
            u.AA, equivalencies=u.spectral()
        )
        arms.append((wave, flux, ivar, mask))
    if assumed:
        warnings.warn(
            f"{source_name(path)}: the flux HDUs have no BUNIT; assuming the DESI "
            f"flux unit {FLUX_UNIT}",
            SpectralNNWarning,
            stacklevel=4,
        )
    fibermap = Table(hdul["FIBERMAP"].data) if "FIBERMAP" in hdul else None
    return arms, flux_unit, fibermap, hdul[0].header


def _fibermap_meta(fibermap, header, n, path):
    """Build the meta table of the merged batch (one row per target)."""
    name = source_name(path)
    meta = QTable()
    if fibermap is not None and len(fibermap) != n:
        log.warning(
            "%s: FIBERMAP has %d rows for %d spectra; ignoring it",
            name,
            len(fibermap),
            n,
        )
        fibermap = None
    if fibermap is not None and "TARGETID" in fibermap.colnames:
        targetid = np.asarray(fibermap["TARGETID"], dtype=np.int64)
        meta["object_id"] = np.array([f"DESI_{t}" for t in targetid])
        meta["targetid"] = targetid
    else:
        meta["object_id"] = np.array([f"{name}[{i}]" for i in range(n)])
    meta["source"] = np.full(n, name)
    meta["row"] = np.arange(n)
    survey = str(header.get("SURVEY", "")).strip() if header is not None else ""
    program = str(header.get("PROGRAM", "")).strip() if header is not None else ""
    meta["survey"] = np.full(n, survey)
    meta["program"] = np.full(n, program)
    meta["instrument"] = np.full(n, "DESI")
    if fibermap is None:
        return meta
    columns = {
        "ra": "TARGET_RA",
        "dec": "TARGET_DEC",
        "ebv": "EBV",
        "objtype": "OBJTYPE",
        "fiber": "FIBER",
        "tileid": "TILEID",
    }
    for key, column in columns.items():
        if column in fibermap.colnames:
            values = np.asarray(fibermap[column])
            if values.dtype.kind in "US":
                values = np.char.strip(values.astype(str))
            elif values.dtype.kind == "f":
                values = values.astype(np.float64)
            meta[key] = values
    status = next(
        (c for c in ("COADD_FIBERSTATUS", "FIBERSTATUS") if c in fibermap.colnames),
        None,
    )
    if status is not None:
        meta["fiberstatus"] = np.asarray(fibermap[status], dtype=np.int64)
    return meta


def _join_redrock(meta, redrock):
    """Add z, z_err, zwarning, class, subclass, deltachi2 from a redrock file."""
    name = source_name(redrock)
    if "targetid" not in meta.colnames:
        raise SpectrumFileError(
            f"{meta['source'][0]} has no FIBERMAP (no TARGETIDs): "
            f"cannot join the redshifts of {name}"
        )
    with open_fits(redrock) as hdul, file_errors(redrock):
        ext = next((e for e in ("REDSHIFTS", "ZBEST") if e in hdul), None)
        if ext is None:
            raise SpectrumFileError(
                f"{path_name(redrock)}: no REDSHIFTS (or ZBEST) table; "
                "not a redrock file"
            )
        zcat = Table(hdul[ext].data)
        rr_id = np.asarray(zcat["TARGETID"], dtype=np.int64)
        order = np.argsort(rr_id, kind="stable")
        target = np.asarray(meta["targetid"], dtype=np.int64)
        pos = np.clip(np.searchsorted(rr_id[order], target), 0, len(rr_id) - 1)
        idx = order[pos] if len(rr_id) else np.zeros(len(target), dtype=int)
        found = (rr_id[idx] == target) if len(rr_id) else np.zeros(len(target), bool)

        def take(column, fill, kind=None):
            values = np.asarray(zcat[column])[idx]
            if values.dtype.kind in "US":
                values = np.char.strip(values.astype(str))
            elif kind is not None:
                values = values.astype(kind)
            return np.where(found, values, fill)

        meta["z"] = take("Z", np.nan, np.float64)
        meta["z_err"] = take("ZERR", np.nan, np.float64)
        meta["zwarning"] = take("ZWARN", -1, np.int64)
        meta["class"] = take("SPECTYPE", "")
        if "SUBTYPE" in zcat.colnames:
            meta["subclass"] = take("SUBTYPE", "")
        if "DELTACHI2" in zcat.colnames:
            meta["deltachi2"] = take("DELTACHI2", np.nan, np.float64)
    missing = int((~found).sum())
    if missing:
        log.warning(
            "%s: %d of %d targets have no redshift in %s",
            meta["source"][0],
            missing,
            len(found),
            name,
        )
    return meta


def _select(meta, targets, rows, n, path):
    """Row indices chosen by ``targets`` (TARGETIDs) or ``rows`` (indices)."""
    if targets is not None and rows is not None:
        raise ValueError("give targets or rows, not both")
    if rows is not None:
        index = np.arange(n)[rows] if isinstance(rows, slice) else np.asarray(rows, int)
        if index.size and (index.min() < -n or index.max() >= n):
            raise IndexError(
                f"rows {rows} out of range for {n} spectra in {source_name(path)}"
            )
        return np.atleast_1d(index % n if index.size else index)
    if targets is None:
        return np.arange(n)
    wanted = np.atleast_1d(np.asarray(targets, dtype=np.int64))
    if "targetid" not in meta.colnames:
        raise SpectrumFileError(
            f"{path_name(path)}: the file has no FIBERMAP, so it "
            "cannot be selected by TARGETID; use rows="
        )
    have = np.asarray(meta["targetid"], dtype=np.int64)
    lookup = {int(t): i for i, t in enumerate(have)}
    absent = [int(t) for t in wanted if int(t) not in lookup]
    if absent:
        raise KeyError(f"TARGETID(s) {absent} not in {source_name(path)}")
    return np.array([lookup[int(t)] for t in wanted], dtype=int)


def _read_desi_hdul(hdul, path, *, targets=None, rows=None, redrock=None):
    """Read an open DESI file into a merged SpectrumBatch."""
    if not is_desi_coadd(hdul):
        raise SpectrumFileError(
            f"{path_name(path)}: no B/R/Z _FLUX, _IVAR and _WAVELENGTH "
            "HDUs; not a DESI coadd file"
        )
    with file_errors(path):
        usable = "FIBERMAP" in hdul and all(
            "BUNIT" in hdul[f"{arm}_FLUX"].header
            for arm in _ARMS
            if f"{arm}_FLUX" in hdul
        )
        if usable:
            arms, flux_unit, fibermap, header = _arms_from_specutils(hdul, path)
        else:
            log.info(
                "%s: not a complete DESI coadd (no FIBERMAP or BUNIT); reading the "
                "B/R/Z HDUs directly",
                source_name(path),
            )
            arms, flux_unit, fibermap, header = _arms_from_astropy(hdul, path)
        n = arms[0][1].shape[0]
        meta = _fibermap_meta(fibermap, header, n, path)
    index = _select(meta, targets, rows, n, path)
    wave, flux, ivar, mask = merge_arms(
        [a[0] for a in arms],
        [a[1][index] for a in arms],
        [a[2][index] for a in arms],
        [a[3][index] for a in arms],
    )
    meta = meta[index]
    if redrock is not None:
        meta = _join_redrock(meta, redrock)
    with warnings.catch_warnings():
        # pixels no arm covers well are already masked; NaN flux in them is expected
        warnings.simplefilter("ignore", SpectralNNWarning)
        batch = SpectrumBatch(
            wave * u.AA,
            flux * flux_unit,
            ivar=ivar,
            mask=mask,
            meta=meta,
            on_invalid="flag",
        )
    log.debug("read %s: %d targets x %d pixels", path, len(batch), batch.n_pixels)
    return batch


def read_desi_coadd(path, *, targets=None, rows=None, redrock=None):
    """
    Read a DESI coadd file, merging the B, R and Z arms of every target.

    The arms are read with specutils' ``"DESI coadd"`` loader and merged with
    `merge_arms`: one wavelength grid from 3600 to 9824 Å (0.8 Å linear), the
    inverse-variance weighted mean flux where the arms overlap (5760-5800 Å
    and 7520-7620 Å), summed inverse variances, and a pixel masked only where
    no arm is good.

    Files the specutils loader rejects (stripped files without FIBERMAP or
    without BUNIT, such as QuasarNP's ``test_coadd.fits``) are read from their
    ``{B,R,Z}_WAVELENGTH/_FLUX/_IVAR[/_MASK]`` HDUs with astropy; a missing
    flux unit is assumed to be 1e-17 erg s⁻¹ cm⁻² Å⁻¹, with a
    `~spectralnn.errors.SpectralNNWarning`.

    Parameters
    ----------
    path : str or path-like
        The coadd file.
    targets : sequence of int, optional
        TARGETIDs to read, in this order. Default: all.
    rows : sequence of int or slice, optional
        Row indices in the file to read instead (for files without FIBERMAP).
    redrock : str or path-like, optional
        A redrock file (``redrock-*.fits`` or ``zbest-*.fits``) whose
        ``REDSHIFTS`` table is joined on TARGETID.

    Returns
    -------
    batch : `~spectralnn.SpectrumBatch`
        One row per target. ``meta`` columns: ``object_id`` (``"DESI_TARGETID"``,
        or ``"file[row]"`` without FIBERMAP), ``targetid`` (only with FIBERMAP),
        ``source`` (file name), ``row`` (index in the file), ``survey``,
        ``program``, ``instrument`` (``"DESI"``), and from FIBERMAP where
        present ``ra``, ``dec`` (TARGET_RA/DEC, deg), ``ebv`` (SFD E(B-V)),
        ``objtype``, ``fiber``, ``tileid``, ``fiberstatus`` (COADD_FIBERSTATUS).
        With ``redrock``: ``z``, ``z_err``, ``zwarning`` (ZWARN), ``class``
        (SPECTYPE), ``subclass`` (SUBTYPE), ``deltachi2``; targets absent
        from the redrock file get NaN, -1 and empty strings (logged).

    Raises
    ------
    spectralnn.errors.SpectrumFileError
        If a file is missing, truncated, corrupt or not a DESI file.
    KeyError
        If a requested TARGETID is not in the file.

    Examples
    --------
    >>> from spectralnn.io import read_desi_coadd
    >>> batch = read_desi_coadd("coadd-sv3-dark-26065.fits")  # doctest: +SKIP
    >>> batch.n_pixels, batch.meta["targetid"][2]  # doctest: +SKIP
    (7781, 39627866878511337)
    """
    with open_fits(path) as hdul:
        return _read_desi_hdul(hdul, path, targets=targets, rows=rows, redrock=redrock)
