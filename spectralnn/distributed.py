"""
Scale prediction out over a Dask cluster: `predict_many`.

`predict_many` cuts the input (spectrum files, spectralnn HDF5 datasets) into
*partitions* — groups of files, or row ranges of a dataset — and runs reading,
preprocessing and the networks of one or more estimators on each partition as
one task of a `dask.distributed` cluster: a `~distributed.LocalCluster` on
this machine by default, or any cluster a `~distributed.Client` is connected
to (the same code runs on both). Each worker process builds its estimators
once and keeps them for all the partitions it is given.

With ``output=`` a folder, every finished partition is written at once as one
file (``part-00012.ecsv``, ``.parquet`` or ``.h5``) through a temporary name
and an atomic rename, and a ``manifest.json`` records what the run is (its
inputs, partitions and estimators). Running the same call again resumes: the
partitions already on disk are skipped, so an interrupted run never loses or
duplicates a row, and a worker that dies only costs the partitions it was
working on (Dask runs them again elsewhere).

The workers must be able to read the input paths (a shared file system on a
real cluster); the result tables come back to this process, which writes them.

Examples
--------
>>> from spectralnn.distributed import predict_many
>>> table = predict_many(["spec-1.fits", "spec-2.fits"], ["mass"])  # doctest: +SKIP
"""

import hashlib
import json
import logging
import os
import shutil
import threading
import warnings
from pathlib import Path

import numpy as np
from astropy.table import QTable

from .errors import DatasetError, SpectralNNError
from .logger import log

__all__ = ["predict_many", "read_partitions", "partition_inputs", "dask_setup",
           "ESTIMATOR_TASKS", "WORKER_ENVIRONMENT"]

#: task names accepted in ``estimators`` -> estimator class (module:name)
ESTIMATOR_TASKS = {
    "mass": "spectralnn.estimators.mass:MassEstimator",
    "classify": "spectralnn.estimators.classify:SpectralClassifier",
    "redshift": "spectralnn.estimators.redshift:RedshiftEstimator",
}

#: environment of the worker processes of the local cluster: one thread each
#: for TensorFlow and the BLAS/OpenMP libraries (one worker = one core)
WORKER_ENVIRONMENT = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "TF_NUM_INTRAOP_THREADS": "1",
    "TF_NUM_INTEROP_THREADS": "1",
    "TF_CPP_MIN_LOG_LEVEL": "2",
}

#: output format -> (file suffix, astropy writer/reader name)
_FORMATS = {
    "ecsv": (".ecsv", "ascii.ecsv"),
    "parquet": (".parquet", "parquet"),
    "hdf5": (".h5", "hdf5"),
}

_MANIFEST = "manifest.json"
_MANIFEST_FORMAT = "spectralnn-predict-many"
_FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz", ".fts.gz")
_H5_SUFFIXES = (".h5", ".hdf5", ".hdf")

#: per worker process: estimator token -> built estimator (see `_worker_estimator`)
_WORKER_ESTIMATORS = {}
_WORKER_LOCK = threading.Lock()


# --------------------------------------------------------------------- inputs
def _is_dataset_path(path):
    return str(path).lower().endswith(_H5_SUFFIXES)


def _expand_inputs(inputs):
    """Absolute paths (str) of the input files, in order; folders are listed."""
    from .datasets import SpectrumDataset

    if isinstance(inputs, (str, os.PathLike, SpectrumDataset)):
        inputs = [inputs]
    paths = []
    for item in inputs:
        if isinstance(item, SpectrumDataset):
            item = item.path
        if not isinstance(item, (str, os.PathLike)):
            raise TypeError(
                "predict_many reads spectrum files, HDF5 datasets or folders of "
                f"them; got {type(item).__name__} (use Estimator.predict for "
                "spectra in memory)")
        path = Path(item).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and
                           p.name.lower().endswith(_FITS_SUFFIXES + _H5_SUFFIXES))
            if not found:
                log.warning("folder %s holds no spectrum files", path)
            paths.extend(str(p.resolve()) for p in found)
        else:
            paths.append(str(path.resolve()))
    if not paths:
        raise ValueError("no input files given")
    return paths


