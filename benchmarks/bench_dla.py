"""
Hold-out completeness, purity, accuracy and throughput of the DLA finder.

Simulates a hold-out of quasar sight-lines with a seed never used in training
(default 10,000, z_qso 2–5, S/N per pixel log-uniform 1–30, SDSS-like, DLA
incidence boosted by ``--dla-rate`` so that the hold-out holds enough DLAs;
12 % BAL quasars; Lyman-limit systems and metal doublets as in the simulator)
and runs `spectralnn.estimators.DLAFinder` on it. The matching rule
(`spectralnn.estimators.dla.match_absorbers`):

* a detection matches a true absorber of its sight-line if |Δz| ≤ 0.01;
* **completeness** = matched true DLAs / true DLAs (log N_HI ≥ 20.3) whose
  Lyα centre lies in the searched range (rest 912 Å to 3000 km/s short of
  the quasar's Lyα, on pixels with data);
* **purity** = matched detections / detections with predicted
  log N_HI ≥ 20.3, where a match is to any simulated absorber with
  log N_HI ≥ 19.5 (DLA or sub-DLA; "strict purity" counts only matches to
  true DLAs);
* σ_z and σ(log N_HI): standard deviation (and NMAD) of the differences of
  matched true DLAs.

It prints completeness and purity per S/N bin and per log N_HI bin, σ_z,
σ(log N_HI), the false DLAs in BAL and non-BAL sight-lines, the BAL flag's
accuracy, and the throughput of ``predict`` (sight-lines per second on the
machine's cores, simulation excluded). With ``--peer N`` it also runs the
Gaussian-process finder of the ``gp-dla-finder`` package (Garnett et al.
2017; Ho, Bird & Garnett 2020, 2021; ``pip install gp-dla-finder``, optional
and skipped when absent) and DLAFinder on the same first N sight-lines and
prints both accuracies and speeds (gp-dla-finder compares no absorber with
one absorber, so it reports at most one per sight-line; it took 9–27 s per
sight-line on the shared 2-core development machine, so ``--peer 200`` runs
for about an hour; ``--peer-processes`` shares its sight-lines among worker
processes and ``--peer-cache`` keeps its results, so that a later run with a
new DLAFinder model compares on the same sight-lines without rerunning it)::

    python benchmarks/bench_dla.py --n 10000 --seed 424242 --json dla.json
    python benchmarks/bench_dla.py --n 2000 --peer 200 --peer-cache peer.npz
"""

import argparse
import json
import time
import warnings

import numpy as np

SNR_BINS = (1.0, 2.0, 5.0, 10.0, 30.0)
NHI_BINS = (20.3, 20.5, 20.8, 21.2, 22.5)
DLA = 20.3
_LYA = 1215.6701
_C_KMS = 299792.458


def _true_absorbers(meta):
    """Flat arrays (sight-line, z, log N) of the simulated DLAs and sub-DLAs."""
    rows, zs, ns = [], [], []
    k = 1
    while f"dla{k}_z" in meta.colnames:
        z = np.asarray(meta[f"dla{k}_z"], dtype=float)
        n = np.asarray(meta[f"dla{k}_log_nhi"], dtype=float)
        ok = np.isfinite(z)
        rows.append(np.flatnonzero(ok))
        zs.append(z[ok])
        ns.append(n[ok])
        k += 1
    return np.concatenate(rows), np.concatenate(zs), np.concatenate(ns)


def _searched(z_abs, z_qso, wave_min):
    """True absorbers inside the searched rest range and the data."""
    rest = _LYA * (1 + z_abs) / (1 + z_qso)
    return (rest >= 911.753) & (rest <= _LYA * (1 - 3000.0 / _C_KMS)) & (
        _LYA * (1 + z_abs) >= wave_min)


def _frac(num, den):
    return float(num) / den if den else float("nan")


def _sigma(x):
    x = x[np.isfinite(x)]
    if x.size < 2:
        return {"n": int(x.size)}
    return {"n": int(x.size), "std": float(np.std(x)), "bias": float(np.mean(x)),
            "nmad": float(1.4826 * np.median(np.abs(x - np.median(x))))}


