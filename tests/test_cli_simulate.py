import numpy as np

from spectralnn.cli import main
from spectralnn.datasets import SpectrumDataset


def test_simulate_command(tmp_path):
    out = tmp_path / "sim.h5"
    args = ["simulate", "--kind", "star", "--n", "9", "-o", str(out), "--seed", "1",
            "--chunk-size", "4", "--noiseless"]
    assert main(args) == 0
    with SpectrumDataset(out) as ds:
        assert len(ds) == 9
        assert ds.provenance["seed"] == 1 and ds.provenance["survey"] == "SDSS"
        assert ds.provenance["kind"] == "star"
        first = ds.read()
    # same seed, other chunk size: identical arrays
    out2 = tmp_path / "sim2.h5"
    assert main(args[:6] + [str(out2), "--seed", "1", "--chunk-size", "9",
                            "--noiseless"]) == 0
    with SpectrumDataset(out2) as ds:
        assert ds.read().flux.tobytes() == first.flux.tobytes()
    assert set(first.meta["class"]) == {"STAR"}


def test_simulate_refuses_existing(tmp_path):
    out = tmp_path / "x.h5"
    out.write_bytes(b"")
    assert main(["simulate", "--kind", "galaxy", "--n", "2", "-o", str(out)]) == 1
    assert main(["simulate", "--kind", "galaxy", "--n", "2", "-o", str(out),
                 "--overwrite"]) == 0
    with SpectrumDataset(out) as ds:
        assert np.all(np.isfinite(ds.read().flux))


def test_simulate_processes_same_file_contents(tmp_path):
    base = ["simulate", "--kind", "mixed", "--n", "7", "--seed", "5", "--chunk-size", "3"]
    one, two = tmp_path / "one.h5", tmp_path / "two.h5"
    assert main(base + ["-o", str(one)]) == 0
    assert main(base + ["-o", str(two), "--processes", "2"]) == 0
    with SpectrumDataset(one) as a, SpectrumDataset(two) as b:
        x, y = a.read(), b.read()
    assert x.flux.tobytes() == y.flux.tobytes() and x.ivar.tobytes() == y.ivar.tobytes()
    assert x.meta["class"].tolist() == y.meta["class"].tolist()
    assert main(base + ["-o", str(tmp_path / "bad.h5"), "--processes", "0"]) == 1
