"""
Training sets from survey spectra and a catalogue of labels.

`read_catalog` reads a quasar catalogue (FITS, Parquet, CSV, ECSV) and gives
its columns standard names (``plate``, ``mjd``, ``fiber``, ``ra``, ``dec``,
``z``, ``log_mbh``...), turning the catalogue's "missing" codes into NaN.
`join_catalog` pairs spectra with catalogue rows on plate-MJD-fibre or on sky
position, and says for each spectrum that finds no partner why.
`build_training_set` does both for a folder of downloaded spectra and writes an
HDF5 dataset (`~spectralnn.datasets.SpectrumDataset`) ready for
`~spectralnn.estimators.Estimator.fit` or ``spectralnn train``, after
label-quality cuts, duplicate removal and a split by object, and returns a
table that accounts for every input spectrum.

Known catalogues (recognised from their columns):

``'chen2019'``
    SDSS DR16Q quasars with the single-epoch masses of Chen et al. (2019,
    ApJS 244, 36), one row per quasar: ``OBJECT`` (SDSS name), ``Z``,
    ``ZVI``, ``CHEN EPOCH`` (the plate-MJD-fibre of the spectrum the masses
    were measured on), ``LMBH`` (Mg II mass, else C IV) and per-line masses
    ``logMBH-*``, where **0 means missing**.
``'spiders'``
    The SDSS DR16 SPIDERS quasar black-hole-mass catalogue (Coffey et al.
    2019, A&A 625, A123): ``name`` (``[XMMSL2|2RXS] Jhhmmss.s+ddmmss``),
    ``redshift``, ``logBHMA_hb`` (Hβ mass), ``fwhm1_hb``, ``l5100``, where
    **-99 means missing**.
``'generic'``
    Anything else with SDSS-style columns (``PLATE``, ``MJD``, ``FIBERID``,
    ``RA``, ``DEC``, ``Z``, ``ZWARNING``, ``Z_CONF``, ``SDSS_NAME``...), such
    as the DR16Q FITS file (Lyke et al. 2020, ApJS 250, 8).

Examples
--------
>>> from astropy.table import Table
>>> from spectralnn.datasets import read_catalog
>>> cat = read_catalog(Table({"name": ["XMMSL2 J153357.2+470137"],
...                           "redshift": [0.392], "logBHMA_hb": [8.566]}))
>>> cat.meta["catalog_kind"], round(float(cat["ra"][0].value), 4)
('spiders', 233.4883)
"""

import os
import re
import warnings
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.table import QTable, Table

from ..errors import DatasetError, SpectrumFileError
from ..logger import log

__all__ = [
    "CATALOG_KINDS",
    "read_catalog",
    "parse_sdss_name",
    "join_catalog",
    "build_training_set",
    "SDSS_LOGLAM_GRID",
]

#: Catalogues `read_catalog` knows by their columns (see the module docstring).
CATALOG_KINDS = ("chen2019", "spiders", "generic")

#: log10(λ/Å) lattice of SDSS and BOSS coadds (Δ = 1e-4, every pixel of every
#: plate falls on it): 3548-10471 Å, the grid of `build_training_set`.
SDSS_LOGLAM_GRID = np.arange(35500, 40201) * 1e-4

#: standard name -> catalogue column names tried in turn (case-insensitive)
_GENERIC_COLUMNS = {
    "name": ("SDSS_NAME", "NAME", "OBJECT", "OBJID_NAME"),
    "plate": ("PLATE", "PLATEID"),
    "mjd": ("MJD",),
    "fiber": ("FIBERID", "FIBER"),
    "ra": ("RA", "RAJ2000", "PLUG_RA"),
    "dec": ("DEC", "DEJ2000", "PLUG_DEC"),
    "z": ("Z", "REDSHIFT"),
    "zwarning": ("ZWARNING",),
    "z_conf": ("Z_CONF", "Z_CONF_PERSON"),
    "log_mbh": ("LOG_MBH", "LOGMBH", "LMBH"),
    "log_mbh_err": ("LOG_MBH_ERR", "LOGMBH_ERR", "E_LOGMBH"),
}

_NAME = re.compile(r"J?(\d{2})(\d{2})(\d{2}(?:\.\d*)?)([+-])(\d{2})(\d{2})(\d{2}(?:\.\d*)?)")
_PMF = re.compile(r"^\s*(\d+)-(\d+)-(\d+)\s*$")
_MASS = u.dex(u.solMass)