def evaluate(found, sight, meta, wave_min):
    """Every hold-out figure from the finder's tables and the truth (a dict)."""
    from spectralnn.estimators.dla import match_absorbers

    zq = np.asarray(meta["z"], dtype=float)
    snr = np.asarray(meta["snr"], dtype=float)
    bal = np.asarray(meta["bal"], dtype=bool)
    t_row, t_z, t_n = _true_absorbers(meta)
    searched = _searched(t_z, zq[t_row], wave_min) & np.asarray(
        sight["dz_searched"] > 0)[t_row]
    d_row = np.asarray(found["spectrum"])
    d_z = np.asarray(found["z_abs"], dtype=float)
    d_n = np.asarray(found["log_nhi"].value, dtype=float)
    det_match, tru_match = match_absorbers(d_row, d_z, t_row, t_z)
    true_dla = searched & (t_n >= DLA)
    pred_dla = d_n >= DLA
    matched_t = tru_match >= 0
    out = {"n_sightlines": int(len(meta)),
           "n_true_dla_searched": int(true_dla.sum()),
           "n_detections_dla": int(pred_dla.sum())}
    out["completeness"] = _frac((true_dla & matched_t).sum(), true_dla.sum())
    hi = snr[t_row] > 5
    out["completeness_snr_gt5"] = _frac((true_dla & matched_t & hi).sum(),
                                        (true_dla & hi).sum())
    out["purity"] = _frac((pred_dla & (det_match >= 0)).sum(), pred_dla.sum())
    strict = det_match >= 0
    strict[strict] = t_n[det_match[strict]] >= DLA
    out["purity_strict"] = _frac((pred_dla & strict).sum(), pred_dla.sum())
    d_hi = snr[d_row] > 5
    out["purity_snr_gt5"] = _frac((pred_dla & d_hi & (det_match >= 0)).sum(),
                                  (pred_dla & d_hi).sum())
    pairs = true_dla & matched_t
    dz = d_z[tru_match[pairs]] - t_z[pairs]
    dn = d_n[tru_match[pairs]] - t_n[pairs]
    out["sigma_z"] = _sigma(dz)
    out["sigma_log_nhi"] = _sigma(dn)
    out["sigma_z_snr_gt5"] = _sigma(dz[hi[pairs]])
    out["sigma_log_nhi_snr_gt5"] = _sigma(dn[hi[pairs]])
    by_snr = []
    for lo, up in zip(SNR_BINS[:-1], SNR_BINS[1:], strict=True):
        t_in = true_dla & (snr[t_row] >= lo) & (snr[t_row] < up)
        d_in = pred_dla & (snr[d_row] >= lo) & (snr[d_row] < up)
        by_snr.append({"snr": [lo, up], "n_true": int(t_in.sum()),
                       "completeness": _frac((t_in & matched_t).sum(), t_in.sum()),
                       "n_detected": int(d_in.sum()),
                       "purity": _frac((d_in & (det_match >= 0)).sum(), d_in.sum())})
    out["by_snr"] = by_snr
    by_nhi = []
    for lo, up in zip(NHI_BINS[:-1], NHI_BINS[1:], strict=True):
        t_in = true_dla & (t_n >= lo) & (t_n < up)
        d_in = pred_dla & (d_n >= lo) & (d_n < up)
        by_nhi.append({"log_nhi": [lo, up], "n_true": int(t_in.sum()),
                       "completeness": _frac((t_in & matched_t).sum(), t_in.sum()),
                       "n_detected": int(d_in.sum()),
                       "purity": _frac((d_in & (det_match >= 0)).sum(), d_in.sum())})
    out["by_log_nhi"] = by_nhi
    false = pred_dla & (det_match < 0)
    out["false_dla_in_bal"] = {
        "n_bal_sightlines": int(bal.sum()),
        "false_dlas": int(false[bal[d_row]].sum()),
        "per_sightline": _frac(false[bal[d_row]].sum(), bal.sum())}
    out["false_dla_in_non_bal"] = {
        "n_sightlines": int((~bal).sum()),
        "false_dlas": int(false[~bal[d_row]].sum()),
        "per_sightline": _frac(false[~bal[d_row]].sum(), (~bal).sum())}
    flagged = np.asarray(sight["bal"], dtype=bool)
    usable = np.isfinite(np.asarray(sight["bal_probability"], dtype=float))
    out["bal_flag"] = {"recall": _frac((flagged & bal & usable).sum(), (bal & usable).sum()),
                       "false_flag_rate": _frac((flagged & ~bal & usable).sum(),
                                                (~bal & usable).sum())}
    return out


_PEER = {}


def _peer_init():
    """Build one gp-dla-finder per worker process (its GP model loads once)."""
    from gp_dla_finder.finder import Finder

    _PEER["finder"] = Finder()


