"""
The weights registry: saving, finding, verifying and loading models.

A spectralnn model is two files side by side:

``<name>.keras``
    The Keras 3 model (architecture, weights, optimiser state).
``<name>.json``
    Its metadata: name, version, task, architecture, preprocessing (with the
    input wavelength grid), target definition, training-set description,
    metrics, the sha256 of the ``.keras`` file, the Keras version and the
    backend it was trained on.

Shipped models live in ``spectralnn/data/weights/`` and are found with
`astropy.utils.data.get_pkg_data_path`; nothing is downloaded at run time.
Loading checks the sha256 first (a mismatch raises
`~spectralnn.errors.ModelFileError`), validates the metadata, and reads the
model with ``keras.saving.load_model(..., safe_mode=True)`` so that a file
cannot run arbitrary Python code (``Lambda`` layers are refused).

Keras is imported only by `load_model` and `save_model`.

Examples
--------
>>> from spectralnn.models.registry import list_models
>>> len(list_models()) >= 0
True
"""

import datetime
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from astropy import units as u
from astropy.table import Table
from astropy.utils.data import get_pkg_data_path

from ..errors import ModelFileError
from ..logger import log
from ._compat import keras_numpy_warnings
from .pipeline import validate_preprocessing

__all__ = [
    "METADATA_FORMAT_VERSION",
    "LoadedModel",
    "file_sha256",
    "find_model",
    "list_models",
    "load_model",
    "save_model",
    "validate_metadata",
]

#: Version of the metadata layout written by `save_model`.
METADATA_FORMAT_VERSION = 1

#: Required metadata keys and their JSON types.
_REQUIRED = {
    "format_version": int,
    "name": str,
    "version": str,
    "task": str,
    "architecture": dict,
    "preprocessing": dict,
    "target": dict,
    "training_set": dict,
    "metrics": dict,
    "sha256": str,
    "keras_version": str,
    "backend": str,
}

_WEIGHTS_DIR = ("data", "weights")


@dataclass
class LoadedModel:
    """
    A Keras model together with its validated metadata.

    Attributes
    ----------
    model : `keras.Model`
        The network.
    metadata : dict
        Validated metadata (see `validate_metadata`).
    path : `~pathlib.Path` or None
        The ``.keras`` file it was read from (None if built in memory).

    Examples
    --------
    .. doctest-requires:: keras

        >>> from spectralnn.models import load_model
        >>> loaded = load_model("mass-default")
        >>> loaded.metadata["task"], loaded.path.name, len(loaded.sha256)
        ('black_hole_mass', 'mass-default.keras', 64)
    """

    model: object
    metadata: dict
    path: Path | None = field(default=None)

    @property
    def sha256(self):
        """The sha256 of the ``.keras`` file (from the metadata)."""
        return self.metadata.get("sha256", "")