# ----------------------------------------------------------------- reading
def parse_sdss_name(names):
    """
    Sky positions encoded in IAU-style names ``Jhhmmss.ss+ddmmss.s``.

    SDSS, 2RXS and XMMSL2 names write the J2000 position truncated (not
    rounded) to the digits shown; any prefix (``'SDSS '``, ``'XMMSL2 '``) is
    ignored.

    Parameters
    ----------
    names : str or array-like of str (or bytes)
        The names.

    Returns
    -------
    ra, dec : `~astropy.units.Quantity`
        In degrees; NaN where a name holds no position.

    Examples
    --------
    >>> ra, dec = parse_sdss_name(["SDSS J000001.20+240354.5", "no position"])
    >>> ra.round(5), dec.round(5)
    (<Quantity [0.005,   nan] deg>, <Quantity [24.06514,      nan] deg>)
    """
    names = np.atleast_1d(np.asarray(names))
    ra = np.full(names.shape, np.nan)
    dec = np.full(names.shape, np.nan)
    for i, name in enumerate(names.tolist()):
        if isinstance(name, bytes):
            name = name.decode("ascii", "replace")
        m = _NAME.search(str(name))
        if m is None:
            continue
        hh, mm, ss, sign, dd, am, asec = m.groups()
        ra[i] = 15.0 * (int(hh) + int(mm) / 60.0 + float(ss) / 3600.0)
        dec[i] = (1 if sign == "+" else -1) * (int(dd) + int(am) / 60.0
                                               + float(asec) / 3600.0)
    return ra * u.deg, dec * u.deg


def _read_table(path):
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"catalogue file {path} does not exist")
    name = path.name.lower()
    fmt = None
    if name.endswith((".csv", ".csv.gz")):
        fmt = "ascii.csv"
    elif name.endswith(".parquet"):
        fmt = "parquet"
    elif name.endswith(".ecsv"):
        fmt = "ascii.ecsv"
    with warnings.catch_warnings():
        # Parquet string widths, FITS unit strings: harmless notes on reading
        warnings.simplefilter("ignore", category=Warning)
        try:
            if fmt is None:
                return Table.read(path, hdu=1) if name.endswith(
                    (".fits", ".fit", ".fits.gz")) else Table.read(path)
            return Table.read(path, format=fmt)
        except (OSError, ValueError, TypeError) as exc:
            raise DatasetError(f"cannot read the catalogue {path}: {exc}") from exc


def _find(table, candidates):
    lower = {c.lower(): c for c in table.colnames}
    for name in candidates:
        if name.lower() in lower:
            return lower[name.lower()]
    return None


def _text(values):
    return np.array([v.decode("ascii", "replace").strip() if isinstance(v, bytes)
                     else str(v).strip() for v in np.asarray(values).tolist()])


def _missing_to_nan(values, codes):
    values = np.array(values, dtype=np.float64)
    for code in codes:
        values[values == code] = np.nan
    return values


def _identify(table):
    cols = set(table.colnames)
    if {"LMBH", "CHEN EPOCH"} <= cols:
        return "chen2019"
    if "logBHMA_hb" in cols:
        return "spiders"
    return "generic"


def _standard_chen(table, out):
    out["name"] = _text(table["OBJECT"])
    out["z"] = np.asarray(table["Z"], dtype=np.float64)
    out["z_vi"] = np.asarray(table["ZVI"], dtype=np.float64)
    pmf = _text(table["CHEN EPOCH"])
    parts = np.full((len(pmf), 3), -1, dtype=np.int64)
    for i, text in enumerate(pmf):
        m = _PMF.match(text)
        if m:
            parts[i] = [int(g) for g in m.groups()]
    out["plate"], out["mjd"], out["fiber"] = parts.T
    # Chen et al. (2019) tables write 0 for "no mass from this line"
    out["log_mbh"] = _missing_to_nan(table["LMBH"], (0.0,)) * _MASS
    for column, name in (("logMBH-Hb", "log_mbh_hbeta"), ("logMBH-Ha-2", "log_mbh_halpha"),
                         ("logMBH-MgII-2", "log_mbh_mgii"), ("logMBH-CIV-2", "log_mbh_civ")):
        if column in table.colnames:
            out[name] = _missing_to_nan(table[column], (0.0,)) * _MASS
    if "N_EPOCHS" in table.colnames:
        out["n_epochs"] = np.asarray(table["N_EPOCHS"], dtype=np.int64)


