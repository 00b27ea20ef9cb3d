"""
Classify and redshift a batch of spectra
========================================

Sort a batch of survey spectra into stars, galaxies and quasars and measure
their redshifts with `~spectralnn.SpectralClassifier` and
`~spectralnn.RedshiftEstimator`.

No default weights ship for these two predictors yet, so this tutorial first
trains a small network of each on simulated spectra (under a minute on a
laptop CPU, both together), then runs them on a fresh batch the networks
have never seen. With weights of your own, skip the training and load them:
``SpectralClassifier("my-classifier.keras")``.
"""

# %%
# Spectra with known truth
# ------------------------
# `spectralnn.simulate.simulate_spectra` draws quasars, galaxies and stars
# observed through an SDSS-like instrument; every batch's ``meta`` is the
# truth table (class, subclass, redshift, ...). Spectra are
# `~spectralnn.SpectrumBatch` objects: N×M flux, inverse variance and mask on
# one wavelength grid. A list of `specutils.Spectrum` objects or of SDSS files
# works everywhere a batch does.
import numpy as np

from spectralnn.simulate import simulate_spectra

FRACTIONS = {"qso": 0.4, "galaxy": 0.3, "star": 0.3}


def simulate(n, seed):
    """``n`` simulated spectra of all three kinds, as one batch."""
    return next(simulate_spectra("mixed", n, seed=seed, chunk_size=n, fractions=FRACTIONS))


training = simulate(800, seed=1)
batch = simulate(300, seed=2)  # never seen in training
print(batch)
print(batch.meta["object_id", "class", "subclass", "z"][:5])

# %%
# Train a classifier
# ------------------
# The network reads the observed-frame spectrum (the redshift is not known
# yet) on a common 3600–10000 Å log-λ grid. ``fit`` takes the labels from the
# simulator's truth columns and oversamples the rarer classes so that stars,
# galaxies, quasars and BAL quasars count equally. A tiny residual network and
# a few epochs are enough to show the workflow; the default architecture is
# larger.
from spectralnn import SpectralClassifier

TINY = {"filters": 8, "stages": 3, "dense_units": 32, "dropout": 0.0}

classifier = SpectralClassifier("resnet1d", architecture_options=TINY)
classifier.fit(training, epochs=20, batch_size=32, patience=5, seed=0)
print(classifier)
print("labels:", classifier.labels)

# %%
# Classify the new batch
# ----------------------
# One row per spectrum: the class and its probability, the probability of
# each class, the BAL probability and the most probable subclass.
classes = classifier.predict(batch)
for name in ("class_prob", "prob_star", "prob_galaxy", "prob_qso", "bal_prob",
             "subclass_prob"):
    classes[name].info.format = ".2f"
classes["class", "class_prob", "prob_star", "prob_galaxy", "prob_qso", "subclass",
        "flags"][:8].pprint(max_width=100)

# %%
# How often is the class right? A confusion matrix against the truth:
truth = np.asarray(batch.meta["class"]).astype(str)
predicted = np.asarray(classes["class"]).astype(str)
names = ["STAR", "GALAXY", "QSO"]
print("truth \\ predicted " + " ".join(f"{n:>7s}" for n in names))
for t in names:
    row = [np.sum((truth == t) & (predicted == p)) for p in names]
    print(f"{t:>17s} " + " ".join(f"{c:7d}" for c in row))
print(f"accuracy: {np.mean(truth == predicted):.1%}")

# %%
# Train a redshift network
# ------------------------
# `~spectralnn.RedshiftEstimator` predicts ln(1 + z) with its own uncertainty
# (a heteroscedastic Gaussian head). A redshift on a log-λ grid is a shift, so
# its network keeps the position of the features it finds. Here it is trained
# on 500 simulated quasars, whose strong broad lines make the redshift easy
# to see; the target is the truth column ``z``. Then its uncertainties are
# calibrated on 150 other quasars: one factor scales every predicted ``z_err``
# so that 68 % of the held-out redshifts fall within one ``z_err``
# (temperature scaling).
from spectralnn import RedshiftEstimator

quasars = next(simulate_spectra("qso", 650, seed=3, chunk_size=650))
redshifter = RedshiftEstimator("resnet1d", architecture_options=TINY)
redshifter.fit(quasars[:500], "z", epochs=25, batch_size=32, patience=8, seed=0)
redshifter.calibrate_uncertainties(quasars[500:], "z")
print(redshifter)
print("uncertainty scale factor:", round(redshifter.sigma_scale, 2))

# %%
# Run it on the spectra the classifier called quasars. Besides ``z`` and
# ``z_err`` the table lists the lines inside the spectrum at that redshift,
# the risk of a catastrophic failure (a velocity error above 6000 km/s, the
# QuasarNET criterion) under the predicted Gaussian, and a warning flag.
test_quasars = batch[np.flatnonzero(predicted == "QSO")]
redshifts = redshifter.predict(test_quasars)
for name in ("z", "z_err", "z_ref", "z_risk"):
    redshifts[name].info.format = ".3f"
redshifts["z", "z_err", "z_ref", "lines", "z_risk", "z_warning"][:8].pprint(max_width=-1)

# %%
# ``z_ref`` is the input's own redshift (here the simulation truth). A network
# this small, trained for seconds on a few hundred spectra, gets only a rough
# redshift, nowhere near what a survey needs: that takes tens of thousands
# of training spectra and a larger network. What the calibration buys is
# honesty: ``z_err`` is as wide as the errors really are (the pulls below
# have about unit width), and ``z_risk``/``z_warning`` flag the spectra whose
# redshift should not be trusted.
import matplotlib.pyplot as plt

z_true = np.asarray(redshifts["z_ref"], dtype=float)
z_pred = np.asarray(redshifts["z"], dtype=float)
z_err = np.asarray(redshifts["z_err"], dtype=float)
dz = z_pred - z_true
print(f"{len(dz)} quasars: median |Δz| = {np.median(np.abs(dz)):.2f}, "
      f"median z_err = {np.median(z_err):.2f}, "
      f"{np.mean(np.abs(dz) < z_err):.0%} within 1 z_err, "
      f"{np.mean(redshifts['z_warning']):.0%} with z_warning")

fig, axes = plt.subplots(1, 2, figsize=(9, 4))
axes[0].errorbar(z_true, z_pred, yerr=z_err, fmt="o", ms=3, lw=0.6, alpha=0.7)
axes[0].plot([0, 6], [0, 6], "k--", lw=0.8)
axes[0].set_xlim(0, 6)
axes[0].set_ylim(0, 6)
axes[0].set_xlabel("true z")
axes[0].set_ylabel("predicted z")
axes[0].set_title("RedshiftEstimator (tiny network)")
axes[1].hist(np.clip(dz / z_err, -3.9, 3.9), bins=np.linspace(-4, 4, 33))
axes[1].set_xlabel("(z - true z) / z_err")
axes[1].set_ylabel("quasars")
axes[1].set_title("pulls: about unit width if z_err is honest")
fig.tight_layout()
plt.show()

# %%
# Keep the networks
# -----------------
# ``save`` writes the ``.keras`` file and a ``.json`` with the metadata
# (preprocessing, labels, training history, sha256); ``load`` reads them back
# with Keras' safe mode, checking the hash. `spectralnn.analysis.classify` and
# `spectralnn.analysis.redshift` are the specutils-style functions over the
# default weights, once those exist.
