"""
Preprocessing: dereddening, rest frame, continuum and lines
===========================================================

The classical steps every spectral measurement needs, on one
`specutils.Spectrum` and on a batch of thousands at once: correct for Galactic
dust, shift to the rest frame, resample onto a common grid, fit the continuum,
and measure equivalent widths, fluxes and line widths with their errors.

Every function takes a `specutils.Spectrum` (and returns one) or a
`~spectralnn.SpectrumBatch` (and returns one); on a batch it works on the N×M
arrays without a Python loop over spectra.
"""

# %%
# One spectrum
# ------------
# The bundled example quasar (z ≈ 0.28) in the SDSS spec-file layout.
# `~spectralnn.io.read_sdss` puts the redshift and the Galactic E(B-V) from the
# file in ``meta``; every step below reads them from there unless they are
# given as arguments.
import astropy.units as u
import numpy as np

from spectralnn.datasets import example_spectrum_path
from spectralnn.io import read_sdss

spectrum = read_sdss(example_spectrum_path())
print(f"z = {spectrum.meta['z']:.4f}, E(B-V) = {spectrum.meta['ebv']:.4f}")

# %%
# Dereddening uses a ``dust_extinction`` model (G23, R(V) = 3.1, by default)
# and never extrapolates it: wavelengths outside the model's range raise
# `~spectralnn.errors.WavelengthCoverageError`. The correction is largest in
# the blue.
from spectralnn.preprocessing import deredden, log_wavelength_grid, resample, to_rest_frame

dereddened = deredden(spectrum)
ratio = (dereddened.flux / spectrum.flux).decompose()
print(f"flux multiplied by {ratio[0]:.3f} at {spectrum.spectral_axis[0]:.0f}, "
      f"{ratio[-1]:.3f} at {spectrum.spectral_axis[-1]:.0f}")

# %%
# The rest frame divides the wavelengths by 1 + z and multiplies the flux
# density by 1 + z. Resampling onto a log-λ grid is flux-conserving and
# inverse-variance weighted; target pixels not fully covered by data are
# masked, never extrapolated.
rest = to_rest_frame(dereddened)
grid = log_wavelength_grid(3000 * u.AA, 7000 * u.AA, dloglam=2e-4)
on_grid = resample(rest, grid)
print(rest.spectral_axis[[0, -1]].round(1), "->", len(grid), "pixels on",
      on_grid.spectral_axis[[0, -1]].round(1), f"({on_grid.mask.sum()} masked)")

# %%
# Continuum
# ---------
# `~spectralnn.preprocessing.continuum_powerlaw` fits f_λ ∝ λ^α in the standard
# line-free quasar windows (`spectralnn.lines.CONTINUUM_WINDOWS`) with
# sigma-clipping; the fit's parameters and errors are in ``meta``.
# `~spectralnn.preprocessing.continuum_robust` (running median or penalised
# spline) works for any spectrum.
from spectralnn.preprocessing import continuum_powerlaw, normalize_continuum

continuum = continuum_powerlaw(rest)
print(f"slope α = {continuum.meta['continuum_slope']:.3f} "
      f"± {continuum.meta['continuum_slope_err']:.3f} "
      f"({continuum.meta['continuum_npix']} pixels in the windows)")
normalised = normalize_continuum(rest, continuum)

# %%
# Lines
# -----
# `~spectralnn.preprocessing.equivalent_width`,
# `~spectralnn.preprocessing.line_flux` and `~spectralnn.preprocessing.line_fwhm`
# follow ``specutils.analysis`` but return a ``(value, error)`` pair. Give a
# line name (its rest-frame window comes from `spectralnn.lines.LINES`) or a
# `specutils.SpectralRegion`. The equivalent width is positive for emission.
from spectralnn.preprocessing import equivalent_width, line_flux, line_fwhm

ew, ew_err = equivalent_width(rest, "Hbeta")
fwhm, fwhm_err = line_fwhm(rest, "Hbeta", profile="double_gaussian")
flux, flux_err = line_flux(rest, "[OIII]5007")
print(f"Hβ:      EW = {ew.value:.1f} ± {ew_err:.1f}, FWHM = {fwhm.value:.0f} ± {fwhm_err:.0f}")
print(f"[O III]: flux = {flux.value:.0f} ± {flux_err:.0f}")

# %%
# Plot the steps. Pixels without data (zero inverse variance, e.g. cosmic-ray
# hits) are masked by the steps; they are left out of the plot.
import matplotlib.pyplot as plt


