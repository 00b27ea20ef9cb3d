"""
predict_many on a 2-worker LocalCluster: serial equality, a killed worker, resume.

The 2,000 spectra are simulated quasars (spectralnn.simulate) written as four
HDF5 dataset files; the network is the tiny test MassEstimator of
tests/_tiny_mass_model.py (a narrow grid around Hβ), saved to a .keras file
that every worker loads, so that the cluster's time goes to the machinery under
test rather than to a large network.
"""

import json
import os
import signal
import warnings

import numpy as np
import pytest
from astropy import units as u
from astropy.table import QTable, vstack

from spectralnn.datasets import DatasetWriter, write_dataset
from spectralnn.errors import BatchItemWarning, SpectralNNError
from tests.datasets.test_catalog import write_sdss_like

distributed = pytest.importorskip("distributed")

from spectralnn.distributed import (  # noqa: E402
    WORKER_ENVIRONMENT,
    partition_inputs,
    predict_many,
    read_partitions,
)

N_FILES, ROWS_PER_FILE, PARTITION = 4, 500, 100  # 2,000 spectra, 20 partitions


def _spectra(n_unique=125, copies=16, seed=3):
    """2,000 distinct quasar spectra: 125 simulated, each at 16 flux scales."""
    from spectralnn.simulate import simulate_quasars

    # Hβ on the SDSS grid (the tiny network looks at 4600-5200 Å rest frame)
    base = simulate_quasars(n_unique, seed=seed, survey="SDSS", z_range=(0.1, 0.7),
                            bal_fraction=0.0, dla_rate=0.0)
    parts = []
    for k in range(copies):
        meta = QTable(base.meta, copy=True)
        meta["object_id"] = np.arange(n_unique) + k * n_unique
        scale = 1.0 + 0.125 * k
        parts.append(base.copy(flux=base.flux * scale, ivar=base.ivar / scale**2,
                               meta=meta))
    return parts


@pytest.fixture(scope="module")
def h5_files(tmp_path_factory):
    """2,000 simulated spectra written as 4 spectralnn HDF5 files of 500."""
    folder = tmp_path_factory.mktemp("dist_h5")
    parts = _spectra()
    paths = []
    per_file = len(parts) // N_FILES
    for i in range(N_FILES):
        path = folder / f"qso-{i}.h5"
        with DatasetWriter(path) as w:
            for part in parts[i * per_file:(i + 1) * per_file]:
                w.append(part)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny test network, saved; SPEC builds it from the file on the workers."""
    from tests._tiny_mass_model import save_tiny_mass_model

    est, path = save_tiny_mass_model(tmp_path_factory.mktemp("tiny"))
    return est, ("mass", {"model": str(path), "virial": False})


@pytest.fixture(scope="module")
def serial(h5_files, tiny):
    """The serial path: Estimator.predict on each file in turn."""
    est, _ = tiny
    table = vstack([est.predict(p) for p in h5_files], metadata_conflicts="silent")
    return QTable(table), est


@pytest.fixture(scope="module")
def client():
    """A LocalCluster of 2 single-threaded worker processes (nannies restart them)."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address="127.0.0.1:0", silence_logs=50,
                                  env=dict(WORKER_ENVIRONMENT),
                                  preload=["spectralnn.distributed"]) as cluster:
        with distributed.Client(cluster) as c:
            yield c


def assert_same(table, reference):
    assert table.colnames == reference.colnames
    assert len(table) == len(reference)
    for name in reference.colnames:
        a, b = table[name], reference[name]
        assert getattr(a, "unit", None) == getattr(b, "unit", None), name
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=name)


def assert_every_row_once(table, n=N_FILES * ROWS_PER_FILE):
    ids = np.asarray(table["object_id"])
    assert len(ids) == n
    np.testing.assert_array_equal(ids, np.arange(n))  # once each, in input order


