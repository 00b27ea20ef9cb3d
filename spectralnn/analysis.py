"""
specutils-style analysis functions over the spectralnn models.

These are the second door to the same models as the estimator classes: thin
functions for scripts that already use ``specutils.analysis``, shaped like
`specutils.analysis.equivalent_width` — a spectrum in, a
`~astropy.units.Quantity` out, with its 1σ uncertainty attached as
``result.uncertainty``. Each honours ``regions`` the same way (``None``: the
whole spectrum; one `~specutils.SpectralRegion`: one result; a list: a list
of results; pixels outside a region are masked), the spectrum's mask and its
uncertainty. The network behind each function is the task's default
estimator, loaded once and cached; pass ``estimator=`` to use another.

A spectrum with a 1-D flux gives a scalar; a list of spectra, a
`~spectralnn.SpectrumBatch` or a multi-row spectrum gives an array with one
value per spectrum. Values that cannot be computed are NaN with a
`~spectralnn.errors.BatchItemWarning` naming the reason; for whole tables
(flags, S/N, all the virial columns) use the estimators or
`spectralnn.physics.virial_black_hole_mass` directly.

Examples
--------
The classic virial mass needs no network:

>>> from spectralnn.analysis import black_hole_mass
>>> from spectralnn.datasets import example_spectrum
>>> mass = black_hole_mass(example_spectrum(), method="virial")
>>> print(f"{mass.value:.2f} +/- {mass.uncertainty.value:.2f} {mass.unit}")
8.62 +/- 0.02 dex(solMass)
"""

import functools
import os
import warnings
from dataclasses import dataclass

import numpy as np
from astropy import units as u

from ._regions import attach_uncertainty, over_regions
from .errors import BatchItemWarning
from .flags import describe_flags

__all__ = ["anomaly_score", "black_hole_mass", "classify", "find_dlas", "redshift"]


@dataclass(frozen=True)
class _Task:
    """What one analysis function returns and which models can compute it."""

    estimator: str  # class name in spectralnn.estimators
    column: str  # value column of the result tables
    unit: u.UnitBase
    error_unit: u.UnitBase
    physics: object = None  # name of a classic method (no network), if any
    estimator_options: tuple = ()  # (name, value) pairs for the cached estimator
    result: object = None  # table -> result, for results that are not a Quantity


def _virial_table(batch, *, z):
    from .physics.blackhole import virial_black_hole_mass

    return virial_black_hole_mass(batch, z=z)


#: columns `classify` returns, from the SpectralClassifier table
_CLASS_COLUMNS = ("class", "class_prob", "prob_star", "prob_galaxy", "prob_qso", "bal",
                  "bal_prob", "subclass", "subclass_prob", "flags")


def _class_table(table):
    from astropy.table import QTable

    return QTable(table[[name for name in _CLASS_COLUMNS if name in table.colnames]])


#: task name -> description; later predictors (find_dlas) add an entry here
#: and a thin public shell
_TASKS = {
    "black_hole_mass": _Task(
        estimator="MassEstimator",
        column="log_mbh",
        unit=u.dex(u.M_sun),
        error_unit=u.dex,
        physics=("virial", _virial_table),
        estimator_options=(("virial", False),),
    ),
    "redshift": _Task(
        estimator="RedshiftEstimator",
        column="z",
        unit=u.dimensionless_unscaled,
        error_unit=u.dimensionless_unscaled,
    ),
    "classify": _Task(
        estimator="SpectralClassifier",
        column="class",
        unit=u.dimensionless_unscaled,
        error_unit=u.dimensionless_unscaled,
        result=_class_table,
    ),
    "find_dlas": _Task(
        estimator="DLAFinder",
        column="log_nhi",
        unit=u.dex(u.cm**-2),
        error_unit=u.dex,
        result=lambda table: table,
    ),
    "anomaly_score": _Task(
        estimator="SpectrumAutoencoder",
        column="chi2_per_pixel",
        unit=u.dimensionless_unscaled,
        error_unit=u.dimensionless_unscaled,
    ),
}


@functools.lru_cache(maxsize=8)
def _cached_estimator(class_name, model, options):
    """One estimator per (class, model) for the whole session."""
    from . import estimators

    return getattr(estimators, class_name)(model, **dict(options))


