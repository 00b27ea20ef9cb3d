"""
Classify and redshift a batch of spectra
========================================

Sort a batch of survey spectra into stars, galaxies and quasars and measure
their redshifts with `~spectralnn.SpectralClassifier` and
`~spectralnn.RedshiftEstimator`, using the weights that ship with the
package (trained on simulated spectra), then plot how they did against the
truth.
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
batch = next(simulate_spectra("mixed", 200, seed=2, chunk_size=200, fractions=FRACTIONS))
print(batch)
print(batch.meta["object_id", "class", "subclass", "z"][:5])

# %%
# Classify
# --------
# The classifier reads the observed-frame spectrum (the redshift is not known
# yet) on a common 3600–10000 Å log-λ grid. One row per spectrum: the class
# and its probability, the probability of each class, the BAL probability and
# the most probable SDSS-style subclass (a stellar group, a galaxy's
# emission-line class, ``BROADLINE`` or ``BAL`` for quasars).
from spectralnn import SpectralClassifier

classifier = SpectralClassifier()
classes = classifier.predict(batch)
for name in ("class_prob", "prob_star", "prob_galaxy", "prob_qso", "bal_prob",
             "subclass_prob"):
    classes[name].info.format = ".3f"
classes["class", "class_prob", "prob_star", "prob_galaxy", "prob_qso", "subclass",
        "flags"][:8].pprint(max_width=100)

# %%
# How often is the class right? `spectralnn.visualization.plot_confusion_matrix`
# draws the fractions of each true class.
import matplotlib.pyplot as plt

from spectralnn.visualization import plot_confusion_matrix, plot_redshift_comparison

truth = np.asarray(batch.meta["class"]).astype(str)
predicted = np.asarray(classes["class"]).astype(str)
print(f"accuracy: {np.mean(truth == predicted):.1%}")
plot_confusion_matrix(truth, predicted, labels=["STAR", "GALAXY", "QSO"])
plt.show()

# %%
# Redshifts
# ---------
# `~spectralnn.RedshiftEstimator` measures redshifts with templates, as
# survey pipelines do: the classifier's class picks the template set, a
# global χ² search over that class's whole redshift range finds the best
# redshift, and a fit on the spectrum's own pixels refines it below a pixel.
# Besides ``z`` and ``z_err`` the table gives the class used (``spectype``),
# the lines inside the spectrum at that redshift, ``dchi2`` (how much better
# the best redshift is than the best one more than 6000 km/s away) and the
# risk of a catastrophic failure it implies, with a warning flag.
from spectralnn import RedshiftEstimator

redshifter = RedshiftEstimator(classifier=classifier)
redshifts = redshifter.predict(batch)
for name in ("z", "z_err", "z_ref", "z_risk"):
    redshifts[name].info.format = ".5f"
redshifts["dchi2"].info.format = ".0f"
redshifts["spectype", "z", "z_err", "z_ref", "dchi2", "z_warning"][:8].pprint(max_width=-1)
print("lines of the first quasar:",
      redshifts["lines"][np.flatnonzero(redshifts["spectype"] == "QSO")[0]])

# %%
# ``z_ref`` is the input's own redshift (here the simulation truth). For the
# quasars and galaxies, `spectralnn.visualization.plot_redshift_comparison`
# shows predicted against true redshifts, the residuals Δz/(1+z) below, and
# counts the catastrophic failures (a velocity error beyond 6000 km/s).
extragalactic = np.isin(truth, ["QSO", "GALAXY"])
z_true = np.asarray(batch.meta["z"], dtype=float)[extragalactic]
z_pred = redshifts["z"].value[extragalactic]
z_err = redshifts["z_err"].value[extragalactic]
plot_redshift_comparison(z_true, z_pred, z_err=z_err)
plt.show()

# %%
# The stars' radial velocities come from the same fit around zero velocity:
stars = truth == "STAR"
velocity = (redshifts["z"].value[stars]
            - np.asarray(batch.meta["z"], dtype=float)[stars]) * 299792.458
print(f"{stars.sum()} stars: median |Δv| = {np.median(np.abs(velocity)):.0f} km/s")

# %%
# Your own spectra, your own networks
# -----------------------------------
# `spectralnn.analysis.classify` and `spectralnn.analysis.redshift` are the
# specutils-style functions over the same models. To train a classifier on
# your own labelled spectra, build a new network and ``fit`` it (the labels
# come from the truth columns of simulated or catalogue spectra, and the
# classes are balanced by oversampling), then ``save`` it: the ``.keras`` file
# and a ``.json`` with the metadata (preprocessing, labels, training history,
# sha256), which ``SpectralClassifier("my-classifier.keras")`` reads back
# with Keras' safe mode. See :doc:`/training` and ``spectralnn tune`` for a
# hyperparameter search.
