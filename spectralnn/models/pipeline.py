"""
The preprocessing a model declares, and the pipeline that runs it.

A model's metadata carries a ``preprocessing`` entry such as::

    {"steps": ["deredden", "rest_frame", "resample", "normalize"],
     "grid": {"start": 1300.0, "stop": 7000.0, "dloglam": 1e-4},
     "normalization": "median",
     "channels": ["flux", "mask"],
     "min_good_fraction": 0.5,
     "scalars": {"names": ["log_lambda_l", "z"], "loc": [44.0, 2.0],
                 "scale": [1.0, 1.5]}}

`Pipeline` turns that declaration into the network input: it runs the steps
in order on a `~spectralnn.SpectrumBatch` (dereddening with
`spectralnn.preprocessing.dereddening.deredden`, shifting to the rest frame
with `spectralnn.preprocessing.redshift.to_rest_frame`, resampling onto the
log-λ grid with `spectralnn.preprocessing.resample.resample`), normalises each
spectrum, and stacks the requested channels into an ``(N, M, C)`` float32
array. Median normalisation discards the flux level, and with it the
luminosity a virial mass needs, so a model may also declare ``scalars``:
numbers per spectrum fed to a second input branch, standardised with the
``loc`` and ``scale`` stored in the declaration (see `SCALARS`). Spectra that
cannot be used (no redshift for a rest-frame model, too
little of the grid covered, no positive continuum) are flagged and marked
unusable rather than raising, so one bad spectrum never stops a batch.

Examples
--------
>>> from spectralnn.models.pipeline import Pipeline
>>> pipe = Pipeline({"steps": ["resample", "normalize"],
...                  "grid": {"start": 4000.0, "stop": 5000.0, "dloglam": 1e-3}})
>>> pipe.n_pixels, pipe.n_channels
(97, 2)
"""

from dataclasses import dataclass

import numpy as np
from astropy import units as u

from ..batch import SpectrumBatch, as_batch
from ..flags import Flag
from ..logger import log

__all__ = ["Pipeline", "PipelineResult", "SCALARS", "STEPS", "validate_preprocessing"]

#: Preprocessing steps a model may declare, in the order they may appear.
STEPS = ("deredden", "rest_frame", "resample", "normalize")

_NORMALIZATIONS = ("median", "none")
_CHANNELS = ("flux", "mask", "ivar", "observed_wavelength")
#: ``observed_wavelength`` channel: (log10 λ_obs - 3.8) / 0.2, about -1.2 to
#: +1.1 over 3600-10400 Å. A rest-frame model learns from it where each pixel
#: fell in the observed frame, i.e. the absorber redshift of a Lyα-forest
#: pixel, on which the forest's density (and so the false-alarm rate) depends.
_OBS_LOGLAM_LOC, _OBS_LOGLAM_SCALE = 3.8, 0.2
#: Scalar inputs a model may declare, and what each one is:
#:
#: ``log_lambda_l``
#:     log10 of 3000 Å times the median rest-frame luminosity density
#:     L_λ = 4π d_L² f_λ,rest (erg/s) over the good pixels of the model grid:
#:     the flux level that median normalisation removes, as a luminosity
#:     (flat ΛCDM, H0 = 70 km/s/Mpc, Ωm = 0.3, the cosmology of the virial
#:     calibrations).
#: ``log_norm``
#:     log10 of the median rest-frame flux density itself (flux units of the
#:     batch converted to erg/s/cm²/Å).
#: ``z``
#:     The redshift used for the rest frame.
SCALARS = ("log_lambda_l", "log_norm", "z")
_H0, _OM0 = 70.0, 0.3
_F_LAMBDA = u.erg / u.s / u.cm**2 / u.AA

#: normalised flux is clipped to this range before it enters a network
_FLUX_CLIP = 50.0


