"""
Correcting observed spectra for Milky Way dust extinction.

The extinction curve A(λ)/A(V) comes from the ``dust_extinction`` package
(Gordon 2024, JOSS 9, 7023); the default is the R(V)-dependent Milky Way
average of Gordon et al. (2023, ApJ 950, 86), ``G23``. With A(V) = R(V) E(B-V),
the dereddened flux is f · 10^(0.4 A(λ)) and the inverse variance is divided
by the square of that factor. E(B-V) is usually the Schlegel, Finkbeiner &
Davis (1998) value at the target's position (``meta['ebv']``).
"""


import numpy as np
from astropy import units as u

from .._utils import flag_bad_rows, per_spectrum, spectrum_or_batch
from ..batch import SpectrumBatch
from ..errors import InvalidSpectrumError, WavelengthCoverageError
from ..flags import Flag
from ..logger import log
from .resample import _is_single

__all__ = ["deredden", "extinction_model", "dust_model_names"]

#: The dust_extinction modules searched for a model given by name.
_DUST_MODULES = ("parameter_averages", "averages", "grain_models")


def _dust_model_names():
    import importlib

    names = {}
    for module_name in _DUST_MODULES:
        module = importlib.import_module(f"dust_extinction.{module_name}")
        for name in getattr(module, "__all__", ()):
            names[name] = module
    return names


def dust_model_names() -> tuple:
    """
    Names of the ``dust_extinction`` models `deredden` accepts.

    ``dust_extinction`` is imported only when it is needed (it pulls in
    `astropy.modeling`).

    Returns
    -------
    names : tuple of str
        Model class names, e.g. ``'G23'``, ``'F99'``, ``'G03_SMCBar'``.

    Examples
    --------
    >>> "G23" in dust_model_names()
    True
    """
    return tuple(sorted(_dust_model_names(), key=str.lower))


def extinction_model(model="G23", r_v: float | None = None):
    """
    Build a ``dust_extinction`` model from a name, a class or an instance.

    Parameters
    ----------
    model : str, type or ``dust_extinction`` model, optional
        A name from `dust_model_names` (e.g. ``'G23'``, ``'F99'``, ``'CCM89'``,
        ``'G03_SMCBar'``), a model class, or a model instance (used as it is).
        Default ``'G23'``.
    r_v : float, optional
        R(V) = A(V)/E(B-V) for R(V)-dependent models. Default 3.1. It cannot
        be given with an instance or a fixed-R(V) average curve, except equal
        to the curve's own R(V).

    Returns
    -------
    model : ``dust_extinction.baseclasses.BaseExtModel``
        A fresh instance (or the instance given).

    Raises
    ------
    ValueError
        If the name is unknown or ``r_v`` conflicts with the model.

    Examples
    --------
    >>> extinction_model("F99", r_v=3.1)
    <F99(Rv=3.1)>
    """
    from dust_extinction.baseclasses import BaseExtModel

    if isinstance(model, str):
        names = _dust_model_names()
        if model not in names:
            raise ValueError(
                f"unknown dust extinction model {model!r}; choose one of "
                f"{', '.join(dust_model_names())}"
            )
        model = getattr(names[model], model)
    if isinstance(model, type):
        if not issubclass(model, BaseExtModel):
            raise ValueError(f"{model.__name__} is not a dust_extinction model class")
        if "Rv" in getattr(model, "param_names", ()):
            return model(Rv=3.1 if r_v is None else float(r_v))
        instance = model()
    elif isinstance(model, BaseExtModel):
        instance = model
    else:
        raise ValueError(
            "model must be a dust_extinction model name, class or instance, not "
            f"{type(model).__name__}"
        )
    if r_v is not None and not np.isclose(_model_rv(instance), r_v):
        raise ValueError(
            f"r_v={r_v} conflicts with the {type(instance).__name__} model's own "
            f"R(V)={_model_rv(instance)}; leave r_v out or configure the model"
        )
    return instance


def _model_rv(model):
    """R(V) of a model (a Parameter for R(V)-dependent curves, a float otherwise)."""
    rv = getattr(model, "Rv", None)
    if rv is None:
        raise ValueError(
            f"the {type(model).__name__} model has no R(V); it cannot convert E(B-V) "
            "to A(V)"
        )
    return float(getattr(rv, "value", rv))


