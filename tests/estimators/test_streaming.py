"""Tests of spectralnn.estimators._streaming: streamed prediction and training."""

import numpy as np
import pytest

from spectralnn.batch import concatenate
from spectralnn.datasets import SpectrumDataset, example_spectrum, write_dataset
from spectralnn.estimators._streaming import (
    TrainingStream,
    is_dataset_input,
    iter_input_batches,
    split_dataset_rows,
)
from tests.estimators.conftest import TOY_OPTIONS, TOY_PREPROCESSING, make_toy_batch


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


# ------------------------------------------------------------------ training
def _spy_streams(monkeypatch):
    """Record every training stream `Estimator.fit` creates."""
    from spectralnn.estimators import base

    made = []
    real = base.training_stream

    def spy(*args, **kwargs):
        stream = real(*args, **kwargs)
        made.append(stream)
        return stream

    monkeypatch.setattr(base, "training_stream", spy)
    return made


@pytest.fixture(scope="module")
def toy_set(tmp_path_factory):
    """192 toy spectra (meta 'target', 'object_id' with 3 epochs per object) on disk."""
    batch, y = make_toy_batch(192, seed=5)
    batch.meta["target"] = y
    batch.meta["object_id"] = np.arange(192) // 3
    path = tmp_path_factory.mktemp("train") / "toy.h5"
    write_dataset(batch, path)
    return batch, y, path


def _plain_stream(path, rows, **options):
    from spectralnn.estimators import MassEstimator

    est = MassEstimator("resnet1d", preprocessing=TOY_PREPROCESSING, virial=False)
    ds = SpectrumDataset(path)
    settings = {"batch_size": 10, "chunk_size": 40, "shuffle": True, "seed": 1, **options}
    stream = TrainingStream(ds, rows, np.arange(len(rows), dtype=float)[:, None], est,
                            **settings)
    return ds, stream


def _epoch(stream):
    """The targets (= positions in rows) served in one epoch, and the weights."""
    parts = [stream[i] for i in range(len(stream))]
    return (np.concatenate([p[1][:, 0] for p in parts]).astype(int),
            np.concatenate([p[2] for p in parts]))


def test_stream_serves_every_row_once_per_epoch_in_bounded_chunks(toy_set):
    """Each epoch: every row once, a new seeded order, ≤ chunk_size rows preprocessed."""
    _, _, path = toy_set
    rows = np.arange(5, 190)
    ds, stream = _plain_stream(path, rows)
    with ds:
        assert len(stream) == 19  # ceil(185 / 10)
        first, weights = _epoch(stream)
        np.testing.assert_array_equal(np.sort(first), np.arange(len(rows)))
        np.testing.assert_array_equal(weights, 1.0)
        stream.set_epoch(1)
        second, _ = _epoch(stream)
        np.testing.assert_array_equal(np.sort(second), np.arange(len(rows)))
        assert not np.array_equal(first, second)  # reshuffled
        stream.set_epoch(0)
        again, _ = _epoch(stream)
        np.testing.assert_array_equal(again, first)  # the order is a function of the epoch
        assert max(stream.preprocessed) <= 40
        # each chunk is read once per epoch: about rows / chunk_size reads
        assert len(stream.preprocessed) <= 3 * int(np.ceil(len(rows) / 32))
        # without shuffling the file is read front to back
        _, plain = _plain_stream(path, rows, shuffle=False)
        in_order, _ = _epoch(plain)
        np.testing.assert_array_equal(in_order, np.arange(len(rows)))


def test_stream_repeats_and_unusable_rows(tmp_path):
    """Repeated rows are served twice; unusable ones get weight 0 (batch mean 1)."""
    batch, y = make_toy_batch(30, seed=6)
    batch.mask[[3, 17]] = True  # two spectra with no good pixel: unusable
    path = write_dataset(batch, tmp_path / "bad.h5")
    rows = np.r_[np.arange(30), [4, 4]]
    ds, stream = _plain_stream(path, rows, batch_size=8, chunk_size=16)
    with ds:
        served, weights = _epoch(stream)
        np.testing.assert_array_equal(np.sort(served), np.arange(32))
        unusable = np.isin(rows[served], [3, 17])
        assert np.all(weights[unusable] == 0) and np.all(weights[~unusable] > 0)
        for i in range(len(stream)):  # the loss is the mean over usable rows
            assert stream[i][2].mean() == pytest.approx(1.0)
        assert stream.n_unusable == 2
        assert max(stream.preprocessed) <= 16


def test_split_dataset_rows_keeps_objects_together(toy_set, tmp_path):
    _, _, path = toy_set
    with SpectrumDataset(path) as ds:
        rows = np.arange(len(ds))
        train, val, how = split_dataset_rows(ds, rows, 0.25, seed=3)
        ids = np.asarray(ds.read_meta(columns=["object_id"])["object_id"])
        assert not set(ids[train]) & set(ids[val])
        assert len(train) + len(val) == len(rows) and 0.1 < len(val) / len(rows) < 0.4
        assert "split_by_object" in how
        again = split_dataset_rows(ds, rows, 0.25, seed=3)
        np.testing.assert_array_equal(again[1], val)
        with pytest.raises(ValueError, match="fraction"):
            split_dataset_rows(ds, rows, 1.5, seed=3)
        assert split_dataset_rows(ds, rows, None, seed=3)[1] is None


