"""
Plots of spectra and of what spectralnn measured on them.

matplotlib is imported only inside the functions, so importing this module
(or spectralnn) does not need it.
"""

import numpy as np
from astropy import units as u

from .batch import as_batch
from .errors import WavelengthCoverageError

__all__ = [
    "plot_confusion_matrix",
    "plot_dlas",
    "plot_latent_space",
    "plot_mass_fit",
    "plot_redshift_comparison",
]

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


def plot_latent_space(latents, labels=None, *, ax=None, projection="pca",
                      markersize=6.0, alpha=0.6):
    """
    Scatter plot of autoencoder latents in two dimensions, coloured by class.

    Parameters
    ----------
    latents : array-like
        Shape ``(N, k)``, e.g. from `spectralnn.estimators.SpectrumAutoencoder.encode`
        (rows with NaN, unusable spectra, are left out).
    labels : array-like of str, optional
        A class per row (e.g. ``meta['class']``); one colour and legend entry
        each. Default: one colour.
    ax : `matplotlib.axes.Axes`, optional
        Where to draw. Default: a new figure.
    projection : 'pca' or tuple of two int, optional
        ``'pca'`` (the default) draws the first two principal components of
        the latents (standardised, by singular-value decomposition); a pair
        ``(i, j)`` draws latents ``i`` and ``j`` themselves.
    markersize : float, optional
        Marker area in points². Default 6.
    alpha : float, optional
        Marker opacity. Default 0.6.

    Returns
    -------
    ax : `matplotlib.axes.Axes`
        The axes drawn on.

    Raises
    ------
    ValueError
        If the shapes do not match, fewer than two latents are given, or
        ``projection`` is invalid.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> latents = np.concatenate([rng.normal(0, 1, (50, 6)), rng.normal(4, 1, (50, 6))])
    >>> ax = plot_latent_space(latents, ["GALAXY"] * 50 + ["QSO"] * 50)
    >>> [t.get_text() for t in ax.get_legend().get_texts()]
    ['GALAXY (50)', 'QSO (50)']
    """
    import matplotlib.pyplot as plt

    z = np.asarray(latents, dtype=np.float64)
    if z.ndim != 2 or z.shape[1] < 2:
        raise ValueError(f"latents must have shape (N, k) with k >= 2, got {z.shape}")
    names = (np.full(len(z), "") if labels is None
             else np.asarray(labels).astype(str))
    if names.shape != (len(z),):
        raise ValueError(f"got {names.size} labels for {len(z)} latent vectors")
    keep = np.all(np.isfinite(z), axis=1)
    z, names = z[keep], names[keep]
    if isinstance(projection, str) and projection == "pca":
        std = z.std(axis=0)
        scaled = (z - z.mean(axis=0)) / np.where(std > 0, std, 1.0)
        _, sing, vt = np.linalg.svd(scaled, full_matrices=False)
        xy = scaled @ vt[:2].T
        share = sing[:2] ** 2 / max(float(np.sum(sing**2)), 1e-300)
        axis_labels = [f"principal component {i + 1} ({100 * f:.0f} %)"
                       for i, f in enumerate(share)]
    else:
        try:
            i, j = (int(v) for v in projection)
        except (TypeError, ValueError):
            raise ValueError("projection must be 'pca' or a pair of latent indices") from None
        if not (0 <= i < z.shape[1] and 0 <= j < z.shape[1]):
            raise ValueError(f"latent indices {projection} out of range 0-{z.shape[1] - 1}")
        xy = z[:, [i, j]]
        axis_labels = [f"latent {i}", f"latent {j}"]
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 5))
    for k, name in enumerate(np.unique(names)):
        on = names == name
        ax.scatter(xy[on, 0], xy[on, 1], s=markersize, alpha=alpha, color=f"C{k % 10}",
                   label=f"{name} ({int(on.sum())})" if name else None, linewidths=0)
    ax.set_xlabel(axis_labels[0])
    ax.set_ylabel(axis_labels[1])
    ax.set_title(f"Latent space ({z.shape[1]} latents, {len(z)} spectra)")
    if labels is not None:
        ax.legend(loc="best", fontsize="small", markerscale=2)
    return ax