def _peer_one(args):
    """gp-dla-finder on one sight-line: (index, z, log N) of its best candidate, or None."""
    from gp_dla_finder.gp.spectrum import Spectrum

    i, wave, flux, ivar, z_qso, mask = args
    spec = Spectrum(wavelength=wave, flux=flux, ivar=ivar, z_qso=z_qso, mask=mask)
    try:
        result = _PEER["finder"].run(spec, targetid=i)
    except Exception as exc:  # noqa: BLE001 - a peer failure is one row, not the run
        print(f"gp-dla-finder failed on sight-line {i}: {exc}", flush=True)
        return None
    if result.detected(0.5) and result.absorber_candidates:
        cand = result.absorber_candidates[0]
        return i, cand.grid_z_abs, cand.grid_log_nhi
    return None


def run_peer(batch, n, processes=1):
    """gp-dla-finder on the first n sight-lines: (rows, z, log N, seconds) or None.

    With ``processes > 1`` the sight-lines are shared among worker processes
    (gp-dla-finder works on one sight-line at a time); the time is the wall
    time of the whole run, so spectra/s counts every process.
    """
    try:
        import gp_dla_finder  # noqa: F401
    except ImportError:
        print("gp-dla-finder is not installed (pip install gp-dla-finder): peer skipped")
        return None
    n = min(n, len(batch))
    jobs = [(i, batch.wavelength, batch.flux[i], batch.ivar[i], float(batch.meta["z"][i]),
             batch.mask[i]) for i in range(n)]
    start = time.perf_counter()
    found = []
    if processes > 1:
        import multiprocessing

        with multiprocessing.get_context("spawn").Pool(processes, _peer_init) as pool:
            for k, out in enumerate(pool.imap(_peer_one, jobs), 1):
                found.append(out)
                if k % 10 == 0:
                    print(f"gp-dla-finder: {k} sight-lines in "
                          f"{time.perf_counter() - start:.0f} s", flush=True)
    else:
        _peer_init()
        for k, job in enumerate(jobs, 1):
            found.append(_peer_one(job))
            if k % 10 == 0:
                print(f"gp-dla-finder: {k} sight-lines in {time.perf_counter() - start:.0f} s",
                      flush=True)
    seconds = time.perf_counter() - start
    hits = [f for f in found if f is not None]
    rows = np.array([h[0] for h in hits], dtype=int)
    return rows, np.array([h[1] for h in hits]), np.array([h[2] for h in hits]), seconds


def _cached_peer(args, sub):
    """gp-dla-finder's results, from ``--peer-cache`` when it holds this run's."""
    import os

    key = f"seed {args.seed} n {args.n} rate {args.dla_rate} peer {args.peer}"
    if args.peer_cache and os.path.exists(args.peer_cache):
        with np.load(args.peer_cache) as cache:
            if str(cache["key"]) == key:
                print(f"gp-dla-finder results read from {args.peer_cache} ({key})")
                return (cache["rows"], cache["z"], cache["log_nhi"],
                        float(cache["seconds"]))
            print(f"{args.peer_cache} holds another run ({cache['key']}): running the peer")
    peer = run_peer(sub, args.peer, processes=args.peer_processes)
    if peer is not None and args.peer_cache:
        rows, zs, ns, seconds = peer
        np.savez(args.peer_cache, key=key, rows=rows, z=zs, log_nhi=ns, seconds=seconds)
    return peer


