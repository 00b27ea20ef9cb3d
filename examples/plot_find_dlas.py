"""
Find damped Lyα absorbers
=========================

`spectralnn.estimators.DLAFinder` searches the Lyα forest of quasar spectra
for damped Lyα absorbers (DLAs, log N_HI ≥ 20.3) and returns, for each, its
redshift and column density with uncertainties. Here it runs on simulated
SDSS sight-lines whose true absorbers are known, so we can check what it
finds with the matching rule of the docs (a detection matches a true DLA when
``|Δz| ≤ 0.01``).
"""

# %%
# Simulate sight-lines with DLAs
# ------------------------------
# ``dla_rate`` multiplies the observed DLA incidence so that this small sample
# has enough of them; the truth table lists up to two DLAs per sight-line.
import numpy as np

from spectralnn.simulate import simulate_quasars

qsos = simulate_quasars(200, seed=11, z_range=(2.5, 3.5), snr_range=(8, 30),
                        dla_rate=3.0, bal_fraction=0.0)
truth = qsos.meta
print(int(np.sum(truth["n_dla"])), "absorbers with log N_HI >= 19.5 in",
      len(qsos), "sight-lines")

# %%
# Run the finder
# --------------
# One row per absorber found; ``summary=True`` adds one row per sight-line
# (redshift path searched, S/N in the forest, BAL probability).
from spectralnn import DLAFinder

finder = DLAFinder()
absorbers, sightlines = finder.predict(qsos, summary=True)
dlas = absorbers[absorbers["is_dla"]]
print(len(dlas), "DLAs found; median S/N in the forest",
      round(float(np.median(sightlines["snr_forest"])), 1))
dlas["spectrum", "z_abs", "z_abs_err", "log_nhi", "log_nhi_err", "probability"][:5].pprint()

# %%
# Compare with the truth
# ----------------------
# Each true DLA (log N_HI ≥ 20.3) is matched to the closest detection of its
# sight-line within ``|Δz| ≤ 0.01``.
true_rows = []
for k in (1, 2):
    z_true = np.asarray(truth[f"dla{k}_z"], dtype=float)
    n_true = np.asarray(truth[f"dla{k}_log_nhi"], dtype=float)
    for i in np.flatnonzero(np.isfinite(z_true) & (n_true >= 20.3)):
        true_rows.append((i, z_true[i], n_true[i]))
found, dz, dn = 0, [], []
for i, z_true, n_true in true_rows:
    mine = dlas[dlas["spectrum"] == i]
    if len(mine):
        j = np.argmin(np.abs(mine["z_abs"] - z_true))
        if abs(mine["z_abs"][j] - z_true) <= 0.01:
            found += 1
            dz.append(mine["z_abs"][j] - z_true)
            dn.append(mine["log_nhi"][j].value - n_true)
print(f"completeness {found}/{len(true_rows)}; median |dz| {np.median(np.abs(dz)):.4f}; "
      f"log N_HI scatter {np.std(dn):.2f} dex")

# %%
# Plot a sight-line
# -----------------
# `spectralnn.visualization.plot_dlas` draws the forest with the Voigt
# profiles (Lyα and Lyβ) of the absorbers found.
from spectralnn.visualization import plot_dlas

best = int(dlas["spectrum"][np.argmax(dlas["log_nhi"].value)])
mine = absorbers[absorbers["spectrum"] == best]
mine["spectrum"] = 0  # row 0 of the one-spectrum batch drawn
ax = plot_dlas(qsos[best], mine)
ax.set_title(f"sight-line {best}: z_qso = {truth['z'][best]:.2f}")