def good_flux(spec):
    """Flux values with masked and zero-weight pixels set to NaN, for plotting."""
    bad = np.zeros(spec.flux.shape, dtype=bool) if spec.mask is None else spec.mask.copy()
    if spec.uncertainty is not None:
        bad |= spec.uncertainty.array == 0
    return np.where(bad, np.nan, spec.flux.value)


fig, axes = plt.subplots(2, 1, figsize=(8, 6.5))
axes[0].plot(spectrum.spectral_axis, good_flux(spectrum), lw=0.5, color="0.6",
             label="observed")
axes[0].plot(rest.spectral_axis, good_flux(rest), lw=0.5, color="C0",
             label="dereddened, rest frame")
axes[0].plot(continuum.spectral_axis, good_flux(continuum), color="C3",
             label=f"power-law continuum (α = {continuum.meta['continuum_slope']:.2f})")
axes[0].set_xlabel("wavelength [Å]")
axes[0].set_ylabel("f$_λ$ [10$^{-17}$ erg s$^{-1}$ cm$^{-2}$ Å$^{-1}$]")
axes[0].legend(fontsize="small")
window = (rest.spectral_axis > 4600 * u.AA) & (rest.spectral_axis < 5100 * u.AA)
axes[1].plot(rest.spectral_axis[window], good_flux(normalised)[window], lw=0.7,
             drawstyle="steps-mid")
axes[1].axhline(1, color="k", lw=0.6)
axes[1].set_xlabel("rest-frame wavelength [Å]")
axes[1].set_ylabel("flux / continuum")
axes[1].set_title(f"Hβ and [O III]: EW(Hβ) = {ew.value:.0f} Å, FWHM = {fwhm.value:.0f} km/s",
                  fontsize="medium")
fig.tight_layout()
plt.show()

# %%
# A batch at once
# ---------------
# The same steps on 300 simulated quasars, vectorised. Different redshifts
# give different rest-frame grids; `~spectralnn.preprocessing.measure_lines`
# fits each line (two Gaussians per broad line, the narrow lines with tied
# doublet ratios) and returns one row per spectrum, every value with an
# ``_err`` column. A line it cannot measure is NaN *and* flagged.
import time

from spectralnn.preprocessing import measure_lines
from spectralnn.simulate import simulate_quasars

quasars = simulate_quasars(300, seed=3, z_range=(0.1, 0.6), snr_range=(5, 40))
start = time.perf_counter()
lines = measure_lines(to_rest_frame(deredden(quasars)), ["Hbeta", "[OIII]5007"],
                      profile="double_gaussian")
print(f"{len(lines)} spectra measured in {time.perf_counter() - start:.1f} s")
for name in ("Hbeta_fwhm", "Hbeta_fwhm_err", "Hbeta_ew", "OIII_5007_ew"):
    lines[name].info.format = ".0f"
lines["z"].info.format = ".3f"
lines["object_id", "z", "Hbeta_fwhm", "Hbeta_fwhm_err", "Hbeta_ew", "OIII_5007_ew",
      "flags"][:5].pprint(max_width=100)

# %%
# The simulator's truth table is the batch's ``meta``, so the measured broad
# Hβ widths can be compared with the widths the spectra were made with (the
# measurement also has to cope with Fe II, the host galaxy and noise).
true_fwhm = np.asarray(quasars.meta["fwhm_hbeta"], dtype=float)
measured = lines["Hbeta_fwhm"].to_value(u.km / u.s)
good = np.isfinite(measured) & (lines["Hbeta_flags"] == 0)
log_ratio = np.log10(measured[good] / true_fwhm[good])
print(f"{good.sum()} fits without flags: median log10(measured/true) = "
      f"{np.median(log_ratio):+.3f}, scatter (NMAD) "
      f"{1.4826 * np.median(np.abs(log_ratio - np.median(log_ratio))):.3f} dex")

fig, ax = plt.subplots(figsize=(5, 4.5))
snr = np.asarray(quasars.meta["snr"], dtype=float)[good]
points = ax.scatter(true_fwhm[good], measured[good], c=snr, s=8, cmap="viridis")
lim = [1000, 20000]
ax.plot(lim, lim, "k--", lw=0.8)
ax.set_xscale("log")
ax.set_yscale("log")
ax.set_xlabel("true broad Hβ FWHM [km/s]")
ax.set_ylabel("measured [km/s]")
fig.colorbar(points, label="S/N per pixel")
fig.tight_layout()
plt.show()
