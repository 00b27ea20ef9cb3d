"""
HDF5 datasets of spectra: a versioned schema, chunked writing, streamed reading.

A spectralnn dataset is one HDF5 file holding N spectra on one wavelength grid
(or one grid per spectrum) and a truth/label table:

========================  =====================================================
``/`` attributes          ``format = 'spectralnn-dataset'``, ``schema_version``,
                          ``n_spectra`` (rows complete), ``complete`` (False
                          while being written), ``spectralnn_version``,
                          ``created`` (ISO 8601 UTC), ``flux_unit``, ``frame``,
                          and provenance (``generator``, ``seed``, ``survey``…)
``/wavelength``           (M,) or (N, M) float64, vacuum Å
``/flux``, ``/ivar``      (N, M), float32 by default, chunked and compressed
``/mask``                 (N, M) bool, True = bad pixel
``/meta/<column>``        (N,) one dataset per column; attributes ``unit``
========================  =====================================================

Datasets are resizable: `DatasetWriter` appends chunks, so a simulation of any
size is written with bounded memory, and `SpectrumDataset` reads slices or
shuffled batches without loading the file.

Examples
--------
>>> import numpy as np, astropy.units as u
>>> from spectralnn import SpectrumBatch
>>> from spectralnn.datasets import write_dataset, SpectrumDataset
>>> batch = SpectrumBatch(np.arange(4000.0, 4010.0) * u.AA, np.ones((3, 10)),
...                       np.ones((3, 10)), flux_unit=u.one)
>>> path = write_dataset(batch, getfixture("tmp_path") / "d.h5")
>>> with SpectrumDataset(path) as ds:
...     len(ds), ds.read(slice(0, 2)).flux.shape
(3, (2, 10))
"""

import datetime
import json
import os
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.table import QTable

from ..batch import SpectrumBatch
from ..errors import DatasetError
from ..logger import log

__all__ = [
    "SCHEMA_VERSION",
    "DatasetWriter",
    "SpectrumDataset",
    "write_dataset",
    "read_dataset",
]

#: Version of the file layout written by this release.
SCHEMA_VERSION = 1
_FORMAT = "spectralnn-dataset"
_ARRAYS = ("flux", "ivar", "mask")


def _h5py():
    import h5py

    return h5py


def _version():
    from .. import __version__

    return __version__


def _column_values(col):
    """(values array, unit string or '') of a table column, ready for HDF5."""
    unit = ""
    if isinstance(col, u.Quantity):
        unit = col.unit.to_string()
        values = np.asarray(col.value)
    else:
        values = np.asarray(col)
        if getattr(col, "unit", None) is not None:
            unit = u.Unit(col.unit).to_string()
    if values.dtype.kind == "U":
        values = np.char.encode(values, "utf-8")
    if values.dtype.kind == "O":
        values = np.array([str(v).encode("utf-8") for v in values])
    return values, unit


