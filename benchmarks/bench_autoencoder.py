"""
Reconstruction χ², anomaly ranking and throughput of the spectrum autoencoder.

Simulates a hold-out of mixed spectra with a seed never used in training
(`spectralnn.simulate.simulate_spectra` ``'mixed'``: 40 % quasars, 40 %
galaxies, 20 % stars, SDSS-like; the shipped model was trained on seed 1) and
runs `spectralnn.estimators.SpectrumAutoencoder` on it. It prints

* the median reconstruction χ² per good pixel (against the resampled ivar)
  overall, per class and per bin of median S/N per SDSS pixel;
* the ROC AUC with which the anomaly score (the same χ²) ranks injected
  anomalies above the normal hold-out spectra, for each kind of
  `spectralnn.estimators.inject_anomalies` (``broad_line`` and ``glitch``
  injected into copies of the hold-out spectra, ``wrong_class`` into copies
  of its stars), overall and per S/N bin;
* the throughput of ``predict`` (spectra per second, simulation excluded)
  next to that of the preprocessing alone (the baseline every estimator
  pays), measured in the same run, and their ratio.

With ``--scan 6 8 10 16 32`` it first trains one new network per latent size
on ``--train`` simulated spectra (seed 1) for ``--epochs`` epochs and prints
the same χ² table for each (the measurement behind the default latent size;
expensive: about 1.5 min per size for 6,000 spectra and 8 epochs on 2 cores)::

    python benchmarks/bench_autoencoder.py --n 3000 --seed 999
    python benchmarks/bench_autoencoder.py --n 1000 --scan 6 10 32 --train 6000 --epochs 8
"""

import argparse
import json
import time
import warnings

import numpy as np

SNR_BINS = (0.0, 5.0, 10.0, 20.0, 40.0, np.inf)
CLASSES = ("QSO", "GALAXY", "STAR")


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


def simulate(n, seed):
    from spectralnn.batch import concatenate
    from spectralnn.simulate import simulate_spectra

    return concatenate(list(simulate_spectra("mixed", n, seed=seed, chunk_size=1000)))


def chi2_table(ae, batch):
    """Median χ² per pixel: overall, per class and per S/N bin (dict)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = ae.predict(batch)
    chi2 = np.asarray(table["chi2_per_pixel"], dtype=float)
    snr = np.asarray(batch.snr)
    cls = np.asarray(batch.meta["class"]).astype(str)
    out = {"n": int(np.isfinite(chi2).sum()), "median": float(np.nanmedian(chi2)),
           "p84": float(np.nanpercentile(chi2, 84)),
           "fraction_below_1.2": float(np.mean(chi2[np.isfinite(chi2)] <= 1.2)),
           "p99": float(np.nanpercentile(chi2, 99))}
    for name in CLASSES:
        on = cls == name
        out[name] = float(np.nanmedian(chi2[on])) if on.any() else float("nan")
    out["by_snr"] = []
    for lo, hi in zip(SNR_BINS[:-1], SNR_BINS[1:], strict=True):
        on = (snr >= lo) & (snr < hi) & np.isfinite(chi2)
        out["by_snr"].append({"snr": [lo, None if np.isinf(hi) else hi], "n": int(on.sum()),
                              "median": float(np.median(chi2[on])) if on.any() else None})
    return out, chi2


def anomaly_aucs(ae, batch, normal_scores, seed):
    """ROC AUC of each injected anomaly kind against the normal scores."""
    from spectralnn.estimators import inject_anomalies

    snr = np.asarray(batch.snr)
    stars = np.asarray(batch.meta["class"]) == "STAR"
    out = {}
    for k, kind in enumerate(("broad_line", "wrong_class", "glitch")):
        source = batch[np.flatnonzero(stars)] if kind == "wrong_class" else batch
        odd = inject_anomalies(source, kind, seed=seed + k)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scores = ae.anomaly_score(odd)
        odd_snr = snr[stars] if kind == "wrong_class" else snr
        entry = {"n": int(np.isfinite(scores).sum()), "auc": roc_auc(normal_scores, scores),
                 "by_snr": []}
        for lo, hi in zip(SNR_BINS[:-1], SNR_BINS[1:], strict=True):
            on_n, on_a = (snr >= lo) & (snr < hi), (odd_snr >= lo) & (odd_snr < hi)
            entry["by_snr"].append({"snr": [lo, None if np.isinf(hi) else hi],
                                    "auc": roc_auc(normal_scores[on_n], scores[on_a])})
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


def _print_chi2(label, res):
    bins = "  ".join(f"{b['snr'][0]:g}-{b['snr'][1] or 'inf'}: "
                     f"{'-' if b['median'] is None else format(b['median'], '.2f')} ({b['n']})"
                     for b in res["by_snr"])
    print(f"{label:>12}  median chi2/pix {res['median']:.2f}  (QSO {res['QSO']:.2f}, "
          f"GALAXY {res['GALAXY']:.2f}, STAR {res['STAR']:.2f}; "
          f"{100 * res['fraction_below_1.2']:.0f} % <= 1.2)")
    print(f"{'':>12}  by S/N per SDSS pixel: {bins}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--n", type=int, default=3000, help="hold-out spectra")
    parser.add_argument("--seed", type=int, default=999, help="hold-out seed (not 1)")
    parser.add_argument("--model", default="default", help="model name or .keras path")
    parser.add_argument("--scan", type=int, nargs="*", default=None,
                        help="latent sizes to train and compare")
    parser.add_argument("--train", type=int, default=6000)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args(argv)
    if args.seed == 1:
        parser.error("seed 1 is the training seed of the shipped model")

    from spectralnn.estimators import SpectrumAutoencoder

    holdout = simulate(args.n, args.seed)
    results = {"n": args.n, "seed": args.seed}
    if args.scan:
        train = simulate(args.train, 1)
        results["scan"] = []
        for latent in args.scan:
            ae = SpectrumAutoencoder("autoencoder", latent_dim=latent)
            t = time.perf_counter()
            ae.fit(train, epochs=args.epochs, patience=args.epochs, seed=0,
                   batch_size=64, loss="log_chi2")
            res, _ = chi2_table(ae, holdout)
            res.update(latent=latent, fit_s=time.perf_counter() - t)
            results["scan"].append(res)
            _print_chi2(f"latent {latent}", res)
    ae = SpectrumAutoencoder(args.model)
    res, chi2 = chi2_table(ae, holdout)
    _print_chi2(f"{ae.metadata['name']}", res)
    aucs = anomaly_aucs(ae, holdout, chi2, args.seed)
    for kind, entry in aucs.items():
        bins = "  ".join(f"{b['snr'][0]:g}-{b['snr'][1] or 'inf'}: {b['auc']:.3f}"
                         for b in entry["by_snr"])
        print(f"{kind:>12}  ROC AUC {entry['auc']:.3f} (n={entry['n']}); by S/N: {bins}")
    base, full = throughput(ae, holdout[: min(len(holdout), 1000)])
    print(f"  throughput  preprocessing alone {base:.0f} spectra/s, predict {full:.0f} "
          f"spectra/s (ratio {full / base:.2f})")
    results.update(model=res, anomalies=aucs, throughput={"pipeline": base, "predict": full})
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
