"""
Reconstruction χ², anomaly ranking and throughput of the spectrum autoencoder.

Simulates a hold-out of mixed spectra with a seed never used in training
(`spectralnn.simulate.simulate_spectra` ``'mixed'``: 40 % quasars, 40 %
galaxies, 20 % stars, SDSS-like; the shipped model was trained on seed 1)
and runs `spectralnn.estimators.SpectrumAutoencoder` on it, with each
spectrum's true redshift (``meta['z']``) as the known z. It prints

* the median reconstruction χ² per good pixel (against the resampled ivar)
  overall, per class and per bin of median S/N per SDSS pixel, on the pixels
  the model scores (for the shipped model: λ_rest ≥ 1216 Å, the Lyα forest
  left out) and on all pixels;
* the ROC AUC with which the anomaly scores (the global χ² per pixel and the
  local one, the largest χ² per pixel of a window of 32 pixels) rank injected
  anomalies above the normal hold-out spectra, for each kind of
  `spectralnn.estimators.inject_anomalies` (``broad_line`` and ``glitch``
  injected into copies of the hold-out spectra, ``wrong_class`` into copies
  of its stars), overall and per S/N bin;
* the throughput of ``predict`` (spectra per second, simulation excluded)
  next to that of the preprocessing alone (the baseline every estimator
  pays), measured in the same run, and their ratio.

With ``--scan 6 8 10 16 32`` it first trains one new network per latent size
on ``--train`` simulated spectra (seed 1) for ``--epochs`` epochs and prints
the same χ² table for each (the measurement behind the default latent size)::

    python benchmarks/bench_autoencoder.py --n 3000 --seed 999
    python benchmarks/bench_autoencoder.py --n 1000 --scan 6 10 16 --train 6000 --epochs 8
"""

import argparse
import json
import time
import warnings

import numpy as np

SNR_BINS = (0.0, 5.0, 10.0, 20.0, 40.0, np.inf)
CLASSES = ("QSO", "GALAXY", "STAR")
KINDS = ("broad_line", "wrong_class", "glitch")


def roc_auc(normal, anomalous):
    """Probability that an anomaly scores above a normal spectrum (ties half; NaN left out)."""
    a = np.asarray(anomalous, dtype=float)
    b = np.asarray(normal, dtype=float)
    a, b = np.sort(a[np.isfinite(a)]), np.sort(b[np.isfinite(b)])
    if not a.size or not b.size:
        return float("nan")
    below = np.searchsorted(b, a, side="left")
    ties = np.searchsorted(b, a, side="right") - below
    return float(np.mean((below + 0.5 * ties) / b.size))


def simulate(n, seed, processes=1):
    from spectralnn.batch import concatenate
    from spectralnn.simulate import simulate_spectra

    return concatenate(list(simulate_spectra("mixed", n, seed=seed, chunk_size=1000,
                                             processes=processes)))


def scores(ae, batch):
    """Global χ²/pixel (the model's pixels), χ²/pixel on all pixels, local score."""
    from spectralnn.estimators.autoencoder import _chi2_arrays, _normalised

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared, z = ae._prepare(batch, None, None)
        _, recon = ae._run(prepared, z)
        chi2, _, local = ae._scores(prepared, recon, z)
        # every good pixel, the reconstruction scaled as for the score
        flux, weight = _normalised(prepared)
        recon = ae._scaled(flux, ae._score_weight(weight, z), recon)
        everything = np.where(prepared.usable, _chi2_arrays(flux, weight, recon)[0], np.nan)
    return {"chi2": chi2, "chi2_all_pixels": everything, "local": local}


def _medians(chi2, cls, snr):
    ok = np.isfinite(chi2)
    out = {"n": int(ok.sum()), "median": float(np.median(chi2[ok])),
           "p84": float(np.percentile(chi2[ok], 84)),
           "fraction_below_1.2": float(np.mean(chi2[ok] <= 1.2)),
           "p99": float(np.percentile(chi2[ok], 99))}
    for name in CLASSES:
        on = (cls == name) & ok
        out[name] = float(np.median(chi2[on])) if on.any() else float("nan")
    out["by_snr"] = []
    for lo, hi in zip(SNR_BINS[:-1], SNR_BINS[1:], strict=True):
        on = (snr >= lo) & (snr < hi) & ok
        out["by_snr"].append({"snr": [lo, None if np.isinf(hi) else hi], "n": int(on.sum()),
                              "median": float(np.median(chi2[on])) if on.any() else None})
    return out


def chi2_table(ae, batch):
    """Median χ² per pixel overall, per class, per S/N bin (dict), and the scores."""
    s = scores(ae, batch)
    snr = np.asarray(batch.snr)
    cls = np.asarray(batch.meta["class"]).astype(str)
    out = _medians(s["chi2"], cls, snr)
    out["pixels"] = ("all" if ae.min_rest_wavelength is None
                     else f"rest wavelength >= {ae.min_rest_wavelength:g} A")
    out["all_pixels"] = _medians(s["chi2_all_pixels"], cls, snr)
    qso = cls == "QSO"
    zz = np.asarray(batch.meta["z"])
    for label, on in (("QSO_z_below_2", qso & (zz < 2)), ("QSO_z_above_2", qso & (zz >= 2))):
        out[label] = {"n": int(on.sum()),
                      "median": float(np.nanmedian(s["chi2"][on])) if on.any() else None,
                      "median_all_pixels": float(np.nanmedian(s["chi2_all_pixels"][on]))
                      if on.any() else None}
    return out, s


