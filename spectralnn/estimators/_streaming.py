"""
Stream HDF5 datasets through an estimator: prediction and training.

Not public API. `iter_input_batches` lets `Estimator.predict` run on inputs
larger than memory: an HDF5 dataset (`~spectralnn.datasets.SpectrumDataset`,
the path of a ``.h5`` file, or a `DatasetRows` selection of one) is read
``batch_size`` rows at a time; anything else `spectralnn.batch.as_batch`
accepts (a Spectrum, a list, a batch, FITS paths) is converted once and sliced.

`training_stream` lets `Estimator.fit` train on such a dataset: a
`keras.utils.PyDataset` (Keras 3, any backend) that reads ``chunk_size`` rows
at a time, runs the estimator's preprocessing on them and cuts them into
training batches. Only one or two chunks are ever in memory. Each epoch the
file is visited in a new random order, block by block (a block is one HDF5
chunk of rows, so no compressed chunk is read for one row), blocks are grouped
into chunks and the rows of a chunk are shuffled; the order depends only on
the seed and the epoch number, so a resumed run sees the same batches.
Spectra that turn out to be unusable after preprocessing keep their place in
the batch with a sample weight of 0 (the weights of a batch average 1), so the
number of batches per epoch stays fixed and no batch is ever empty.
"""

import contextlib
import functools
import math
import os
from pathlib import Path

import numpy as np

from ..logger import log

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "DatasetRows",
    "NetworkOutputs",
    "TrainingStream",
    "dataset_targets",
    "epoch_callback",
    "is_dataset_input",
    "iter_input_batches",
    "open_rows",
    "split_dataset_rows",
    "stream_outputs",
    "training_stream",
]

#: file suffixes taken for spectralnn HDF5 datasets
_HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf")

#: spectra read and preprocessed at a time when training from a dataset
DEFAULT_CHUNK_SIZE = 1024

#: rows per block when the file's HDF5 chunking is unknown
_DEFAULT_BLOCK = 32


class DatasetRows:
    """
    Some rows of an HDF5 dataset, usable wherever a dataset is.

    Parameters
    ----------
    dataset : `~spectralnn.datasets.SpectrumDataset`, str or `~pathlib.Path`
        The dataset (open, or its path).
    rows : array-like of int
        Row numbers in the file (any order).

    Examples
    --------
    >>> view = DatasetRows("train.h5", [4, 0, 7])
    >>> len(view), is_dataset_input(view)
    (3, True)
    """

    def __init__(self, dataset, rows):
        self.dataset = dataset
        self.rows = np.asarray(rows, dtype=np.int64).ravel()

    def __len__(self):
        return len(self.rows)

    def __repr__(self):
        name = getattr(self.dataset, "path", self.dataset)
        return f"<DatasetRows {Path(name).name}: {len(self.rows)} rows>"


class NetworkOutputs:
    """
    Network outputs standing in for network inputs (which were streamed).

    `Estimator._forward` returns ``outputs`` as they are, so evaluation code
    written for in-memory inputs (metrics, uncertainty calibration) works on
    a dataset that was run through the network chunk by chunk.

    Parameters
    ----------
    outputs : `~numpy.ndarray`
        The raw network outputs, one row per spectrum.

    Examples
    --------
    >>> len(NetworkOutputs(np.zeros((3, 2))))
    3
    """

    def __init__(self, outputs):
        self.outputs = np.asarray(outputs, dtype=np.float64)

    def __len__(self):
        return len(self.outputs)


class _MetaRows:
    """Stands in for a `SpectrumBatch` (its meta table and length) for ``_targets``."""

    def __init__(self, meta, n):
        self.meta = meta
        self.n = int(n)

    def __len__(self):
        return self.n


def is_dataset_input(obj):
    """
    Whether ``obj`` is an HDF5 dataset (open, a path to one, or `DatasetRows`).

    Parameters
    ----------
    obj : object
        Any estimator input.

    Returns
    -------
    bool
        True for a `~spectralnn.datasets.SpectrumDataset`, a `DatasetRows`
        or a path ending in ``.h5``, ``.hdf5`` or ``.hdf``.

    Examples
    --------
    >>> is_dataset_input("train.h5"), is_dataset_input("spec-0332-52367-0639.fits")
    (True, False)
    """
    from ..datasets import SpectrumDataset

    if isinstance(obj, (SpectrumDataset, DatasetRows)):
        return True
    return isinstance(obj, (str, os.PathLike)) and (
        Path(obj).suffix.lower() in _HDF5_SUFFIXES
    )