def validate_preprocessing(spec):
    """
    Check a preprocessing declaration and fill in its defaults.

    Parameters
    ----------
    spec : dict
        Keys ``steps`` (list drawn from `STEPS`, in that order), ``grid``
        (``start``, ``stop`` in Å and ``dloglam``; required with
        ``'resample'``), ``normalization`` (``'median'`` or ``'none'``,
        default ``'median'``), ``channels`` (from ``'flux'``, ``'mask'``,
        ``'ivar'``; default ``['flux', 'mask']``) and ``min_good_fraction``
        (default 0.5); optionally ``scalars``, a dict with ``names`` (drawn
        from `SCALARS`) and the ``loc`` and ``scale`` that standardise them
        (defaults 0 and 1).

    Returns
    -------
    spec : dict
        A new dictionary with the defaults filled in.

    Raises
    ------
    ValueError
        If a step, the order, the grid or an option is invalid.

    Examples
    --------
    >>> validate_preprocessing({"steps": ["normalize"]})["channels"]
    ['flux', 'mask']
    >>> validate_preprocessing({"steps": ["resample"]})
    Traceback (most recent call last):
    ...
    ValueError: the 'resample' step needs a 'grid' with start, stop and dloglam
    """
    if not isinstance(spec, dict):
        raise TypeError(f"preprocessing must be a dict, got {type(spec).__name__}")
    unknown = set(spec) - {"steps", "grid", "normalization", "channels",
                           "min_good_fraction", "scalars"}
    if unknown:
        raise ValueError(f"unknown preprocessing keys: {sorted(unknown)}")
    steps = spec.get("steps")
    if not isinstance(steps, list) or not all(isinstance(s, str) for s in steps):
        raise ValueError("'steps' must be a list of step names")
    bad = [s for s in steps if s not in STEPS]
    if bad:
        raise ValueError(f"unknown preprocessing steps {bad}; known steps: {list(STEPS)}")
    if len(set(steps)) != len(steps) or steps != sorted(steps, key=STEPS.index):
        raise ValueError(f"steps must be unique and in the order {list(STEPS)}, got {steps}")
    out = {"steps": list(steps)}
    grid = spec.get("grid")
    if grid is not None:
        if not isinstance(grid, dict) or not {"start", "stop", "dloglam"} <= set(grid):
            raise ValueError("'grid' must be a dict with start, stop and dloglam")
        try:
            start, stop, step = (float(grid[k]) for k in ("start", "stop", "dloglam"))
        except (TypeError, ValueError):
            raise ValueError("grid start, stop and dloglam must be numbers") from None
        if not (0 < start < stop and step > 0 and np.isfinite(stop)):
            raise ValueError(
                f"grid needs 0 < start < stop and dloglam > 0, got {start}, {stop}, {step}"
            )
        out["grid"] = {"start": start, "stop": stop, "dloglam": step}
    elif "resample" in steps:
        raise ValueError("the 'resample' step needs a 'grid' with start, stop and dloglam")
    norm = spec.get("normalization", "median")
    if norm not in _NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {_NORMALIZATIONS}, not {norm!r}")
    out["normalization"] = norm
    channels = spec.get("channels", ["flux", "mask"])
    if (not isinstance(channels, list) or not channels
            or any(c not in _CHANNELS for c in channels)):
        raise ValueError(f"channels must be a non-empty list drawn from {_CHANNELS}")
    out["channels"] = list(channels)
    fraction = spec.get("min_good_fraction", 0.5)
    if not isinstance(fraction, (int, float)) or not 0 <= fraction <= 1:
        raise ValueError(f"min_good_fraction must be in [0, 1], got {fraction!r}")
    out["min_good_fraction"] = float(fraction)
    if spec.get("scalars") is not None:
        out["scalars"] = _validate_scalars(spec["scalars"], steps)
    return out


