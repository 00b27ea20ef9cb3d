"""
Find and download SDSS/BOSS spectra: by plate-MJD-fibre, catalogue or position.

`query_spectra` asks the SDSS SkyServer (through astroquery's
`~astroquery.sdss.SDSSClass.query_sql`) which spectra exist for a list of
plate-MJD-fibre triples, for the rows of a catalogue (e.g. DR16Q, see
`spectralnn.datasets.read_catalog`) or around sky positions, and returns one
table row per spectrum with what is needed to fetch it (``run2d``).
`download_spectra` then fetches the ``spec-PLATE-MJD-FIBER.fits`` files from
the Science Archive Server (SAS) into a local cache that mirrors the SAS
layout:

- files already in the cache are verified (complete FITS, a ``COADD`` table
  with ``flux`` and ``loglam``) and skipped, so a run that was interrupted
  resumes where it stopped; a partial download (``*.part``) is continued with
  an HTTP range request;
- each file is retried with exponential back-off on network errors and
  server errors (not on "404 not found");
- a progress bar (tqdm) shows the files done;
- without a connection, both functions fail at once with a
  `SDSSDownloadError` that says so (and where the cached files are), instead
  of waiting on a time-out per file.

Settings (base URLs, data release, time-outs, retries, cache folder) are in
`conf`. astroquery and requests are imported only when a query or download
runs.

Examples
--------
>>> from spectralnn.datasets.sdss import spectrum_url
>>> spectrum_url(332, 52367, 639, "26")
'https://data.sdss.org/sas/dr17/sdss/spectro/redux/26/spectra/0332/spec-0332-52367-0639.fits'
"""

import os
import time
import warnings
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
from astropy import config as _config
from astropy import units as u
from astropy.table import QTable, Table, vstack

from ..errors import SpectralNNError
from ..logger import log

__all__ = [
    "SDSSDownloadError",
    "query_spectra",
    "download_spectra",
    "spectrum_url",
    "spectrum_path",
    "verify_spectrum_file",
]


class Conf(_config.ConfigNamespace):
    """Configuration of `spectralnn.datasets.sdss`."""

    skyserver_baseurl = _config.ConfigItem(
        "https://skyserver.sdss.org", "SkyServer base URL (SQL queries).")
    sas_baseurl = _config.ConfigItem(
        "https://data.sdss.org/sas", "Science Archive Server base URL (spectrum files).")
    data_release = _config.ConfigItem(17, "SDSS data release (DR8 to DR17).")
    timeout = _config.ConfigItem(60.0, "Seconds to wait for a server's answer.")
    connect_timeout = _config.ConfigItem(
        5.0, "Seconds to wait for a connection before declaring the server unreachable.")
    retries = _config.ConfigItem(3, "Retries of a failed download (exponential back-off).")
    cache_dir = _config.ConfigItem(
        "", "Folder of downloaded spectra (default: <astropy cache>/spectralnn/sdss).")


conf = Conf()

#: RUN2D of the SDSS-I/II spectrograph reductions (the others are BOSS/eBOSS)
_LEGACY_RUN2D = ("26", "103", "104")

#: SpecObjAll columns a query returns -> standard names
_FIELDS = {
    "plate": "plate", "mjd": "mjd", "fiberID": "fiber", "run2d": "run2d", "ra": "ra",
    "dec": "dec", "z": "z", "zWarning": "zwarning", "class": "class",
}

#: conditions per SQL request (keeps the GET request short)
_PER_QUERY = 50

_FITS_BLOCK = 2880


class SDSSDownloadError(SpectralNNError, ConnectionError):
    """
    An SDSS server cannot be reached, or answers with an error.

    Examples
    --------
    >>> from spectralnn.errors import SpectralNNError
    >>> issubclass(SDSSDownloadError, SpectralNNError), issubclass(
    ...     SDSSDownloadError, ConnectionError)
    (True, True)
    """