@contextlib.contextmanager
def open_rows(obj):
    """
    Open a dataset input; yield ``(dataset, rows)``.

    Parameters
    ----------
    obj : `~spectralnn.datasets.SpectrumDataset`, path or `DatasetRows`
        A dataset input (see `is_dataset_input`). A path is opened here and
        closed on exit; an open dataset is left open.

    Yields
    ------
    dataset : `~spectralnn.datasets.SpectrumDataset`
    rows : `~numpy.ndarray`
        The selected row numbers (every row for a whole dataset).

    Examples
    --------
    >>> import numpy as np, astropy.units as u
    >>> from spectralnn import SpectrumBatch
    >>> from spectralnn.datasets import write_dataset
    >>> b = SpectrumBatch(np.arange(4000.0, 4010.0) * u.AA, np.ones((3, 10)),
    ...                   np.ones((3, 10)), flux_unit=u.one)
    >>> path = write_dataset(b, getfixture("tmp_path") / "o.h5")
    >>> with open_rows(DatasetRows(path, [2, 0])) as (ds, rows):
    ...     len(ds), rows.tolist()
    (3, [2, 0])
    """
    from ..datasets import SpectrumDataset

    rows = None
    if isinstance(obj, DatasetRows):
        rows, obj = obj.rows, obj.dataset
    if isinstance(obj, SpectrumDataset):
        ds, owned = obj, False
    else:
        ds, owned = SpectrumDataset(obj), True
    try:
        if rows is None:
            rows = np.arange(len(ds), dtype=np.int64)
        elif rows.size and (rows.min() < 0 or rows.max() >= len(ds)):
            raise IndexError(f"row numbers out of range for a dataset of {len(ds)} spectra")
        yield ds, rows
    finally:
        if owned:
            ds.close()