def _standard_spiders(table, out):
    out["name"] = _text(table["name"])
    out["z"] = _missing_to_nan(table["redshift"], (-99.0,))
    out["log_mbh"] = _missing_to_nan(table["logBHMA_hb"], (-99.0,)) * _MASS
    if "fwhm1_hb" in table.colnames:
        out["fwhm_hbeta"] = _missing_to_nan(table["fwhm1_hb"], (-99.0,)) * (u.km / u.s)
    if "l5100" in table.colnames:
        l5100 = _missing_to_nan(table["l5100"], (-99.0,))
        with np.errstate(divide="ignore", invalid="ignore"):
            out["log_lambda_l_5100"] = np.where(l5100 > 0, np.log10(l5100), np.nan) * \
                u.dex(u.erg / u.s)


def _standard_generic(table, out):
    for std, candidates in _GENERIC_COLUMNS.items():
        column = _find(table, candidates)
        if column is None:
            continue
        values = table[column]
        if std == "name":
            out[std] = _text(values)
        elif std in ("plate", "mjd", "fiber", "zwarning", "z_conf"):
            out[std] = np.asarray(values, dtype=np.int64)
        elif std in ("ra", "dec"):
            out[std] = np.asarray(values, dtype=np.float64) * u.deg
        elif std in ("log_mbh", "log_mbh_err"):
            unit = _MASS if std == "log_mbh" else u.dex
            out[std] = np.asarray(values, dtype=np.float64) * unit
        else:
            out[std] = np.asarray(values, dtype=np.float64)


def read_catalog(catalog, *, kind=None):
    """
    Read a catalogue of labels and give its columns standard names.

    Parameters
    ----------
    catalog : str, `~pathlib.Path` or `~astropy.table.Table`
        A FITS (first extension), Parquet, CSV or ECSV file, or a table.
    kind : {'chen2019', 'spiders', 'generic'}, optional
        Which catalogue it is (see the module docstring). Default: recognised
        from the columns.

    Returns
    -------
    table : `~astropy.table.QTable`
        One row per catalogue entry, with whichever of these the catalogue
        provides: ``name``; ``plate``, ``mjd``, ``fiber`` (int, -1 when
        unknown); ``ra``, ``dec`` [deg] (from the names when there are no
        coordinate columns); ``z``; ``zwarning``; ``z_conf``; ``log_mbh``
        [dex(M_sun)] and, per catalogue, per-line masses, ``fwhm_hbeta``,
        ``log_lambda_l_5100``... Missing values are NaN (the catalogue's own
        codes, 0 or -99, are translated). The original columns follow,
        unchanged. ``meta['catalog_kind']`` says which reader was used.

    Raises
    ------
    spectralnn.errors.DatasetError
        If the file is missing or unreadable.
    ValueError
        If ``kind`` is unknown or the table lacks that kind's columns.

    Examples
    --------
    >>> from astropy.table import Table
    >>> cat = read_catalog(Table({"OBJECT": [b"000001.20+240354.5"], "Z": [1.616],
    ...                           "ZVI": [1.6162], "LMBH": [0.0],
    ...                           "CHEN EPOCH": ["7666-57339-0121"]}))
    >>> [int(cat[k][0]) for k in ("plate", "mjd", "fiber")]
    [7666, 57339, 121]
    >>> cat["log_mbh"]  # 0 means "no mass" in the Chen et al. table
    <Dex [nan] dex(solMass)>
    """
    source = None
    if isinstance(catalog, (str, os.PathLike)):
        source = str(catalog)
        table = _read_table(catalog)
    elif isinstance(catalog, Table):
        table = Table(catalog, copy=False)
    else:
        raise TypeError(f"catalog must be a path or a Table, not {type(catalog).__name__}")
    kind = kind or _identify(table)
    if kind not in CATALOG_KINDS:
        raise ValueError(f"kind must be one of {CATALOG_KINDS}, not {kind!r}")
    out = QTable()
    try:
        {"chen2019": _standard_chen, "spiders": _standard_spiders,
         "generic": _standard_generic}[kind](table, out)
    except KeyError as exc:
        raise ValueError(f"the catalogue lacks the column {exc} of a {kind!r} "
                         "catalogue") from exc
    n = len(table)
    if "ra" not in out.colnames and "name" in out.colnames:
        ra, dec = parse_sdss_name(out["name"])
        if np.isfinite(ra).any():
            out["ra"], out["dec"] = ra, dec
    for key in ("plate", "mjd", "fiber"):
        if key not in out.colnames and {"plate", "mjd", "fiber"} & set(out.colnames):
            out[key] = np.full(n, -1, dtype=np.int64)
    standard = list(out.colnames)
    for name in table.colnames:
        if name not in out.colnames:
            out[name] = table[name]
    out.meta["catalog_kind"] = kind
    out.meta["standard_columns"] = standard
    if source is not None:
        out.meta["catalog_source"] = source
    log.info("read %d catalogue rows (%s)", n, kind)
    return out