def deredden(spectra, ebv=None, *, model="G23", r_v: float | None = None):
    """
    Correct observed-frame spectra for Galactic dust extinction.

    The flux is multiplied by 10^(0.4 A(λ)) with A(λ) = (A(λ)/A(V)) R(V)
    E(B-V), and the inverse variance divided by the square of that factor.
    The curve is evaluated once on the shared grid (or on all per-spectrum
    grids together); nothing is extrapolated.

    Parameters
    ----------
    spectra : `specutils.Spectrum` or `~spectralnn.SpectrumBatch`
        Observed-frame spectra.
    ebv : float or array-like, optional
        E(B-V) in magnitudes, one value or one per spectrum. Default: the
        ``ebv`` column of the meta table (``spectrum.meta['ebv']``). Pass
        ``ebv=0`` to state explicitly that no correction is wanted.
    model : str, type or ``dust_extinction`` model, optional
        The extinction curve (see `extinction_model`). Default ``'G23'``.
    r_v : float, optional
        R(V) of an R(V)-dependent curve. Default 3.1.

    Returns
    -------
    dereddened : `specutils.Spectrum` or `~spectralnn.SpectrumBatch`
        With the E(B-V) used in ``meta['ebv']``.

    Raises
    ------
    spectralnn.errors.InvalidSpectrumError
        If the spectra are in the rest frame (Galactic dust acts on observed
        wavelengths), or, for a single spectrum, if E(B-V) is unknown (NaN)
        or negative. In a batch, such rows are masked (ivar 0), flagged
        `~spectralnn.flags.Flag.NO_DATA` and reported with a
        `~spectralnn.errors.BatchItemWarning`: an uncorrected spectrum must
        not pass for a corrected one.
    spectralnn.errors.WavelengthCoverageError
        If an unmasked pixel lies outside the model's valid range
        (``model.x_range``). Masked pixels outside it are left as they are.
    ValueError
        If the model is unknown or ``r_v`` conflicts with it.

    Examples
    --------
    >>> import numpy as np, astropy.units as u
    >>> from spectralnn import SpectrumBatch
    >>> batch = SpectrumBatch(np.array([4000.0, 5500.0, 9000.0]) * u.AA,
    ...                       np.ones(3), np.ones(3), flux_unit=u.one)
    >>> deredden(batch, ebv=0.1).flux  # doctest: +FLOAT_CMP
    array([[1.50019153, 1.329887  , 1.14856196]])
    """
    return _deredden(spectra, ebv, model=model, r_v=r_v, strict=_is_single(spectra))


@spectrum_or_batch
def _deredden(batch, ebv, *, model, r_v, strict):
    if batch.frame != "observed":
        raise InvalidSpectrumError(
            "deredden needs observed-frame spectra (Galactic dust acts on observed "
            "wavelengths); deredden before shifting to the rest frame"
        )
    dust = extinction_model(model, r_v)
    rv = _model_rv(dust)
    ebv = per_spectrum(batch, ebv, "ebv", unit=u.mag)
    bad = ~np.isfinite(ebv) | (ebv < 0)
    if bad.any() and strict:
        raise InvalidSpectrumError(
            f"E(B-V) is {'unknown (nan)' if np.isnan(ebv[0]) else float(ebv[0])}: "
            "pass ebv= (ebv=0 for no correction) or set meta['ebv'] to a "
            "non-negative value"
        )

    wave = batch.wavelength
    x = 1e4 / wave  # wavenumber in 1/micron
    x_lo, x_hi = (float(v) for v in dust.x_range)
    inside = (x >= x_lo) & (x <= x_hi)
    used = ~batch.mask & ~bad[:, None]
    if not np.all(np.broadcast_to(inside, used.shape)[used]):
        raise WavelengthCoverageError(
            f"the spectra reach {wave.min():.1f}-{wave.max():.1f} Angstrom but the "
            f"{type(dust).__name__} extinction curve is defined only for "
            f"{1e4 / x_hi:.1f}-{1e4 / x_lo:.1f} Angstrom; mask or trim the pixels "
            "outside"
        )
    curve = np.zeros_like(x)
    curve[inside] = dust(x[inside] / u.micron)
    flux = batch.flux.copy()
    ivar = batch.ivar.copy()
    # only rows with some extinction are scaled (E(B-V) = 0 is common: skip it)
    rows = np.flatnonzero(~bad & (ebv > 0))
    if rows.size:
        rows_curve = curve if curve.ndim == 1 else curve[rows]
        factor = 10.0 ** (0.4 * rows_curve * rv * ebv[rows][:, None])  # (n, M)
        flux[rows] *= factor
        ivar[rows] /= factor**2
    mask = batch.mask.copy()
    meta = batch.meta.copy()
    flags = np.asarray(meta["flags"], dtype=np.int64).copy()
    flag_bad_rows(flux, ivar, mask, flags, bad, Flag.NO_DATA, "no valid E(B-V)",
                  hint=" (pass ebv=0 to skip the correction)")
    meta["flags"] = flags
    meta["ebv"] = np.where(bad, np.nan, ebv)
    log.debug("dereddened %d spectra with %s (R(V)=%.2f)", len(batch),
              type(dust).__name__, rv)
    return SpectrumBatch._from_arrays_unchecked(batch.wavelength.copy(), flux, ivar,
                                                mask, meta, batch.flux_unit,
                                                batch.frame)
