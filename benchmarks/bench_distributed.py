"""
Spectra per second of `spectralnn.distributed.predict_many` vs workers.

Simulates quasars (spectralnn.simulate) into HDF5 files, or SDSS-layout FITS
files with ``--fits`` (one spectrum per file, so reading is included), and
times, in one run on one machine:

* the **serial path**: ``MassEstimator(...).predict(file)`` over the files in
  this process (TensorFlow free to use every core);
* ``predict_many`` on a `~distributed.LocalCluster` of **1** and **2** (or
  ``--workers``) single-threaded worker processes, each run twice: *cold*
  (the workers load TensorFlow and the network) and *warm* (estimators
  already built on the workers), writing ECSV partitions as a real run does;
* what shipping a trained estimator *instance* costs (its pickled size and a
  warm run with it) against passing a spec (class + keyword arguments).

Every parallel result is checked to equal the serial one. Run::

    python benchmarks/bench_distributed.py --n 4000
    python benchmarks/bench_distributed.py --n 1000 --fits --json out.json
"""

import argparse
import json
import pickle
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np


def _simulate(n, seed, folder, fits_files, n_files):
    from spectralnn.datasets import DatasetWriter
    from spectralnn.simulate import simulate_spectra

    paths = []
    writer, per_file, index = None, int(np.ceil(n / n_files)), 0
    for batch in simulate_spectra("qso", n, seed=seed, chunk_size=500,
                                  z_range=(0.1, 2.0)):
        if fits_files:
            import sys

            sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
            from tests.datasets.test_catalog import write_sdss_like

            for i in range(len(batch)):
                fiber = index % 1000 + 1
                path = folder / f"spec-{1000 + index // 1000:04d}-55000-{fiber:04d}.fits"
                write_sdss_like(path, batch.wavelength, batch.flux[i], batch.ivar[i],
                                1000 + index // 1000, 55000, fiber,
                                float(batch.meta["z"][i]))
                paths.append(path)
                index += 1
            continue
        for start in range(0, len(batch), per_file):
            if writer is None:
                path = folder / f"qso-{len(paths):03d}.h5"
                writer = DatasetWriter(path)
                paths.append(path)
            writer.append(batch[start:start + per_file])
            if len(writer) >= per_file:
                writer.close()
                writer = None
    if writer is not None:
        writer.close()
    return paths


def _same(a, b):
    return all(np.array_equal(np.asarray(a[c]), np.asarray(b[c]), equal_nan=True)
               for c in b.colnames if np.asarray(b[c]).dtype.kind == "f")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=4000, help="spectra (default 4000)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2],
                        help="cluster sizes to time (default: 1 2)")
    parser.add_argument("--partition-size", type=int, default=250)
    parser.add_argument("--files", type=int, default=8, help="HDF5 files (default 8)")
    parser.add_argument("--fits", action="store_true",
                        help="one SDSS-layout FITS file per spectrum instead of HDF5")
    parser.add_argument("--virial", action="store_true",
                        help="also compute the classic virial columns (slow)")
    parser.add_argument("--seed", type=int, default=20261)
    parser.add_argument("--json", default=None, help="write the numbers here")
    args = parser.parse_args(argv)

    import distributed

    from spectralnn.distributed import WORKER_ENVIRONMENT, predict_many
    from spectralnn.estimators import MassEstimator

    warnings.simplefilter("ignore")
    out = {"n": args.n, "fits": args.fits, "partition_size": args.partition_size,
           "virial": args.virial}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        paths = _simulate(args.n, args.seed, tmp, args.fits, args.files)
        out["simulate_s"] = time.perf_counter() - t0
        spec = ("mass", {"virial": args.virial})

        t0 = time.perf_counter()
        est = MassEstimator(virial=args.virial)
        out["serial_load_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        if args.fits:
            reference = est.predict([str(p) for p in paths])
        else:
            from astropy.table import vstack

            reference = vstack([est.predict(p) for p in paths],
                               metadata_conflicts="silent")
        out["serial_s"] = time.perf_counter() - t0
        out["serial_spectra_per_s"] = args.n / out["serial_s"]
        print(f"serial: {out['serial_spectra_per_s']:.0f} spectra/s "
              f"({out['serial_s']:.1f} s, + {out['serial_load_s']:.1f} s loading)")
        blob = pickle.dumps(est)
        out["instance_pickle_mb"] = len(blob) / 1e6

        for n_workers in args.workers:
            t0 = time.perf_counter()
            cluster = distributed.LocalCluster(
                n_workers=n_workers, threads_per_worker=1, processes=True,
                dashboard_address="127.0.0.1:0", silence_logs=50,
                env=dict(WORKER_ENVIRONMENT), preload=["spectralnn.distributed"])
            client = distributed.Client(cluster)
            start_s = time.perf_counter() - t0
            row = {"cluster_start_s": start_s}
            for label in ("cold", "warm"):
                folder = tmp / f"out-{n_workers}-{label}"
                t0 = time.perf_counter()
                table = predict_many(paths, [spec], client=client, output=folder,
                                     partition_size=args.partition_size, progress=False)
                row[f"{label}_s"] = time.perf_counter() - t0
                row[f"{label}_spectra_per_s"] = args.n / row[f"{label}_s"]
                row[f"{label}_equals_serial"] = bool(_same(table, reference))
                shutil.rmtree(folder)
            t0 = time.perf_counter()
            table = predict_many(paths, [est], client=client,
                                 partition_size=args.partition_size, progress=False)
            row["instance_s"] = time.perf_counter() - t0
            row["instance_equals_serial"] = bool(_same(table, reference))
            client.close()
            cluster.close()
            out[f"workers_{n_workers}"] = row
            print(f"{n_workers} worker(s): warm {row['warm_spectra_per_s']:.0f} spectra/s "
                  f"({row['warm_s']:.1f} s), cold {row['cold_spectra_per_s']:.0f} "
                  f"spectra/s ({row['cold_s']:.1f} s), cluster start {start_s:.1f} s, "
                  f"instance {row['instance_s']:.1f} s; equal to serial: "
                  f"{row['warm_equals_serial'] and row['cold_equals_serial']}")
        print(f"pickled MassEstimator: {out['instance_pickle_mb']:.1f} MB")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
