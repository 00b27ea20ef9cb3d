"""
Hold-out accuracy and end-to-end throughput of the shipped MassEstimator.

Reproduces the figures recorded in ``spectralnn/data/weights/mass-default.json``
from the shipped weights:

* **accuracy** on a simulated hold-out (a seed never used in training; by
  default 10,000 quasars, z 0.1–4.8, masses as in the simulator default, S/N
  per pixel log-uniform 2–30) against the noiseless catalogue-style virial
  mass ``virial_log_mbh``: R², RMSE and bias overall, per virial line
  (Hβ/Mg II/C IV) and per S/N bin; the bias in the lowest and highest deciles
  of the true mass; the coverage of the 68 % intervals; and the same figures
  for the package's own virial baseline
  (`spectralnn.physics.virial_black_hole_mass`) on the same noisy spectra;
* **multi-epoch**: RMSE of single epochs and of `MassEstimator.predict_epochs`
  (inverse-variance pooling) against each object's mean virial mass;
* **throughput**, end to end from the HDF5 dataset (read → preprocess →
  predict → table) for the network, the virial-baseline path timed in the
  same run, and the FITS-file path (real SDSS/BOSS spec files) separately.

Run::

    python benchmarks/bench_mass.py --data holdout.h5           # existing file
    python benchmarks/bench_mass.py --simulate 10000 --seed 20260  # simulate it

``--json out.json`` writes every number; ``--record`` also writes the
hold-out figures into the model's ``.json`` metadata (``metrics['holdout']``;
the sha256 covers the ``.keras`` file only, so it stays valid).
"""

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

SNR_BINS = (2.0, 4.0, 8.0, 15.0, 30.0)
#: real SDSS/BOSS files beside the checkout (developers' machines only)
_REAL_SDSS = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "sdss"


def _stats(pred, true):
    ok = np.isfinite(pred) & np.isfinite(true)
    resid = pred[ok] - true[ok]
    if ok.sum() < 2:
        return {"n": int(ok.sum())}
    return {
        "n": int(ok.sum()),
        "rmse": float(np.sqrt(np.mean(resid**2))),
        "bias": float(np.mean(resid)),
        "r2": float(1 - np.mean(resid**2) / np.var(true[ok])),
        "nmad": float(1.4826 * np.median(np.abs(resid - np.median(resid)))),
    }


def accuracy(pred, err, true, line, snr):
    """All hold-out figures of one set of predictions (a dict)."""
    out = {"overall": _stats(pred, true)}
    out["per_line"] = {
        name: _stats(pred[line == name], true[line == name])
        for name in ("Hbeta", "MgII", "CIV")
    }
    out["per_snr"] = {}
    for lo, hi in zip(SNR_BINS[:-1], SNR_BINS[1:], strict=True):
        sel = (snr >= lo) & (snr < hi)
        out["per_snr"][f"{lo:g}-{hi:g}"] = _stats(pred[sel], true[sel])
    lo, hi = np.nanpercentile(true, [10, 90])
    out["edges"] = {
        "low_decile_bias": _stats(pred[true <= lo], true[true <= lo])["bias"],
        "high_decile_bias": _stats(pred[true >= hi], true[true >= hi])["bias"],
        "low_decile_max": float(lo),
        "high_decile_min": float(hi),
    }
    if err is not None:
        ok = np.isfinite(pred) & np.isfinite(err)
        out["coverage_68"] = float(np.mean(np.abs(pred[ok] - true[ok]) < err[ok]))
        out["coverage_95"] = float(
            np.mean(np.abs(pred[ok] - true[ok]) < 1.96 * err[ok])
        )
        out["median_err"] = float(np.median(err[ok]))
    out["fraction_with_value"] = float(np.mean(np.isfinite(pred)))
    return out


def _simulate(n, seed, path, processes=1):
    from spectralnn.datasets import DatasetWriter
    from spectralnn.simulate import simulate_spectra

    with DatasetWriter(
        path, overwrite=True, compression=None, provenance={"kind": "qso", "seed": seed}
    ) as writer:
        for batch in simulate_spectra(
            "qso",
            n,
            seed=seed,
            chunk_size=2000,
            z_range=(0.1, 4.8),
            processes=processes,
        ):
            writer.append(batch)


def _read_all(path):
    from spectralnn.datasets import SpectrumDataset

    with SpectrumDataset(path) as ds:
        return ds.read()


