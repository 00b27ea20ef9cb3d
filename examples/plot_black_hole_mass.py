"""
Black-hole mass of a quasar from an SDSS spectrum
=================================================

Read an SDSS ``spec-PLATE-MJD-FIBER.fits`` file, predict the quasar's
black-hole mass with the shipped network, compare it with the classical
single-epoch virial mass, and plot the broad-line fit.

The package ships one spectrum in the SDSS layout: a quasar simulated by
`spectralnn.simulate.simulate_quasars` at z ≈ 0.28 with S/N 20 per pixel, so
that Hβ and [O III] fall inside the SDSS wavelength range. Its true mass is
known (it is in the file's primary header), which makes it a good first test.
Any real SDSS/BOSS spec file (full or lite) is read the same way.
"""

# %%
# Read the spectrum
# -----------------
# `spectralnn.io.read_sdss` uses specutils' own ``"SDSS-III/IV spec"`` loader
# and adds the pipeline's labels (redshift, class, plate/MJD/fibre, Galactic
# extinction) to ``meta``. The result is an ordinary `specutils.Spectrum`,
# with an inverse-variance uncertainty and a mask of the bad pixels.
from spectralnn.datasets import example_spectrum_path, example_truth
from spectralnn.io import read_sdss

spectrum = read_sdss(example_spectrum_path())
print(spectrum.spectral_axis[[0, -1]])
print("z =", round(spectrum.meta["z"], 4), " class:", spectrum.meta["class"],
      " E(B-V) =", round(spectrum.meta["ebv"], 4))
print(type(spectrum.uncertainty).__name__, "uncertainty;", spectrum.flux.size, "pixels,",
      int(spectrum.mask.sum()), "masked,", int((spectrum.uncertainty.array == 0).sum()),
      "without data (inverse variance 0)")

# %%
# Predict the mass with the network
# ---------------------------------
# `~spectralnn.MassEstimator` loads the shipped ``mass-default`` weights (their
# sha256 is checked, and Keras reads them in safe mode). The network sees the
# dereddened, rest-frame spectrum on a fixed log-λ grid and predicts
# log10(M_BH / M_sun) with its own uncertainty. The table also carries the
# classical virial measurement (``virial_*`` columns) and quality flags.
from spectralnn import MassEstimator

estimator = MassEstimator()
print(estimator)
table = estimator.predict(spectrum)
columns = ["log_mbh", "log_mbh_err", "virial_line", "virial_fwhm", "virial_log_mbh",
           "virial_log_mbh_err", "flags"]
for name in columns:
    if table[name].dtype.kind == "f":
        table[name].info.format = ".3f" if "mbh" in name else ".0f"
table[columns].pprint(max_width=100)

# %%
# The table's ``meta`` records what produced it: the model, its sha256 and
# the virial calibration the network was trained to reproduce.
print(table.meta["model_name"], table.meta["model_version"],
      "sha256", table.meta["model_sha256"][:16] + "...")
print(table.meta["calibration"])

# %%
# Compare with the truth
# ----------------------
# The example is simulated, so we know the catalogue-style virial mass it
# was built with. The network is trained to reproduce this quantity, not the
# "true" mass: single-epoch virial masses scatter by a further 0.3–0.4 dex
# about reverberation-mapping masses, and that systematic is not in
# ``log_mbh_err``.
truth = example_truth()
print(f"virial truth (noiseless): {truth['virial_log_mbh']:.2f}")
print(f"network:                  {table['log_mbh'][0].value:.2f} "
      f"± {table['log_mbh_err'][0].value:.2f}")
print(f"virial, measured:         {table['virial_log_mbh'][0].value:.2f} "
      f"± {table['virial_log_mbh_err'][0].value:.2f}")

# %%
# The quoted errors are 1σ. The network's are calibrated on a simulated
# hold-out set so that 68 % of the hold-out masses fall within one
# ``log_mbh_err``: a statement about many spectra, so a single one can be off
# by more. The measured virial error propagates only the FWHM and luminosity
# errors of this spectrum.

# %%
# The same model as a specutils-style function
# --------------------------------------------
# `spectralnn.analysis.black_hole_mass` follows ``specutils.analysis``: a
# spectrum in, a `~astropy.units.Quantity` out, with its uncertainty attached.
from spectralnn.analysis import black_hole_mass

mass = black_hole_mass(spectrum)
print(f"{mass.value:.3f} ± {mass.uncertainty.value:.3f} {mass.unit}")

# %%
# Plot the broad-line fit
# -----------------------
# `spectralnn.visualization.plot_mass_fit` shows the classical fit behind the
# virial mass: the power-law continuum (fitted in the shaded windows), the
# broad Hβ on top of it and the full model with the narrow lines; the legend
# gives both masses.
import matplotlib.pyplot as plt

from spectralnn.visualization import plot_mass_fit

ax = plot_mass_fit(spectrum, table[0])
plt.tight_layout()
plt.show()