def test_partitions_cover_the_input(h5_files, tmp_path):
    parts = partition_inputs(h5_files, PARTITION)
    assert len(parts) == 20
    assert [p["index"] for p in parts] == list(range(20))
    assert sum(p["stop"] - p["start"] for p in parts) == 2000
    # files are grouped; a folder is listed in name order
    for i in range(5):
        (tmp_path / f"spec-{i}.fits").write_bytes(b"")
    files = partition_inputs(tmp_path, 2)
    assert [len(p["paths"]) for p in files] == [2, 2, 1]
    assert files[0]["paths"][0].endswith("spec-0.fits")
    with pytest.raises(ValueError, match="partition_size"):
        partition_inputs(h5_files, 0)
    with pytest.raises(TypeError, match="Estimator.predict"):
        partition_inputs([object()])


def test_cluster_equals_serial(client, h5_files, serial, tiny, tmp_path):
    reference, _ = serial
    _, spec = tiny
    out = tmp_path / "run"
    table = predict_many(h5_files, [spec], client=client, output=out,
                         partition_size=PARTITION, progress=False)
    assert_every_row_once(table)
    assert_same(table, reference)
    assert table.meta["model_name"] == "tiny-mass"
    assert np.isfinite(table["log_mbh"].value).mean() > 0.9
    assert len(list(out.glob("part-*.ecsv"))) == 20
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["n_partitions"] == 20
    # in memory (no output folder): the same rows
    n = ROWS_PER_FILE
    assert_same(predict_many(h5_files[0], [spec], client=client, partition_size=200,
                             progress=False), reference[:n])


def test_interrupted_run_resumes(client, h5_files, serial, tiny, tmp_path):
    reference, _ = serial
    _, spec = tiny
    out = tmp_path / "run"
    seen = []

    def interrupt(index, table):
        seen.append(index)
        if len(seen) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        predict_many(h5_files, [spec], client=client, output=out,
                     partition_size=PARTITION, callback=interrupt, progress=False)
    assert len(list(out.glob("part-*.ecsv"))) == 3
    with pytest.raises(SpectralNNError, match="missing"):
        read_partitions(out)
    (out / "part-00019.ecsv.tmp").write_text("torn write")  # a crash mid-write
    resumed = []
    table = predict_many(h5_files, [spec], client=client, output=out,
                         partition_size=PARTITION, progress=False,
                         callback=lambda i, t: resumed.append(i))
    assert sorted(resumed + seen) == list(range(20))  # only the missing ones ran
    assert not list(out.glob("*.tmp"))
    assert_every_row_once(table)
    assert_same(table, reference)
    assert_same(read_partitions(out), reference)
    # another run's folder is not silently mixed in
    with pytest.raises(SpectralNNError, match="another predict_many run"):
        predict_many(h5_files, [spec], client=client, output=out, partition_size=50,
                     progress=False)


def test_fits_files_and_an_estimator_instance(client, serial, tmp_path):
    """Spectrum files in groups; a (pickled) estimator instance shipped to workers."""
    _, est = serial
    batch = _spectra(n_unique=12, copies=1, seed=8)[0]
    paths = []
    for i in range(len(batch)):
        path = tmp_path / f"spec-0500-51000-{i + 1:04d}.fits"
        write_sdss_like(path, batch.wavelength, batch.flux[i], batch.ivar[i], 500, 51000,
                         i + 1, float(batch.meta["z"][i]))
        paths.append(path)
    (tmp_path / "spec-0500-51000-0999.fits").write_bytes(b"not a FITS file")
    paths.append(tmp_path / "spec-0500-51000-0999.fits")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BatchItemWarning)  # the unreadable file
        reference = est.predict([str(p) for p in paths])
    table = predict_many(tmp_path, [est], client=client, partition_size=5,
                         progress=False)
    assert list(table["source"]) == [p.name for p in paths]
    assert_same(table, reference)
    assert table["flags"][-1] != 0 and np.isnan(table["log_mbh"][-1].value)