def test_fit_streams_with_bounded_memory_and_matches_in_memory(toy_set, monkeypatch):
    """Streamed and in-memory training of the same network reach the same loss."""
    pytest.importorskip("keras")
    from spectralnn.estimators import MassEstimator

    batch, y, path = toy_set
    made = _spy_streams(monkeypatch)
    results = {}
    for mode, data in (("memory", batch), ("stream", path)):
        est = MassEstimator("resnet1d", preprocessing=TOY_PREPROCESSING,
                            architecture_options=TOY_OPTIONS, virial=False)
        est.fit(data, "target", epochs=5, batch_size=32, seed=0, validation=None,
                chunk_size=48)
        results[mode] = est
    (stream,) = made
    assert max(stream.preprocessed) <= 48
    # blocks of 32 rows (the file's HDF5 chunks): 6 chunks, each read once per
    # epoch (Keras asks for the batches in order), plus the first batch to
    # build the network and to infer the tensor shapes
    assert 5 * 6 <= len(stream.preprocessed) <= 5 * 6 + 3
    mem, streamed = results["memory"], results["stream"]
    assert len(streamed.history["loss"]) == 5
    # same data, same seed, different batch order: the NLL follows the same
    # path (measured: within 0.04 at every epoch)
    np.testing.assert_allclose(streamed.history["loss"], mem.history["loss"], atol=0.3)
    assert streamed.history["loss"][-1] < streamed.history["loss"][0] - 1.0
    rmse = {k: r.metadata["metrics"]["log_mbh"]["rmse"] for k, r in results.items()}
    assert rmse["stream"] == pytest.approx(rmse["memory"], abs=0.15)
    meta = streamed.metadata["training_set"]
    assert meta["streamed"] and meta["chunk_size"] == 48 and meta["n_train"] == 192

    # calibration and metrics stream too, and equal the in-memory numbers
    streamed.calibrate_uncertainties(batch, "target")
    in_memory = streamed.metadata["uncertainty"]["sigma_scale"]
    streamed.calibrate_uncertainties(path, "target")
    assert streamed.metadata["uncertainty"]["sigma_scale"] == pytest.approx(in_memory,
                                                                            rel=1e-4)
    with pytest.raises(ValueError, match="trained"):
        MassEstimator("resnet1d", preprocessing=TOY_PREPROCESSING,
                      virial=False).calibrate_uncertainties(path, "target")


def test_fit_uses_the_split_column_and_never_reads_test_rows(tmp_path, monkeypatch):
    pytest.importorskip("keras")
    from spectralnn.estimators import MassEstimator

    batch, y = make_toy_batch(48, seed=7)
    batch.meta["virial_log_mbh"] = y  # the mass estimator's default target column
    side = np.array(["train", "validation", "test"])[np.arange(48) % 3]
    batch.meta["split"] = side
    path = write_dataset(batch, tmp_path / "split.h5")
    seen = []
    read = SpectrumDataset.read

    def spy(self, index=None):
        part = read(self, index)
        seen.extend(np.atleast_1d(np.arange(48)[index]).tolist())
        return part

    monkeypatch.setattr(SpectrumDataset, "read", spy)
    est = MassEstimator("resnet1d", preprocessing=TOY_PREPROCESSING,
                        architecture_options=TOY_OPTIONS, virial=False)
    est.fit(path, epochs=1, batch_size=16, chunk_size=16, seed=0)
    meta = est.metadata["training_set"]
    assert (meta["n_train"], meta["n_validation"]) == (16, 16)
    assert "split column" in meta["validation_rows"]
    assert est.metadata["metrics"]["evaluated_on"] == "validation"
    assert not set(seen) & set(np.flatnonzero(side == "test"))


def test_fit_resumes_a_streamed_run(toy_set, tmp_path, monkeypatch):
    pytest.importorskip("keras")
    from spectralnn.estimators import MassEstimator

    _, _, path = toy_set
    made = _spy_streams(monkeypatch)
    options = {"batch_size": 32, "chunk_size": 64, "seed": 2, "validation": 0.2,
               "checkpoint_dir": tmp_path / "ckpt"}

    def new():
        return MassEstimator("resnet1d", preprocessing=TOY_PREPROCESSING,
                             architecture_options=TOY_OPTIONS, virial=False)

    new().fit(path, "target", epochs=1, **options)
    est = new().fit(path, "target", epochs=2, resume=True, **options)
    assert len(est.history["loss"]) == 2
    assert made[-1].epoch == 1  # the resumed epoch was served in epoch 1's order


def test_train_command_streams(tmp_path):
    """``spectralnn train mass --stream`` trains, calibrates and records the split."""
    pytest.importorskip("keras")
    from spectralnn.cli import main
    from spectralnn.estimators import MassEstimator

    batch, y = make_toy_batch(60, seed=8)
    batch.meta["target"] = y
    data = write_dataset(batch, tmp_path / "toy.h5")
    out = tmp_path / "mass.keras"
    options = ('{"filters": 4, "stages": 1, "dense_units": 8}')
    args = ["train", "mass", "--data", str(data), "-o", str(out), "--target", "target",
            "--epochs", "2", "--batch-size", "16", "--options", options, "--stream",
            "--chunk-size", "24", "--validation", "0.25", "--seed", "1"]
    assert main(args) == 0
    meta = MassEstimator(out).metadata
    assert meta["training_set"]["streamed"] and meta["training_set"]["n_spectra"] == 60
    assert "split_by_object" in meta["training_set"]["validation_rows"]
    n_val = meta["training_set"]["n_validation"]
    assert meta["uncertainty"]["n"] == meta["metrics"]["log_mbh"]["n"] == n_val > 0