def _row_nanmedian(values):
    """Median of each row ignoring NaN (NaN for an all-NaN row), vectorised.

    Equivalent to ``np.nanmedian(values, axis=1)`` without its per-row loop:
    a sort puts the NaN last, so the median sits at the middle of the
    finite prefix of each row.
    """
    ordered = np.sort(values, axis=1)
    count = np.sum(~np.isnan(values), axis=1)
    rows = np.arange(len(values))
    lo = np.clip((count - 1) // 2, 0, None)
    hi = np.clip(count // 2, 0, max(values.shape[1] - 1, 0))
    if values.shape[1] == 0:
        return np.full(len(values), np.nan)
    median = 0.5 * (ordered[rows, lo] + ordered[rows, hi])
    return np.where(count > 0, median, np.nan)


def _validate_scalars(scalars, steps):
    if not isinstance(scalars, dict) or not set(scalars) <= {"names", "loc", "scale"}:
        raise ValueError("'scalars' must be a dict with 'names', 'loc' and 'scale'")
    names = scalars.get("names")
    if (not isinstance(names, list) or not names
            or any(name not in SCALARS for name in names)):
        raise ValueError(f"scalar names must be a non-empty list drawn from {SCALARS}")
    if "rest_frame" not in steps or "normalize" not in steps:
        raise ValueError("scalar inputs need the 'rest_frame' and 'normalize' steps")
    out = {"names": list(names)}
    for key, default in (("loc", 0.0), ("scale", 1.0)):
        values = scalars.get(key, [default] * len(names))
        try:
            values = [float(v) for v in values]
        except (TypeError, ValueError):
            raise ValueError(f"scalar {key} must be a list of numbers") from None
        if len(values) != len(names) or not all(np.isfinite(values)):
            raise ValueError(f"scalar {key} needs one finite number per scalar")
        out[key] = values
    if not all(s > 0 for s in out["scale"]):
        raise ValueError("scalar scales must be positive")
    return out


@dataclass
class PipelineResult:
    """
    The output of a `Pipeline` run.

    Attributes
    ----------
    inputs : `~numpy.ndarray`
        Network input, float32, shape ``(N, M, C)``; zeros for unusable rows.
    usable : `~numpy.ndarray`
        Bool, shape ``(N,)``: rows the network may be run on.
    flags : `~numpy.ndarray`
        int64, shape ``(N,)``: the batch flags plus those set by the steps.
    snr : `~numpy.ndarray`
        Median S/N per good pixel of each input spectrum (before the steps).
    batch : `~spectralnn.SpectrumBatch`
        The spectra after the steps (on the model grid when resampled).
    scalars : `~numpy.ndarray` or None
        Standardised scalar inputs, float32, shape ``(N, S)``, when the
        preprocessing declares ``scalars`` (zeros for unusable rows).

    Examples
    --------
    >>> import numpy as np, astropy.units as u
    >>> from spectralnn import SpectrumBatch
    >>> from spectralnn.models import Pipeline
    >>> batch = SpectrumBatch(np.linspace(4000, 5000, 50) * u.AA,
    ...                       np.full((2, 50), 3.0), np.ones((2, 50)), flux_unit=u.one)
    >>> result = Pipeline({"steps": ["normalize"], "channels": ["flux", "mask"]})(batch)
    >>> result.inputs.shape, result.usable.tolist(), result.scalars is None
    ((2, 50, 2), [True, True], True)
    """

    inputs: np.ndarray
    usable: np.ndarray
    flags: np.ndarray
    snr: np.ndarray
    batch: SpectrumBatch
    scalars: np.ndarray | None = None

    @property
    def network_inputs(self):
        """What the network takes: ``inputs``, or ``[inputs, scalars]``."""
        return self.inputs if self.scalars is None else [self.inputs, self.scalars]


class Pipeline:
    """
    Run a model's declared preprocessing on spectra.

    Parameters
    ----------
    spec : dict
        The ``preprocessing`` entry of the model metadata (see
        `validate_preprocessing`).

    Examples
    --------
    >>> import numpy as np, astropy.units as u
    >>> from spectralnn import SpectrumBatch
    >>> pipe = Pipeline({"steps": ["normalize"], "channels": ["flux"]})
    >>> batch = SpectrumBatch(np.linspace(4000, 5000, 50) * u.AA,
    ...                       np.full((2, 50), 3.0), np.ones((2, 50)), flux_unit=u.one)
    >>> result = pipe(batch)
    >>> result.inputs.shape, float(result.inputs[0, 0, 0])
    ((2, 50, 1), 1.0)
    """

    def __init__(self, spec):
        self.spec = validate_preprocessing(spec)
        self.steps = self.spec["steps"]
        self.channels = self.spec["channels"]
        self.scalars = self.spec.get("scalars")
        grid = self.spec.get("grid")
        self.grid = None
        if grid is not None:
            n = int(np.floor(np.log10(grid["stop"] / grid["start"]) / grid["dloglam"] + 1e-9)) + 1
            self.grid = grid["start"] * 10.0 ** (grid["dloglam"] * np.arange(n)) * u.AA

    @property
    def n_pixels(self):
        """Pixels of the model grid (None without a grid)."""
        return None if self.grid is None else len(self.grid)

    @property
    def n_channels(self):
        """Channels per pixel of the network input."""
        return len(self.channels)

    @property
    def n_scalars(self):
        """Scalar inputs per spectrum (0 when none are declared)."""
        return 0 if self.scalars is None else len(self.scalars["names"])

    def __repr__(self):
        return f"<Pipeline steps={self.steps} channels={self.channels}>"

    def __call__(self, spectra, *, z=None, ebv=None):
        """
        Preprocess spectra into a network input.

        Parameters
        ----------
        spectra : `specutils.Spectrum`, list, `~spectralnn.SpectrumBatch` or path(s)
            The spectra (converted with `spectralnn.batch.as_batch`).
        z : float or array-like, optional
            Redshift per spectrum; default ``meta['z']``.
        ebv : float or array-like, optional
            E(B-V) per spectrum; default ``meta['ebv']``, else 0.

        Returns
        -------
        result : `PipelineResult`
        """
        from .._utils import per_spectrum

        batch = as_batch(spectra, on_invalid="flag")
        z_used = np.zeros(len(batch))
        flags = np.asarray(batch.flags, dtype=np.int64).copy()
        usable = (flags & Flag.NO_DATA) == 0
        snr = batch.snr
        meta = batch.meta.copy()

        if "deredden" in self.steps:
            from ..preprocessing.dereddening import deredden

            ebv_values = per_spectrum(batch, ebv, "ebv", default=np.nan)
            unknown = ~np.isfinite(ebv_values)
            if unknown.any():
                log.info("E(B-V) unknown for %d spectra: not dereddened", int(unknown.sum()))
            batch = deredden(batch, ebv=np.where(unknown, 0.0, ebv_values))
        if "rest_frame" in self.steps:
            from ..preprocessing.redshift import to_rest_frame

            z_values = per_spectrum(batch, z, "z", default=np.nan)
            no_z = ~np.isfinite(z_values) | (z_values <= -1)
            flags[no_z] |= Flag.NO_REDSHIFT
            usable &= ~no_z
            z_used = np.where(no_z, 0.0, z_values)
            batch = to_rest_frame(batch, z=np.where(no_z, 0.0, z_values))
        if "resample" in self.steps:
            from ..preprocessing.resample import resample

            batch = resample(batch, self.grid)
        elif self.grid is not None and (
            not batch.shared_grid or batch.n_pixels != self.n_pixels
            or not np.allclose(batch.wavelength, self.grid.value, rtol=1e-7)
        ):
            from ..errors import WavelengthCoverageError

            raise WavelengthCoverageError(
                "spectra are not on the model grid and the model declares no "
                "'resample' step"
            )
        # flags the steps set (e.g. OUT_OF_COVERAGE, NO_DATA) join ours; the
        # caller's meta (with the original z) is kept
        flags |= np.asarray(batch.flags, dtype=np.int64)
        usable &= (flags & Flag.NO_DATA) == 0
        meta["flags"] = flags
        batch = batch.copy(meta=meta)

        good = batch.good
        coverage = good.mean(axis=1) if batch.n_pixels else np.zeros(len(batch))
        low = coverage < max(self.spec["min_good_fraction"], 1e-12)
        flags[low & usable] |= Flag.OUT_OF_COVERAGE
        usable &= ~low

        flux = np.where(good, batch.flux, np.nan)
        if self.spec["normalization"] == "median" and "normalize" in self.steps:
            norm = _row_nanmedian(flux)
            bad_norm = ~(np.isfinite(norm) & (norm > 0))
            flags[bad_norm & usable] |= Flag.FIT_FAILED
            usable &= ~bad_norm
            norm = np.where(bad_norm, 1.0, norm)
        else:
            norm = np.ones(len(batch))
        scaled = np.clip(np.nan_to_num(flux / norm[:, None], nan=0.0), -_FLUX_CLIP, _FLUX_CLIP)
        planes = []
        for channel in self.channels:
            if channel == "flux":
                planes.append(scaled)
            elif channel == "mask":
                planes.append(good.astype(np.float64))
            elif channel == "observed_wavelength":
                observed = batch.wavelength_2d * (1.0 + z_used)[:, None]
                planes.append((np.log10(observed) - _OBS_LOGLAM_LOC) / _OBS_LOGLAM_SCALE)
            else:  # ivar -> error-weight sigma^-1 in normalised units, squashed
                weight = np.sqrt(np.where(good, batch.ivar, 0.0)) * norm[:, None]
                planes.append(np.tanh(weight / 10.0))
        inputs = np.stack(planes, axis=-1).astype(np.float32)
        scalars = None
        if self.scalars is not None:
            scalars = self._scalars(norm, z_used, batch.flux_unit, usable, flags)
        inputs[~usable] = 0.0
        return PipelineResult(inputs=inputs, usable=usable, flags=flags, snr=snr,
                              batch=batch, scalars=scalars)

    def _scalars(self, norm, z, flux_unit, usable, flags):
        """Standardised scalar inputs (N, S); updates ``usable`` and ``flags``."""
        try:
            to_cgs = (1.0 * u.Unit(flux_unit)).to_value(_F_LAMBDA)
        except u.UnitConversionError:
            log.warning("flux unit %s is not a flux density: no luminosity input",
                        flux_unit)
            to_cgs = np.nan
        with np.errstate(all="ignore"):
            log_norm = np.log10(norm * to_cgs)
        values = {"log_norm": log_norm, "z": z}
        if "log_lambda_l" in self.scalars["names"]:
            from astropy.cosmology import FlatLambdaCDM

            cosmo = FlatLambdaCDM(H0=_H0, Om0=_OM0)
            d_l = np.zeros_like(z)
            pos = z > 0
            d_l[pos] = cosmo.luminosity_distance(z[pos]).to_value(u.cm)
            with np.errstate(all="ignore"):
                values["log_lambda_l"] = (log_norm + np.log10(4 * np.pi * 3000.0)
                                          + 2 * np.log10(d_l))
        out = np.stack([values[name] for name in self.scalars["names"]], axis=-1)
        loc, scale = np.asarray(self.scalars["loc"]), np.asarray(self.scalars["scale"])
        out = (out - loc) / scale
        bad = ~np.all(np.isfinite(out), axis=1)
        flags[bad & usable] |= Flag.FIT_FAILED
        usable &= ~bad
        out[~usable] = 0.0
        return out.astype(np.float32)