def file_sha256(path):
    """
    The sha256 hex digest of a file, read in chunks.

    Parameters
    ----------
    path : str or `~pathlib.Path`
        The file.

    Returns
    -------
    digest : str
        64 hexadecimal characters.

    Examples
    --------
    >>> import tempfile, os
    >>> with tempfile.NamedTemporaryFile(delete=False) as f:
    ...     _ = f.write(b"spectralnn")
    >>> file_sha256(f.name)[:12]
    'ae41cf4d2ffe'
    >>> os.remove(f.name)
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def validate_metadata(metadata):
    """
    Check a model's metadata: required keys, their types and contents.

    Parameters
    ----------
    metadata : dict
        The metadata as read from the JSON file.

    Returns
    -------
    metadata : dict
        The same dictionary (not copied), for chaining.

    Raises
    ------
    spectralnn.errors.ModelFileError
        If a key is missing, has the wrong type, or an entry is unusable
        (unknown preprocessing step, bad grid, unknown target unit,
        malformed sha256).

    Examples
    --------
    >>> validate_metadata({"name": "x"})
    Traceback (most recent call last):
    ...
    spectralnn.errors.ModelFileError: model metadata is missing required keys: ...
    """
    if not isinstance(metadata, dict):
        raise ModelFileError(f"model metadata must be a JSON object, got {type(metadata).__name__}")
    missing = [key for key in _REQUIRED if key not in metadata]
    if missing:
        raise ModelFileError(f"model metadata is missing required keys: {', '.join(missing)}")
    for key, kind in _REQUIRED.items():
        value = metadata[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ModelFileError(
                f"model metadata key {key!r} must be of type {kind.__name__}, "
                f"got {type(value).__name__}"
            )
    if metadata["format_version"] > METADATA_FORMAT_VERSION:
        raise ModelFileError(
            f"model metadata format {metadata['format_version']} is newer than this "
            f"spectralnn understands ({METADATA_FORMAT_VERSION}); upgrade spectralnn"
        )
    sha = metadata["sha256"]
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise ModelFileError(f"model metadata sha256 is not a 64-digit hex digest: {sha!r}")
    arch = metadata["architecture"]
    if not isinstance(arch.get("name"), str) or not isinstance(arch.get("options", {}), dict):
        raise ModelFileError(
            "model metadata 'architecture' needs a string 'name' and a dict 'options'"
        )
    target = metadata["target"]
    names = target.get("names")
    units = target.get("units")
    if (
        not isinstance(names, list)
        or not names
        or not all(isinstance(n, str) for n in names)
        or not isinstance(units, list)
        or len(units) != len(names)
    ):
        raise ModelFileError(
            "model metadata 'target' needs lists 'names' and 'units' of equal length"
        )
    for unit in units:
        try:
            u.Unit(unit)
        except ValueError as exc:
            raise ModelFileError(f"model metadata target unit {unit!r} is not a valid unit") from exc
    try:
        validate_preprocessing(metadata["preprocessing"])
    except (ValueError, TypeError) as exc:
        raise ModelFileError(f"model metadata 'preprocessing' is invalid: {exc}") from exc
    return metadata


def _custom_objects():
    """The spectralnn Keras classes, registered and passed explicitly."""
    from .heads import GaussianNLL, HeteroscedasticHead, gaussian_nll
    from .layers import MaskedAttentionPooling

    return {
        "spectralnn>HeteroscedasticHead": HeteroscedasticHead,
        "spectralnn>GaussianNLL": GaussianNLL,
        "spectralnn>gaussian_nll": gaussian_nll,
        "spectralnn>MaskedAttentionPooling": MaskedAttentionPooling,
    }


def _paths(path):
    """(.keras path, .json path) for a path given with either suffix or none."""
    path = Path(path)
    if path.suffix in (".keras", ".json"):
        stem = path.with_suffix("")
    else:
        stem = path
    return stem.with_suffix(".keras"), stem.with_suffix(".json")


def find_model(name):
    """
    Path of a shipped model's ``.keras`` file.

    Parameters
    ----------
    name : str
        Model name, e.g. ``'mass-default'``.

    Returns
    -------
    path : `~pathlib.Path`
        The ``.keras`` file in ``spectralnn/data/weights/``.

    Raises
    ------
    spectralnn.errors.ModelFileError
        If no such model is installed.

    Examples
    --------
    >>> find_model("no-such-model")
    Traceback (most recent call last):
    ...
    spectralnn.errors.ModelFileError: no model 'no-such-model' is installed ...
    """
    path = Path(get_pkg_data_path(*_WEIGHTS_DIR, f"{name}.keras", package="spectralnn"))
    if not path.is_file() or not path.with_suffix(".json").is_file():
        available = [row["name"] for row in list_models()]
        raise ModelFileError(
            f"no model {name!r} is installed in {path.parent} (installed: "
            f"{available or 'none'})"
        )
    return path


def list_models():
    """
    The models shipped in ``spectralnn/data/weights/``.

    Returns
    -------
    table : `~astropy.table.Table`
        Columns ``name``, ``version``, ``task``, ``architecture``, ``path``;
        one row per ``.json``/``.keras`` pair (possibly empty).

    Examples
    --------
    >>> list_models().colnames
    ['name', 'version', 'task', 'architecture', 'path']
    """
    folder = Path(get_pkg_data_path(*_WEIGHTS_DIR, package="spectralnn"))
    rows = []
    if folder.is_dir():
        for meta_path in sorted(folder.glob("*.json")):
            if not meta_path.with_suffix(".keras").is_file():
                continue
            try:
                meta = json.loads(meta_path.read_text())
            except (OSError, ValueError):
                log.warning("unreadable model metadata %s skipped", meta_path)
                continue
            rows.append((
                meta_path.stem,
                str(meta.get("version", "")),
                str(meta.get("task", "")),
                str(meta.get("architecture", {}).get("name", "")),
                str(meta_path.with_suffix(".keras")),
            ))
    names = ["name", "version", "task", "architecture", "path"]
    if not rows:
        return Table(names=names, dtype=[str] * 5)
    return Table(rows=rows, names=names)


def read_json(path, what="model metadata"):
    """
    Read a JSON file of a shipped or user model (internal).

    Raises `~spectralnn.errors.ModelFileError` (naming ``what``) when the file
    is missing or not valid JSON.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{what} file {path} is missing")
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise ModelFileError(f"{what} {path} is not valid JSON: {exc}") from exc


def read_metadata(path):
    """Read and validate the JSON metadata beside a ``.keras`` file (internal)."""
    _, meta_path = _paths(path)
    return validate_metadata(read_json(meta_path))


