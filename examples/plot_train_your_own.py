"""
Train a model on your own spectra
=================================

Train a `~spectralnn.MassEstimator` network on spectra and catalogue masses of
your own, calibrate its uncertainties, save it and load it back.

Your spectra would come from files (``spectralnn.io.read_spectra`` reads many
SDSS/BOSS/DESI files into one batch) and your masses from a catalogue. To
keep this tutorial self-contained and fast, the "own" spectra are simulated
quasars turned into a plain list of `specutils.Spectrum` objects, and the
"catalogue" is a `~astropy.units.Quantity` array of their virial masses. The
network is tiny and trains for a few epochs: this shows the workflow, not the
accuracy of the shipped ``mass-default`` model (trained on 60,000 spectra).
"""

# %%
# Spectra and a catalogue
# -----------------------
# Each spectrum carries its redshift in ``meta['z']`` (as `read_sdss` puts
# it); the masses are a separate array, one per spectrum, as you would read
# them from a catalogue. Rows with a NaN mass are skipped by ``fit``.
import astropy.units as u
import numpy as np

from spectralnn.simulate import simulate_quasars

quasars = simulate_quasars(700, seed=11, z_range=(0.3, 2.5), snr_range=(8, 40))
spectra = quasars.to_spectra()  # a list of specutils.Spectrum, like your own
catalogue_mass = np.asarray(quasars.meta["virial_log_mbh"]) * u.dex(u.solMass)
print(len(spectra), "spectra; first:", spectra[0].spectral_axis[[0, -1]],
      "z =", round(spectra[0].meta["z"], 3))
print("catalogue masses:", catalogue_mass[:4].round(2))

# %%
# Keep some spectra aside: 150 to calibrate the uncertainties and 150 to test
# the result. The rest train the network (which holds out 10 % of them for
# early stopping).
train, calib, test = spectra[:400], spectra[400:550], spectra[550:]
m_train, m_calib, m_test = catalogue_mass[:400], catalogue_mass[400:550], catalogue_mass[550:]

# %%
# Build and train a network
# -------------------------
# An architecture name instead of ``'default'`` makes an untrained estimator.
# The preprocessing (dereddening, rest frame, resampling onto the model grid,
# normalisation, plus log luminosity and z as a second input) is the default
# one and is saved with the model, so whoever loads it preprocesses the same
# way. ``fit`` never modifies the spectra; ``checkpoint_dir`` would write
# ``last.keras``/``best.keras`` after each epoch and ``resume=True`` continue
# from them.
from spectralnn import MassEstimator

TINY = {"filters": 8, "stages": 3, "dense_units": 32, "dropout": 0.0}
estimator = MassEstimator("resnet1d", architecture_options=TINY, virial=False)
estimator.fit(train, m_train, epochs=30, batch_size=32, patience=6, seed=0)
print(estimator)
print(len(estimator.history["loss"]), "epochs; final validation loss",
      round(estimator.history["val_loss"][-1], 3))

# %%
# Calibrate the uncertainties
# ---------------------------
# The network predicts a mean and a variance for each spectrum (a
# heteroscedastic Gaussian head). Temperature scaling then multiplies every
# predicted error by one factor, chosen on held-out spectra so that 68 % of
# their catalogue masses fall within one ``log_mbh_err``.
estimator.calibrate_uncertainties(calib, m_calib)
info = estimator.metadata["uncertainty"]
print(f"scale {info['sigma_scale']:.2f}: coverage of 1 sigma "
      f"{info['coverage_68_before']:.0%} before, {info['coverage_68_after']:.0%} after")

# %%
# Test it
# -------
table = estimator.predict(test)
pred = table["log_mbh"].value
err = table["log_mbh_err"].value
true = m_test.value
resid = pred - true
print(f"{len(resid)} test spectra: bias {np.mean(resid):+.2f} dex, "
      f"scatter {np.std(resid):.2f} dex, {np.mean(np.abs(resid) < err):.0%} within 1 sigma")

import matplotlib.pyplot as plt

fig, axes = plt.subplots(1, 2, figsize=(9, 4))
axes[0].plot(estimator.history["loss"], label="training")
axes[0].plot(estimator.history["val_loss"], label="validation")
axes[0].set_xlabel("epoch")
axes[0].set_ylabel("Gaussian negative log-likelihood")
axes[0].legend()
axes[1].errorbar(true, pred, yerr=err, fmt="o", ms=3, lw=0.6, alpha=0.7)
lim = [min(true.min(), pred.min()) - 0.2, max(true.max(), pred.max()) + 0.2]
axes[1].plot(lim, lim, "k--", lw=0.8)
axes[1].set_xlabel("catalogue log M_BH [M_sun]")
axes[1].set_ylabel("network log M_BH [M_sun]")
fig.tight_layout()
plt.show()

# %%
# Save and load
# -------------
# ``save`` writes ``my-mass.keras`` (the network) and ``my-mass.json`` (the
# preprocessing, targets, training history, calibration and the file's
# sha256). ``load`` checks the hash and reads the network with Keras' safe
# mode, so a model file can never run foreign code; the loaded estimator
# predicts exactly as the saved one.
import tempfile
from pathlib import Path

folder = Path(tempfile.mkdtemp())
path = estimator.save(folder / "my-mass", name="my-mass", version="1.0",
                      training_set={"n_spectra": len(train), "source": "tutorial"})
print(sorted(p.name for p in folder.iterdir()))

loaded = MassEstimator.load(path, virial=False)
print(loaded)
print("sha256:", loaded.metadata["sha256"][:16] + "...")
again = loaded.predict(test[:5])
print("same predictions:", np.allclose(again["log_mbh"].value, pred[:5], atol=1e-5))

# %%
# From the command line
# ---------------------
# The same training from an HDF5 dataset (``spectralnn simulate`` writes one;
# `spectralnn.datasets.write_dataset` writes yours)::
#
#     spectralnn train mass --data my-spectra.h5 -o my-mass.keras
#     spectralnn predict mass --model my-mass.keras spec-*.fits -o masses.ecsv