def anomaly_aucs(ae, batch, normal, seed):
    """ROC AUC of each injected anomaly kind against the normal scores (global, local)."""
    from spectralnn.estimators import inject_anomalies

    snr = np.asarray(batch.snr)
    stars = np.asarray(batch.meta["class"]) == "STAR"
    out = {}
    for k, kind in enumerate(KINDS):
        source = batch[np.flatnonzero(stars)] if kind == "wrong_class" else batch
        odd = scores(ae, inject_anomalies(source, kind, seed=seed + k))
        odd_snr = snr[stars] if kind == "wrong_class" else snr
        entry = {}
        for stat in ("chi2", "local"):
            res = {"n": int(np.isfinite(odd[stat]).sum()),
                   "auc": roc_auc(normal[stat], odd[stat]), "by_snr": []}
            for lo, hi in zip(SNR_BINS[:-1], SNR_BINS[1:], strict=True):
                on_n, on_a = (snr >= lo) & (snr < hi), (odd_snr >= lo) & (odd_snr < hi)
                res["by_snr"].append({"snr": [lo, None if np.isinf(hi) else hi],
                                      "auc": roc_auc(normal[stat][on_n], odd[stat][on_a])})
            entry["global" if stat == "chi2" else "local"] = res
        out[kind] = entry
    return out


def throughput(ae, batch, repeat=1):
    """(pipeline-only, predict) spectra per second on the same batch."""
    t = time.perf_counter()
    for _ in range(repeat):
        ae.pipeline(batch)
    base = repeat * len(batch) / (time.perf_counter() - t)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = time.perf_counter()
        for _ in range(repeat):
            ae.predict(batch)
        full = repeat * len(batch) / (time.perf_counter() - t)
    return base, full


def print_chi2(label, res):
    for key, name in ((None, res.get("pixels", "")), ("all_pixels", "all pixels")):
        r = res if key is None else res[key]
        bins = "  ".join(f"{b['snr'][0]:g}-{b['snr'][1] or 'inf'}: "
                         f"{'-' if b['median'] is None else format(b['median'], '.2f')} "
                         f"({b['n']})" for b in r["by_snr"])
        print(f"{label:>12}  [{name}] median chi2/pix {r['median']:.2f}  (QSO "
              f"{r['QSO']:.2f}, GALAXY {r['GALAXY']:.2f}, STAR {r['STAR']:.2f}; "
              f"{100 * r['fraction_below_1.2']:.0f} % <= 1.2)")
        print(f"{'':>12}  by S/N per SDSS pixel: {bins}")
    for key in ("QSO_z_below_2", "QSO_z_above_2"):
        if key in res and res[key]["median"] is not None:
            print(f"{'':>12}  {key}: {res[key]['median']:.2f} (all pixels "
                  f"{res[key]['median_all_pixels']:.2f}; n={res[key]['n']})")


def print_aucs(aucs):
    for kind, entry in aucs.items():
        for stat, res in entry.items():
            bins = "  ".join(f"{b['snr'][0]:g}-{b['snr'][1] or 'inf'}: {b['auc']:.3f}"
                             for b in res["by_snr"])
            print(f"{kind:>12}  {stat:>6} ROC AUC {res['auc']:.3f} (n={res['n']}); "
                  f"by S/N: {bins}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--n", type=int, default=3000, help="hold-out spectra")
    parser.add_argument("--seed", type=int, default=999, help="hold-out seed (not 1)")
    parser.add_argument("--model", default="default", help="model name or .keras path")
    parser.add_argument("--scan", type=int, nargs="*", default=None,
                        help="latent sizes to train and compare")
    parser.add_argument("--train", type=int, default=6000)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--processes", type=int, default=1, help="simulation processes")
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args(argv)
    if args.seed == 1:
        parser.error("seed 1 is the training seed of the shipped model")

    from spectralnn.estimators import SpectrumAutoencoder

    holdout = simulate(args.n, args.seed, args.processes)
    results = {"n": args.n, "seed": args.seed}
    if args.scan:
        train = simulate(args.train, 1, args.processes)
        results["scan"] = []
        for latent in args.scan:
            ae = SpectrumAutoencoder("autoencoder", latent_dim=latent)
            t = time.perf_counter()
            ae.fit(train, epochs=args.epochs, patience=args.epochs, seed=0, batch_size=64)
            res, _ = chi2_table(ae, holdout)
            res.update(latent=latent, fit_s=time.perf_counter() - t)
            results["scan"].append(res)
            print_chi2(f"latent {latent}", res)
    ae = SpectrumAutoencoder(args.model)
    res, normal = chi2_table(ae, holdout)
    print_chi2(f"{ae.metadata['name']}", res)
    aucs = anomaly_aucs(ae, holdout, normal, args.seed)
    print_aucs(aucs)
    base, full = throughput(ae, holdout[: min(len(holdout), 1000)])
    print(f"  throughput  preprocessing alone {base:.0f} spectra/s, predict {full:.0f} "
          f"spectra/s (ratio {full / base:.2f})")
    results.update(model=res, anomalies=aucs, throughput={"pipeline": base, "predict": full})
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
