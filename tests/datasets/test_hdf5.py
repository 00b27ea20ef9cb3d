import shutil

import h5py
import numpy as np
import pytest
from astropy import units as u
from astropy.table import QTable

from spectralnn import SpectrumBatch
from spectralnn.datasets import (
    DatasetWriter,
    SpectrumDataset,
    read_dataset,
    write_dataset,
)
from spectralnn.errors import DatasetError
from spectralnn.simulate import simulate_stars


@pytest.fixture(scope="module")
def batch():
    return simulate_stars(12, seed=3)


def test_round_trip_exact_float64(batch, tmp_path):
    path = write_dataset(batch, tmp_path / "a.h5", dtype="float64",
                         provenance={"generator": "test", "seed": 3})
    back = read_dataset(path)
    assert back.flux.tobytes() == batch.flux.tobytes()
    assert back.ivar.tobytes() == batch.ivar.tobytes()
    assert np.array_equal(back.mask, batch.mask)
    assert np.array_equal(back.wavelength, batch.wavelength)
    assert back.flux_unit == batch.flux_unit
    for name in batch.meta.colnames:
        assert np.all(back.meta[name] == batch.meta[name]), name
    assert back.meta["teff"].unit == u.K
    with SpectrumDataset(path) as ds:
        assert ds.provenance["seed"] == 3 and ds.provenance["schema_version"] == 1


def test_round_trip_float32_and_chunks(batch, tmp_path):
    with DatasetWriter(tmp_path / "b.h5", chunk_rows=4) as w:
        w.append(batch[:5])
        w.append(batch[5:])
    with SpectrumDataset(tmp_path / "b.h5") as ds:
        assert len(ds) == 12
        part = ds.read([7, 1, 7])
        assert np.array_equal(part.flux, batch.flux[[7, 1, 7]].astype(np.float32))
        assert part.meta["object_id"].tolist() == [7, 1, 7]


def test_iter_batches(batch, tmp_path):
    path = write_dataset(batch, tmp_path / "c.h5")
    with SpectrumDataset(path) as ds:
        ids = [b.meta["object_id"].tolist() for b in ds.iter_batches(5)]
        assert ids == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9], [10, 11]]
        a = np.concatenate([b.meta["object_id"] for b in ds.iter_batches(5, shuffle=True,
                                                                         seed=1)])
        b = np.concatenate([b.meta["object_id"] for b in ds.iter_batches(5, shuffle=True,
                                                                         seed=1)])
        assert a.tolist() == b.tolist() and sorted(a.tolist()) == list(range(12))
        sub = [len(b) for b in ds.iter_batches(2, indices=[3, 4, 5], drop_last=True)]
        assert sub == [2]


def test_new_columns_between_chunks(tmp_path):
    wave = np.arange(4000.0, 4010.0) * u.AA
    a = SpectrumBatch(wave, np.ones((2, 10)), np.ones((2, 10)), flux_unit=u.one,
                      meta=QTable({"object_id": [1, 2]}))
    b = SpectrumBatch(wave, np.ones((1, 10)), np.ones((1, 10)), flux_unit=u.one,
                      meta=QTable({"object_id": [3], "z": [0.5], "class": ["QSO"]}))
    write_dataset([a, b], tmp_path / "d.h5")
    meta = read_dataset(tmp_path / "d.h5").meta
    assert meta["class"].tolist() == ["", "", "QSO"]
    assert np.isnan(meta["z"][0]) and meta["z"][2] == 0.5


def test_grid_mismatch(batch, tmp_path):
    other = SpectrumBatch(np.arange(4000.0, 4010.0) * u.AA, np.ones((1, 10)),
                          np.ones((1, 10)), flux_unit=batch.flux_unit)
    with pytest.raises(DatasetError, match="wavelength grid|pixels"):
        with DatasetWriter(tmp_path / "e.h5") as w:
            w.append(batch)
            w.append(other)
    # the interrupted file is refused unless asked for
    with pytest.raises(DatasetError, match="not closed"):
        SpectrumDataset(tmp_path / "e.h5")
    with SpectrumDataset(tmp_path / "e.h5", allow_partial=True) as ds:
        assert len(ds) == len(batch)


def test_truncated_file(batch, tmp_path):
    path = write_dataset(batch, tmp_path / "f.h5")
    cut = tmp_path / "cut.h5"
    shutil.copy(path, cut)
    size = cut.stat().st_size
    with open(cut, "r+b") as fh:
        fh.truncate(size // 2)
    with pytest.raises(DatasetError, match="truncated"):
        with SpectrumDataset(cut) as ds:
            ds.read()


def test_foreign_file(tmp_path):
    path = tmp_path / "foreign.h5"
    with h5py.File(path, "w") as f:
        f["flux"] = np.ones((2, 3))
    with pytest.raises(DatasetError, match="not a spectralnn dataset"):
        SpectrumDataset(path)
    text = tmp_path / "text.h5"
    text.write_text("not hdf5")
    with pytest.raises(DatasetError, match="cannot open"):
        SpectrumDataset(text)
    with pytest.raises(DatasetError, match="does not exist"):
        SpectrumDataset(tmp_path / "missing.h5")


def test_newer_schema(batch, tmp_path):
    path = write_dataset(batch, tmp_path / "g.h5")
    with h5py.File(path, "a") as f:
        f.attrs["schema_version"] = 99
    with pytest.raises(DatasetError, match="schema version 99"):
        SpectrumDataset(path)


def test_overwrite_refused(batch, tmp_path):
    path = write_dataset(batch, tmp_path / "h.h5")
    with pytest.raises(DatasetError, match="exists"):
        write_dataset(batch, path)