# ------------------------------------------------------------------ helpers
def _release(data_release):
    dr = int(conf.data_release if data_release is None else data_release)
    if not 8 <= dr <= 17:
        raise ValueError(f"data_release must be 8 to 17 (the plate-era releases), not {dr}")
    return dr


def _cache_dir(cache_dir):
    if cache_dir is not None:
        return Path(cache_dir)
    if conf.cache_dir:
        return Path(conf.cache_dir)
    from astropy.config import get_cache_dir

    return Path(get_cache_dir("spectralnn")) / "sdss"


def _run2d_text(value):
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        value = int(value)
    return str(value).strip()


def spectrum_url(plate, mjd, fiber, run2d, *, data_release=None, lite=False):
    """
    URL of a ``spec-PLATE-MJD-FIBER.fits`` file on the SDSS Science Archive Server.

    The layout follows the SDSS data model (``BOSS_SPECTRO_REDUX/RUN2D/spectra``):
    SDSS-I/II reductions (RUN2D 26, 103, 104) under
    ``sdss/spectro/redux/RUN2D/spectra[/lite]/PLATE4/``, BOSS/eBOSS ones
    (``v5_*``) from DR16 on under ``.../spectra/full/`` or ``.../spectra/lite/``.

    Parameters
    ----------
    plate, mjd, fiber : int
        The observation.
    run2d : str or int
        Reduction version (``'26'``, ``'v5_13_2'``...), from `query_spectra`.
    data_release : int, optional
        DR8 to DR17. Default ``conf.data_release`` (17).
    lite : bool, optional
        The "lite" file (coadd and labels, no per-exposure HDUs). Default False.

    Returns
    -------
    url : str

    Examples
    --------
    >>> spectrum_url(7339, 56683, 739, "v5_13_2", lite=True)
    'https://data.sdss.org/sas/dr17/sdss/spectro/redux/v5_13_2/spectra/lite/7339/spec-7339-56683-0739.fits'
    """
    dr = _release(data_release)
    run2d = _run2d_text(run2d)
    folder = "spectra"
    if lite:
        folder = "spectra/lite"
    elif dr > 15 and run2d not in _LEGACY_RUN2D:
        folder = "spectra/full"
    base = conf.sas_baseurl.rstrip("/")
    return (f"{base}/dr{dr}/sdss/spectro/redux/{run2d}/{folder}/{int(plate):04d}/"
            f"{_filename(plate, mjd, fiber)}")


def _filename(plate, mjd, fiber):
    return f"spec-{int(plate):04d}-{int(mjd):05d}-{int(fiber):04d}.fits"


def spectrum_path(plate, mjd, fiber, run2d, *, data_release=None, lite=False,
                  cache_dir=None):
    """
    Where `download_spectra` keeps a spectrum: the SAS layout under the cache.

    Parameters
    ----------
    plate, mjd, fiber, run2d
        As in `spectrum_url`.
    data_release : int, optional
        Default ``conf.data_release``.
    lite : bool, optional
        Lite files go to their own folder. Default False.
    cache_dir : str or `~pathlib.Path`, optional
        Default ``conf.cache_dir`` or ``<astropy cache>/spectralnn/sdss``.

    Returns
    -------
    path : `~pathlib.Path`

    Examples
    --------
    >>> spectrum_path(332, 52367, 639, 26, cache_dir="cache").as_posix()
    'cache/dr17/26/full/0332/spec-0332-52367-0639.fits'
    """
    dr = _release(data_release)
    return (_cache_dir(cache_dir) / f"dr{dr}" / _run2d_text(run2d)
            / ("lite" if lite else "full") / f"{int(plate):04d}"
            / _filename(plate, mjd, fiber))


