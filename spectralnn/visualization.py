"""
Plots of spectra and of what spectralnn measured on them.

matplotlib is imported only inside the functions, so importing this module
(or spectralnn) does not need it.
"""

import numpy as np
from astropy import units as u

from .batch import as_batch
from .errors import WavelengthCoverageError

__all__ = ["plot_dlas", "plot_mass_fit"]

_C_KMS = 299792.458


def _virial_fit_curves(batch, line, z):
    """Rest-frame wavelength, flux, continuum, broad line and total model of one fit."""
    from ._utils import per_spectrum
    from .physics.blackhole import _SETUP, _fit_line, _gather, _LineModel
    from .physics.virial import VIRIAL_LINE_COVERAGE
    from .preprocessing.redshift import to_rest_frame

    # the same steps as virial_black_hole_mass: deredden, rest frame, fit
    z_arr = per_spectrum(batch, z, "z", unit=u.dimensionless_unscaled)
    ebv = per_spectrum(batch, None, "ebv", unit=u.mag)
    if np.isfinite(ebv[0]) and ebv[0] > 0:
        from .preprocessing.dereddening import deredden

        batch = deredden(batch, ebv=ebv)
    rest = to_rest_frame(batch, z=z_arr)
    rest.meta["z"] = z_arr
    rows = np.array([0])
    fit = _fit_line(rest, rows, line, None, True)
    lo, hi = VIRIAL_LINE_COVERAGE[line]
    lam, flux, ivar, valid = _gather(rest, rows, lo, hi)
    model = _LineModel(line, lam)
    p = fit["params"]
    total, _ = model(p, rows)
    continuum = p[:, 0, None] * (lam / _SETUP[line]["pivot"]) ** p[:, 1, None]
    broad = np.zeros_like(lam)
    for wave0, ia, ratio, ishift, isig in model.broad_terms:
        d = (_C_KMS * np.log(lam / wave0) - p[:, ishift, None]) / p[:, isig, None]
        broad += ratio * p[:, ia, None] * np.exp(-0.5 * d * d)
    keep = valid[0]
    good = keep & (ivar[0] > 0)
    return {
        "lam": lam[0][keep], "flux": np.where(good, flux[0], np.nan)[keep],
        "continuum": continuum[0][keep], "broad": (continuum + broad)[0][keep],
        "total": total[0][keep], "windows": _SETUP[line]["windows"],
        "line_window": _SETUP[line]["line_window"], "unit": rest.flux_unit,
    }


def _format_mass(value, error):
    text = f"{float(getattr(value, 'value', value)):.2f}"
    if error is not None:
        error = float(getattr(error, "value", error))
        if np.isfinite(error):
            text += f" ± {error:.2f}"
    return text


