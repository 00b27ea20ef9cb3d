"""Tests of spectralnn.estimators._streaming.iter_input_batches."""

import numpy as np
import pytest

from spectralnn.batch import concatenate
from spectralnn.datasets import SpectrumDataset, example_spectrum, write_dataset
from spectralnn.estimators._streaming import is_dataset_input, iter_input_batches
from tests.estimators.conftest import make_toy_batch


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    batch, _ = make_toy_batch(7, seed=3)
    path = tmp_path_factory.mktemp("stream") / "toy.h5"
    write_dataset(batch, path)
    return batch, path


@pytest.mark.parametrize("kind", ["path", "str", "dataset", "batch"])
def test_chunks_cover_every_spectrum_once(toy, kind):
    batch, path = toy
    obj = {"path": path, "str": str(path), "batch": batch}.get(kind)
    if kind == "dataset":
        obj = SpectrumDataset(path)
    chunks = list(iter_input_batches(obj, 3))
    assert [len(c) for c in chunks] == [3, 3, 1]
    joined = concatenate(chunks)
    # float32 storage in the dataset: equal to float32 precision
    np.testing.assert_allclose(joined.flux, batch.flux, rtol=1e-6)
    np.testing.assert_array_equal(joined.meta["object_id"], batch.meta["object_id"])
    if kind == "dataset":
        obj.close()


def test_single_spectrum_and_validation():
    chunks = list(iter_input_batches(example_spectrum(), 10))
    assert len(chunks) == 1 and len(chunks[0]) == 1
    with pytest.raises(ValueError, match="batch_size"):
        list(iter_input_batches(example_spectrum(), 0))
    assert is_dataset_input("a.hdf5") and not is_dataset_input("a.fits")


def test_estimator_predicts_a_dataset_by_streaming(toy):
    """predict(path.h5) streams in chunks and equals the in-memory prediction."""
    pytest.importorskip("keras")
    from tests._tiny_mass_model import train_tiny_mass_estimator

    batch, path = toy
    est = train_tiny_mass_estimator()
    est.batch_size = 3  # 7 spectra -> chunks of 3, 3, 1
    try:
        z = np.asarray(batch.meta["z"], dtype=float)
        streamed = est.predict(path, z=z)
        with SpectrumDataset(path) as ds:
            whole = est.predict(ds.read(slice(None)), z=z)
    finally:
        est.batch_size = 256
    assert len(streamed) == 7
    np.testing.assert_allclose(streamed["log_mbh"].value, whole["log_mbh"].value,
                               rtol=0, atol=1e-5)
    assert streamed.meta["task"] == whole.meta["task"]