def plot_confusion_matrix(true, predicted, *, labels=None, normalize=True, ax=None,
                          cmap="Blues"):
    """
    Plot the confusion matrix of a classification.

    Rows are the true classes, columns the predicted ones; each cell shows the
    fraction of its row (``normalize=True``) or the count.

    Parameters
    ----------
    true, predicted : array-like of str
        True and predicted labels, one per spectrum (e.g. the ``class`` or
        ``subclass`` column of `~spectralnn.estimators.SpectralClassifier`'s
        table and the catalogue's).
    labels : sequence of str, optional
        Labels in the order of the axes. Default: every label present, sorted.
    normalize : bool, optional
        Show fractions of each true class (default) instead of counts.
    ax : `matplotlib.axes.Axes`, optional
        Where to draw. Default: a new figure.
    cmap : str, optional
        Colour map. Default ``'Blues'``.

    Returns
    -------
    ax : `matplotlib.axes.Axes`
        The axes drawn on.

    Raises
    ------
    ValueError
        If ``true`` and ``predicted`` differ in length or are empty.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> ax = plot_confusion_matrix(["QSO", "QSO", "STAR"], ["QSO", "STAR", "STAR"])
    >>> [t.get_text() for t in ax.get_xticklabels()]
    ['QSO', 'STAR']
    """
    import matplotlib.pyplot as plt

    true = np.char.strip(np.asarray(true).astype(str))
    predicted = np.char.strip(np.asarray(predicted).astype(str))
    if true.shape != predicted.shape or true.ndim != 1 or true.size == 0:
        raise ValueError(
            f"true and predicted must be non-empty 1-D arrays of the same length, got "
            f"{true.shape} and {predicted.shape}"
        )
    if labels is None:
        labels = sorted(set(true.tolist()) | set(predicted.tolist()))
    labels = [str(lab) for lab in labels]
    counts = np.array([[np.sum((true == t) & (predicted == p)) for p in labels]
                       for t in labels], dtype=float)
    shown = counts
    if normalize:
        with np.errstate(invalid="ignore", divide="ignore"):
            shown = counts / counts.sum(axis=1, keepdims=True)
    if ax is None:
        size = 1.5 + 0.6 * len(labels)
        _, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(np.nan_to_num(shown), cmap=cmap, vmin=0,
                      vmax=1 if normalize else None)
    names = [lab if lab else "(none)" for lab in labels]
    ax.set_xticks(range(len(labels)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    top = np.nanmax(shown) if np.isfinite(shown).any() else 1.0
    for i in range(len(labels)):
        for j in range(len(labels)):
            if not np.isfinite(shown[i, j]) or counts[i, j] == 0:
                continue
            text = f"{shown[i, j]:.3f}" if normalize else f"{int(counts[i, j])}"
            ax.text(j, i, text, ha="center", va="center", fontsize="small",
                    color="white" if shown[i, j] > 0.6 * top else "black")
    ax.figure.colorbar(image, ax=ax, label="fraction of the true class" if normalize
                       else "spectra")
    ax.set_title(f"Confusion matrix ({true.size} spectra, accuracy "
                 f"{np.mean(true == predicted):.4f})")
    return ax


def plot_redshift_comparison(z_true, z_pred, *, z_err=None, catastrophic_velocity=6000.0
                             * u.km / u.s, ax=None, markersize=3):
    """
    Plot predicted against true redshifts, with the residuals Δz/(1+z) below.

    Catastrophic failures (velocity error beyond ``catastrophic_velocity``)
    are drawn in red and counted in the title, with the normalised median
    absolute deviation of Δz/(1+z) of the others.

    Parameters
    ----------
    z_true, z_pred : array-like
        True (e.g. catalogue) and predicted redshifts.
    z_err : array-like, optional
        Uncertainties of ``z_pred`` (error bars in the residual panel).
    catastrophic_velocity : `~astropy.units.Quantity` or float, optional
        Velocity error counted as catastrophic (km/s if a number). Default
        6000 km/s (the QuasarNET criterion; 1000 km/s is usual for galaxies).
    ax : `matplotlib.axes.Axes`, optional
        Axes of the upper panel; the residual panel is appended below it.
        Default: a new figure.
    markersize : float, optional
        Marker size. Default 3.

    Returns
    -------
    axes : tuple of `matplotlib.axes.Axes`
        The comparison and the residual panels.

    Raises
    ------
    ValueError
        If the arrays differ in length or no pair is finite.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> top, bottom = plot_redshift_comparison([0.5, 1.0, 2.0], [0.501, 1.002, 1.2])
    >>> top.get_title()
    'N = 3, catastrophic (>6000 km/s): 1 (33.33%), NMAD(Δz/(1+z)) = 0.0002'
    """
    import matplotlib.pyplot as plt
    from mpl_toolkits.axes_grid1 import make_axes_locatable

    z_true = np.asarray(z_true, dtype=float)
    z_pred = np.asarray(z_pred, dtype=float)
    if z_true.shape != z_pred.shape or z_true.ndim != 1:
        raise ValueError(f"z_true and z_pred must be 1-D of one length, got "
                         f"{z_true.shape} and {z_pred.shape}")
    ok = np.isfinite(z_true) & np.isfinite(z_pred)
    if not ok.any():
        raise ValueError("no finite pair of redshifts to plot")
    limit = u.Quantity(catastrophic_velocity, u.km / u.s).to_value(u.km / u.s)
    resid = (z_pred - z_true) / (1 + z_true)
    bad = ok & (np.abs(resid) * _C_KMS > limit)
    good = ok & ~bad
    nmad = (1.4826 * np.median(np.abs(resid[good] - np.median(resid[good])))
            if good.any() else np.nan)
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 6))
    bottom = make_axes_locatable(ax).append_axes("bottom", size="35%", pad=0.1, sharex=ax)
    ax.scatter(z_true[good], z_pred[good], s=markersize, color="C0", linewidths=0)
    ax.scatter(z_true[bad], z_pred[bad], s=3 * markersize, color="C3", linewidths=0,
               label="catastrophic")
    lo, hi = np.min(z_true[ok]), np.max(z_true[ok])
    ax.plot([lo, hi], [lo, hi], color="k", lw=0.8)
    ax.set_ylabel("predicted z")
    ax.tick_params(labelbottom=False)
    err = None if z_err is None else np.asarray(z_err, dtype=float)[good] / (1 + z_true[good])
    bottom.errorbar(z_true[good], resid[good], yerr=err, fmt="o", ms=markersize / 2,
                    color="C0", elinewidth=0.5)
    bottom.axhline(0, color="k", lw=0.8)
    span = 5 * nmad if np.isfinite(nmad) and nmad > 0 else 0.01
    bottom.set_ylim(-span, span)
    bottom.set_xlabel("true z")
    bottom.set_ylabel("Δz/(1+z)")
    n = int(ok.sum())
    ax.set_title(f"N = {n}, catastrophic (>{limit:.0f} km/s): {int(bad.sum())} "
                 f"({100 * bad.sum() / n:.2f}%), NMAD(Δz/(1+z)) = {nmad:.4f}")
    if bad.any():
        ax.legend(loc="upper left", fontsize="small")
    return ax, bottom