def plot_mass_fit(spectrum, result_row=None, *, ax=None, line=None, z=None):
    """
    Plot a quasar's broad-line fit with its black-hole mass.

    The spectrum is shown in the rest frame around the virial line (after the
    same dereddening and rest-frame shift as
    `spectralnn.physics.virial_black_hole_mass`), with the fitted power-law
    continuum, the continuum plus broad line, the full model (with the narrow
    lines for Hβ), the continuum windows (shaded) and, in the legend box, the
    virial mass and — when ``result_row`` carries one — the network's.

    Parameters
    ----------
    spectrum : `specutils.Spectrum` or `~spectralnn.SpectrumBatch`
        One observed-frame spectrum (the first row of a batch is used).
    result_row : `~astropy.table.Row`, optional
        A row of a `~spectralnn.estimators.MassEstimator` or
        `~spectralnn.physics.virial_black_hole_mass` table: its ``log_mbh``
        (with ``log_mbh_err``) and ``virial_log_mbh`` are shown. Default:
        the virial mass is measured here.
    ax : `matplotlib.axes.Axes`, optional
        Where to draw. Default: a new figure.
    line : {'Hbeta', 'MgII', 'CIV'}, optional
        The broad line. Default: the one `virial_black_hole_mass` chooses.
    z : float, optional
        Redshift. Default: ``meta['z']``.

    Returns
    -------
    ax : `matplotlib.axes.Axes`
        The axes drawn on.

    Raises
    ------
    spectralnn.errors.WavelengthCoverageError
        If the spectrum covers no virial line (or not the one requested).

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from spectralnn.datasets import example_spectrum
    >>> ax = plot_mass_fit(example_spectrum())
    >>> ax.get_xlabel()
    'Rest-frame wavelength [Angstrom]'
    """
    import matplotlib.pyplot as plt

    from .physics.blackhole import virial_black_hole_mass

    batch = as_batch(spectrum)[:1]
    virial = virial_black_hole_mass(batch, z=z, **({} if line is None else {"line": line}))
    chosen = str(virial["line"][0])
    if not chosen:
        raise WavelengthCoverageError(
            "the spectrum covers no virial line (Hbeta, MgII, CIV) at its redshift"
            if line is None else f"the spectrum does not cover {line} at its redshift"
        )
    curves = _virial_fit_curves(batch, chosen, z)
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 4.5))
    ax.plot(curves["lam"], curves["flux"], color="0.5", lw=0.7, drawstyle="steps-mid",
            label="spectrum (dereddened, rest frame)")
    ax.plot(curves["lam"], curves["continuum"], color="C0", lw=1.5,
            label="power-law continuum")
    ax.plot(curves["lam"], curves["broad"], color="C3", lw=1.5,
            label=f"continuum + broad {chosen}")
    ax.plot(curves["lam"], curves["total"], color="k", lw=1.0, ls="--",
            label="full model")
    for lo, hi in curves["windows"]:
        ax.axvspan(lo, hi, color="C0", alpha=0.08, lw=0)
    ax.set_xlabel("Rest-frame wavelength [Angstrom]")
    ax.set_ylabel(f"Flux density [{curves['unit'].to_string()}]")
    lines = [
        f"virial ({virial['calibration'][0]}): log M = "
        + _format_mass(virial["log_mbh"][0], virial["log_mbh_err"][0]),
        f"FWHM = {virial['fwhm'][0].to_value(u.km / u.s):.0f} km/s",
    ]
    if result_row is not None:
        names = result_row.colnames
        # a MassEstimator row (a virial table row has 'line': nothing new)
        if "log_mbh" in names and "line" not in names:
            err = result_row["log_mbh_err"] if "log_mbh_err" in names else None
            lines.append("network: log M = " + _format_mass(result_row["log_mbh"], err))
    ax.set_title("Black-hole mass fit")
    ax.legend(loc="upper right", fontsize="small", title="\n".join(lines),
              title_fontsize="small")
    finite = np.isfinite(curves["flux"])
    if finite.any():
        top = np.nanpercentile(curves["flux"][finite], 99.5)
        ax.set_ylim(min(0.0, np.nanmin(curves["continuum"])), 1.15 * top)
    return ax


def _local_continuum(wave, flux, good, centre, half_width):
    """Upper envelope (80th percentile) of the good flux beside an absorber."""
    near = good & (np.abs(wave - centre) > half_width) & (np.abs(wave - centre) < 3 * half_width)
    if near.sum() < 5:
        near = good & (np.abs(wave - centre) < 4 * half_width)
    return float(np.percentile(flux[near], 80)) if near.any() else np.nan