def partition_inputs(inputs, partition_size=512):
    """
    Cut the input into partitions: groups of files or row ranges of datasets.

    Parameters
    ----------
    inputs : path, `~spectralnn.datasets.SpectrumDataset` or list of them
        Spectrum files (SDSS/BOSS, DESI, FITS images), spectralnn HDF5
        datasets, or folders holding them (their files are taken in name
        order).
    partition_size : int, optional
        Spectrum files, or dataset rows, per partition. Default 512.

    Returns
    -------
    partitions : list of dict
        In input order. ``{'index': i, 'kind': 'files', 'paths': [...]}`` or
        ``{'index': i, 'kind': 'dataset', 'path': ..., 'start': a, 'stop': b}``.

    Raises
    ------
    ValueError
        If there is no input or ``partition_size`` is not positive.
    spectralnn.errors.DatasetError
        If a ``.h5`` input is not a readable spectralnn dataset.

    Examples
    --------
    >>> import numpy as np, astropy.units as u
    >>> from spectralnn import SpectrumBatch
    >>> from spectralnn.datasets import write_dataset
    >>> b = SpectrumBatch(np.arange(4000.0, 4010.0) * u.AA, np.ones((5, 10)),
    ...                   np.ones((5, 10)), flux_unit=u.one)
    >>> path = write_dataset(b, getfixture("tmp_path") / "p.h5")
    >>> [(p["start"], p["stop"]) for p in partition_inputs(path, 2)]
    [(0, 2), (2, 4), (4, 5)]
    """
    from .datasets import SpectrumDataset

    if isinstance(partition_size, bool) or int(partition_size) < 1:
        raise ValueError(f"partition_size must be a positive integer, got {partition_size!r}")
    size = int(partition_size)
    partitions, pending = [], []

    def flush():
        if pending:
            partitions.append({"kind": "files", "paths": list(pending)})
            pending.clear()

    for path in _expand_inputs(inputs):
        if _is_dataset_path(path):
            flush()
            with SpectrumDataset(path) as ds:
                n = len(ds)
            partitions.extend({"kind": "dataset", "path": path, "start": start,
                               "stop": min(start + size, n)}
                              for start in range(0, n, size))
            continue
        pending.append(path)
        if len(pending) >= size:
            flush()
    flush()
    for index, part in enumerate(partitions):
        part["index"] = index
    return partitions


def _read_partition(partition):
    """The spectra of one partition as a `~spectralnn.SpectrumBatch`."""
    if partition["kind"] == "dataset":
        from .datasets import SpectrumDataset

        with SpectrumDataset(partition["path"]) as ds:
            return ds.read(slice(partition["start"], partition["stop"]))
    from .io import read_spectra

    return read_spectra(partition["paths"], on_error="flag")


# ----------------------------------------------------------------- estimators
class _Spec:
    """An estimator to build on the workers: class path and keyword arguments."""

    def __init__(self, target, kwargs):
        self.target = target
        self.kwargs = dict(kwargs)
        self.token = json.dumps([target, self.kwargs], sort_keys=True, default=str)

    def describe(self):
        return {"class": self.target, "options": json.loads(json.dumps(
            self.kwargs, sort_keys=True, default=str))}

    def build(self):
        import importlib

        module, name = self.target.split(":")
        cls = getattr(importlib.import_module(module), name)
        return cls(**self.kwargs)


def _class_path(cls):
    return f"{cls.__module__}:{cls.__qualname__}"


