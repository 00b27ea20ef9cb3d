"""
Train/validation/test splits by object, duplicates removed.

Several spectra of one object (repeat epochs, overlapping plates) must fall on
the same side of a split, or a network is validated on objects it has seen.
`split_by_object` assigns each ``object_id`` to a side by hashing it with the
split's seed: the assignment of an object does not depend on which other
objects are in the dataset, so it stays put when the dataset grows.

Examples
--------
>>> from spectralnn.datasets import split_by_object
>>> ids = ["a", "a", "b", "c", "c", "d"]
>>> parts = split_by_object(ids, fractions=(0.5, 0.25, 0.25), seed=1)
>>> sorted(int(i) for p in parts.values() for i in p)
[0, 1, 2, 3, 4, 5]
"""

import hashlib

import numpy as np

__all__ = ["SPLIT_NAMES", "split_by_object", "duplicate_rows", "object_hash"]

#: Names of the three sides of a split.
SPLIT_NAMES = ("train", "validation", "test")

#: meta columns that identify one observation (epoch) of an object
_EPOCH_KEYS = ("plate", "mjd", "fiber", "fiberid", "targetid", "night", "expid", "tile",
               "spectrum_index", "source")


def object_hash(object_ids, seed=0):
    """
    A uniform number in [0, 1) per object id, fixed for a given seed.

    Parameters
    ----------
    object_ids : array-like
        Integers or strings.
    seed : int, optional
        Seed of the hash. Default 0.

    Returns
    -------
    u : ndarray of float
        Same length as ``object_ids``; equal ids get equal numbers.

    Examples
    --------
    >>> u = object_hash([5, 7, 5], seed=3)
    >>> bool(u[0] == u[2]), bool(0 <= u.min() < 1)
    (True, True)
    """
    ids = np.asarray(object_ids)
    uniq, inverse = np.unique(ids, return_inverse=True)
    out = np.empty(len(uniq))
    key = str(int(seed)).encode()
    for k, value in enumerate(uniq.tolist()):
        digest = hashlib.blake2b(str(value).encode("utf-8"), digest_size=8, key=key)
        out[k] = int.from_bytes(digest.digest(), "little") / 2.0**64
    return out[inverse.reshape(ids.shape)]


def duplicate_rows(meta, *, keys=None):
    """
    Rows that repeat an earlier row's object and observation.

    Parameters
    ----------
    meta : `~astropy.table.Table`
        Table with an ``object_id`` column.
    keys : sequence of str, optional
        Columns that together identify one spectrum. Default ``object_id``
        plus whichever of plate, mjd, fiber, targetid, night, expid, tile,
        spectrum_index, source exist. With none of them, every row is one
        spectrum (nothing is a duplicate).

    Returns
    -------
    duplicate : ndarray of bool
        True for every repeat after the first occurrence.

    Examples
    --------
    >>> from astropy.table import Table
    >>> t = Table({"object_id": [1, 1, 1], "mjd": [100, 100, 200]})
    >>> duplicate_rows(t).tolist()
    [False, True, False]
    """
    if keys is None:
        keys = ["object_id"] + [k for k in _EPOCH_KEYS if k in meta.colnames]
        if len(keys) == 1:
            return np.zeros(len(meta), dtype=bool)
    missing = [k for k in keys if k not in meta.colnames]
    if missing:
        raise KeyError(f"meta lacks the columns {missing}")
    combined = np.array(["\x1f".join(map(str, row)) for row in
                         zip(*(np.asarray(meta[k]).tolist() for k in keys))])
    _, first = np.unique(combined, return_index=True)
    dup = np.ones(len(meta), dtype=bool)
    dup[first] = False
    return dup


def split_by_object(object_ids, fractions=(0.8, 0.1, 0.1), *, seed=0, exclude=None):
    """
    Split rows into train/validation/test so that each object is on one side.

    Parameters
    ----------
    object_ids : array-like, `~astropy.table.Table` or `SpectrumDataset`
        One id per row; a table or dataset gives its ``object_id`` column
        (and, for them, duplicate rows are dropped with `duplicate_rows`).
    fractions : tuple of 3 float, optional
        Expected fractions of objects in train, validation and test.
        Default (0.8, 0.1, 0.1).
    seed : int, optional
        Seed of the split: a different seed gives an independent split.
    exclude : array of bool, optional
        Rows to leave out (e.g. duplicates, flagged spectra).

    Returns
    -------
    split : dict
        ``{'train': idx, 'validation': idx, 'test': idx}``, sorted row indices.

    Raises
    ------
    ValueError
        If the fractions are not three non-negative numbers with a positive sum.

    Examples
    --------
    >>> parts = split_by_object([1, 1, 2, 3], fractions=(1, 0, 0))
    >>> parts["train"].tolist(), parts["test"].tolist()
    ([0, 1, 2, 3], [])
    """
    from astropy.table import Table

    from .hdf5 import SpectrumDataset

    fr = np.asarray(fractions, dtype=np.float64)
    if fr.shape != (3,) or np.any(fr < 0) or fr.sum() <= 0:
        raise ValueError(f"fractions must be 3 non-negative numbers, got {fractions}")
    drop = None
    if isinstance(object_ids, SpectrumDataset):
        object_ids = object_ids.read_meta()
    if isinstance(object_ids, Table):
        if "object_id" not in object_ids.colnames:
            raise KeyError("the table has no 'object_id' column to split by")
        drop = duplicate_rows(object_ids)
        object_ids = np.asarray(object_ids["object_id"])
    ids = np.asarray(object_ids)
    keep = np.ones(len(ids), dtype=bool)
    if drop is not None:
        keep &= ~drop
    if exclude is not None:
        keep &= ~np.asarray(exclude, dtype=bool)
    h = object_hash(ids, seed)
    cum = np.cumsum(fr) / fr.sum()
    side = np.searchsorted(cum, h, side="right")
    return {name: np.flatnonzero(keep & (side == k)) for k, name in enumerate(SPLIT_NAMES)}
