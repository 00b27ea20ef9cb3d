"""
Hold-out accuracy of the shipped SpectralClassifier and RedshiftEstimator.

The hold-out is simulated from a seed never used in training: stars, galaxies
and quasars in equal numbers, quasars at 0.1 < z < 5 with BAL troughs in 15 %
of those at z > 1.6, galaxies at 0.005 < z < 0.7, S/N per pixel log-uniform
from 1 to 30 for every class (the issue's definition), on the SDSS grid.
Reported, overall and per S/N bin:

* **classes**: star/galaxy/QSO accuracy, QSO purity and completeness, BAL
  and non-BAL accuracy (z > 1.6 quasars), galaxy-subclass accuracy (among
  galaxies) and star-group accuracy (among stars), the confusion matrix;
* **redshifts**: for quasars the catastrophic fraction (|Δv| > 6000 km/s) and
  σ(Δz/(1+z)) (NMAD and the standard deviation of the non-catastrophic), for
  galaxies the same with 1000 km/s, for stars the median |Δv|; the mean
  Δz/(1+z) in the lowest and highest 5 % of the trained range of each class
  (the bias near the ends); the coverage of the 68 % intervals;
* the time per spectrum of each step, end to end from the HDF5 file.

Run::

    python benchmarks/bench_classify_holdout.py --data holdout.h5
    python benchmarks/bench_classify_holdout.py --simulate 7000 --seed 9901

``--json out.json`` writes every number; ``--record`` writes the hold-out
figures into the shipped models' ``.json`` metadata (``metrics['holdout']``;
the sha256 covers the ``.keras`` file only).
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np

SNR_BINS = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0)
C_KMS = 299792.458
CLASSES = ("STAR", "GALAXY", "QSO")


def simulate_holdout(n_per_class, seed, path):
    """Write the hold-out: n_per_class of each class (see the module docstring)."""
    from spectralnn.batch import concatenate
    from spectralnn.datasets import write_dataset
    from spectralnn.simulate import simulate_galaxies, simulate_quasars, simulate_stars

    def chunks(size=500):
        for i, start in enumerate(range(0, n_per_class, size)):
            n = min(size, n_per_class - start)
            rng = np.random.default_rng([seed, i])
            q = simulate_quasars(n, seed=np.random.SeedSequence([seed, i, 0]).spawn(n),
                                 z_range=(0.1, 5.0), snr_range=(1, 30), bal_fraction=0.15)
            z, bal = np.asarray(q.meta["z"]), np.asarray(q.meta["bal"], bool)
            q.meta["bal_true"] = bal
            # a trough off the blue end of the spectrum is not a visible BAL
            q.meta["bal"] = bal & (z >= 1.6)
            q.meta["subclass"] = np.where(q.meta["bal"], "BAL", "BROADLINE")
            sg = np.exp(rng.uniform(0, np.log(30), n))
            ss = np.exp(rng.uniform(0, np.log(30), n))
            g = simulate_galaxies(n, seed=np.random.SeedSequence([seed, i, 1]).spawn(n),
                                  z_range=(0.005, 0.7), snr=sg)
            s = simulate_stars(n, seed=np.random.SeedSequence([seed, i, 2]).spawn(n),
                               snr=ss)
            g.meta["snr"], s.meta["snr"] = sg, ss
            yield concatenate([q, g, s])

    return write_dataset(chunks(), path, overwrite=True,
                         provenance={"seed": seed, "what": "classifier hold-out"})


def _frac(a):
    return float(np.mean(a)) if np.size(a) else float("nan")


def class_figures(table, meta):
    """Accuracy figures of a classifier table against the truth."""
    true = np.char.upper(np.asarray(meta["class"]).astype(str))
    pred = np.asarray(table["class"]).astype(str)
    out = {"n": len(true), "accuracy": _frac(pred == true)}
    for name in CLASSES:
        t, p = true == name, pred == name
        out[name.lower()] = {
            "purity": float(np.sum(t & p) / max(p.sum(), 1)),
            "completeness": float(np.sum(t & p) / max(t.sum(), 1)),
        }
    qso = (true == "QSO") & (np.asarray(meta["z"]) > 1.6)
    bal = np.asarray(meta["bal"], bool)
    pred_bal = np.asarray(table["bal"], bool)
    out["bal_accuracy"] = _frac((pred_bal == bal)[qso & bal])
    out["nonbal_accuracy"] = _frac((pred_bal == bal)[qso & ~bal])
    sub_true = np.char.strip(np.asarray(meta["subclass"]).astype(str))
    sub_pred = np.char.strip(np.asarray(table["subclass"]).astype(str))
    gal = true == "GALAXY"
    out["galaxy_subclass_accuracy"] = _frac((sub_pred == sub_true)[gal])
    out["galaxy_subclass_accuracy_if_galaxy"] = _frac(
        (sub_pred == sub_true)[gal & (pred == true)])
    star = true == "STAR"
    group = np.char.strip(np.asarray(meta["spectral_group"]).astype(str))
    out["star_group_accuracy"] = _frac((sub_pred == group)[star])
    return out


def confusion(table, meta):
    """Confusion matrix (rows true, columns predicted) of the top-level classes."""
    true = np.char.upper(np.asarray(meta["class"]).astype(str))
    pred = np.asarray(table["class"]).astype(str)
    return {t: {p: int(np.sum((true == t) & (pred == p))) for p in CLASSES} for t in CLASSES}


def redshift_figures(z_pred, z_err, meta):
    """Redshift figures per class against the truth."""
    true = np.char.upper(np.asarray(meta["class"]).astype(str))
    z = np.asarray(meta["z"], dtype=float)
    dz = (z_pred - z) / (1 + z)
    dv = np.abs(dz) * C_KMS
    out = {}
    for name, limit, zr in (("QSO", 6000.0, (0.1, 5.0)), ("GALAXY", 1000.0, (0.005, 0.7)),
                            ("STAR", 1000.0, None)):
        sel = (true == name) & np.isfinite(z_pred)
        d = dz[sel]
        cat = dv[sel] > limit
        fig = {
            "n": int(sel.sum()),
            "n_missing": int(np.sum((true == name) & ~np.isfinite(z_pred))),
            "catastrophic_fraction": _frac(cat),
            "catastrophic_velocity_kms": limit,
            "nmad_dz_1pz": (float(1.4826 * np.median(np.abs(d - np.median(d))))
                            if d.size else np.nan),
            "std_dz_1pz_good": float(np.std(d[~cat])) if (~cat).any() else np.nan,
            "bias_dz_1pz": float(np.median(d)) if d.size else np.nan,
            "median_abs_dv_kms": float(np.median(dv[sel])) if d.size else np.nan,
        }
        if z_err is not None:
            e = (z_err / (1 + z))[sel]
            fig["coverage_68"] = _frac(np.abs(d) < e)
        if zr is not None:
            span = zr[1] - zr[0]
            zs = z[sel]
            lo, hi = zs < zr[0] + 0.05 * span, zs > zr[1] - 0.05 * span
            fig["low_end_bias"] = float(np.mean(d[lo & ~cat])) if (lo & ~cat).any() else np.nan
            fig["high_end_bias"] = float(np.mean(d[hi & ~cat])) if (hi & ~cat).any() else np.nan
        out[name.lower()] = fig
    return out


def per_snr(fn, snr, *args):
    out = {}
    for lo, hi in zip(SNR_BINS[:-1], SNR_BINS[1:], strict=True):
        sel = (snr >= lo) & (snr < hi)
        out[f"{lo:g}-{hi:g}"] = fn(*[a[sel] for a in args])
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="hold-out HDF5 dataset")
    parser.add_argument("--simulate", type=int, default=None,
                        help="simulate this many spectra per class into a temporary file")
    parser.add_argument("--seed", type=int, default=9901)
    parser.add_argument("--classifier", default="default")
    parser.add_argument("--redshift", default="default")
    parser.add_argument("--max-spectra", type=int, default=None)
    parser.add_argument("--redshift-spectra", type=int, default=None,
                        help="refine redshifts of a random subset of this size only "
                        "(the template refinement takes ~0.05 s per spectrum)")
    parser.add_argument("--json", default=None)
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args(argv)

    from spectralnn.datasets import SpectrumDataset
    from spectralnn.estimators import RedshiftEstimator, SpectralClassifier

    data = args.data
    if args.simulate:
        import tempfile

        data = Path(tempfile.mkdtemp()) / "holdout.h5"
        t = time.perf_counter()
        simulate_holdout(args.simulate, args.seed, data)
        print(f"simulated {3 * args.simulate} spectra in {time.perf_counter() - t:.0f} s")
    clf = SpectralClassifier(args.classifier)
    zest = RedshiftEstimator(args.redshift)
    with SpectrumDataset(data) as ds:
        n = len(ds) if args.max_spectra is None else min(args.max_spectra, len(ds))
        rows = np.arange(n)
        if args.max_spectra is not None:  # a sample of every class
            rows = np.random.default_rng(0).choice(len(ds), n, replace=False)
            rows.sort()
        t0 = time.perf_counter()
        batch = ds.read(rows)
        t_read = time.perf_counter() - t0
    meta = batch.meta
    t0 = time.perf_counter()
    ctab = clf.predict(batch)
    t_clf = time.perf_counter() - t0
    zrows = np.arange(n)
    if args.redshift_spectra is not None and args.redshift_spectra < n:
        zrows = np.sort(np.random.default_rng(1).choice(n, args.redshift_spectra,
                                                        replace=False))
    t0 = time.perf_counter()
    # end to end: the classifier's classes choose the templates
    ztab = zest.predict(batch[zrows], spectype=np.asarray(ctab["class"])[zrows])
    t_z = time.perf_counter() - t0
    z_pred = np.full(n, np.nan)
    z_err = np.full(n, np.nan)
    z_pred[zrows] = np.asarray(ztab["z"], dtype=float)
    z_err[zrows] = np.asarray(ztab["z_err"], dtype=float)
    snr = np.asarray(meta["snr"], dtype=float)
    zsel = np.zeros(n, bool)
    zsel[zrows] = True

    results = {
        "n": int(n),
        "classes": class_figures(ctab, meta),
        "classes_per_snr": per_snr(lambda t, m: class_figures(t, m), snr, ctab, meta),
        "confusion": confusion(ctab, meta),
        "n_redshift": int(zsel.sum()),
        "redshift": redshift_figures(z_pred[zsel], z_err[zsel], meta[zsel]),
        "redshift_per_snr": per_snr(lambda a, b, m: redshift_figures(a, b, m), snr[zsel],
                                    z_pred[zsel], z_err[zsel], meta[zsel]),
        "seconds_per_1000": {"read": 1000 * t_read / n, "classify": 1000 * t_clf / n,
                             "redshift": 1000 * t_z / zsel.sum()},
    }
    results["redshift_methods"] = {str(k): int(np.sum(ztab["z_method"] == k))
                                   for k in np.unique(ztab["z_method"])}
    _print(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=float))
    if args.record:
        _record(clf, {"classes": results["classes"],
                      "classes_per_snr": results["classes_per_snr"],
                      "confusion": results["confusion"]}, data, args)
        _record(zest, {"redshift": results["redshift"],
                       "redshift_per_snr": results["redshift_per_snr"]}, data, args)
    return results


def _record(est, figures, data, args):
    path = Path(getattr(est, "path", None) or "")
    if path.suffix != ".keras":
        print(f"not recording: {est!r} has no model file")
        return
    meta_path = path.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    meta.setdefault("metrics", {})["holdout"] = {
        "dataset": f"simulated hold-out, seed {args.seed} (never trained on): equal "
                   "numbers of stars, galaxies and quasars, S/N per pixel log-uniform 1-30",
        "reproduce": f"python benchmarks/bench_classify_holdout.py --simulate 7000 "
                     f"--seed {args.seed} --redshift-spectra 3000",
        **json.loads(json.dumps(figures, default=float)),
    }
    meta_path.write_text(json.dumps(meta, indent=1) + "\n")
    print(f"recorded in {meta_path}")


def _print(r):
    c = r["classes"]
    print(f"\n{r['n']} spectra")
    print(f"class accuracy {c['accuracy']:.4f}; QSO purity {c['qso']['purity']:.4f}, "
          f"completeness {c['qso']['completeness']:.4f}; BAL {c['bal_accuracy']:.4f}, "
          f"non-BAL {c['nonbal_accuracy']:.4f}; galaxy subclasses "
          f"{c['galaxy_subclass_accuracy']:.3f}; star groups {c['star_group_accuracy']:.3f}")
    print("S/N bin   accuracy  QSO pur  QSO comp  BAL    nonBAL  gal-sub  star-grp")
    for k, v in r["classes_per_snr"].items():
        print(f"{k:8s}  {v['accuracy']:.4f}    {v['qso']['purity']:.4f}   "
              f"{v['qso']['completeness']:.4f}    {v['bal_accuracy']:.3f}  "
              f"{v['nonbal_accuracy']:.3f}   {v['galaxy_subclass_accuracy']:.3f}    "
              f"{v['star_group_accuracy']:.3f}")
    print("confusion (rows true):", r["confusion"])
    for name, f in r["redshift"].items():
        print(f"{name:7s} z: catastrophic {f['catastrophic_fraction']:.4f} "
              f"(>{f['catastrophic_velocity_kms']:.0f} km/s), NMAD {f['nmad_dz_1pz']:.5f}, "
              f"std(good) {f['std_dz_1pz_good']:.5f}, median |dv| "
              f"{f['median_abs_dv_kms']:.1f} km/s, ends {f.get('low_end_bias', np.nan):+.5f}"
              f"/{f.get('high_end_bias', np.nan):+.5f}, cov68 {f.get('coverage_68', np.nan):.3f}")
    print("S/N bin   QSO cat  QSO NMAD  GAL cat  GAL NMAD  STAR |dv|")
    for k, v in r["redshift_per_snr"].items():
        print(f"{k:8s}  {v['qso']['catastrophic_fraction']:.4f}  "
              f"{v['qso']['nmad_dz_1pz']:.5f}   {v['galaxy']['catastrophic_fraction']:.4f}  "
              f"{v['galaxy']['nmad_dz_1pz']:.5f}   {v['star']['median_abs_dv_kms']:.1f}")
    print("ms per spectrum:", {k: round(v, 3) for k, v in r["seconds_per_1000"].items()})


if __name__ == "__main__":
    main()