def hold_out(est, path, n_virial):
    """Accuracy of the network and of the virial baseline on a dataset."""
    from astropy.cosmology import FlatLambdaCDM

    from spectralnn.physics import virial_black_hole_mass

    batch = _read_all(path)
    meta = batch.meta
    true = np.asarray(meta["virial_log_mbh"], dtype=float)
    line = np.asarray(meta["virial_line"]).astype(str)
    snr = np.asarray(meta["snr"], dtype=float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = est.predict(batch)
    pred = np.asarray(table["log_mbh"].value, dtype=float)
    err = np.asarray(table["log_mbh_err"].value, dtype=float)
    results = {"n": len(batch), "network": accuracy(pred, err, true, line, snr)}
    # the baseline, in the simulator's cosmology, on the same noisy spectra
    sub = batch[:n_virial] if n_virial < len(batch) else batch
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vt = virial_black_hole_mass(sub, cosmology=FlatLambdaCDM(H0=70, Om0=0.3))
    t_vir = time.perf_counter() - t0
    vm = np.asarray(vt["log_mbh"].value, dtype=float)
    k = len(sub)
    results["virial_baseline"] = accuracy(vm, None, true[:k], line[:k], snr[:k])
    both = np.isfinite(vm)
    results["network_where_virial_measured"] = _stats(pred[:k][both], true[:k][both])
    results["virial_baseline_rate_per_s"] = k / t_vir
    return results


def multi_epoch(est, n_objects, n_epochs, seed):
    """
    Single-epoch and pooled RMSE against each object's mean virial mass.

    Pooled: the inverse-variance weighted mean of `MassEstimator.predict_epochs`
    and, when the model ships one, its learned pooling (``log_mbh_pooled``),
    each with the coverage of its 68 % interval.
    """
    from spectralnn.simulate import simulate_quasar_epochs

    batch = simulate_quasar_epochs(n_objects, n_epochs, seed=seed, z_range=(0.1, 4.8))
    truth = np.asarray(batch.meta["virial_log_mbh"], dtype=float).reshape(
        n_objects, n_epochs
    )
    obj_truth = truth.mean(axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        single = np.asarray(est.predict(batch)["log_mbh"].value).reshape(
            n_objects, n_epochs
        )
        tables = [est.predict_epochs(batch[i * n_epochs : (i + 1) * n_epochs])
                  for i in range(n_objects)]
    pooled = np.array([t["log_mbh"][0].value for t in tables])
    pooled_err = np.array([t["log_mbh_err"][0].value for t in tables])
    single_resid = single - obj_truth[:, None]
    out = {
        "n_objects": n_objects,
        "n_epochs": n_epochs,
        "seed": seed,
        "single_epoch_rmse": float(np.sqrt(np.nanmean(single_resid**2))),
        "pooled_rmse": float(np.sqrt(np.nanmean((pooled - obj_truth) ** 2))),
        "pooled_coverage_68": float(np.nanmean(np.abs(pooled - obj_truth) < pooled_err)),
    }
    if "log_mbh_pooled" in tables[0].colnames:
        learned = np.array([t["log_mbh_pooled"][0].value for t in tables])
        learned_err = np.array([t["log_mbh_pooled_err"][0].value for t in tables])
        out["learned_pooled_rmse"] = float(np.sqrt(np.nanmean((learned - obj_truth) ** 2)))
        out["learned_pooled_coverage_68"] = float(
            np.nanmean(np.abs(learned - obj_truth) < learned_err)
        )
    return out


def throughput(est, path, n, fits_n, fits_dir):
    """Spectra per second, end to end from the HDF5 file, and from FITS files."""
    from spectralnn.datasets import SpectrumDataset
    from spectralnn.physics import virial_black_hole_mass

    out = {}
    est_novir = est
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with SpectrumDataset(path) as ds:
            n = min(n, len(ds))
            est_novir.predict(ds.read(np.arange(256)))  # warm-up (imports, tracing)
            t0 = time.perf_counter()
            for start in range(0, n, 2000):  # contiguous reads: fast HDF5 path
                est_novir.predict(ds.read(slice(start, min(start + 2000, n))))
            out["hdf5_network_per_s"] = n / (time.perf_counter() - t0)
            nv = min(n, 2000)
            t0 = time.perf_counter()
            virial_black_hole_mass(ds.read(np.arange(nv)))
            out["hdf5_virial_baseline_per_s"] = nv / (time.perf_counter() - t0)
            out["n"] = n
    # the FITS-file path: SDSS/BOSS spec files read from disk
    paths = (
        sorted(str(p) for p in Path(fits_dir).rglob("spec-*.fits"))[:fits_n]
        if fits_dir and Path(fits_dir).is_dir()
        else []
    )
    if paths:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            table = est_novir.predict(paths)
            out["fits_network_per_s"] = len(paths) / (time.perf_counter() - t0)
        out["fits_n"] = len(paths)
        out["fits_n_with_mass"] = int(np.isfinite(table["log_mbh"].value).sum())
        out["fits_files"] = str(fits_dir)
    return out


def _record(est, results, data, args):
    from spectralnn.datasets import SpectrumDataset

    with SpectrumDataset(data) as ds:
        seed = ds.provenance.get("seed", args.seed)
    seed = int(seed)
    meta_path = Path(est.path).with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    hold = results.get("holdout")
    if hold is not None:
        meta["metrics"]["holdout"] = {
            "n": hold["n"],
            "seed": seed,
            "simulation": "simulate_spectra('qso', n, seed=seed, z_range=(0.1, 4.8)); "
            "snr_range (2, 30) log-uniform; masses as the simulator default",
            "target": "virial_log_mbh (noiseless catalogue-style virial mass)",
            **hold["network"],
            "network_where_virial_measured": hold["network_where_virial_measured"],
            "virial_baseline": hold["virial_baseline"],
            "reproduce": "python benchmarks/bench_mass.py "
            f"--simulate {hold['n']} --seed {seed}",
        }
    if "multi_epoch" in results:
        meta["metrics"]["multi_epoch"] = results["multi_epoch"]
    if "throughput" in results:
        meta["metrics"]["throughput"] = {
            **results["throughput"],
            "machine": "2 shared CPU cores, TensorFlow backend",
        }
    meta_path.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="hold-out HDF5 dataset of simulated quasars")
    parser.add_argument(
        "--simulate",
        type=int,
        default=10000,
        help="simulate this many quasars when --data is absent",
    )
    parser.add_argument("--seed", type=int, default=20260, help="hold-out seed")
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="worker processes simulating the hold-out (same spectra for any number)",
    )
    parser.add_argument(
        "--save-data",
        help="keep the simulated hold-out in this HDF5 file (reuse it with --data)",
    )
    parser.add_argument("--model", default="default", help="model to evaluate")
    parser.add_argument(
        "--n-virial",
        type=int,
        default=2000,
        help="spectra measured with the virial baseline",
    )
    parser.add_argument("--epochs-objects", type=int, default=300)
    parser.add_argument(
        "--fits-n",
        type=int,
        default=300,
        help="at most this many FITS files for the FITS-path timing",
    )
    parser.add_argument(
        "--fits-dir",
        default=str(_REAL_SDSS),
        help="folder searched for SDSS/BOSS spec-*.fits files "
        "(default: the developers' real-data pack)",
    )
    parser.add_argument("--n-throughput", type=int, default=10000)
    parser.add_argument(
        "--skip", nargs="*", default=(), choices=("holdout", "epochs", "throughput")
    )
    parser.add_argument("--json", help="write the results here")
    parser.add_argument(
        "--record",
        action="store_true",
        help="store the hold-out figures in the model metadata",
    )
    args = parser.parse_args(argv)

    from spectralnn.estimators import MassEstimator

    # the network alone: the virial baseline is measured and timed separately
    est = MassEstimator(args.model, virial=False)
    data = args.data
    tmp = None
    if data is None and args.save_data:
        data = args.save_data
        _simulate(args.simulate, args.seed, data, args.processes)
    elif data is None:
        tmp = tempfile.TemporaryDirectory()
        data = str(Path(tmp.name) / "holdout.h5")
        _simulate(args.simulate, args.seed, data, args.processes)
    results = {
        "model": est.metadata["name"],
        "sha256": est.metadata["sha256"],
        "data": str(args.data or f"simulated n={args.simulate} seed={args.seed}"),
    }
    if "holdout" not in args.skip:
        results["holdout"] = hold_out(est, data, args.n_virial)
    if "epochs" not in args.skip:
        results["multi_epoch"] = multi_epoch(est, args.epochs_objects, 4, args.seed + 1)
    if "throughput" not in args.skip:
        results["throughput"] = throughput(
            est, data, args.n_throughput, args.fits_n, args.fits_dir
        )
    text = json.dumps(results, indent=2)
    print(text)  # noqa: T201 - a script's report
    if args.json:
        Path(args.json).write_text(text + "\n")
    if args.record:
        _record(est, results, data, args)
    if tmp is not None:
        tmp.cleanup()
    return results


if __name__ == "__main__":
    main()