def verify_spectrum_file(path):
    """
    Whether a file is a complete SDSS spectrum (FITS, with a coadd table).

    Checks that the size is a whole number of 2880-byte FITS blocks, that
    astropy opens it without a truncation warning, and that HDU 1 has the
    ``flux`` and ``loglam`` columns.

    Parameters
    ----------
    path : str or `~pathlib.Path`
        The file.

    Returns
    -------
    bool

    Examples
    --------
    >>> verify_spectrum_file("no-such-file.fits")
    False
    """
    from astropy.io import fits

    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError:
        return False
    if size == 0 or size % _FITS_BLOCK:
        return False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # "file may have been truncated"
            with fits.open(path, memmap=False) as hdul:
                if len(hdul) < 2 or not isinstance(hdul[1], fits.BinTableHDU):
                    return False
                names = {n.lower() for n in hdul[1].columns.names}
                hdul[1].data  # noqa: B018 - reading it is the check
                return {"flux", "loglam"} <= names
    except Exception:  # noqa: BLE001 - any failure to read means "not complete"
        return False


def _require_online(url):
    """Fail at once, with a clear message, when ``url``'s host cannot be reached."""
    import socket

    from astropy.utils.data import conf as data_conf

    host = urlparse(url).hostname
    if not data_conf.allow_internet:
        raise SDSSDownloadError(
            f"internet access is switched off (astropy.utils.data.conf.allow_internet); "
            f"cannot reach {host}")
    port = 443 if url.startswith("https") else 80
    try:
        with socket.create_connection((host, port), timeout=float(conf.connect_timeout)):
            pass
    except OSError as exc:
        raise SDSSDownloadError(
            f"cannot reach {host} ({exc}): no internet connection? Spectra already "
            "downloaded stay in the cache and are used without a connection") from exc


# ------------------------------------------------------------------ queries
def _pmf_rows(plate_mjd_fiber):
    """(N, 3) int array from triples, 'PLATE-MJD-FIBER' strings or a table."""
    if isinstance(plate_mjd_fiber, Table):
        cols = {c.lower(): c for c in plate_mjd_fiber.colnames}
        fiber = cols.get("fiber") or cols.get("fiberid")
        if "plate" not in cols or "mjd" not in cols or fiber is None:
            raise ValueError("the table needs plate, mjd and fiber (or fiberID) columns")
        return np.stack([np.asarray(plate_mjd_fiber[cols["plate"]], dtype=np.int64),
                         np.asarray(plate_mjd_fiber[cols["mjd"]], dtype=np.int64),
                         np.asarray(plate_mjd_fiber[fiber], dtype=np.int64)], axis=1)
    rows = []
    for item in plate_mjd_fiber:
        if isinstance(item, str):
            parts = item.replace("spec-", "").replace(".fits", "").split("-")
            if len(parts) != 3:
                raise ValueError(f"expected 'PLATE-MJD-FIBER', got {item!r}")
            item = parts
        rows.append([int(v) for v in item])
    rows = np.asarray(rows, dtype=np.int64).reshape(-1, 3)
    return rows


def _sql_select(dr):
    fields = ", ".join(f"s.{f}" for f in _FIELDS)
    return f"SELECT {fields} FROM SpecObjAll AS s WHERE "


def _pmf_sql(rows, dr):
    conditions = [f"(s.plate = {p} AND s.mjd = {m} AND s.fiberID = {f})" for p, m, f in rows]
    return [_sql_select(dr) + " OR ".join(conditions[i:i + _PER_QUERY])
            for i in range(0, len(conditions), _PER_QUERY)]


def _box_sql(ra, dec, radius_deg, dr):
    conditions = []
    for a, d in zip(ra, dec, strict=True):
        half_dec = radius_deg
        half_ra = radius_deg / max(np.cos(np.radians(min(abs(d) + radius_deg, 89.9))), 1e-3)
        lo_dec, hi_dec = d - half_dec, d + half_dec
        lo, hi = a - half_ra, a + half_ra
        ra_parts = [(lo, hi)]
        if lo < 0:
            ra_parts = [(0.0, hi), (lo + 360.0, 360.0)]
        elif hi >= 360:
            ra_parts = [(lo, 360.0), (0.0, hi - 360.0)]
        for r0, r1 in ra_parts:
            conditions.append(f"(s.ra BETWEEN {r0:.7f} AND {r1:.7f} AND "
                              f"s.dec BETWEEN {lo_dec:.7f} AND {hi_dec:.7f})")
    return [_sql_select(dr) + " OR ".join(conditions[i:i + _PER_QUERY])
            for i in range(0, len(conditions), _PER_QUERY)]