# ------------------------------------------------------------------ joining
def _ints(meta, name):
    if name not in meta.colnames:
        return None
    return np.asarray(meta[name], dtype=np.float64)


def _deg(column):
    if isinstance(column, u.Quantity):
        return column.to_value(u.deg)
    return np.asarray(column, dtype=np.float64)


def join_catalog(spectra, catalog, *, on="auto", radius=2.0 * u.arcsec, max_dz=0.05):
    """
    Pair spectra with catalogue rows, on plate-MJD-fibre or sky position.

    Parameters
    ----------
    spectra : `~astropy.table.Table` or `~spectralnn.SpectrumBatch`
        The spectra's meta table (``plate``, ``mjd``, ``fiber``, ``ra``,
        ``dec``, ``z`` as written by `spectralnn.io.read_spectra`).
    catalog : `~astropy.table.Table`
        A table from `read_catalog`.
    on : {'auto', 'plate-mjd-fiber', 'position'}, optional
        ``'plate-mjd-fiber'``: the same observation; ``'position'``: the
        nearest catalogue source within ``radius`` (every epoch of an
        object). ``'auto'`` (the default) tries plate-MJD-fibre first, then
        position for the spectra still unpaired, using what both sides have.
    radius : `~astropy.units.Quantity`, optional
        Largest separation of a position match. Default 2 arcsec (SDSS fibre
        positions; X-ray catalogue positions need ~15 arcsec).
    max_dz : float or None, optional
        Reject a pair whose redshifts differ by more than this (a different
        object, or a wrong pipeline redshift). Default 0.05; None to skip.

    Returns
    -------
    match : `~astropy.table.QTable`
        One row per spectrum: ``catalog_row`` (-1 when unpaired), ``join``
        (``'plate-mjd-fiber'``, ``'position'`` or ``''``), ``separation``
        [arcsec] (NaN when unknown), ``dz`` (spectrum minus catalogue
        redshift) and ``reason`` (why a spectrum is unpaired, else ``''``).

    Raises
    ------
    ValueError
        If the requested join is impossible (columns missing on one side).

    Examples
    --------
    >>> from astropy.table import Table
    >>> cat = read_catalog(Table({"PLATE": [332, 500], "MJD": [52367, 51000],
    ...                          "FIBERID": [639, 1], "Z": [0.1006, 1.0]}))
    >>> spectra = Table({"plate": [332, 7], "mjd": [52367, 1], "fiber": [639, 2],
    ...                  "z": [0.1006, 0.5]})
    >>> m = join_catalog(spectra, cat)
    >>> m["catalog_row"].tolist(), m["join"].tolist()
    ([0, -1], ['plate-mjd-fiber', ''])
    """
    from ..batch import SpectrumBatch

    if on not in ("auto", "plate-mjd-fiber", "position"):
        raise ValueError(f"on must be 'auto', 'plate-mjd-fiber' or 'position', not {on!r}")
    meta = spectra.meta if isinstance(spectra, SpectrumBatch) else spectra
    n = len(meta)
    row = np.full(n, -1, dtype=np.int64)
    method = np.full(n, "", dtype=object)
    sep = np.full(n, np.nan)
    reason = np.full(n, "", dtype=object)

    keys = ("plate", "mjd", "fiber")
    can_pmf = all(k in meta.colnames for k in keys) and \
        all(k in catalog.colnames for k in keys) and bool(np.any(
            np.asarray(catalog["plate"]) > 0))
    can_pos = {"ra", "dec"} <= set(meta.colnames) and {"ra", "dec"} <= set(catalog.colnames)
    if on == "plate-mjd-fiber" and not can_pmf:
        raise ValueError("joining on plate-mjd-fiber needs plate, mjd and fiber on both "
                         "the spectra and the catalogue")
    if on == "position" and not can_pos:
        raise ValueError("joining on position needs ra and dec on both the spectra and "
                         "the catalogue")
    if not (can_pmf or can_pos):
        raise ValueError("the spectra and the catalogue share neither plate-mjd-fiber nor "
                         "positions: nothing to join on")
    if can_pmf and on != "position":
        lookup = {}
        cat_keys = np.stack([np.asarray(catalog[k], dtype=np.int64) for k in keys], axis=1)
        for i, key in enumerate(map(tuple, cat_keys.tolist())):
            if key[0] > 0:
                lookup.setdefault(key, i)
        spec_keys = np.stack([np.nan_to_num(_ints(meta, k), nan=-1).astype(np.int64)
                              for k in keys], axis=1)
        for i, key in enumerate(map(tuple, spec_keys.tolist())):
            j = lookup.get(key, -1)
            if j >= 0:
                row[i], method[i] = j, "plate-mjd-fiber"
            else:
                reason[i] = "plate-mjd-fiber not in the catalogue"
    if can_pos and on != "plate-mjd-fiber":
        from astropy.coordinates import SkyCoord, match_coordinates_sky

        cat_ra, cat_dec = _deg(catalog["ra"]), _deg(catalog["dec"])
        good_cat = np.flatnonzero(np.isfinite(cat_ra) & np.isfinite(cat_dec))
        ra, dec = _deg(meta["ra"]), _deg(meta["dec"])
        todo = np.flatnonzero((row < 0) & np.isfinite(ra) & np.isfinite(dec))
        if todo.size and good_cat.size:
            cat_coord = SkyCoord(cat_ra[good_cat] * u.deg, cat_dec[good_cat] * u.deg)
            idx, d2d, _ = match_coordinates_sky(
                SkyCoord(ra[todo] * u.deg, dec[todo] * u.deg), cat_coord)
            arcsec = d2d.to_value(u.arcsec)
            limit = u.Quantity(radius, u.arcsec).value
            for k, i in enumerate(todo):
                if arcsec[k] <= limit:
                    row[i], method[i], sep[i] = good_cat[idx[k]], "position", arcsec[k]
                    reason[i] = ""
                else:
                    text = f"nearest catalogue source {arcsec[k]:.1f} arcsec away"
                    reason[i] = f"{reason[i]}; {text}" if reason[i] else text
        for i in np.flatnonzero((row < 0) & ~(np.isfinite(ra) & np.isfinite(dec))):
            reason[i] = f"{reason[i]}; no position" if reason[i] else "no position"
    dz = np.full(n, np.nan)
    if "z" in meta.colnames and "z" in catalog.colnames:
        z_spec = np.asarray(meta["z"], dtype=np.float64)
        z_cat = np.asarray(catalog["z"], dtype=np.float64)
        joined = row >= 0
        dz[joined] = z_spec[joined] - z_cat[row[joined]]
        if max_dz is not None:
            for i in np.flatnonzero(joined & (np.abs(dz) > max_dz)):
                reason[i] = (f"redshifts disagree: spectrum {z_spec[i]:.4f}, catalogue "
                             f"{z_cat[row[i]]:.4f} (|dz| > {max_dz})")
                row[i], method[i] = -1, ""
    reason[(row < 0) & (reason == "")] = "not in the catalogue"
    match = QTable()
    match["catalog_row"] = row
    match["join"] = method.astype(str)
    match["separation"] = sep * u.arcsec
    match["dz"] = dz
    match["reason"] = reason.astype(str)
    return match