def _print_table(title, rows, key):
    print(f"\n{title}")
    print(f"{key:>14} {'n_true':>7} {'complete':>9} {'n_det':>6} {'purity':>7}")
    for r in rows:
        lo, up = r[key]
        print(f"{lo:6.1f}-{up:<7.1f} {r['n_true']:7d} {r['completeness']:9.3f} "
              f"{r['n_detected']:6d} {r['purity']:7.3f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10000, help="hold-out sight-lines")
    parser.add_argument("--seed", type=int, default=424242, help="hold-out seed")
    parser.add_argument("--dla-rate", type=float, default=3.0,
                        help="DLA incidence multiplier of the hold-out (default 3)")
    parser.add_argument("--model", default="default", help="DLAFinder model")
    parser.add_argument("--chunk", type=int, default=2000, help="sight-lines per batch")
    parser.add_argument("--peer", type=int, default=0,
                        help="also run gp-dla-finder on this many sight-lines")
    parser.add_argument("--peer-processes", type=int, default=1,
                        help="worker processes for gp-dla-finder (default 1)")
    parser.add_argument("--peer-cache", default=None,
                        help="an .npz of gp-dla-finder's results on these sight-lines: read "
                             "if it exists (same --seed, --n, --peer), else written")
    parser.add_argument("--json", default=None, help="write every number here")
    args = parser.parse_args(argv)

    from astropy import units as u
    from astropy.table import QTable, vstack

    from spectralnn.estimators import DLAFinder
    from spectralnn.simulate import simulate_quasars

    warnings.simplefilter("ignore")
    finder = DLAFinder(args.model)
    finder.predict(simulate_quasars(8, seed=1, z_range=(2.5, 3.0)))  # warm up
    founds, sights, metas = [], [], []
    seconds, first = 0.0, None
    for k, start in enumerate(range(0, args.n, args.chunk)):
        n = min(args.chunk, args.n - start)
        batch = simulate_quasars(n, seed=args.seed * 1000 + k, z_range=(2.0, 5.0),
                                 snr_range=(1.0, 30.0), dla_rate=args.dla_rate)
        if first is None:
            first = batch
        t0 = time.perf_counter()
        found, sight = finder.predict(batch, summary=True)
        seconds += time.perf_counter() - t0
        found["spectrum"] += start
        sight["spectrum"] += start
        founds.append(found)
        sights.append(sight)
        metas.append(batch.meta)
    found = QTable(vstack(founds, metadata_conflicts="silent"))
    sight = QTable(vstack(sights, metadata_conflicts="silent"))
    meta = QTable(vstack(metas, metadata_conflicts="silent"))
    wave_min = float(first.wavelength[0])
    result = evaluate(found, sight, meta, wave_min)
    result["throughput_per_s"] = args.n / seconds
    result["settings"] = {"n": args.n, "seed": args.seed, "dla_rate": args.dla_rate,
                          "model": found.meta.get("model_name"),
                          "sha256": found.meta.get("model_sha256")}

    print(f"hold-out: {args.n} sight-lines (seed {args.seed}, dla_rate {args.dla_rate}), "
          f"{result['n_true_dla_searched']} true DLAs searched")
    print(f"completeness {result['completeness']:.4f} (S/N > 5: "
          f"{result['completeness_snr_gt5']:.4f}); purity {result['purity']:.4f} "
          f"(strict {result['purity_strict']:.4f}; S/N > 5: {result['purity_snr_gt5']:.4f})")
    for key in ("sigma_z", "sigma_log_nhi", "sigma_z_snr_gt5", "sigma_log_nhi_snr_gt5"):
        s = result[key]
        if "std" in s:
            print(f"{key}: std {s['std']:.4f}, NMAD {s['nmad']:.4f}, bias {s['bias']:+.4f} "
                  f"(n = {s['n']})")
    _print_table("by S/N per pixel (truth snr)", result["by_snr"], "snr")
    _print_table("by log N_HI (true for completeness, predicted for purity)",
                 result["by_log_nhi"], "log_nhi")
    print(f"\nfalse DLAs: {result['false_dla_in_bal']} in BAL sight-lines, "
          f"{result['false_dla_in_non_bal']} in the others")
    print(f"BAL flag: {result['bal_flag']}")
    print(f"throughput: {result['throughput_per_s']:.0f} sight-lines/s (predict only)")

    if args.peer:
        sub = first[: args.peer]
        t0 = time.perf_counter()
        ours, ours_sight = finder.predict(sub, summary=True)
        ours_s = time.perf_counter() - t0
        peer = _cached_peer(args, sub)
        mine = evaluate(ours, ours_sight, sub.meta, wave_min)
        print(f"\npeer comparison on {len(sub)} sight-lines:")
        print(f"  DLAFinder:     completeness {mine['completeness']:.3f}, purity "
              f"{mine['purity']:.3f}, {len(sub) / ours_s:.1f} sight-lines/s")
        result["peer"] = {"n": len(sub), "dlafinder": mine,
                          "dlafinder_per_s": len(sub) / ours_s}
        if peer is not None:
            rows, zs, ns, peer_s = peer
            table = QTable({"spectrum": rows, "z_abs": zs,
                            "log_nhi": ns * u.dex(u.cm**-2)})
            theirs = evaluate(table, ours_sight, sub.meta, wave_min)
            print(f"  gp-dla-finder: completeness {theirs['completeness']:.3f}, purity "
                  f"{theirs['purity']:.3f}, {len(sub) / peer_s:.2f} sight-lines/s "
                  f"({args.peer_processes} process(es))")
            result["peer"].update(gp_dla_finder=theirs, gp_dla_finder_per_s=len(sub) / peer_s,
                                  gp_dla_finder_processes=args.peer_processes)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2)
    return result


if __name__ == "__main__":
    main()