def _standard(table):
    out = QTable()
    lower = {c.lower(): c for c in table.colnames}
    for field, name in _FIELDS.items():
        column = lower.get(field.lower())
        if column is None:
            continue
        values = table[column]
        if name == "run2d":
            out[name] = np.array([_run2d_text(v) for v in values], dtype=str)
        elif name == "class":
            out[name] = np.array([v.decode().strip() if isinstance(v, bytes)
                                  else str(v).strip() for v in values], dtype=str)
        elif name in ("plate", "mjd", "fiber", "zwarning"):
            out[name] = np.asarray(values, dtype=np.int64)
        elif name in ("ra", "dec"):
            out[name] = np.asarray(values, dtype=np.float64) * u.deg
        else:
            out[name] = np.asarray(values, dtype=np.float64)
    return out


def _run_queries(sqls, dr, *, timeout, cache):
    """Send SQL queries through astroquery; stack the parsed answers."""
    from astroquery.exceptions import RemoteServiceError
    from astroquery.sdss import SDSS

    parts = []
    for k, sql in enumerate(sqls):
        log.debug("SDSS query %d/%d: %s", k + 1, len(sqls), sql[:200])
        try:
            response = SDSS.query_sql_async(sql, data_release=dr, timeout=timeout,
                                            cache=cache)
            table = SDSS._parse_result(response)
        except RemoteServiceError as exc:
            raise SDSSDownloadError(f"the SDSS SkyServer rejected the query: {exc}") from exc
        except OSError as exc:  # requests' ConnectionError and Timeout are OSErrors
            raise SDSSDownloadError(f"SDSS query failed: {exc}") from exc
        if table is not None and len(table):
            parts.append(_standard(table))
    if not parts:
        return QTable({name: np.array([], dtype=dtype) for name, dtype in (
            ("plate", np.int64), ("mjd", np.int64), ("fiber", np.int64),
            ("run2d", str), ("z", np.float64))})
    return QTable(vstack(parts, metadata_conflicts="silent"))