def _resolve_estimator(task, estimator):
    """Return the given estimator, a cached one loaded from a path, or the default."""
    if estimator is None:
        return _cached_estimator(task.estimator, "default", task.estimator_options)
    if isinstance(estimator, (str, os.PathLike)):
        return _cached_estimator(task.estimator, os.fspath(estimator),
                                 task.estimator_options)
    if not hasattr(estimator, "predict"):
        raise TypeError(
            f"estimator must be a {task.estimator}, the path of a trained model or "
            f"None; got {type(estimator).__name__}"
        )
    return estimator


def _warn_missing(table, column, what):
    values = np.asarray(table[column].value, dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any() and "flags" in table.colnames:
        rows = np.flatnonzero(bad)
        reasons = sorted({name for row in rows
                          for name in describe_flags(int(table["flags"][row]))})
        warnings.warn(
            f"{what} could not be computed for {rows.size} spectra (rows "
            f"{rows[:10].tolist()}{'...' if rows.size > 10 else ''}; flags: "
            f"{', '.join(reasons) or 'none'}); their values are NaN",
            BatchItemWarning,
            stacklevel=4,
        )


def _compute(batch, *, task, method, z, estimator):
    """One task on one (possibly region-masked) batch: value with uncertainty."""
    if method == "network":
        table = _resolve_estimator(task, estimator).predict(batch, z=z)
        if task.result is not None:
            return task.result(table)
    else:
        table = task.physics[1](batch, z=z)
        _warn_missing(table, task.column, f"the {method} {task.column}")
    return attach_uncertainty(table[task.column], table[f"{task.column}_err"],
                              task.unit, task.error_unit)


def _analyze(name, spectra, regions, *, method, z=None, estimator=None):
    """
    The one dispatcher behind every analysis function.

    Validates ``method``, converts the input once, applies the ``regions``
    rule (`spectralnn._regions.over_regions`) and returns a scalar for a
    single 1-D spectrum.
    """
    from specutils import Spectrum

    task = _TASKS[name]
    methods = ("network",) + ((task.physics[0],) if task.physics else ())
    if method not in methods:
        raise ValueError(f"method must be one of {methods}, not {method!r}")
    if method != "network" and estimator is not None:
        raise ValueError(f"estimator applies to method='network' only, not {method!r}")
    single = isinstance(spectra, Spectrum) and spectra.flux.ndim == 1
    if method == "network":
        _resolve_estimator(task, estimator)  # fail early: no weights, bad path

    def one(batch):
        result = _compute(batch, task=task, method=method, z=z, estimator=estimator)
        if not single and getattr(result, "ndim", 1) == 0:  # one value per spectrum
            err = result.uncertainty
            result = result.reshape(1)
            result.uncertainty = err.reshape(1)
            result.uncertainty_type = "std"
        return result

    return over_regions(one, spectra, regions)


def black_hole_mass(
    spectrum, regions=None, *, z=None, estimator=None, method: str = "network"
):
    """
    Black-hole mass of a broad-line quasar from its spectrum.

    Parameters
    ----------
    spectrum : `specutils.Spectrum`, list, `~spectralnn.SpectrumBatch` or path(s)
        Observed-frame spectrum (or spectra), flux density in f_λ units.
    regions : `~specutils.SpectralRegion` or list of them, optional
        Restrict the computation to these observed-frame wavelength ranges
        (pixels outside are masked). ``None`` (default): the whole spectrum;
        a list gives a list of results.
    z : float or array-like, optional
        Redshift(s). Default: ``spectrum.meta['z']``.
    estimator : `~spectralnn.estimators.MassEstimator` or path, optional
        The network (``method='network'`` only). Default: the shipped
        default weights, loaded once per session.
    method : {'network', 'virial'}, optional
        ``'network'`` (default): the `~spectralnn.estimators.MassEstimator`
        prediction and its predicted uncertainty. ``'virial'``: the classic
        single-epoch mass of `spectralnn.physics.virial_black_hole_mass`
        (Hβ, Mg II or C IV, whichever the spectrum covers), with its
        measurement uncertainty only — the calibration's intrinsic scatter
        (≈0.4 dex, e.g. Vestergaard & Peterson 2006) is not included. Needs
        no network and no Keras.

    Returns
    -------
    mass : `~astropy.units.Quantity` or list of them
        log10(M_BH / M_sun) in ``dex(solMass)``, with ``mass.uncertainty``
        (1σ, in dex) and ``mass.uncertainty_type = 'std'``. A scalar for a
        1-D spectrum, an array for several spectra, a list for a list of
        regions. The uncertainty attribute does not survive arithmetic or a
        unit conversion (a `~astropy.units.Quantity` limitation): read it
        first.

    Raises
    ------
    spectralnn.errors.ModelFileError
        With ``method='network'`` when no default weights are installed and
        no ``estimator`` is given, or the model file is invalid.
    ValueError
        If ``method`` is unknown.

    Warns
    -----
    spectralnn.errors.BatchItemWarning
        For spectra whose mass cannot be computed (no redshift, line not
        covered, failed fit); their value is NaN.

    See Also
    --------
    spectralnn.estimators.MassEstimator : the full table, batches, training.
    spectralnn.physics.virial_black_hole_mass : the full virial table.

    Examples
    --------
    >>> from specutils import SpectralRegion
    >>> import astropy.units as u
    >>> from spectralnn.datasets import example_spectrum
    >>> spectrum = example_spectrum()  # simulated, true virial mass 8.60
    >>> mass = black_hole_mass(spectrum, method="virial")
    >>> round(float(mass.value), 2), round(float(mass.uncertainty.value), 2)
    (8.62, 0.02)

    Outside its region the spectrum is masked; Hβ lies at 6242 Å observed:

    >>> hbeta = SpectralRegion(5500 * u.AA, 7200 * u.AA)
    >>> [round(float(m.value), 1) for m in black_hole_mass(
    ...     spectrum, [hbeta, hbeta], method="virial")]
    [8.6, 8.6]
    """
    return _analyze("black_hole_mass", spectrum, regions, method=method, z=z,
                    estimator=estimator)


def redshift(spectrum, regions=None, *, estimator=None):
    """
    Redshift of a spectrum (quasar, galaxy or star) from the network.

    Parameters
    ----------
    spectrum : `specutils.Spectrum`, list, `~spectralnn.SpectrumBatch` or path(s)
        Observed-frame spectrum (or spectra).
    regions : `~specutils.SpectralRegion` or list of them, optional
        Restrict the spectrum to these observed-frame ranges (pixels outside
        are masked). ``None`` (default): the whole spectrum; a list gives a
        list of results.
    estimator : `~spectralnn.estimators.RedshiftEstimator` or path, optional
        The network. Default: the shipped default weights, loaded once per
        session.

    Returns
    -------
    z : `~astropy.units.Quantity` or list of them
        Dimensionless redshift with ``z.uncertainty`` (1σ) and
        ``z.uncertainty_type = 'std'``: a scalar for a 1-D spectrum, an array
        for several, a list for a list of regions.

    Raises
    ------
    spectralnn.errors.ModelFileError
        When no default weights are installed and no ``estimator`` is given,
        or the model file is invalid.

    See Also
    --------
    spectralnn.estimators.RedshiftEstimator : the full table (lines used,
        catastrophic risk, flags), batches, training.

    Examples
    --------
    >>> from spectralnn.estimators import RedshiftEstimator
    >>> from spectralnn.simulate import simulate_quasars
    >>> est = RedshiftEstimator("resnet1d")  # an untrained network: fit it first
    >>> redshift(simulate_quasars(1, seed=1), estimator=est)  # doctest: +SKIP
    """
    return _analyze("redshift", spectrum, regions, method="network", estimator=estimator)


def classify(spectrum, regions=None, *, estimator=None):
    """
    Class (star, galaxy, quasar), BAL flag and subclass of a spectrum.

    Parameters
    ----------
    spectrum : `specutils.Spectrum`, list, `~spectralnn.SpectrumBatch` or path(s)
        Observed-frame spectrum (or spectra).
    regions : `~specutils.SpectralRegion` or list of them, optional
        Restrict the spectrum to these observed-frame ranges (pixels outside
        are masked). ``None`` (default): the whole spectrum; a list gives a
        list of tables.
    estimator : `~spectralnn.estimators.SpectralClassifier` or path, optional
        The network. Default: the shipped default weights, loaded once per
        session.

    Returns
    -------
    table : `~astropy.table.QTable` or list of them
        One row per spectrum (a class is a label, not a quantity): ``class``,
        ``class_prob``, ``prob_star``, ``prob_galaxy``, ``prob_qso``, ``bal``,
        ``bal_prob``, ``subclass``, ``subclass_prob`` and ``flags`` (see
        `spectralnn.estimators.SpectralClassifier.predict`).

    Raises
    ------
    spectralnn.errors.ModelFileError
        When no default weights are installed and no ``estimator`` is given,
        or the model file is invalid.

    Examples
    --------
    >>> from spectralnn.estimators import SpectralClassifier
    >>> clf = SpectralClassifier("resnet1d")  # an untrained network: fit it first
    >>> classify(example_spectrum(), estimator=clf)  # doctest: +SKIP
    """
    return _analyze("classify", spectrum, regions, method="network", estimator=estimator)


def find_dlas(spectrum, regions=None, *, z_qso=None, estimator=None):
    """
    Damped Lyα absorbers in the spectrum of a quasar.

    Parameters
    ----------
    spectrum : `specutils.Spectrum`, list, `~spectralnn.SpectrumBatch` or path(s)
        Observed-frame quasar spectrum (or spectra), fluxed or
        continuum-normalised.
    regions : `~specutils.SpectralRegion` or list of them, optional
        Search only these observed-frame ranges (pixels outside are masked).
        ``None`` (default): the whole Lyα forest; a list gives a list of
        tables.
    z_qso : float or array-like, optional
        Quasar redshift. Default ``spectrum.meta['z']``.
    estimator : `~spectralnn.estimators.DLAFinder` or path, optional
        The finder. Default: the shipped ``dla-default`` weights, loaded once
        per session.

    Returns
    -------
    absorbers : `~astropy.table.QTable` or list of them
        One row per absorber found (empty when there is none): ``spectrum``,
        ``z_qso``, ``z_abs``, ``z_abs_err``, ``log_nhi``, ``log_nhi_err``,
        ``probability``, ``is_dla`` and ``flags`` (see
        `spectralnn.estimators.DLAFinder.predict`).

    Raises
    ------
    spectralnn.errors.ModelFileError
        When no default weights are installed and no ``estimator`` is given.

    Examples
    --------
    >>> from spectralnn.simulate import simulate_quasars
    >>> qso = simulate_quasars(1, seed=3, z_range=(3.0, 3.5), dla_rate=5.0)
    >>> find_dlas(qso).colnames[:4]  # doctest: +SKIP
    ['spectrum', 'object_id', 'z_qso', 'z_abs']
    """
    return _analyze("find_dlas", spectrum, regions, method="network", z=z_qso,
                    estimator=estimator)


def anomaly_score(spectrum, regions=None, *, z=None, estimator=None):
    r"""
    How unusual a spectrum is: the autoencoder's reconstruction χ² per pixel.

    The spectrum is encoded into a few latents and decoded back by
    `spectralnn.estimators.SpectrumAutoencoder`; the score is the χ² of the
    reconstruction per good pixel, against the spectrum's inverse variance
    resampled onto the model grid (masked pixels, and with ``regions`` the
    pixels outside them, left out). About 1 for a spectrum like those the
    network was trained on, drawn to within its noise; larger for one it
    cannot draw.

    Parameters
    ----------
    spectrum : `specutils.Spectrum`, list, `~spectralnn.SpectrumBatch` or path(s)
        Observed-frame spectrum (or spectra).
    regions : `~specutils.SpectralRegion` or list of them, optional
        Score only these observed-frame ranges. ``None`` (default): the whole
        spectrum; a list gives a list of results.
    z : float or array-like, optional
        Redshift per spectrum (the decoder draws the rest-frame spectrum and
        shifts it by z). Default: ``meta['z']``; a spectrum without one is
        flagged and scored NaN.
    estimator : `~spectralnn.estimators.SpectrumAutoencoder` or path, optional
        The network. Default: the shipped ``autoencoder-default`` weights,
        loaded once per session.

    Returns
    -------
    score : `~astropy.units.Quantity` or list of them
        Dimensionless χ² per pixel with ``score.uncertainty``, its spread for
        a spectrum drawn to within its noise (:math:`\sqrt{2/N}` for N good
        pixels): a scalar for a 1-D spectrum, an array for several, a list
        for a list of regions.

    Raises
    ------
    spectralnn.errors.ModelFileError
        When no default weights are installed and no ``estimator`` is given.

    See Also
    --------
    spectralnn.estimators.SpectrumAutoencoder : latents, reconstructions,
        flags and training.

    Examples
    --------
    .. doctest-requires:: keras

        >>> from spectralnn.simulate import simulate_stars
        >>> score = anomaly_score(simulate_stars(1, seed=2))
        >>> bool(score > 0), bool(score.uncertainty < 0.1)
        (True, True)
    """
    return _analyze("anomaly_score", spectrum, regions, method="network", z=z,
                    estimator=estimator)