class DatasetWriter:
    """
    Write spectra to a spectralnn HDF5 dataset chunk by chunk.

    Parameters
    ----------
    path : str or `~pathlib.Path`
        The file to create.
    overwrite : bool, optional
        Replace an existing file. Default False.
    dtype : str, optional
        Storage type of flux and inverse variance: ``'float32'`` (default, as
        the survey files) or ``'float64'``.
    compression : str or None, optional
        HDF5 filter, default ``'gzip'`` (level 4); None to store raw.
    chunk_rows : int, optional
        Spectra per HDF5 chunk. Default 32.
    provenance : dict, optional
        Extra root attributes (``generator``, ``seed``, ``survey``...).
        Values must be strings or numbers; other values are stored as JSON.

    Raises
    ------
    spectralnn.errors.DatasetError
        If the file exists and ``overwrite`` is False, or a chunk does not fit
        the dataset (different grid, units, frame).

    Examples
    --------
    >>> import numpy as np, astropy.units as u
    >>> from spectralnn import SpectrumBatch
    >>> b = SpectrumBatch(np.arange(4000.0, 4010.0) * u.AA, np.ones((2, 10)),
    ...                   np.ones((2, 10)), flux_unit=u.one)
    >>> with DatasetWriter(getfixture("tmp_path") / "w.h5") as w:
    ...     w.append(b)
    ...     w.append(b)
    >>> len(SpectrumDataset(getfixture("tmp_path") / "w.h5"))
    4
    """

    def __init__(self, path, *, overwrite=False, dtype="float32", compression="gzip",
                 chunk_rows=32, provenance=None):
        h5py = _h5py()
        self.path = Path(path)
        if self.path.exists() and not overwrite:
            raise DatasetError(f"{self.path} exists; pass overwrite=True to replace it")
        if np.dtype(dtype) not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, not {dtype}")
        self.dtype = np.dtype(dtype)
        self.compression = compression
        self.chunk_rows = int(chunk_rows)
        self._file = h5py.File(self.path, "w")
        attrs = self._file.attrs
        attrs["format"] = _FORMAT
        attrs["schema_version"] = SCHEMA_VERSION
        attrs["spectralnn_version"] = _version()
        attrs["created"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        attrs["n_spectra"] = 0
        attrs["complete"] = False
        for key, value in (provenance or {}).items():
            if value is None:
                continue
            if isinstance(value, (str, int, float, np.integer, np.floating, bool)):
                attrs[key] = value
            else:
                attrs[key] = json.dumps(value)
        self._n = 0
        self._columns = []

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close(complete=exc_type is None)

    def __len__(self):
        return self._n

    def _create(self, batch):
        f = self._file
        m = batch.n_pixels
        rows = max(1, min(self.chunk_rows, 1024))
        opts = {"compression": self.compression}
        if self.compression == "gzip":
            opts["compression_opts"] = 4
            opts["shuffle"] = True
        if self.compression is None:
            opts = {}
        if batch.shared_grid:
            f.create_dataset("wavelength", data=np.asarray(batch.wavelength, np.float64))
        else:
            f.create_dataset("wavelength", shape=(0, m), maxshape=(None, m),
                             dtype=np.float64, chunks=(rows, m), **opts)
        for name in ("flux", "ivar"):
            f.create_dataset(name, shape=(0, m), maxshape=(None, m), dtype=self.dtype,
                             chunks=(rows, m), **opts)
        f.create_dataset("mask", shape=(0, m), maxshape=(None, m), dtype=bool,
                         chunks=(rows, m), **opts)
        f.create_group("meta")
        f.attrs["flux_unit"] = batch.flux_unit.to_string()
        f.attrs["frame"] = batch.frame
        f.attrs["shared_grid"] = bool(batch.shared_grid)

    def _check(self, batch):
        f = self._file
        if batch.frame != f.attrs["frame"]:
            raise DatasetError(f"cannot append {batch.frame}-frame spectra to a "
                               f"{f.attrs['frame']}-frame dataset")
        unit = u.Unit(f.attrs["flux_unit"])
        if batch.flux_unit != unit:
            raise DatasetError(f"cannot append spectra in {batch.flux_unit} to a dataset "
                               f"in {unit}")
        wave = f["wavelength"]
        if f.attrs["shared_grid"]:
            if not batch.shared_grid or not np.array_equal(batch.wavelength, wave[()]):
                raise DatasetError(
                    "the spectra are not on the dataset's wavelength grid; resample them "
                    "onto it first (spectralnn.preprocessing.resample)")
        elif batch.n_pixels != wave.shape[1]:
            raise DatasetError(f"the spectra have {batch.n_pixels} pixels, the dataset "
                               f"{wave.shape[1]}")

    def append(self, batch):
        """
        Append a batch of spectra (and its meta table) to the file.

        Parameters
        ----------
        batch : `~spectralnn.SpectrumBatch`
            The spectra. Meta columns new to the file are added (earlier rows
            get a neutral value: NaN, -1, '' or False); columns the batch lacks
            get the neutral value too.

        Raises
        ------
        spectralnn.errors.DatasetError
            If the batch does not fit the dataset.
        """
        if self._file is None:
            raise DatasetError(f"{self.path} is closed")
        if not isinstance(batch, SpectrumBatch):
            raise TypeError(f"expected a SpectrumBatch, got {type(batch).__name__}")
        if "flux" not in self._file:
            self._create(batch)
        else:
            self._check(batch)
        f = self._file
        n0, k = self._n, len(batch)
        n1 = n0 + k
        arrays = {"flux": batch.flux, "ivar": batch.ivar, "mask": batch.mask}
        if not f.attrs["shared_grid"]:
            arrays["wavelength"] = batch.wavelength_2d
        for name, data in arrays.items():
            ds = f[name]
            ds.resize(n1, axis=0)
            ds[n0:n1] = data
        meta = f["meta"]
        for name in batch.meta.colnames:
            values, unit = _column_values(batch.meta[name])
            if name not in meta:
                self._new_column(name, values, unit, n0)
            ds = meta[name]
            ds.resize(n1, axis=0)
            try:
                ds[n0:n1] = values
            except (TypeError, ValueError) as exc:
                raise DatasetError(
                    f"meta column {name!r} of type {values.dtype} does not fit the "
                    f"dataset's column of type {ds.dtype}") from exc
        for name in meta:
            if name not in batch.meta.colnames:
                ds = meta[name]
                ds.resize(n1, axis=0)
                ds[n0:n1] = _neutral(ds.dtype, k)
        self._n = n1
        f.attrs["n_spectra"] = n1
        f.flush()

    def _new_column(self, name, values, unit, n_before):
        h5py = _h5py()
        meta = self._file["meta"]
        if values.dtype.kind == "S":
            dtype = h5py.string_dtype("utf-8")
        else:
            dtype = values.dtype
        if values.ndim != 1:
            raise DatasetError(f"meta column {name!r} is not one value per spectrum")
        ds = meta.create_dataset(name, shape=(n_before,), maxshape=(None,), dtype=dtype,
                                 chunks=(1024,))
        if n_before:
            ds[:] = _neutral(ds.dtype, n_before)
        ds.attrs["unit"] = unit
        ds.attrs["order"] = len(meta) - 1

    def close(self, complete=True):
        """
        Mark the file complete (unless ``complete`` is False) and close it.

        Parameters
        ----------
        complete : bool, optional
            Whether all data were written. Default True.
        """
        if self._file is None:
            return
        raise_empty = complete and "flux" not in self._file
        self._file.attrs["complete"] = bool(complete) and not raise_empty
        self._file.close()
        self._file = None
        if raise_empty:
            raise DatasetError(f"no spectra were written to {self.path}")
        log.info("wrote %d spectra to %s", self._n, self.path)


def _neutral(dtype, n):
    kind = np.dtype(dtype).kind
    if kind == "O" or kind == "S":
        return np.array([b""] * n, dtype=object)
    if kind == "b":
        return np.zeros(n, dtype=bool)
    if kind in "iu":
        return np.full(n, -1, dtype=dtype)
    return np.full(n, np.nan, dtype=dtype)


def write_dataset(batches, path, *, overwrite=False, provenance=None, **kwargs):
    """
    Write a `~spectralnn.SpectrumBatch` (or an iterable of them) to a dataset.

    Parameters
    ----------
    batches : `~spectralnn.SpectrumBatch` or iterable of them
        The spectra, e.g. from `spectralnn.io.read_spectra` or a simulator.
    path : str or `~pathlib.Path`
        The file to write.
    overwrite : bool, optional
        Replace an existing file. Default False.
    provenance : dict, optional
        Root attributes describing where the spectra come from.
    **kwargs
        Passed to `DatasetWriter` (``dtype``, ``compression``, ``chunk_rows``).

    Returns
    -------
    path : `~pathlib.Path`
        The file written.

    Examples
    --------
    >>> import numpy as np, astropy.units as u
    >>> from spectralnn import SpectrumBatch
    >>> b = SpectrumBatch(np.arange(4000.0, 4010.0) * u.AA, np.ones((2, 10)),
    ...                   np.ones((2, 10)), flux_unit=u.one)
    >>> write_dataset(b, getfixture("tmp_path") / "x.h5").name
    'x.h5'
    """
    if isinstance(batches, SpectrumBatch):
        batches = [batches]
    with DatasetWriter(path, overwrite=overwrite, provenance=provenance, **kwargs) as w:
        for batch in batches:
            w.append(batch)
    return Path(path)


class SpectrumDataset:
    """
    Read a spectralnn HDF5 dataset in slices or streamed batches.

    Nothing but the attributes and the wavelength grid is read on opening;
    `read` and `iter_batches` read only the rows they return.

    Parameters
    ----------
    path : str or `~pathlib.Path`
        The dataset file.
    allow_partial : bool, optional
        Open a file whose writer did not finish (e.g. an interrupted
        simulation) and read the rows it completed. Default False.

    Raises
    ------
    spectralnn.errors.DatasetError
        If the file is missing, truncated, not HDF5, not a spectralnn dataset,
        of a newer schema version, or incomplete (without ``allow_partial``).

    Examples
    --------
    >>> import numpy as np, astropy.units as u
    >>> from spectralnn import SpectrumBatch
    >>> b = SpectrumBatch(np.arange(4000.0, 4010.0) * u.AA, np.ones((5, 10)),
    ...                   np.ones((5, 10)), flux_unit=u.one)
    >>> path = write_dataset(b, getfixture("tmp_path") / "r.h5")
    >>> ds = SpectrumDataset(path)
    >>> [len(x) for x in ds.iter_batches(2, shuffle=True, seed=0)]
    [2, 2, 1]
    >>> ds.close()
    """

    def __init__(self, path, *, allow_partial=False):
        h5py = _h5py()
        self.path = Path(path)
        if not self.path.exists():
            raise DatasetError(f"dataset file {self.path} does not exist")
        try:
            self._file = h5py.File(self.path, "r")
        except OSError as exc:
            raise DatasetError(
                f"cannot open {self.path} as HDF5 (truncated or corrupt file?): {exc}"
            ) from exc
        try:
            self._validate(allow_partial)
        except Exception:
            self._file.close()
            raise

    def _validate(self, allow_partial):
        f = self._file
        try:
            attrs = dict(f.attrs)
            fmt = attrs.get("format")
            if isinstance(fmt, bytes):
                fmt = fmt.decode()
            if fmt != _FORMAT:
                raise DatasetError(
                    f"{self.path} is an HDF5 file but not a spectralnn dataset (no "
                    f"format='{_FORMAT}' attribute); write datasets with "
                    "spectralnn.datasets.write_dataset")
            version = int(attrs.get("schema_version", -1))
            if version < 1 or version > SCHEMA_VERSION:
                raise DatasetError(
                    f"{self.path} has dataset schema version {version}; this spectralnn "
                    f"reads versions 1 to {SCHEMA_VERSION} (upgrade spectralnn)")
            if not bool(attrs.get("complete", False)) and not allow_partial:
                raise DatasetError(
                    f"{self.path} was not closed by its writer (interrupted?); pass "
                    f"allow_partial=True to read the {int(attrs.get('n_spectra', 0))} "
                    "spectra it completed")
            self._n = int(attrs["n_spectra"])
            missing = [k for k in ("wavelength", *_ARRAYS, "meta") if k not in f]
            if missing:
                raise DatasetError(f"{self.path} lacks the datasets {missing}")
            for name in _ARRAYS:
                if f[name].shape[0] < self._n:
                    raise DatasetError(
                        f"{self.path}: '{name}' has {f[name].shape[0]} rows, the file "
                        f"header promises {self._n} (truncated file)")
            self._wave = np.asarray(f["wavelength"][()], dtype=np.float64) \
                if f["wavelength"].ndim == 1 else None
            self.flux_unit = u.Unit(attrs["flux_unit"])
            self.frame = str(attrs["frame"])
            self.attrs = {k: (v.decode() if isinstance(v, bytes) else
                              v.item() if hasattr(v, "item") else v)
                          for k, v in attrs.items()}
        except DatasetError:
            raise
        except (OSError, KeyError, ValueError, RuntimeError) as exc:
            raise DatasetError(f"cannot read {self.path} (truncated or corrupt "
                               f"file?): {exc}") from exc

    # -------------------------------------------------------------- basics
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __len__(self):
        return self._n

    def __repr__(self):
        return (f"<SpectrumDataset {self.path.name}: {self._n} spectra x "
                f"{self.n_pixels} pixels, schema {self.attrs.get('schema_version')}>")

    def close(self):
        """Close the file."""
        if self._file is not None:
            self._file.close()
            self._file = None

    @property
    def n_pixels(self):
        """Pixels per spectrum."""
        return int(self._file["flux"].shape[1])

    @property
    def wavelength(self):
        """The shared wavelength grid in Å (None for per-spectrum grids)."""
        return self._wave

    @property
    def provenance(self):
        """Root attributes of the file (version, creation time, generator...)."""
        return dict(self.attrs)

    @property
    def meta(self):
        """
        The whole truth/label table (small: one row per spectrum).

        Returns
        -------
        meta : `~astropy.table.QTable`
        """
        return self.read_meta()

    def read_meta(self, index=None, columns=None):
        """
        Rows of the meta table.

        Parameters
        ----------
        index : slice, int or array of int, optional
            Rows (default all).
        columns : list of str, optional
            Columns (default all).

        Returns
        -------
        meta : `~astropy.table.QTable`
        """
        rows = self._rows(index)
        group = self._file["meta"]
        names = sorted(group, key=lambda k: int(group[k].attrs.get("order", 0)))
        if columns is not None:
            unknown = sorted(set(columns) - set(names))
            if unknown:
                raise KeyError(f"unknown meta columns {unknown}; the dataset has {names}")
            names = [c for c in names if c in columns]
        table = QTable()
        for name in names:
            ds = group[name]
            values = self._take(ds, rows)
            if ds.dtype.kind == "O" or ds.dtype.kind == "S":
                values = np.array([v.decode("utf-8") if isinstance(v, bytes) else str(v)
                                   for v in values])
            unit = ds.attrs.get("unit", "")
            table[name] = values * u.Unit(unit) if unit else values
        return table

    # -------------------------------------------------------------- reading
    def _rows(self, index):
        """Normalise an index to a slice or a sorted-unique-able int array."""
        n = self._n
        if index is None:
            return slice(0, n)
        if isinstance(index, slice):
            start, stop, step = index.indices(n)
            if step == 1:
                return slice(start, stop)
            return np.arange(start, stop, step)
        idx = np.asarray(index)
        if idx.dtype == bool:
            if idx.shape != (n,):
                raise IndexError(f"boolean index of shape {idx.shape} for {n} spectra")
            return np.flatnonzero(idx)
        idx = np.atleast_1d(idx).astype(np.int64)
        idx = np.where(idx < 0, idx + n, idx)
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise IndexError(f"index out of range for a dataset of {n} spectra")
        return idx

    @staticmethod
    def _take(ds, rows):
        """Read rows (slice or any int array) of an HDF5 dataset."""
        if isinstance(rows, slice):
            return ds[rows]
        if rows.size == 0:
            return ds[0:0]
        # h5py wants increasing unique indices: read those, then reorder
        uniq, inverse = np.unique(rows, return_inverse=True)
        return ds[uniq][inverse]

    def read(self, index=None):
        """
        Read spectra into a `~spectralnn.SpectrumBatch`.

        Parameters
        ----------
        index : slice, int, array of int or bool, optional
            Which spectra (default all: mind the memory for big files).

        Returns
        -------
        batch : `~spectralnn.SpectrumBatch`
            Flux and inverse variance as float64, meta with units.

        Raises
        ------
        spectralnn.errors.DatasetError
            If the data cannot be read (truncated file).
        """
        rows = self._rows(index)
        try:
            arrays = {name: self._take(self._file[name], rows) for name in _ARRAYS}
            wave = self._wave if self._wave is not None else \
                self._take(self._file["wavelength"], rows)
            meta = self.read_meta(rows)
        except OSError as exc:
            raise DatasetError(f"cannot read {self.path} (truncated or corrupt "
                               f"file?): {exc}") from exc
        return SpectrumBatch._from_arrays_unchecked(
            wave,
            arrays["flux"].astype(np.float64),
            arrays["ivar"].astype(np.float64),
            arrays["mask"].astype(bool),
            meta,
            self.flux_unit,
            self.frame,
        )

    def iter_batches(self, batch_size=256, *, shuffle=False, seed=None, indices=None,
                     drop_last=False):
        """
        Stream the dataset in batches (for training without loading it all).

        Parameters
        ----------
        batch_size : int, optional
            Spectra per batch. Default 256.
        shuffle : bool, optional
            Visit the rows in a random order. Default False.
        seed : int, optional
            Seed of the shuffle (same seed, same order).
        indices : array of int, optional
            Restrict to these rows (e.g. a split from `split_by_object`).
        drop_last : bool, optional
            Skip a last, smaller batch. Default False.

        Yields
        ------
        batch : `~spectralnn.SpectrumBatch`
        """
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        rows = np.arange(self._n) if indices is None else self._rows(indices)
        if isinstance(rows, slice):
            rows = np.arange(rows.start, rows.stop)
        if shuffle:
            rows = np.random.default_rng(seed).permutation(rows)
        for start in range(0, len(rows), int(batch_size)):
            part = rows[start:start + int(batch_size)]
            if drop_last and len(part) < batch_size:
                return
            if not shuffle and indices is None:
                part = slice(int(part[0]), int(part[-1]) + 1)
            yield self.read(part)


def read_dataset(path, index=None):
    """
    Read (part of) a dataset file into one `~spectralnn.SpectrumBatch`.

    Parameters
    ----------
    path : str or `~pathlib.Path`
        The dataset.
    index : slice, int or array of int, optional
        Which spectra (default all).

    Returns
    -------
    batch : `~spectralnn.SpectrumBatch`

    Examples
    --------
    >>> import numpy as np, astropy.units as u
    >>> from spectralnn import SpectrumBatch
    >>> b = SpectrumBatch(np.arange(4000.0, 4010.0) * u.AA, np.ones((2, 10)),
    ...                   np.ones((2, 10)), flux_unit=u.one)
    >>> read_dataset(write_dataset(b, getfixture("tmp_path") / "y.h5")).flux.shape
    (2, 10)
    """
    with SpectrumDataset(os.fspath(path)) as ds:
        return ds.read(index)