# ---------------------------------------------------------------- building
def _spectrum_files(spectra):
    if isinstance(spectra, (str, os.PathLike)):
        spectra = [spectra]
    files = []
    for item in spectra:
        path = Path(item)
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.is_file() and
                                p.name.lower().endswith((".fits", ".fits.gz", ".fit"))))
        else:
            files.append(path)
    if not files:
        raise ValueError("no spectrum files given")
    return [str(p) for p in files]


def _on_lattice(batch, loglam):
    """The batch on the log-λ lattice ``loglam`` (exact placement, else resampling)."""
    from ..batch import SpectrumBatch, concatenate

    wave = 10.0 ** loglam
    if batch.shared_grid and batch.n_pixels > 1:
        template = SpectrumBatch._from_arrays_unchecked(
            wave.copy(), np.zeros((1, wave.size)), np.zeros((1, wave.size)),
            np.ones((1, wave.size), dtype=bool), QTable({"flags": np.zeros(1, np.int64)}),
            batch.flux_unit, batch.frame)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=RuntimeWarning)
            joined = concatenate([template, batch])
        grid = np.log10(joined.wavelength)
        start = int(round((loglam[0] - grid[0]) / 1e-4))
        if joined.n_pixels >= start + loglam.size and np.allclose(
                grid[start:start + loglam.size], loglam, atol=1e-7, rtol=0):
            sl = slice(start, start + loglam.size)
            return joined[1:].copy(wavelength=wave, flux=joined.flux[1:, sl],
                                   ivar=joined.ivar[1:, sl], mask=joined.mask[1:, sl])
    from ..preprocessing.resample import resample

    return resample(batch, wave * u.AA)