def plot_dlas(spectrum, absorbers=None, *, ax=None, z_qso=None, finder=None):
    """
    Plot a quasar's Lyα forest with its damped Lyα absorbers and their Voigt profiles.

    The observed spectrum is drawn over rest-frame 900–1250 Å of the quasar;
    each absorber is marked at its Lyα (and Lyβ) wavelength, and its Voigt
    profile (`spectralnn.physics.tau_voigt`, b = 30 km/s, Lyα and Lyβ) is
    drawn on a local continuum level (the 80th percentile of the flux beside
    the trough).

    Parameters
    ----------
    spectrum : `specutils.Spectrum` or `~spectralnn.SpectrumBatch`
        One observed-frame quasar spectrum (the first row of a batch is used).
    absorbers : `~astropy.table.QTable`, optional
        Absorbers of this spectrum (columns ``z_abs`` and ``log_nhi``; rows
        with another ``spectrum`` index than 0 are ignored). Default: found
        here with ``finder``.
    ax : `matplotlib.axes.Axes`, optional
        Where to draw. Default: a new figure.
    z_qso : float, optional
        Quasar redshift. Default: ``meta['z']``.
    finder : `~spectralnn.estimators.DLAFinder`, optional
        Used when ``absorbers`` is None. Default: the shipped weights.

    Returns
    -------
    ax : `matplotlib.axes.Axes`
        The axes drawn on.

    Raises
    ------
    ValueError
        If the redshift is unknown.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from astropy.table import QTable
    >>> from spectralnn.simulate import simulate_quasars
    >>> qso = simulate_quasars(1, seed=4, z_range=(3.0, 3.2))
    >>> found = QTable({"spectrum": [0], "z_abs": [2.8], "log_nhi": [20.8]})
    >>> ax = plot_dlas(qso, found)
    >>> ax.get_xlabel()
    'Observed wavelength [Angstrom]'
    """
    import matplotlib.pyplot as plt

    from ._utils import per_spectrum
    from .physics.voigt import LYMAN_LINES, damped_equivalent_width, tau_voigt

    batch = as_batch(spectrum)[:1]
    zq = float(per_spectrum(batch, z_qso, "z", default=np.nan)[0])
    if not np.isfinite(zq):
        raise ValueError("the quasar redshift is unknown: pass z_qso")
    if absorbers is None:
        from .estimators import DLAFinder

        absorbers = (finder or DLAFinder()).predict(batch, z_qso=zq)
    if "spectrum" in absorbers.colnames:
        absorbers = absorbers[np.asarray(absorbers["spectrum"]) == 0]
    wave = batch.wavelength_2d[0]
    window = (wave >= 900.0 * (1 + zq)) & (wave <= 1250.0 * (1 + zq))
    good = batch.good[0] & window
    if good.any():  # profiles only where the spectrum has data
        window &= (wave >= wave[good][0]) & (wave <= wave[good][-1])
    flux = batch.flux[0]
    if ax is None:
        _, ax = plt.subplots(figsize=(10, 4))
    ax.plot(wave[window], np.where(good, flux, np.nan)[window], color="0.4", lw=0.6,
            drawstyle="steps-mid", label="spectrum")
    lya, lyb = LYMAN_LINES["Lya"][0], LYMAN_LINES["Lyb"][0]
    for i, row in enumerate(absorbers):
        za = float(row["z_abs"])
        logn = float(getattr(row["log_nhi"], "value", row["log_nhi"]))
        width = damped_equivalent_width(logn).value * (1 + za)
        centre = lya * (1 + za)
        level = _local_continuum(wave, flux, good, centre, width)
        near = window & (np.abs(wave - centre) < 4 * width)
        near |= window & (np.abs(wave - lyb * (1 + za)) < 2 * width)
        tau = tau_voigt(wave[near], za, logn) + tau_voigt(wave[near], za, logn, line="Lyb")
        color = f"C{i % 10}"
        ax.plot(wave[near], level * np.exp(-tau), color=color, lw=1.3,
                label=f"z = {za:.4f}, log N = {logn:.2f}")
        ax.axvline(centre, color=color, lw=0.8, ls=":")
    ax.axvline(lya * (1 + zq), color="k", lw=0.6, ls="--")
    ax.set_xlabel("Observed wavelength [Angstrom]")
    ax.set_ylabel(f"Flux density [{u.Unit(batch.flux_unit).to_string()}]")
    ax.set_title(f"Damped Lyα absorbers (z_qso = {zq:.3f}): {len(absorbers)} found")
    if len(absorbers):
        ax.legend(loc="upper left", fontsize="small")
    finite = np.isfinite(flux[good])
    if finite.any():
        ax.set_ylim(min(0.0, np.nanpercentile(flux[good], 1)),
                    1.2 * np.nanpercentile(flux[good], 99.5))
    return ax