def query_spectra(plate_mjd_fiber=None, *, catalog=None, coordinates=None,
                  radius=2.0 * u.arcsec, data_release=None, timeout=None, cache=True,
                  get_query_payload=False):
    """
    Find SDSS/BOSS spectra by plate-MJD-fibre, catalogue rows or sky position.

    Give exactly one of ``plate_mjd_fiber``, ``catalog`` or ``coordinates``.

    Parameters
    ----------
    plate_mjd_fiber : sequence or `~astropy.table.Table`, optional
        ``(plate, mjd, fiber)`` triples, ``'PLATE-MJD-FIBER'`` strings (or
        spec file names), or a table with ``plate``, ``mjd`` and ``fiber``
        (or ``fiberID``) columns.
    catalog : `~astropy.table.Table`, optional
        A catalogue (`spectralnn.datasets.read_catalog`): queried by
        plate-MJD-fibre where it has them (``plate > 0``), by position
        otherwise.
    coordinates : `~astropy.coordinates.SkyCoord`, optional
        One or more positions; every spectrum within ``radius`` is returned.
    radius : `~astropy.units.Quantity`, optional
        Search radius around positions. Default 2 arcsec.
    data_release : int, optional
        DR8 to DR17. Default ``conf.data_release`` (17).
    timeout : float, optional
        Seconds per request. Default ``conf.timeout``.
    cache : bool, optional
        Let astroquery cache the query answers. Default True.
    get_query_payload : bool, optional
        Return the SQL statements without sending them (for checking).

    Returns
    -------
    table : `~astropy.table.QTable` or list of str
        One row per spectrum found: ``plate``, ``mjd``, ``fiber``, ``run2d``,
        ``ra``, ``dec`` [deg], ``z``, ``zwarning``, ``class`` and
        ``input_row`` (the row of the request it answers; for positions, the
        nearest position within ``radius``). ``meta['not_found']`` lists the
        request rows without a spectrum. With ``get_query_payload``, the SQL.

    Raises
    ------
    SDSSDownloadError
        If the SkyServer cannot be reached (at once, not after time-outs) or
        rejects the query.
    ValueError
        If not exactly one kind of request is given.

    Examples
    --------
    >>> sql = query_spectra(["0332-52367-0639"], get_query_payload=True)
    >>> sql[0].endswith("(s.plate = 332 AND s.mjd = 52367 AND s.fiberID = 639)")
    True
    >>> query_spectra(["0332-52367-0639"])  # doctest: +REMOTE_DATA
    <QTable length=1>
    ...
    """
    given = [x is not None for x in (plate_mjd_fiber, catalog, coordinates)]
    if sum(given) != 1:
        raise ValueError("give exactly one of plate_mjd_fiber, catalog or coordinates")
    dr = _release(data_release)
    timeout = float(conf.timeout if timeout is None else timeout)
    radius_deg = u.Quantity(radius, u.arcsec).to_value(u.deg)
    requests_pmf = np.zeros((0, 3), dtype=np.int64)
    pmf_index = np.zeros(0, dtype=np.int64)
    positions = None
    pos_index = np.zeros(0, dtype=np.int64)
    n_input = 0
    if plate_mjd_fiber is not None:
        requests_pmf = _pmf_rows(plate_mjd_fiber)
        pmf_index = np.arange(len(requests_pmf))
        n_input = len(requests_pmf)
    elif catalog is not None:
        n_input = len(catalog)
        has = {"plate", "mjd", "fiber"} <= set(catalog.colnames)
        by_pmf = np.asarray(catalog["plate"]) > 0 if has else np.zeros(n_input, bool)
        if has and by_pmf.any():
            requests_pmf = _pmf_rows(catalog[by_pmf]["plate", "mjd", "fiber"])
            pmf_index = np.flatnonzero(by_pmf)
        rest = np.flatnonzero(~by_pmf)
        if rest.size:
            if not {"ra", "dec"} <= set(catalog.colnames):
                raise ValueError("catalogue rows without plate-mjd-fiber need ra and dec")
            ra = u.Quantity(catalog["ra"][rest], u.deg).value
            dec = u.Quantity(catalog["dec"][rest], u.deg).value
            ok = np.isfinite(ra) & np.isfinite(dec)
            positions = (ra[ok], dec[ok])
            pos_index = rest[ok]
    else:
        from astropy.coordinates import SkyCoord

        coords = SkyCoord(coordinates).icrs
        coords = coords.reshape(-1) if not coords.isscalar else coords.reshape(1)
        positions = (coords.ra.deg, coords.dec.deg)
        pos_index = np.arange(len(coords))
        n_input = len(coords)
    sqls = _pmf_sql(requests_pmf, dr) if len(requests_pmf) else []
    if positions is not None and len(positions[0]):
        box = _box_sql(positions[0], positions[1], radius_deg, dr)
    else:
        box = []
    if get_query_payload:
        return sqls + box
    if not sqls and not box:
        raise ValueError("nothing to query (no plate-mjd-fiber and no finite position)")
    _require_online(conf.skyserver_baseurl)
    parts = []
    if sqls:
        found = _run_queries(sqls, dr, timeout=timeout, cache=cache)
        lookup = {tuple(r): int(i) for r, i in zip(requests_pmf.tolist(), pmf_index,
                                                     strict=True)}
        found["input_row"] = np.array(
            [lookup.get((int(p), int(m), int(f)), -1)
             for p, m, f in zip(found["plate"], found["mjd"], found["fiber"], strict=True)],
            dtype=np.int64)
        parts.append(found[found["input_row"] >= 0])
    if box:
        found = _run_queries(box, dr, timeout=timeout, cache=cache)
        found["input_row"] = _nearest_input(found, positions, pos_index, radius_deg)
        parts.append(found[found["input_row"] >= 0])
    table = QTable(vstack(parts, metadata_conflicts="silent")) if len(parts) > 1 else parts[0]
    answered = set(np.asarray(table["input_row"]).tolist())
    table.meta["not_found"] = [i for i in range(n_input) if i not in answered]
    log.info("SDSS: %d spectra for %d requested rows (%d without a spectrum)",
             len(table), n_input, len(table.meta["not_found"]))
    return table