def load_model(name_or_path, *, task=None, compile=True):
    """
    Load a model: verify its sha256, validate its metadata, read it safely.

    Parameters
    ----------
    name_or_path : str or `~pathlib.Path`
        A shipped model name (see `list_models`) or the path of a ``.keras``
        file (or of its ``.json`` metadata, or their common stem).
    task : str, optional
        If given, the metadata ``task`` must equal it.
    compile : bool, optional
        Restore the training configuration (loss, optimiser). Default True.

    Returns
    -------
    loaded : `LoadedModel`
        The Keras model and its metadata.

    Raises
    ------
    spectralnn.errors.ModelFileError
        If a file is missing, the sha256 does not match, the metadata is
        invalid, the task differs, or Keras refuses the file (for example a
        ``Lambda`` layer, which safe mode never deserialises).

    Examples
    --------
    >>> load_model("no-such-model")
    Traceback (most recent call last):
    ...
    spectralnn.errors.ModelFileError: no model 'no-such-model' is installed ...
    """
    text = os.fspath(name_or_path)
    # a bare name always means an installed model: a file of that name in the
    # working directory must not shadow the shipped, hash-checked weights
    looks_like_path = (
        isinstance(name_or_path, os.PathLike)
        or os.sep in text
        or text.endswith((".keras", ".json"))
    )
    keras_path = _paths(text)[0] if looks_like_path else find_model(text)
    if not keras_path.is_file():
        raise ModelFileError(f"model file {keras_path} does not exist")
    metadata = read_metadata(keras_path)
    digest = file_sha256(keras_path)
    if digest != metadata["sha256"]:
        raise ModelFileError(
            f"sha256 of {keras_path} is {digest} but its metadata says "
            f"{metadata['sha256']}: the file is corrupt or was replaced"
        )
    if task is not None and metadata["task"] != task:
        raise ModelFileError(
            f"model {metadata['name']!r} is for task {metadata['task']!r}, not {task!r}"
        )

    import keras

    try:
        with keras_numpy_warnings():
            model = keras.saving.load_model(
                keras_path, custom_objects=_custom_objects(), compile=compile,
                safe_mode=True,
            )
    except (ValueError, TypeError, KeyError, OSError) as exc:
        raise ModelFileError(f"Keras could not load {keras_path} safely: {exc}") from exc
    log.debug("loaded model %s (sha256 %s) from %s", metadata["name"], digest[:12], keras_path)
    return LoadedModel(model=model, metadata=metadata, path=keras_path)


def save_model(model, path, metadata):
    """
    Write a model as ``<path>.keras`` plus ``<path>.json`` metadata.

    The sha256 of the written ``.keras`` file, the Keras version, the backend,
    the metadata format version, the spectralnn version and the creation time
    are filled in; the completed metadata is validated before it is written.

    Parameters
    ----------
    model : `keras.Model`
        The network.
    path : str or `~pathlib.Path`
        Destination; a ``.keras`` or ``.json`` suffix is replaced.
    metadata : dict
        Everything else required by `validate_metadata` (name, version, task,
        architecture, preprocessing, target, training_set, metrics). Not
        modified.

    Returns
    -------
    path : `~pathlib.Path`
        The written ``.keras`` file.

    Raises
    ------
    spectralnn.errors.ModelFileError
        If the completed metadata is invalid (nothing is left behind).

    Examples
    --------
    Re-save the shipped mass model under a new name:

    .. doctest-requires:: keras

        >>> from spectralnn.models import load_model, save_model
        >>> shipped = load_model("mass-default")
        >>> metadata = dict(shipped.metadata, name="my-mass", version="0.1.0")
        >>> path = save_model(shipped.model, getfixture("tmp_path") / "my-mass", metadata)
        >>> sorted(p.name for p in path.parent.iterdir())
        ['my-mass.json', 'my-mass.keras']
        >>> load_model(path).metadata["name"]
        'my-mass'
    """
    import keras

    from .. import __version__

    keras_path, meta_path = _paths(path)
    keras_path.parent.mkdir(parents=True, exist_ok=True)
    full = json.loads(json.dumps(metadata))  # deep copy, and proves it is JSON
    full.setdefault("format_version", METADATA_FORMAT_VERSION)
    full["keras_version"] = keras.__version__
    full["backend"] = keras.backend.backend()
    full["spectralnn_version"] = __version__
    full["created"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    full["sha256"] = "0" * 64
    validate_metadata(full)  # before writing anything
    tmp = keras_path.with_name(keras_path.stem + ".tmp.keras")
    try:
        with keras_numpy_warnings():
            model.save(tmp)
        full["sha256"] = file_sha256(tmp)
        os.replace(tmp, keras_path)
    finally:
        if tmp.exists():
            tmp.unlink()
    meta_path.write_text(json.dumps(full, indent=2, sort_keys=True) + "\n")
    log.info("saved model %s to %s", full["name"], keras_path)
    return keras_path