def iter_input_batches(obj, batch_size):
    """
    Yield an estimator input as consecutive `~spectralnn.SpectrumBatch` chunks.

    Parameters
    ----------
    obj : dataset, path, `specutils.Spectrum`, list or `~spectralnn.SpectrumBatch`
        A dataset (a `~spectralnn.datasets.SpectrumDataset`; the path of a
        ``.h5``/``.hdf5`` file, opened here and closed when the iteration
        ends; or `DatasetRows`, some of its rows), or anything
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
    if isinstance(obj, DatasetRows):
        with open_rows(obj) as (ds, rows):
            for start in range(0, len(rows), batch_size):
                yield ds.read(rows[start:start + batch_size])
        return
    if is_dataset_input(obj):
        with SpectrumDataset(obj) as dataset:
            yield from dataset.iter_batches(batch_size)
        return
    batch = as_batch(obj, on_invalid="flag")
    for start in range(0, len(batch), batch_size):
        yield batch[start:start + batch_size]


# ------------------------------------------------------------------ training
def check_chunk_size(chunk_size):
    """``chunk_size`` as a positive int (`DEFAULT_CHUNK_SIZE` for None)."""
    if chunk_size is None:
        return DEFAULT_CHUNK_SIZE
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) \
            or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    return int(chunk_size)


def dataset_targets(estimator, dataset, rows, targets):
    """
    Training targets of dataset rows, from the truth/label table only.

    Parameters
    ----------
    estimator : `~spectralnn.estimators.Estimator`
        Converts the column (``estimator._targets``: units, labels, ln(1+z)).
    dataset : `~spectralnn.datasets.SpectrumDataset`
        The open dataset.
    rows : `~numpy.ndarray`
        Row numbers.
    targets : str, array-like or None
        A meta column name; one value per row; or None for the estimator's
        own default (e.g. the classifier's labels from its truth columns).

    Returns
    -------
    y : `~numpy.ndarray`
        Shape ``(len(rows), k)``, float64; NaN where the target is unknown.

    Raises
    ------
    ValueError
        If the column does not exist.
    """
    from astropy.table import QTable

    if isinstance(targets, str):
        if targets not in dataset.read_meta(slice(0, 0)).colnames:
            raise ValueError(
                f"{dataset.path} has no truth column {targets!r}; its columns are "
                f"{dataset.read_meta(slice(0, 0)).colnames}")
        meta = dataset.read_meta(rows, columns=[targets])
    elif targets is None:
        meta = dataset.read_meta(rows)
    else:
        meta = QTable()
    return estimator._targets(targets, _MetaRows(meta, len(rows)))


def split_dataset_rows(dataset, rows, validation, seed):
    """
    Training and validation positions among ``rows`` of a dataset.

    A ``split`` column in the dataset (``'train'``, ``'validation'``,
    ``'test'``, as `spectralnn.datasets.build_training_set` writes it) is
    used as it is: its ``'test'`` rows are never touched. Otherwise a
    fraction ``validation`` of the objects (``object_id``, else each row its
    own object) is held out with `spectralnn.datasets.split_by_object` and
    ``seed``, all epochs of an object on one side, repeated observations
    dropped.

    Parameters
    ----------
    dataset : `~spectralnn.datasets.SpectrumDataset`
        The open dataset.
    rows : `~numpy.ndarray`
        Candidate row numbers.
    validation : float or None
        Fraction held out, or None/0 for no validation set.
    seed : int or None
        Seed of the split (None: 0).

    Returns
    -------
    train, val : `~numpy.ndarray`
        Positions in ``rows`` (``val`` is None without a validation set).
    how : str
        A description for the model metadata.

    Raises
    ------
    ValueError
        If the fraction is not in (0, 1) or a side would be empty.
    """
    from ..datasets.splits import _EPOCH_KEYS, split_by_object

    names = dataset.read_meta(slice(0, 0)).colnames
    if validation is not None and validation is not False and validation != 0:
        if not 0 < float(validation) < 1:
            raise ValueError(f"validation fraction must be in (0, 1), got {validation}")
    else:
        validation = None
    if "split" in names:
        side = np.char.strip(np.asarray(dataset.read_meta(rows, columns=["split"])["split"],
                                        dtype=str))
        train = np.flatnonzero(side == "train")
        val = np.flatnonzero(side == "validation") if validation is not None else None
        how = "the dataset's split column ('train' / 'validation' rows)"
        if validation is not None and val.size == 0:
            raise ValueError(f"{dataset.path}: the split column has no 'validation' rows")
    elif validation is None:
        train, val, how = np.arange(len(rows)), None, "all rows"
    else:
        seed = 0 if seed is None else int(seed)
        if "object_id" in names:
            ids = dataset.read_meta(rows, columns=["object_id", *(
                k for k in _EPOCH_KEYS if k in names)])
        else:
            ids = rows
        parts = split_by_object(ids, fractions=(1.0 - float(validation), float(validation),
                                                0.0), seed=seed)
        train, val = parts["train"], parts["validation"]
        how = (f"split_by_object fraction {float(validation):.3f}, seed {seed}"
               f"{'' if 'object_id' in names else ' (one object per row)'}")
        if val.size == 0:
            raise ValueError("too few spectra to hold out a validation set")
    if train.size == 0:
        raise ValueError("no training rows left after the validation split")
    return train, val, how


def _file_block(dataset, chunk_size):
    """Rows per block: the file's HDF5 chunk height, at most ``chunk_size``."""
    try:
        height = int(dataset._file["flux"].chunks[0])
    except (AttributeError, KeyError, TypeError, IndexError):
        height = _DEFAULT_BLOCK
    return max(1, min(height, chunk_size))


def _at(value, rows):
    """A per-spectrum argument (None, scalar or one value per file row) at ``rows``."""
    if value is None or np.ndim(value) == 0:
        return value
    return np.asarray(value)[rows]


def _take(x, index):
    return [a[index] for a in x] if isinstance(x, list) else x[index]


class TrainingStream:
    """
    Training batches of dataset rows, read and preprocessed a chunk at a time.

    The Keras side (`keras.utils.PyDataset`) is added by `training_stream`;
    this class holds the logic and runs without Keras.

    Parameters
    ----------
    dataset : `~spectralnn.datasets.SpectrumDataset`
        The open dataset (not closed here).
    rows : array-like of int
        File rows to train on (a row listed twice is seen twice per epoch).
    targets : array-like
        Targets of ``rows``, shape ``(len(rows), k)``, finite.
    estimator : `~spectralnn.estimators.Estimator`
        Its ``pipeline`` preprocesses, its ``_network_input`` shapes inputs.
    batch_size : int
        Rows per batch (the last one may be smaller).
    chunk_size : int
        Most rows read and preprocessed at a time.
    shuffle : bool
        New random order every epoch (blocks, then rows within a chunk).
    seed : int or None
        Seed of the order (with the epoch number).
    z, ebv : float or array-like, optional
        Per-spectrum arguments of the pipeline: one value, or one per file
        row of the dataset. Default: the spectra's meta.

    Attributes
    ----------
    preprocessed : list of int
        Rows preprocessed at each step (each at most ``chunk_size``).
    epoch : int
        The epoch whose order is served.

    Examples
    --------
    >>> from spectralnn.datasets import SpectrumDataset, write_dataset
    >>> from spectralnn.estimators import MassEstimator
    >>> from spectralnn.simulate import simulate_quasars
    >>> path = write_dataset(simulate_quasars(10, seed=1, z_range=(0.5, 1.0)),
    ...                      getfixture("tmp_path") / "q.h5")
    >>> est = MassEstimator("resnet1d")
    >>> with SpectrumDataset(path) as ds:
    ...     stream = TrainingStream(ds, range(10), np.zeros((10, 1)), est,
    ...                             batch_size=4, chunk_size=10, shuffle=True, seed=0)
    ...     x, y, w = stream[0]
    >>> len(stream), [a.shape for a in x], y.shape, stream.preprocessed
    (3, [(4, 766, 3), (4, 2)], (4, 1), [10])
    """

    def __init__(self, dataset, rows, targets, estimator, *, batch_size, chunk_size,
                 shuffle, seed, z=None, ebv=None):
        self.dataset = dataset
        self.rows = np.asarray(rows, dtype=np.int64).ravel()
        self.targets = np.asarray(targets, dtype=np.float32).reshape(len(self.rows), -1)
        if len(self.rows) == 0:
            raise ValueError("no rows to train on")
        self.estimator = estimator
        self.batch_size = int(batch_size)
        self.chunk_size = int(chunk_size)
        self.shuffle = bool(shuffle)
        self.seed = int(np.random.SeedSequence().entropy % 2**63) if seed is None \
            else int(seed)
        self.z, self.ebv = z, ebv
        self.block = _file_block(dataset, self.chunk_size)
        self.preprocessed = []
        #: per entry: -1 not yet seen, 0 unusable, 1 usable
        self.usable = np.full(len(self.rows), -1, dtype=np.int8)
        self.epoch = 0
        self._cache = {}
        self._plan()

    def __len__(self):
        return math.ceil(len(self.rows) / self.batch_size)

    def set_epoch(self, epoch):
        """
        Serve the order of epoch number ``epoch``.

        Called by the callback of `epoch_callback` at the start of every
        epoch with Keras' epoch number (which counts on when training
        resumes), so the order does not depend on how often Keras calls the
        ``on_epoch_*`` hooks of a ``PyDataset``.
        """
        if int(epoch) != self.epoch:
            self.epoch = int(epoch)
            if self.shuffle:
                self._plan()

    def _plan(self):
        """The epoch's order of entries and their chunks."""
        self._cache = {}
        rng = np.random.default_rng([self.seed, self.epoch]) if self.shuffle else None
        blocks, inverse = np.unique(self.rows // self.block, return_inverse=True)
        inverse = inverse.ravel()
        rank = np.arange(len(blocks))
        if rng is not None:
            rank[rng.permutation(len(blocks))] = np.arange(len(blocks))
        # distinct rows per block, in the epoch's block order
        unique_rows = np.unique(self.rows)
        per_block = np.bincount(np.searchsorted(blocks, unique_rows // self.block),
                                minlength=len(blocks))
        in_order = per_block[np.argsort(rank)]
        chunk_of_rank = np.empty(len(blocks), dtype=np.int64)
        chunk, filled = 0, 0
        for k, count in enumerate(in_order):
            if filled and filled + count > self.chunk_size:
                chunk, filled = chunk + 1, 0
            chunk_of_rank[k] = chunk
            filled += count
        entry_chunk = chunk_of_rank[rank[inverse]]
        within = rng.random(len(self.rows)) if rng is not None else self.rows
        order = np.lexsort((within, entry_chunk))
        self._order = order
        self._chunk_of = entry_chunk[order]

    def _load(self, chunk):
        """(sorted rows, network inputs, usable) of one chunk, cached."""
        if chunk not in self._cache:
            where = np.flatnonzero(self._chunk_of == chunk)
            rows = np.unique(self.rows[self._order[where]])
            batch = self.dataset.read(rows)
            prepared = self.estimator.pipeline(batch, z=_at(self.z, rows),
                                               ebv=_at(self.ebv, rows))
            self.preprocessed.append(len(rows))
            log.debug("preprocessed a chunk of %d rows (epoch %d)", len(rows), self.epoch)
            self._cache[chunk] = (rows, prepared.network_inputs, prepared.usable)
        return self._cache[chunk]

    def __getitem__(self, index):
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} of {len(self)}")
        positions = slice(index * self.batch_size, (index + 1) * self.batch_size)
        entries = self._order[positions]
        chunks = self._chunk_of[positions]
        xs, usable = [], []
        for chunk in np.unique(chunks):  # positions are grouped by chunk, in order
            rows, inputs, ok = self._load(chunk)
            local = np.searchsorted(rows, self.rows[entries[chunks == chunk]])
            xs.append(_take(inputs, local))
            usable.append(ok[local])
        keep = chunks[-1]
        self._cache = {keep: self._cache[keep]}  # only the chunk the next batch starts in
        x = xs[0] if len(xs) == 1 else (
            [np.concatenate(p) for p in zip(*xs, strict=True)] if isinstance(xs[0], list)
            else np.concatenate(xs))
        usable = np.concatenate(usable)
        self.usable[entries] = usable
        weights = usable.astype(np.float32)
        if weights.any():
            weights /= weights.mean()
        x = self.estimator._network_input(x)
        # several inputs as a tuple: tf.data takes no lists in a batch structure
        x = tuple(x) if isinstance(x, list) else x
        return x, self.targets[entries], weights

    @property
    def n_unusable(self):
        """Entries found unusable so far (flagged by the preprocessing)."""
        return int(np.sum(self.usable == 0))


@functools.cache
def _keras_stream_class():
    import keras

    class KerasTrainingStream(TrainingStream, keras.utils.PyDataset):
        """`TrainingStream` as a `keras.utils.PyDataset` (batches read in order)."""

        def __init__(self, *args, **kwargs):
            keras.utils.PyDataset.__init__(self)
            TrainingStream.__init__(self, *args, **kwargs)

    return KerasTrainingStream


def epoch_callback(stream):
    """
    A Keras callback giving ``stream`` each epoch's number as the epoch begins.

    Parameters
    ----------
    stream : `TrainingStream`
        The training stream.

    Returns
    -------
    callback : `keras.callbacks.Callback`
    """
    import keras

    class _EpochOrder(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            stream.set_epoch(epoch)

    return _EpochOrder()


def training_stream(*args, **kwargs):
    """
    A `TrainingStream` that is also a `keras.utils.PyDataset`.

    Parameters
    ----------
    *args, **kwargs
        As for `TrainingStream`.

    Returns
    -------
    stream : `TrainingStream` and `keras.utils.PyDataset`
        Yields ``(inputs, targets, sample_weights)`` batches.
    """
    return _keras_stream_class()(*args, **kwargs)


def stream_outputs(estimator, dataset, rows, y, *, chunk_size, z=None, ebv=None):
    """
    Run the network over dataset rows chunk by chunk.

    Parameters
    ----------
    estimator : `~spectralnn.estimators.Estimator`
        A trained estimator.
    dataset : `~spectralnn.datasets.SpectrumDataset`
        The open dataset.
    rows : `~numpy.ndarray`
        Row numbers.
    y : `~numpy.ndarray`
        Their targets ``(len(rows), k)``.
    chunk_size : int
        Most rows read and preprocessed at a time.
    z, ebv : float or array-like, optional
        Pipeline arguments (one value, or one per file row).

    Returns
    -------
    outputs : `NetworkOutputs`
        Raw outputs of the usable rows with a finite target.
    y : `~numpy.ndarray`
        Their targets, float32, in the same order.
    """
    rows = np.asarray(rows, dtype=np.int64)
    y = np.asarray(y, dtype=np.float64).reshape(len(rows), -1)
    finite = np.all(np.isfinite(y), axis=1)
    rows, y = rows[finite], y[finite]
    order = np.argsort(rows, kind="stable")  # read the file front to back
    outs, ys = [], []
    for start in range(0, len(order), chunk_size):
        part = order[start:start + chunk_size]
        batch = dataset.read(rows[part])
        prepared = estimator.pipeline(batch, z=_at(z, rows[part]), ebv=_at(ebv, rows[part]))
        ok = np.flatnonzero(prepared.usable)
        if ok.size:
            x = estimator._network_input(_take(prepared.network_inputs, ok))
            outs.append(estimator._forward(x))
            ys.append(y[part][ok])
        log.debug("evaluated %d / %d rows", min(start + chunk_size, len(order)), len(order))
    if not outs:
        raise ValueError("no usable spectrum with a finite target among the rows")
    return NetworkOutputs(np.concatenate(outs)), np.concatenate(ys).astype(np.float32)