def _status_table(meta, match):
    report = QTable()
    for name in ("source", "object_id", "plate", "mjd", "fiber", "z"):
        if name in meta.colnames:
            report[name] = meta[name]
    for name in match.colnames:
        report[name] = match[name]
    return report


def build_training_set(spectra, catalog, output, *, target="log_mbh", kind=None,
                       on="auto", radius=2.0 * u.arcsec, max_dz=0.05,
                       require_zwarning_zero=True, min_z_conf=2,
                       remove_duplicates=True, fractions=(0.8, 0.1, 0.1), seed=0,
                       chunk_size=256, overwrite=False):
    """
    Write an HDF5 training set from spectrum files and a catalogue of labels.

    The files are read ``chunk_size`` at a time (bounded memory), joined to
    the catalogue (`join_catalog`), cut, placed on the SDSS log-λ lattice
    `SDSS_LOGLAM_GRID` without resampling (other spectra are resampled onto
    it) and appended to the dataset.

    Parameters
    ----------
    spectra : path or list of paths
        Spectrum files, or folders searched recursively for ``*.fits``.
    catalog : path or `~astropy.table.Table`
        The catalogue (see `read_catalog`), e.g. DR16Q with Chen et al.
        (2019) masses, or the SPIDERS DR16 mass catalogue.
    output : str or `~pathlib.Path`
        The HDF5 dataset to write.
    target : str, optional
        Catalogue column holding the label. Default ``'log_mbh'``.
    kind : str, optional
        Passed to `read_catalog`.
    on, radius, max_dz
        How to join (see `join_catalog`). Defaults: ``'auto'``, 2 arcsec,
        0.05.
    require_zwarning_zero : bool, optional
        Drop spectra whose pipeline ``ZWARNING`` is not 0. Default True.
    min_z_conf : int or None, optional
        Drop spectra whose catalogue visual-inspection confidence
        (``z_conf``, e.g. DR16Q ``Z_CONF``) is positive but below this;
        0 (not inspected) is kept. Default 2; None to keep all.
    remove_duplicates : bool, optional
        Keep only the first of several files of one observation (same
        plate-MJD-fibre, or the same file name). Default True.
    fractions : tuple of 3 float, optional
        Train, validation and test fractions of the split by object (all
        spectra joined to one catalogue entry land on the same side; see
        `split_by_object`). Default (0.8, 0.1, 0.1).
    seed : int, optional
        Seed of the split. Default 0.
    chunk_size : int, optional
        Files read at a time. Default 256.
    overwrite : bool, optional
        Replace ``output``. Default False.

    Returns
    -------
    report : `~astropy.table.QTable`
        One row per input spectrum (file, or DESI target): its identifiers,
        the join result (``catalog_row``, ``join``, ``separation``, ``dz``),
        ``status`` (``'written'``, ``'unjoined'``, ``'cut'``,
        ``'duplicate'`` or ``'unreadable'``), ``reason`` and ``split``.
        ``meta`` holds the counts (``n_spectra``, ``n_joined``,
        ``n_unjoined``, ``n_written``, ``n_cut``, ``n_duplicate``,
        ``n_unreadable``, ``n_catalog``, ``n_catalog_matched``) and ``path``
        (None when no spectrum was written, in which case no file is left).

    Raises
    ------
    ValueError
        If ``target`` is not a catalogue column or the join is impossible.
    spectralnn.errors.DatasetError
        If ``output`` exists and ``overwrite`` is False.

    Notes
    -----
    The dataset's meta has the spectra's pipeline columns (``z``,
    ``zwarning``, ``plate``...), ``object_id`` (the catalogue entry's name,
    so that epochs share it), ``spectrum_id`` (the spectrum's own id),
    ``catalog_row``, ``join``, ``separation``, ``split`` and the catalogue's
    label columns (``log_mbh``...; a name the spectra already use gets a
    ``catalog_`` prefix, e.g. ``catalog_z``). Train with, e.g.,
    ``spectralnn train mass --data set.h5 --target log_mbh``.

    Examples
    --------
    >>> report = build_training_set("spectra/", "dr16q_chen2019.parquet",
    ...                             "masses.h5")  # doctest: +SKIP
    >>> report.meta["n_joined"], report.meta["n_unjoined"]  # doctest: +SKIP
    """
    from ..flags import Flag
    from ..io import read_spectra
    from .hdf5 import DatasetWriter
    from .splits import SPLIT_NAMES, split_by_object

    files = _spectrum_files(spectra)
    cat = read_catalog(catalog, kind=kind)
    if target not in cat.colnames:
        raise ValueError(f"the catalogue has no column {target!r}; its columns are "
                         f"{cat.colnames}")
    output = Path(output)
    if output.exists() and not overwrite:
        raise DatasetError(f"{output} exists; pass overwrite=True to replace it")
    seen = {}
    reports = []
    n_written = 0
    provenance = {
        "generator": "spectralnn.datasets.build_training_set",
        "catalog": cat.meta.get("catalog_source", "<table>"),
        "catalog_kind": cat.meta["catalog_kind"], "target": target, "join": on,
        "radius_arcsec": float(u.Quantity(radius, u.arcsec).value),
        "max_dz": -1.0 if max_dz is None else float(max_dz), "split_seed": int(seed),
        "split_fractions": [float(f) for f in fractions],
    }
    writer = DatasetWriter(output, overwrite=overwrite, provenance=provenance)
    try:
        for start in range(0, len(files), int(chunk_size)):
            chunk = files[start:start + int(chunk_size)]
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", category=Warning)  # reported below
                    batch = read_spectra(chunk, on_error="flag")
            except SpectrumFileError as exc:  # not one file of the chunk is readable
                reports.append(_unreadable_report(chunk, exc))
                continue
            meta = batch.meta
            readable = (np.asarray(meta["flags"]) & int(Flag.READ_ERROR)) == 0
            match = join_catalog(batch, cat, on=on, radius=radius, max_dz=max_dz)
            report = _status_table(meta, match)
            status = np.where(match["catalog_row"] >= 0, "written", "unjoined").astype(object)
            reason = np.asarray(match["reason"]).astype(object)
            if "read_error" in meta.colnames:
                errors = np.asarray(meta["read_error"]).astype(str)
                status[~readable], reason[~readable] = "unreadable", errors[~readable]
            joined = np.asarray(match["catalog_row"])
            labels = np.full(len(meta), np.nan)
            ok = joined >= 0
            values = cat[target]
            values = values.value if isinstance(values, u.Quantity) else np.asarray(values)
            labels[ok] = np.asarray(values, dtype=np.float64)[joined[ok]]
            for i in range(len(meta)):
                if status[i] != "written":
                    continue
                key = _observation_key(meta, i)
                if remove_duplicates and key in seen:
                    status[i], reason[i] = "duplicate", f"same observation as {seen[key]}"
                    continue
                seen.setdefault(key, str(meta["source"][i]) if "source" in meta.colnames
                                else str(i))
                cut = _cut_reason(meta, cat, i, joined[i], labels[i], target,
                                  require_zwarning_zero, min_z_conf)
                if cut:
                    status[i], reason[i] = "cut", cut
            keep = np.flatnonzero(status == "written")
            split = np.full(len(meta), "", dtype=object)
            if keep.size:
                part, extra = _training_rows(batch, keep, cat, joined, target)
                sides = split_by_object(np.asarray(extra["object_id"]), fractions,
                                        seed=seed)
                side = np.empty(keep.size, dtype=object)
                for name in SPLIT_NAMES:
                    side[sides[name]] = name
                extra["split"] = side.astype(str)
                split[keep] = side
                placed = _on_lattice(part, SDSS_LOGLAM_GRID)
                for name in extra.colnames:
                    placed.meta[name] = extra[name]
                writer.append(placed)
                n_written += keep.size
            report["status"] = status.astype(str)
            report["reason"] = reason.astype(str)
            report["split"] = split.astype(str)
            reports.append(report)
            log.info("build_training_set: %d / %d files, %d spectra written",
                     min(start + int(chunk_size), len(files)), len(files), n_written)
    except BaseException:
        writer.close(complete=False)
        raise
    if n_written:
        writer.close()
    else:
        writer.close(complete=False)
        output.unlink(missing_ok=True)
    return _finish_report(reports, cat, output if n_written else None)