def _nearest_input(found, positions, pos_index, radius_deg):
    """Row of the nearest requested position within the radius, else -1."""
    if not len(found):
        return np.zeros(0, dtype=np.int64)
    from astropy.coordinates import SkyCoord, match_coordinates_sky

    spec = SkyCoord(u.Quantity(found["ra"], u.deg), u.Quantity(found["dec"], u.deg))
    asked = SkyCoord(positions[0] * u.deg, positions[1] * u.deg)
    if len(asked) == 1:
        sep = spec.separation(asked[0]).deg
        idx = np.zeros(len(found), dtype=np.int64)
    else:
        idx, d2d, _ = match_coordinates_sky(spec, asked)
        sep = d2d.deg
    return np.where(sep <= radius_deg, pos_index[idx], -1).astype(np.int64)


# ---------------------------------------------------------------- download
def _http_get(url, *, headers=None, timeout=None):
    """The one place a file download touches the network (a streamed GET)."""
    import requests

    from .. import __version__

    headers = {"User-Agent": f"spectralnn/{__version__}", **(headers or {})}
    return requests.get(url, headers=headers, stream=True,
                        timeout=(float(conf.connect_timeout),
                                 float(conf.timeout if timeout is None else timeout)))


class _Retryable(Exception):
    pass


def _fetch(url, path, *, timeout):
    """Download ``url`` to ``path`` through ``path.part`` (continued if present)."""
    part = path.with_name(path.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    try:
        response = _http_get(url, headers=headers, timeout=timeout)
    except OSError as exc:
        raise _Retryable(str(exc)) from exc
    with response:
        status = int(response.status_code)
        if status == 404:
            raise FileNotFoundError(f"not on the server (404): {url}")
        if status == 416:  # the partial file does not fit the file on the server
            part.unlink(missing_ok=True)
            raise _Retryable("range not satisfiable; starting over")
        if status >= 500 or status == 429:
            raise _Retryable(f"server error {status}")
        if status >= 400:
            raise OSError(f"HTTP {status} for {url}")
        mode = "ab" if (status == 206 and have) else "wb"
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(part, mode) as fh:
                for block in response.iter_content(1 << 16):
                    if block:
                        fh.write(block)
        except OSError as exc:  # connection dropped mid-file: keep .part, retry
            raise _Retryable(str(exc)) from exc
    if not verify_spectrum_file(part):
        part.unlink(missing_ok=True)
        raise _Retryable("the downloaded file is incomplete or not an SDSS spectrum")
    os.replace(part, path)


def _download_one(url, path, *, retries, timeout, overwrite):
    """Status and message of one file: cached, downloaded, missing or failed."""
    if path.exists() and not overwrite:
        if verify_spectrum_file(path):
            return "cached", ""
        log.info("%s is incomplete or corrupt: downloading it again", path.name)
        path.unlink()
    delay = 1.0
    for attempt in range(int(retries) + 1):
        try:
            _fetch(url, path, timeout=timeout)
            return "downloaded", ""
        except FileNotFoundError as exc:
            return "missing", str(exc)
        except _Retryable as exc:
            if attempt == int(retries):
                return "failed", f"{exc} (after {int(retries) + 1} attempts)"
            log.debug("retrying %s in %.0f s: %s", url, delay, exc)
            time.sleep(delay)
            delay *= 2
        except OSError as exc:
            return "failed", str(exc)
    return "failed", "no attempt made"  # pragma: no cover


def download_spectra(spectra, *, cache_dir=None, data_release=None, lite=False,
                     overwrite=False, retries=None, timeout=None, progress=True):
    """
    Download SDSS/BOSS spectrum files into a local cache (resumable).

    Parameters
    ----------
    spectra : `~astropy.table.Table`
        Rows with ``plate``, ``mjd``, ``fiber`` (or ``fiberID``) and
        ``run2d``, e.g. from `query_spectra`.
    cache_dir : str or `~pathlib.Path`, optional
        Cache folder (the SAS layout is mirrored below it). Default
        ``conf.cache_dir``, else ``<astropy cache>/spectralnn/sdss``.
    data_release : int, optional
        DR8 to DR17. Default ``conf.data_release`` (17).
    lite : bool, optional
        Fetch the "lite" files. Default False.
    overwrite : bool, optional
        Download again even when a verified file is cached. Default False.
    retries : int, optional
        Retries per file on network or server errors. Default
        ``conf.retries`` (3), waiting 1, 2, 4... s in between.
    timeout : float, optional
        Seconds to wait for data. Default ``conf.timeout``.
    progress : bool, optional
        Show a tqdm bar (when tqdm is installed and output is a terminal).

    Returns
    -------
    result : `~astropy.table.QTable`
        One row per input row: ``plate``, ``mjd``, ``fiber``, ``run2d``,
        ``url``, ``path`` and ``status`` (``'cached'``, ``'downloaded'``,
        ``'missing'`` (404) or ``'failed'``) with ``message``.

    Raises
    ------
    SDSSDownloadError
        At once, when files must be fetched and the server cannot be
        reached. Files already cached are not affected.

    Examples
    --------
    >>> found = query_spectra(["0332-52367-0639"])  # doctest: +REMOTE_DATA
    >>> download_spectra(found)["status"][0]  # doctest: +REMOTE_DATA
    'downloaded'
    """
    dr = _release(data_release)
    rows = _pmf_rows(spectra)
    if "run2d" not in spectra.colnames:
        raise ValueError("the table needs a run2d column (use query_spectra to get it)")
    run2d = [_run2d_text(v) for v in spectra["run2d"]]
    retries = int(conf.retries if retries is None else retries)
    result = QTable()
    result["plate"], result["mjd"], result["fiber"] = rows.T
    result["run2d"] = np.array(run2d, dtype=str)
    result["url"] = [spectrum_url(p, m, f, r, data_release=dr, lite=lite)
                     for (p, m, f), r in zip(rows.tolist(), run2d, strict=True)]
    result["path"] = [str(spectrum_path(p, m, f, r, data_release=dr, lite=lite,
                                        cache_dir=cache_dir))
                      for (p, m, f), r in zip(rows.tolist(), run2d, strict=True)]
    status = np.full(len(result), "", dtype=object)
    message = np.full(len(result), "", dtype=object)
    todo = []
    for i, path in enumerate(result["path"]):
        if not overwrite and verify_spectrum_file(path):
            status[i] = "cached"
        else:
            todo.append(i)
    log.info("SDSS download: %d of %d files cached, %d to fetch", len(result) - len(todo),
             len(result), len(todo))
    if todo:
        _require_online(conf.sas_baseurl)
    bar = None
    if progress and todo:
        try:
            from tqdm import tqdm
        except ImportError:
            pass
        else:
            bar = tqdm(total=len(todo), unit="files", desc="SDSS download", disable=None)
    try:
        for i in todo:
            status[i], message[i] = _download_one(
                result["url"][i], Path(result["path"][i]), retries=retries,
                timeout=timeout, overwrite=overwrite)
            if status[i] != "downloaded":
                log.warning("%s: %s %s", Path(result["path"][i]).name, status[i],
                            message[i])
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    result["status"] = status.astype(str)
    result["message"] = message.astype(str)
    return result
