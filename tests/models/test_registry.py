"""Tests of spectralnn.models.registry: hashes, metadata, safe loading."""

import json

import numpy as np
import pytest

from spectralnn.errors import ModelFileError
from spectralnn.models import file_sha256, list_models, load_model, save_model
from spectralnn.models.registry import validate_metadata

keras = pytest.importorskip("keras")


def toy_metadata():
    """Complete metadata (except what save_model fills in) of a toy model."""
    return {
        "name": "toy",
        "version": "0.1.0",
        "task": "black_hole_mass",
        "architecture": {"name": "resnet1d", "options": {"filters": 4, "stages": 1}},
        "preprocessing": {"steps": ["normalize"]},
        "target": {"names": ["log_mbh"], "units": ["dex(solMass)"]},
        "training_set": {"description": "none: untrained"},
        "metrics": {},
    }


@pytest.fixture
def metadata():
    """A fresh copy of the toy metadata."""
    return toy_metadata()


@pytest.fixture
def saved_model(tmp_path):
    """Path of a tiny untrained model saved with its metadata."""
    pytest.importorskip("keras")
    from spectralnn.models import build_model, save_model

    model = build_model("resnet1d", 32, options={"filters": 4, "stages": 1}, seed=0)
    return save_model(model, tmp_path / "toy", toy_metadata())


def test_save_load_round_trip(saved_model):
    meta = json.loads(saved_model.with_suffix(".json").read_text())
    assert meta["sha256"] == file_sha256(saved_model)
    assert meta["keras_version"] == keras.__version__
    assert meta["backend"] == keras.backend.backend()
    loaded = load_model(saved_model, task="black_hole_mass")
    x = np.random.default_rng(0).normal(size=(3, 32, 2)).astype("float32")
    original = keras.saving.load_model(saved_model, safe_mode=True)
    np.testing.assert_allclose(np.asarray(loaded.model(x)), np.asarray(original(x)),
                               atol=1e-6)
    assert loaded.metadata["name"] == "toy"


def test_hash_mismatch_raises(saved_model):
    meta_path = saved_model.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    meta["sha256"] = "0" * 64
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ModelFileError, match="sha256 .* corrupt or was replaced"):
        load_model(saved_model)


def test_tampered_file_raises(saved_model):
    with open(saved_model, "ab") as handle:
        handle.write(b"tampered")
    with pytest.raises(ModelFileError, match="sha256"):
        load_model(saved_model)


def test_wrong_task_raises(saved_model):
    with pytest.raises(ModelFileError, match="is for task 'black_hole_mass'"):
        load_model(saved_model, task="redshift")


def test_missing_files(tmp_path, saved_model):
    with pytest.raises(ModelFileError, match="does not exist"):
        load_model(tmp_path / "nothing.keras")
    saved_model.with_suffix(".json").unlink()
    with pytest.raises(ModelFileError, match="metadata file .* is missing"):
        load_model(saved_model)
    with pytest.raises(ModelFileError, match="no model 'nope' is installed"):
        load_model("nope")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m.pop("task"), "missing required keys: task"),
        (lambda m: m.update(version=1), "'version' must be of type str"),
        (lambda m: m.update(sha256="xyz"), "not a 64-digit hex digest"),
        (lambda m: m["target"].update(units=["parsecs of joy"]), "not a valid unit"),
        (lambda m: m["target"].update(units=[]), "equal length"),
        (lambda m: m["preprocessing"].update(steps=["shake"]), "unknown preprocessing"),
        (lambda m: m["preprocessing"].update(steps=["normalize", "deredden"]),
         "in the order"),
        (lambda m: m.update(format_version=99), "newer than this spectralnn"),
        (lambda m: m.update(architecture={"options": {}}), "string 'name'"),
    ],
)
def test_metadata_validation(metadata, change, message):
    metadata.update(format_version=1, sha256="a" * 64, keras_version="3", backend="jax")
    validate_metadata(metadata)  # complete metadata passes
    change(metadata)
    with pytest.raises(ModelFileError, match=message):
        validate_metadata(metadata)


def test_invalid_metadata_is_not_saved(tmp_path, metadata):
    from spectralnn.models import build_model

    metadata["preprocessing"] = {"steps": ["resample"]}  # no grid
    model = build_model("resnet1d", 32, options={"filters": 4, "stages": 1})
    with pytest.raises(ModelFileError, match="needs a 'grid'"):
        save_model(model, tmp_path / "bad", metadata)
    assert not list(tmp_path.iterdir())


def test_lambda_layer_is_refused(tmp_path, metadata):
    # a Lambda layer carries Python bytecode: safe mode must never run it
    inputs = keras.Input((32, 2))
    outputs = keras.layers.Lambda(lambda t: t * 2.0)(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(outputs)))
    path = save_model(model, tmp_path / "evil", metadata)  # valid hash and metadata
    with pytest.raises(ModelFileError, match="could not load .* safely"):
        load_model(path)


def test_list_models_is_a_table():
    table = list_models()
    assert table.colnames == ["name", "version", "task", "architecture", "path"]