def _unreadable_report(paths, exc):
    report = QTable()
    report["source"] = [Path(p).name for p in paths]
    report["catalog_row"] = np.full(len(paths), -1, dtype=np.int64)
    report["status"] = ["unreadable"] * len(paths)
    report["reason"] = [str(exc)] * len(paths)
    report["split"] = [""] * len(paths)
    return report


def _observation_key(meta, i):
    if all(k in meta.colnames for k in ("plate", "mjd", "fiber")):
        key = tuple(int(meta[k][i]) for k in ("plate", "mjd", "fiber"))
        if key[0] > 0:
            return key
    if "source" in meta.colnames:
        return Path(str(meta["source"][i])).name
    return i


def _cut_reason(meta, cat, i, cat_row, label, target, require_zwarning_zero, min_z_conf):
    if require_zwarning_zero and "zwarning" in meta.colnames:
        zwarning = int(meta["zwarning"][i])
        if zwarning != 0:
            return f"ZWARNING = {zwarning} (not 0)"
    if min_z_conf is not None and "z_conf" in cat.colnames:
        conf = int(cat["z_conf"][cat_row])
        if 0 < conf < min_z_conf:
            return f"visual-inspection confidence {conf} < {min_z_conf}"
    if not np.isfinite(label):
        return f"no {target} in the catalogue (missing value)"
    return ""


