"""
Stream any estimator input as `~spectralnn.SpectrumBatch` chunks.

Not public API. `iter_input_batches` lets `Estimator.predict` run on inputs
larger than memory: an HDF5 dataset (`~spectralnn.datasets.SpectrumDataset`
or the path of a ``.h5`` file) is read ``batch_size`` rows at a time; anything
else `spectralnn.batch.as_batch` accepts (a Spectrum, a list, a batch, FITS
paths) is converted once and sliced.
"""

import os
from pathlib import Path

__all__ = ["iter_input_batches", "is_dataset_input"]

#: file suffixes taken for spectralnn HDF5 datasets
_HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf")


def is_dataset_input(obj):
    """
    Whether ``obj`` is an HDF5 dataset (open, or a path to one).

    Parameters
    ----------
    obj : object
        Any estimator input.

    Returns
    -------
    bool
        True for a `~spectralnn.datasets.SpectrumDataset` or a path ending in
        ``.h5``, ``.hdf5`` or ``.hdf``.

    Examples
    --------
    >>> is_dataset_input("train.h5"), is_dataset_input("spec-0332-52367-0639.fits")
    (True, False)
    """
    from ..datasets import SpectrumDataset

    if isinstance(obj, SpectrumDataset):
        return True
    return isinstance(obj, (str, os.PathLike)) and (
        Path(obj).suffix.lower() in _HDF5_SUFFIXES
    )


def iter_input_batches(obj, batch_size):
    """
    Yield an estimator input as consecutive `~spectralnn.SpectrumBatch` chunks.

    Parameters
    ----------
    obj : `~spectralnn.datasets.SpectrumDataset`, path, `specutils.Spectrum`, list or `~spectralnn.SpectrumBatch`
        A dataset (open, or the path of a ``.h5``/``.hdf5`` file: opened here
        and closed when the iteration ends), or anything
        `spectralnn.batch.as_batch` takes.
    batch_size : int
        Maximum number of spectra per chunk.

    Yields
    ------
    batch : `~spectralnn.SpectrumBatch`
        The chunks, in input order; together they hold every spectrum once.
        Dataset chunks are read lazily (only ``batch_size`` rows in memory).

    Raises
    ------
    ValueError
        If ``batch_size`` is not positive.
    spectralnn.errors.DatasetError
        If a ``.h5`` path is not a readable spectralnn dataset.

    Examples
    --------
    >>> import numpy as np, astropy.units as u
    >>> from spectralnn import SpectrumBatch
    >>> from spectralnn.datasets import write_dataset
    >>> b = SpectrumBatch(np.arange(4000.0, 4010.0) * u.AA, np.ones((5, 10)),
    ...                   np.ones((5, 10)), flux_unit=u.one)
    >>> path = write_dataset(b, getfixture("tmp_path") / "s.h5")
    >>> [len(chunk) for chunk in iter_input_batches(path, 2)]
    [2, 2, 1]
    >>> [len(chunk) for chunk in iter_input_batches(b, 4)]
    [4, 1]
    """
    from ..batch import as_batch
    from ..datasets import SpectrumDataset

    if isinstance(batch_size, bool) or int(batch_size) < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    batch_size = int(batch_size)
    if isinstance(obj, SpectrumDataset):
        yield from obj.iter_batches(batch_size)
        return
    if is_dataset_input(obj):
        with SpectrumDataset(obj) as dataset:
            yield from dataset.iter_batches(batch_size)
        return
    batch = as_batch(obj, on_invalid="flag")
    for start in range(0, len(batch), batch_size):
        yield batch[start:start + batch_size]