def test_several_estimators_side_by_side(client, h5_files, serial, tiny):
    """Two estimators in one pass: id columns once, clashing names prefixed."""
    reference, _ = serial
    _, spec = tiny
    again = (spec[0], {**spec[1], "batch_size": 64})
    table = predict_many(h5_files[0], [spec, again], client=client, partition_size=250,
                         progress=False)
    n = ROWS_PER_FILE
    np.testing.assert_array_equal(table["log_mbh"], reference["log_mbh"][:n])
    np.testing.assert_array_equal(table["black_hole_mass_log_mbh"], table["log_mbh"])
    assert "black_hole_mass_flags" in table.colnames
    assert table["log_mbh"].unit == u.dex(u.M_sun)


def test_cli_predict_on_a_cluster(client, h5_files, serial, tiny, tmp_path):
    from spectralnn.cli import main

    reference, _ = serial
    _, spec = tiny
    out = tmp_path / "masses.ecsv"
    address = client.scheduler.address
    argv = ["predict", "mass", str(h5_files[0]), "-o", str(out), "--no-virial",
            "--model", spec[1]["model"], "--scheduler", address,
            "--partition-size", "125"]
    assert main(argv) == 0
    table = QTable.read(out)
    assert_same(table, reference[:ROWS_PER_FILE])
    assert not (tmp_path / "masses.ecsv.parts").exists()  # removed once complete
    assert main(argv) == 1  # exists: --overwrite needed
    assert main(["predict", "mass", str(h5_files[0]), "-o", str(tmp_path / "x.ecsv"),
                 "--workers", "0"]) == 1


def test_bad_dataset_fails_before_any_work(tmp_path):
    """A bad .h5 input fails at partitioning, before any cluster work."""
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"no")
    with pytest.raises(SpectralNNError, match="HDF5"):
        partition_inputs(bad)
    b = _spectra(n_unique=2, copies=1)[0]
    assert len(partition_inputs(write_dataset(b, tmp_path / "ok.h5"))) == 1


def test_killed_worker_loses_and_duplicates_nothing(client, h5_files, serial, tiny,
                                                    tmp_path):
    """Last in the module: the nanny restarts the worker, nobody waits for it."""
    reference, _ = serial
    _, spec = tiny
    client.wait_for_workers(2)
    killed = []

    def kill_a_busy_worker(index, table):
        if killed:
            return
        pids = client.run(os.getpid)
        busy = [w for w, keys in client.processing().items() if keys and w in pids]
        victim = busy[0] if busy else sorted(pids)[0]
        os.kill(pids[victim], signal.SIGKILL)
        killed.append(len(list((tmp_path / "run").glob("part-*.ecsv"))))

    table = predict_many(h5_files, [spec], client=client, output=tmp_path / "run",
                         partition_size=PARTITION, callback=kill_a_busy_worker,
                         progress=False)
    assert killed and killed[0] < 20  # the worker died mid-run
    assert_every_row_once(table)
    assert_same(table, reference)


def test_fit_streams_an_hdf5_dataset(tmp_path, monkeypatch):
    """Training on a dataset larger than memory: fit reads it a batch at a time."""
    from spectralnn.datasets import SpectrumDataset
    from spectralnn.estimators import MassEstimator
    from tests.estimators.conftest import TOY_OPTIONS, TOY_PREPROCESSING, make_toy_batch

    batch, y = make_toy_batch(64, seed=4)
    batch.meta["target"] = y
    path = write_dataset(batch, tmp_path / "toy.h5")
    largest = []
    read = SpectrumDataset.read

    def spy(self, index=None):
        part = read(self, index)
        largest.append(len(part))
        return part

    monkeypatch.setattr(SpectrumDataset, "read", spy)
    est = MassEstimator("resnet1d", preprocessing=TOY_PREPROCESSING,
                        architecture_options=TOY_OPTIONS, virial=False)
    with SpectrumDataset(path) as ds:
        est.fit(ds, "target", epochs=1, batch_size=16, validation=None, chunk_size=16)
    assert est.is_trained and max(largest) <= 16