def _training_rows(batch, keep, cat, joined, target):
    """The kept spectra and the meta columns the catalogue adds to them."""
    part = batch[keep]
    rows = joined[keep]
    extra = QTable()
    names = (np.asarray(cat["name"]).astype(str)[rows] if "name" in cat.colnames
             else np.array([f"catalog_row_{r}" for r in rows]))
    if "object_id" in part.meta.colnames:
        extra["spectrum_id"] = np.asarray(part.meta["object_id"]).astype(str)
    extra["object_id"] = names
    extra["catalog_row"] = rows
    skip = {"name", "ra", "dec", "plate", "mjd", "fiber"}
    labels = cat.meta.get("standard_columns", cat.colnames)
    for name in [*labels, target]:
        if name in skip or name in extra.colnames or name not in cat.colnames:
            continue
        column = cat[name][rows]
        kind = np.asarray(column).dtype.kind
        if kind not in "biuf" and name != target:
            continue  # labels are numbers; text columns stay in the catalogue
        out = name if name not in part.meta.colnames else f"catalog_{name}"
        if out not in extra.colnames:
            extra[out] = column
    return part, extra


def _finish_report(reports, cat, path):
    from astropy.table import vstack

    report = QTable(vstack(reports, metadata_conflicts="silent")) if reports else QTable()
    status = np.asarray(report["status"]) if len(report) else np.array([], dtype=str)
    rows = np.asarray(report["catalog_row"]) if len(report) else np.array([], dtype=int)
    counts = {
        "n_spectra": len(report),
        "n_joined": int(np.sum(rows >= 0)),
        "n_unjoined": int(np.sum(status == "unjoined")),
        "n_unreadable": int(np.sum(status == "unreadable")),
        "n_duplicate": int(np.sum(status == "duplicate")),
        "n_cut": int(np.sum(status == "cut")),
        "n_written": int(np.sum(status == "written")),
        "n_catalog": len(cat),
        "n_catalog_matched": int(np.unique(rows[rows >= 0]).size),
    }
    report.meta.update(counts)
    report.meta["path"] = None if path is None else str(path)
    text = ", ".join(f"{k[2:]} {v}" for k, v in counts.items())
    if path is None:
        log.warning("build_training_set wrote nothing: %s", text)
    else:
        log.info("build_training_set wrote %s: %s", path, text)
    return report