def _estimator_specs(estimators):
    """Normalise the ``estimators`` argument to a list of _Spec or instances."""
    from .estimators.base import Estimator

    if estimators is None:
        estimators = ["mass"]
    if isinstance(estimators, (str, type, tuple, Estimator)):
        estimators = [estimators]
    out = []
    for item in estimators:
        kwargs = {}
        if isinstance(item, tuple):
            if len(item) != 2 or not isinstance(item[1], dict):
                raise TypeError("an estimator spec tuple is (class or task name, dict of "
                                f"keyword arguments), got {item!r}")
            item, kwargs = item
        if isinstance(item, str):
            if item in ESTIMATOR_TASKS:
                out.append(_Spec(ESTIMATOR_TASKS[item], kwargs))
                continue
            if ":" in item:
                out.append(_Spec(item, kwargs))
                continue
            raise ValueError(f"unknown estimator task {item!r}; use one of "
                             f"{sorted(ESTIMATOR_TASKS)}, an Estimator class or instance")
        if isinstance(item, type) and issubclass(item, Estimator):
            out.append(_Spec(_class_path(item), kwargs))
        elif isinstance(item, Estimator):
            if kwargs:
                raise TypeError("keyword arguments go with an estimator class, not an "
                                "instance")
            item._require_trained()
            out.append(item)
        else:
            raise TypeError("estimators must be task names, Estimator classes, "
                            f"(class, kwargs) tuples or Estimator instances; got {item!r}")
    if not out:
        raise ValueError("no estimator given")
    return out


def _describe_instance(est):
    """Identity of an estimator instance for the manifest (weights hashed)."""
    digest = hashlib.sha256()
    for w in est.model.get_weights():
        digest.update(np.ascontiguousarray(w).tobytes())
    settings = {k: v for k, v in vars(est).items()
                if not k.startswith("_") and isinstance(v, (bool, int, float, str))}
    return {"class": _class_path(type(est)), "model_name": est.metadata["name"],
            "weights_sha256": digest.hexdigest(), "settings": settings,
            "uncertainty": est.metadata.get("uncertainty", {})}


def _worker_estimator(spec):
    """The estimator of ``spec``, built once per worker process."""
    if not isinstance(spec, _Spec):
        return spec  # an instance shipped to the worker
    with _WORKER_LOCK:
        est = _WORKER_ESTIMATORS.get(spec.token)
        if est is None:
            est = _WORKER_ESTIMATORS[spec.token] = spec.build()
    return est


# ------------------------------------------------------------------- the task
def _merge_tables(tables, tasks):
    """One table from the tables of several estimators on the same rows."""
    if len(tables) == 1:
        return tables[0]
    from .estimators.base import _ID_COLUMNS

    merged = tables[0].copy(copy_data=False)
    merged.meta = {"estimators": [dict(tables[0].meta)]}
    for table, task in zip(tables[1:], tasks[1:], strict=True):
        merged.meta["estimators"].append(dict(table.meta))
        for name in table.colnames:
            if name in _ID_COLUMNS and name in merged.colnames:
                continue
            out = name if name not in merged.colnames else f"{task}_{name}"
            merged[out] = table[name]
    return merged


def _predict_partition(partition, estimators, z):
    """Read, preprocess and predict one partition (runs on a worker)."""
    batch = _read_partition(partition)
    tables, tasks = [], []
    with warnings.catch_warnings():
        # flagged rows are reported in the flags column of the result
        warnings.simplefilter("ignore", category=Warning)
        for spec in estimators:
            est = _worker_estimator(spec)
            tables.append(est.predict(batch, z=z))
            tasks.append(est.task)
    table = _merge_tables(tables, tasks)
    table.meta["partition"] = int(partition["index"])
    table.meta["n_rows"] = len(table)
    return table


# ------------------------------------------------------------------- outputs
def _part_path(folder, index, fmt):
    return Path(folder) / f"part-{index:05d}{_FORMATS[fmt][0]}"


def _write_part(table, path, fmt):
    """Write one partition atomically (temporary name, then rename)."""
    tmp = path.with_name(path.name + ".tmp")
    kwargs = {"path": "table", "serialize_meta": True} if fmt == "hdf5" else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=Warning)  # meta/unit round-trip notes
        table.write(tmp, format=_FORMATS[fmt][1], overwrite=True, **kwargs)
    os.replace(tmp, path)


def _read_part(path, fmt):
    kwargs = {"path": "table"} if fmt == "hdf5" else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=Warning)
        return QTable.read(path, format=_FORMATS[fmt][1], **kwargs)


