"""
Make ``docs/_static/simulator_real_vs_sim.png`` and print the realism table.

Real spectra are read from the developers' shared data folder (given as the
first argument, default ``../shared/data/real``); only the figure is written,
no real data. Run from the repository root::

    python docs/make_simulator_figure.py /path/to/shared/data/real
"""

import csv
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from spectralnn.io import read_spectra  # noqa: E402
from spectralnn.simulate import (  # noqa: E402
    simulate_galaxies,
    simulate_quasars,
    simulate_stars,
)
from spectralnn.simulate.realism import (  # noqa: E402
    FEATURES,
    classifier_auc,
    compare_distributions,
    match_by_z_snr,
    quasar_features,
)


def _smooth(y, k=5):
    return np.convolve(y, np.ones(k) / k, mode="same")


def _panel(ax, real, sim, title):
    for batch, label, colour, off in ((real, "real", "k", 0.0), (sim, "simulated", "C3", 1.2)):
        rest = batch.wavelength_2d[0] / (1 + batch.meta["z"][0])
        f = np.where(batch.ivar[0] > 0, batch.flux[0], np.nan)
        norm = np.nanmedian(f)
        ax.plot(rest, _smooth(f / norm) + off, color=colour, lw=0.6,
                label=f"{label} (z={batch.meta['z'][0]:.3f})")
    ax.set_title(title, fontsize=9)
    ax.set_ylabel("f$_\\lambda$ / median (+ offset)")
    ax.legend(fontsize=7, loc="upper right")


def realism_table(root):
    rows = list(csv.DictReader(open(root / "spectra_index.csv")))
    best = {}
    for r in rows:
        if ("lowz_broadline_agn" in r["path"] or "rm017" in r["path"]) and \
                "Z_SUSPECT" not in r["flags"] and float(r["label_z"]) < 1.0:
            if r["object_id"] not in best or \
                    float(r["median_snr"]) > float(best[r["object_id"]]["median_snr"]):
                best[r["object_id"]] = r
    real = quasar_features(read_spectra([str(root / r["path"]) for r in best.values()]))
    sim = quasar_features(simulate_quasars(3000, seed=2024, z_range=(0.03, 0.75),
                                           snr_range=None))
    idx = match_by_z_snr(real, sim, k=5)
    matched = sim[idx[idx >= 0]]
    cmp = compare_distributions(real, matched, FEATURES)
    cols = ["continuum_slope", "Hbeta_fwhm", "Hbeta_ew", "OIII_5007_ew", "r_feii"]

    def x(t, use):
        return np.column_stack([np.asarray(getattr(t[c], "value", t[c])) for c in use])

    auc, coef = classifier_auc(x(real, cols), x(matched, cols))
    return cmp, auc, dict(zip(cols, coef)), len(real), len(matched), real, matched, cols


def main(root):
    root = Path(root)
    cmp, auc, coef, nr, ns, real, matched, cols = realism_table(root)
    for c in ("median_real", "median_sim", "median_rel_diff", "spread_real",
              "spread_sim", "spread_ratio"):
        cmp[c].info.format = ".3g"
    cmp.pprint(max_width=200)
    print(f"real objects {nr}, matched simulated {ns}; logistic-regression AUC "
          f"(5-fold) {auc:.3f}; coefficients {coef}")
    for drop in cols:
        keep = [c for c in cols if c != drop]
        a, _ = classifier_auc(
            np.column_stack([np.asarray(getattr(real[c], "value", real[c])) for c in keep]),
            np.column_stack([np.asarray(getattr(matched[c], "value", matched[c]))
                             for c in keep]))
        print(f"  AUC without {drop}: {a:.3f}")

    fig, axes = plt.subplots(3, 1, figsize=(7.5, 9))
    q = read_spectra([root / "sdss/pyqsofit_examples/spec-0332-52367-0639.fits"])
    sq = simulate_quasars(1, seed=5, z_range=(0.10, 0.1001), snr_range=(29.0, 29.0))
    _panel(axes[0], q, sq, "quasar: SDSS 0332-52367-0639 vs simulate_quasars")
    g = read_spectra([root / "sdss/pyqsofit_examples/spec-0266-51602-0013.fits"])
    sg = simulate_galaxies(1, seed=3, z_range=(0.121, 0.1211), snr=16.0)
    _panel(axes[1], g, sg, "galaxy: SDSS 0266-51602-0013 vs simulate_galaxies")
    s = read_spectra([root / "sdss/star/spec-2829-54623-0001.fits"])
    ss = simulate_stars(1, seed=4, subclasses=["F5"], snr=float(np.median(s.snr)))
    ss.meta["z"] = np.zeros(1)
    s.meta["z"] = np.zeros(1)
    _panel(axes[2], s, ss, "star (F5): SDSS 2829-54623-0001 vs simulate_stars")
    axes[2].set_xlabel("rest wavelength (Å)")
    fig.tight_layout()
    out = Path(__file__).parent / "_static" / "simulator_real_vs_sim.png"
    out.parent.mkdir(exist_ok=True)
    fig.savefig(out, dpi=110)
    print("wrote", out)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/real")