def _join(tables):
    """Stack partition tables (same columns), dropping per-partition meta."""
    from .commands._common import join_tables

    table = join_tables(tables)
    for key in ("partition", "n_rows"):
        table.meta.pop(key, None)
    return table


def read_partitions(folder):
    """
    Read the result of a `predict_many` run written to ``folder``.

    Parameters
    ----------
    folder : str or `~pathlib.Path`
        The ``output`` folder of `predict_many`.

    Returns
    -------
    table : `~astropy.table.QTable`
        All partitions in input order.

    Raises
    ------
    spectralnn.errors.DatasetError
        If the folder holds no manifest, or partitions are missing (the run
        was interrupted: call `predict_many` again to finish it).

    Examples
    --------
    >>> from spectralnn.errors import DatasetError
    >>> try:
    ...     read_partitions(getfixture("tmp_path"))
    ... except DatasetError as exc:
    ...     print("not a predict_many output" in str(exc))
    True
    >>> table = read_partitions("masses.parts")  # doctest: +SKIP
    """
    folder = Path(folder)
    manifest = _read_manifest(folder)
    if manifest is None:
        raise DatasetError(f"{folder} holds no {_MANIFEST}: not a predict_many output")
    fmt = manifest["table_format"]
    n = int(manifest["n_partitions"])
    missing = [i for i in range(n) if not _part_path(folder, i, fmt).is_file()]
    if missing:
        raise DatasetError(
            f"{folder}: {len(missing)} of {n} partitions are missing (first "
            f"{missing[:5]}); run predict_many again with the same arguments to "
            "finish them")
    tables = []
    for i in range(n):
        part = _read_part(_part_path(folder, i, fmt), fmt)
        if int(part.meta.get("partition", i)) != i or \
                int(part.meta.get("n_rows", len(part))) != len(part):
            raise DatasetError(f"{_part_path(folder, i, fmt)} does not hold partition {i}")
        tables.append(part)
    return _join(tables)


def _read_manifest(folder):
    path = Path(folder) / _MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except ValueError as exc:
        raise DatasetError(f"{path} is not valid JSON: {exc}") from exc
    if manifest.get("format") != _MANIFEST_FORMAT:
        raise DatasetError(f"{path} is not a predict_many manifest")
    return manifest


def _prepare_output(folder, manifest, overwrite):
    """Create or check the output folder; return the indices already done."""
    folder = Path(folder)
    if overwrite and folder.exists():
        if folder.is_dir() and (folder / _MANIFEST).is_file():
            shutil.rmtree(folder)
        elif folder.is_dir() and not any(folder.iterdir()):
            pass
        else:
            raise SpectralNNError(f"refusing to overwrite {folder}: not a predict_many "
                                  "output folder")
    folder.mkdir(parents=True, exist_ok=True)
    old = _read_manifest(folder)
    if old is None:
        if any(p for p in folder.iterdir() if p.name.startswith("part-")):
            raise SpectralNNError(f"{folder} holds partition files but no {_MANIFEST}")
        tmp = folder / (_MANIFEST + ".tmp")
        tmp.write_text(json.dumps(manifest, indent=1))
        os.replace(tmp, folder / _MANIFEST)
        return set()
    if old.get("fingerprint") != manifest["fingerprint"]:
        raise SpectralNNError(
            f"{folder} holds the output of another predict_many run (different "
            "inputs, partitions, estimators or format); pass overwrite=True to replace "
            "it, or choose another folder")
    fmt = manifest["table_format"]
    for stale in folder.glob("part-*.tmp"):
        stale.unlink()  # a write interrupted before its rename
    return {i for i in range(manifest["n_partitions"])
            if _part_path(folder, i, fmt).is_file()}


# -------------------------------------------------------------------- client
def dask_setup(worker):
    """
    Prepare a Dask worker process for spectralnn (a Dask *preload* hook).

    Imports Keras (and its backend) before the worker joins the cluster, so
    a worker that starts, or restarts after a crash, is only given tasks once
    it can run them at full speed. Used by the local cluster of
    `predict_many`; on another cluster start the workers with
    ``dask worker --preload spectralnn.distributed ADDRESS``.

    Parameters
    ----------
    worker : `distributed.Worker`
        The starting worker.

    Examples
    --------
    >>> from distributed import LocalCluster
    >>> cluster = LocalCluster(preload=["spectralnn.distributed"])  # doctest: +SKIP
    """
    try:
        import keras  # noqa: F401
    except ImportError:  # pragma: no cover - the estimators will say what is missing
        return
    log.debug("worker %s: keras %s ready", getattr(worker, "address", "?"),
              keras.__version__)


def _local_client(n_workers):
    from distributed import Client, LocalCluster

    n = n_workers or max(1, min(os.cpu_count() or 1, 8))
    cluster = LocalCluster(n_workers=int(n), threads_per_worker=1, processes=True,
                           dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR,
                           env=dict(WORKER_ENVIRONMENT), preload=[__name__])
    log.info("started a local Dask cluster with %d worker processes (dashboard: %s)",
             n, cluster.dashboard_link)
    return Client(cluster), cluster


def _close_local(client, cluster):
    try:
        client.close()
    finally:
        cluster.close()


class _Progress:
    def __init__(self, total, done, enabled):
        self.bar = None
        if enabled:
            try:
                from tqdm import tqdm
            except ImportError:
                pass
            else:
                self.bar = tqdm(total=total, initial=done, unit="partitions",
                                desc="predict_many", disable=None)
        self.total, self.done = total, done

    def update(self, n_rows):
        self.done += 1
        if self.bar is not None:
            self.bar.update(1)
        log.info("predict_many: %d / %d partitions (%d rows in this one)", self.done,
                 self.total, n_rows)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def predict_many(inputs, estimators=None, *, client=None, n_workers=None, output=None,
                 partition_size: int = 512, z: float | None = None, format: str = "ecsv",
                 overwrite: bool = False, callback=None, progress: bool = True):
    """
    Predict many spectra in partitions on a Dask cluster.

    Reading, preprocessing and the networks run on the workers, one
    partition per task; each worker builds every estimator once. Results are
    written partition by partition when ``output`` is given, so a run that
    stops (interrupted, crashed, out of time) resumes where it stopped when
    called again with the same arguments.

    Parameters
    ----------
    inputs : path, `~spectralnn.datasets.SpectrumDataset` or list of them
        Spectrum files (SDSS/BOSS, DESI coadds, 1-D FITS images), spectralnn
        HDF5 datasets, or folders of them (see `partition_inputs`).
    estimators : list, optional
        What to predict, each one of: a task name (``'mass'``, ``'classify'``,
        ``'redshift'``); an `~spectralnn.estimators.Estimator` subclass; a
        ``(class or task name, kwargs)`` tuple, e.g.
        ``(MassEstimator, {'model': 'mass.keras', 'virial': False})``; or a
        trained estimator instance. Classes and tuples are *specs*: each
        worker builds the estimator itself (nothing big travels, and a
        restarted worker rebuilds it); an instance is pickled once and
        copied to every worker (for a network that exists only in memory).
        Default ``['mass']``.
    client : `distributed.Client`, optional
        The cluster to use. Default: a `~distributed.LocalCluster` of
        ``n_workers`` single-threaded worker processes, started for this call
        and closed at its end.
    n_workers : int, optional
        Workers of the local cluster. Default: the number of CPU cores (at
        most 8). Ignored when ``client`` is given.
    output : str or `~pathlib.Path`, optional
        Folder for the partition files and ``manifest.json``. Default: none
        (results kept in memory only; nothing to resume from).
    partition_size : int, optional
        Files, or dataset rows, per partition. Default 512.
    z : float, optional
        Redshift of every spectrum. Default: each spectrum's own
        (``meta['z']``).
    format : {'ecsv', 'parquet', 'hdf5'}, optional
        Format of the partition files. Default ``'ecsv'``.
    overwrite : bool, optional
        Delete an earlier run's ``output`` folder first instead of resuming.
        Default False.
    callback : callable, optional
        Called in this process as ``callback(index, table)`` after each
        partition is finished (and written); an exception it raises stops the
        run (the finished partitions stay on disk).
    progress : bool, optional
        Show a tqdm bar when tqdm is installed and the output is a terminal.
        Default True.

    Returns
    -------
    table : `~astropy.table.QTable`
        One row per spectrum, in input order, with the columns of the
        estimator (see its ``predict``); with several estimators, the
        identifying columns once, then each estimator's columns (a name
        already taken gets the task as prefix, e.g. ``classification_flags``).
        With ``output``, the table is read back from the partition files.

    Raises
    ------
    spectralnn.errors.SpectralNNError
        If ``output`` holds another run's results (use ``overwrite=True``),
        or if partitions failed (the others are kept; call again to retry
        them).
    ImportError
        If ``dask.distributed`` is not installed.

    Examples
    --------
    Two local workers, resumable output (a second call only does what is
    missing):

    >>> from spectralnn.distributed import predict_many
    >>> table = predict_many("spectra/", ["mass"], n_workers=2,
    ...                      output="masses.parts")  # doctest: +SKIP
    """
    if format not in _FORMATS:
        raise ValueError(f"format must be one of {sorted(_FORMATS)}, not {format!r}")
    if z is not None and not (np.ndim(z) == 0 and np.isfinite(z) and z >= 0):
        raise ValueError(f"z must be one non-negative number (or None), got {z!r}")
    try:
        import distributed
    except ImportError as exc:  # pragma: no cover - dask is in the 'all' extra
        raise ImportError("predict_many needs dask.distributed: "
                          "pip install 'dask[distributed]'") from exc
    specs = _estimator_specs(estimators)
    partitions = partition_inputs(inputs, partition_size)
    done = set()
    if output is not None:
        manifest = _manifest(partitions, specs, z, format)
        done = _prepare_output(output, manifest, overwrite)
        if done:
            log.info("resuming: %d of %d partitions already in %s", len(done),
                     len(partitions), output)
    todo = [p for p in partitions if p["index"] not in done]
    results = {}
    failures = {}
    own = None
    if todo:
        if client is None:
            client, cluster = _local_client(n_workers)
            own = (client, cluster)
        bar = _Progress(len(partitions), len(done), progress)
        try:
            ests = [client.scatter(s, broadcast=True, hash=False)
                    if not isinstance(s, _Spec) else s for s in specs]
            futures = {}
            for part in todo:
                future = client.submit(_predict_partition, part, ests, z, pure=False,
                                       key=f"spectralnn-partition-{part['index']}-"
                                           f"{os.urandom(4).hex()}")
                futures[future] = part["index"]
            for future in distributed.as_completed(list(futures)):
                index = futures.pop(future)
                try:
                    table = future.result()
                except Exception as exc:  # noqa: BLE001 - reported together below
                    log.error("partition %d failed: %s", index, exc)
                    failures[index] = exc
                    continue
                finally:
                    future.release()
                if output is not None:
                    _write_part(table, _part_path(output, index, format), format)
                else:
                    results[index] = table
                bar.update(len(table))
                if callback is not None:
                    callback(index, table)
        except BaseException:
            for future in list(futures):
                future.cancel()
            raise
        finally:
            bar.close()
            if own is not None:
                _close_local(*own)
    if failures:
        first = min(failures)
        raise SpectralNNError(
            f"{len(failures)} of {len(partitions)} partitions failed (first: partition "
            f"{first}: {failures[first]})"
            + ("; the others are saved: call predict_many again to retry"
               if output is not None else ""))
    if output is not None:
        return read_partitions(output)
    return _join([results[i] for i in sorted(results)])


def _manifest(partitions, specs, z, fmt):
    described = [s.describe() if isinstance(s, _Spec) else _describe_instance(s)
                 for s in specs]
    from . import __version__

    body = {"partitions": partitions, "estimators": described, "z": z,
            "table_format": fmt}
    fingerprint = hashlib.sha256(json.dumps(body, sort_keys=True, default=str)
                                 .encode()).hexdigest()
    return {"format": _MANIFEST_FORMAT, "version": 1, "fingerprint": fingerprint,
            "n_partitions": len(partitions), "spectralnn_version": __version__, **body}
