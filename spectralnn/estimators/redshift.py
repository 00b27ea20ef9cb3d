"""
`RedshiftEstimator`: redshifts of quasars, galaxies and stars from their spectra.

The network reads the observed-frame spectrum on a common log-λ grid
(3600–10000 Å, Δlog10λ = 1e-3, as QuasarNET, Busca & Balland 2018,
arXiv:1808.09955; flux, mask and error channels, median-normalised; no
rest-frame step, since z is what is sought) and predicts ln(1 + z) with its
own uncertainty (a heteroscedastic Gaussian head, Nix & Weigend 1994). On a
log-λ grid a redshift is a shift, so a ``'resnet1d'`` network here keeps the
position of its features (`spectralnn.models.build_position_regressor`:
flattened, not globally pooled, as in QuasarNET), and ln(1 + z) errors are velocity errors:
Δ ln(1 + z) ≈ Δv / c, so one Gaussian width serves every redshift. The table
gives ``z`` and ``z_err`` (the Gaussian mapped back to z), the lines of
`spectralnn.lines.LINES` that fall inside the good-pixel range at that z, and a
catastrophic-risk column: the probability, under the predicted Gaussian, that
the velocity error exceeds ``catastrophic_velocity`` (6000 km/s by default,
the QuasarNET criterion), with ``z_warning`` set when it exceeds
``risk_threshold``.

Examples
--------
>>> from spectralnn.estimators import RedshiftEstimator
>>> est = RedshiftEstimator("resnet1d", architecture_options={"filters": 8})
>>> est.pipeline.steps
['deredden', 'resample', 'normalize']
"""

import numpy as np
from astropy import constants as const
from astropy import units as u
from scipy.special import erfc

from ..lines import LINES
from .base import OBSERVED_FRAME_PREPROCESSING, Estimator

__all__ = ["RedshiftEstimator"]

_C_KMS = const.c.to_value(u.km / u.s)
#: half-width (km/s) of the fine template fit around the global scan's best
#: redshift (a few scan steps: 345 km/s for quasars, 173 km/s for galaxies),
#: or around zero velocity for stars
_FINE_WINDOW = {"QSO": 1500.0, "GALAXY": 800.0, "STAR": 1500.0}


class RedshiftEstimator(Estimator):
    """
    Predict redshifts (with uncertainties) from observed-frame spectra.

    Parameters
    ----------
    model : str, `~pathlib.Path` or `~spectralnn.models.LoadedModel`, optional
        ``'default'`` (the shipped ``redshift-default`` weights, when
        installed), the path of a trained ``.keras`` file, or an architecture
        name (``'resnet1d'``, ``'wren2021'``) to build and `fit` a new network.
    batch_size : int, optional
        Spectra per forward pass. Default 1024.
    catastrophic_velocity : `~astropy.units.Quantity` or float, optional
        Velocity error counted as a catastrophic failure (km/s if a bare
        number). Default 6000 km/s (QuasarNET's criterion for quasars; 1000
        km/s is the usual one for galaxies).
    risk_threshold : float, optional
        ``z_warning`` is set where the catastrophic risk exceeds this.
        Default 0.05.
    preprocessing : dict, optional
        Preprocessing of a new network. Default: Galactic dereddening,
        resampling onto 3600–10000 Å with Δlog10λ = 1e-3 in the observed
        frame, median normalisation, flux, mask and error channels; 30 % of
        the grid must be covered.
    architecture_options : dict, optional
        Options of a new network.

    Examples
    --------
    >>> RedshiftEstimator("resnet1d", batch_size=64)
    <RedshiftEstimator: model 'redshift-resnet1d' (resnet1d, untrained), batch_size=64>
    """

    task = "redshift"
    target_names = ("z",)
    target_units = ("",)
    default_model_name = "redshift-default"
    target_calibration = "spectroscopic redshift (the network predicts ln(1 + z))"
    default_preprocessing = OBSERVED_FRAME_PREPROCESSING

    def __init__(
        self,
        model="default",
        *,
        batch_size: int = 1024,
        catastrophic_velocity=6000.0 * u.km / u.s,
        risk_threshold: float = 0.05,
        refine: bool = True,
        classifier="default",
        preprocessing: dict | None = None,
        architecture_options: dict | None = None,
    ):
        velocity = u.Quantity(catastrophic_velocity, u.km / u.s)
        if velocity.size != 1 or not (0 < velocity.value < _C_KMS):
            raise ValueError(
                f"catastrophic_velocity must be one positive velocity below c, got {velocity}"
            )
        if not 0 < float(risk_threshold) < 1:
            raise ValueError(f"risk_threshold must be in (0, 1), got {risk_threshold}")
        super().__init__(model, batch_size=batch_size, preprocessing=preprocessing,
                         architecture_options=architecture_options)
        if "rest_frame" in self.pipeline.steps:
            raise ValueError("a redshift network cannot declare a 'rest_frame' step")
        self.catastrophic_velocity = velocity
        self.risk_threshold = float(risk_threshold)
        self.refine = bool(refine)
        self._classifier = classifier

    @property
    def classifier(self):
        """The `SpectralClassifier` that picks the templates of the refinement."""
        if not hasattr(self._classifier, "predict"):
            from .classify import SpectralClassifier

            self._classifier = SpectralClassifier(self._classifier)
        return self._classifier

    def predict(self, spectra, *, z=None, ebv=None, spectype=None):
        """
        Redshift of each spectrum.

        Parameters
        ----------
        spectra : `specutils.Spectrum`, list, `~spectralnn.SpectrumBatch` or path(s)
            Observed-frame spectra (any grid covering part of 3600–10000 Å).
        z : float or array-like, optional
            A reference redshift (e.g. a catalogue value), not used by the
            network: copied to the ``z_ref`` column (default ``meta['z']``
            when present).
        ebv : float or array-like, optional
            Galactic E(B-V) per spectrum. Default: ``meta['ebv']``, else 0.
        spectype : str or array-like of str, optional
            Class (``'QSO'``, ``'GALAXY'``, ``'STAR'``) whose templates refine
            each redshift. Default: from `classifier` (never from the meta
            table, whose class may be a guess of another pipeline).

        Returns
        -------
        table : `~astropy.table.QTable`
            One row per spectrum: the identifying meta columns present, ``z``
            and ``z_err`` (dimensionless), ``z_network`` and ``z_network_err``
            (the network alone), ``z_method`` (``'template'`` where the
            refinement converged, else ``'network'``), ``spectype`` (the class
            used), ``dchi2`` (χ² difference to the best other redshift of the
            templates; NaN where not refined), ``z_ref`` when a reference is known,
            ``lines`` (comma-separated names of the lines of
            `spectralnn.lines.LINES` inside the good-pixel range at the
            predicted z), ``z_risk`` (probability of a velocity error
            beyond ``catastrophic_velocity``: from the network's Gaussian, or
            for refined redshifts the relative likelihood of the competing χ²
            minimum, 1 / (1 + exp(dchi2 / 2))), ``z_warning`` (``z_risk >
            risk_threshold``), ``snr`` and ``flags``.
        """
        return super().predict(spectra, z=z, ebv=ebv, spectype=spectype)

    def _predict_batch(self, batch, *, z, ebv, spectype=None):
        from .._utils import per_spectrum

        prepared = self.pipeline(batch, ebv=ebv)
        mean, std = self._run_network(prepared.network_inputs, prepared.usable)
        self._report_unusable(prepared.usable, prepared.flags)
        z_net, z_net_err = mean[:, 0].copy(), std[:, 0].copy()
        risk = self._risk(z_net_err / (1.0 + z_net))
        extra = {"z_network": z_net, "z_network_err": z_net_err}
        method = np.full(len(batch), "network", dtype="<U8")
        types = np.full(len(batch), "", dtype="<U6")
        dchi2 = np.full(len(batch), np.nan)
        if self.refine and prepared.usable.any():
            refined = self._refine(batch, z_net, z_net_err, prepared.usable, spectype, ebv)
            ok = refined["ok"]
            mean[ok, 0], std[ok, 0] = refined["z"][ok], refined["z_err"][ok]
            method[ok] = "template"
            types[:] = refined["spectype"]
            dchi2 = refined["dchi2"]
            with np.errstate(over="ignore", invalid="ignore"):
                risk = np.where(ok, 1.0 / (1.0 + np.exp(np.minimum(dchi2, 1e3) / 2.0)),
                                risk)
        extra["z_method"] = method
        extra["spectype"] = types
        extra["dchi2"] = dchi2
        z_ref = per_spectrum(batch, z, "z", default=np.nan)
        if np.any(np.isfinite(z_ref)):
            extra["z_ref"] = z_ref
        extra["lines"] = _lines_covered(batch, mean[:, 0])
        extra["z_risk"] = risk
        extra["z_warning"] = ~(risk <= self.risk_threshold)
        # the predicted z takes the place of any meta 'z' (kept as z_ref)
        return self._build_table(batch, prepared, mean, std, extra)

    def _refine(self, batch, z_net, z_net_err, usable, spectype, ebv):
        """Template refinement (`spectralnn.preprocessing.fit_redshift`) of usable rows."""
        import warnings

        from ..errors import BatchItemWarning
        from ..flags import Flag
        from ..preprocessing.redshift_fit import fit_redshift
        from ..preprocessing.redshift_scan import SCAN_STEPS, scan_redshift

        rows = np.flatnonzero(usable)
        if spectype is None:
            types = np.asarray(self.classifier.predict(batch[rows], ebv=_take_rows(ebv, rows))
                               ["class"]).astype(str)
        else:
            types = np.broadcast_to(np.asarray(spectype).astype(str), (len(batch),))[rows]
        out = {"z": np.full(len(batch), np.nan), "z_err": np.full(len(batch), np.nan),
               "dchi2": np.full(len(batch), np.nan), "ok": np.zeros(len(batch), bool),
               "spectype": np.full(len(batch), "", dtype="<U6")}
        out["spectype"][rows] = types
        known = np.isin(types, ("QSO", "GALAXY", "STAR"))
        if not known.any():
            return out
        rows, types = rows[known], types[known]
        guess = z_net[rows].copy()
        scanned = types != "STAR"
        if scanned.any():
            # quasars and galaxies: a global template search over the class's
            # whole redshift range (the network alone is not precise enough)
            scan = scan_redshift(batch[rows[scanned]], spectype=types[scanned])
            z_scan = np.asarray(scan["z"], dtype=float)
            guess[scanned] = np.where(np.isfinite(z_scan), z_scan, guess[scanned])
            out["dchi2"][rows[scanned]] = np.asarray(scan["dchi2"], dtype=float)
        # stars: radial velocities of a few hundred km/s at most
        guess[~scanned] = 0.0
        z_fit = np.full(rows.size, np.nan)
        z_fit_err = np.full(rows.size, np.nan)
        fine_dchi2 = np.full(rows.size, np.nan)
        flags = np.zeros(rows.size, dtype=np.int64)
        for name in np.unique(types):
            on = types == name
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", BatchItemWarning)
                fit = fit_redshift(batch[rows[on]], guess[on], spectype=name,
                                   window=_FINE_WINDOW[name])
            z_fit[on] = np.asarray(fit["z"], dtype=float)
            z_fit_err[on] = np.asarray(fit["z_err"], dtype=float)
            fine_dchi2[on] = np.asarray(fit["dchi2"], dtype=float)
            flags[on] = np.asarray(fit["flags"], dtype=np.int64)
        good = np.isfinite(z_fit) & ((flags & int(Flag.FIT_FAILED)) == 0)
        # where the fine fit fails (its minimum on the window's edge), the
        # global scan's redshift stands, with its step as the error
        # (stars: zero velocity, with the fine window as the error)
        step = np.where(scanned, np.array([SCAN_STEPS[t] for t in types]) * np.log(10.0),
                        _FINE_WINDOW["STAR"] / _C_KMS)
        use_scan = ~good & np.isfinite(guess)
        # Δχ² = 1 errors of templates that do not span every spectrum are too
        # small: the model's metadata may carry a measured scale per class.
        # It applies to the fine fit's errors only, not to a fallback's step.
        scale = self.metadata.get("refinement", {}).get("error_scale", {})
        z_fit_err = z_fit_err * np.array([float(scale.get(t, 1.0)) for t in types])
        z_fit = np.where(use_scan, guess, z_fit)
        z_fit_err = np.where(use_scan, (1.0 + guess) * step, z_fit_err)
        good |= use_scan
        out["z"][rows], out["z_err"][rows] = z_fit, z_fit_err
        # the competing minimum: of the global scan where there was one
        out["dchi2"][rows] = np.where(np.isfinite(out["dchi2"][rows]),
                                      out["dchi2"][rows], fine_dchi2)
        out["ok"][rows] = good & np.isfinite(out["z_err"][rows])
        return out

    def _risk(self, sigma_ln):
        """Probability that |Δ ln(1+z)| exceeds the catastrophic velocity."""
        limit = np.log1p(self.catastrophic_velocity.to_value(u.km / u.s) / _C_KMS)
        with np.errstate(divide="ignore", invalid="ignore"):
            return erfc(limit / (np.sqrt(2.0) * sigma_ln))

    # the network works in ln(1 + z); the rest of the estimator in z
    def _targets(self, targets, batch):
        values = super()._targets(targets, batch)
        with np.errstate(invalid="ignore"):
            bad = ~(values > -1)
        values = np.where(bad, np.nan, values)
        return np.log1p(values)

    def _build(self, x, y):
        if self.architecture != "resnet1d":
            return super()._build(x, y)
        from ..models.architectures import build_position_regressor

        x = x[0] if isinstance(x, list) else x
        scale = float(np.std(y[:, 0]))
        self._keras = build_position_regressor(
            self.architecture, x.shape[-2], n_channels=self.pipeline.n_channels,
            target_loc=float(np.mean(y[:, 0])), target_scale=scale if scale > 0 else 1.0,
            options=self.metadata["architecture"]["options"],
            name=self.metadata["name"].replace(" ", "_"),
        )

    def _run_network(self, inputs, usable):
        ln_mean, ln_std = super()._run_network(inputs, usable)
        z = np.expm1(ln_mean)
        return z, (1.0 + z) * ln_std

    def _metrics(self, x, y):
        """Redshift accuracy on (x, y) (targets in ln(1 + z))."""
        from .base import _mean_std

        ln_mean, ln_std = _mean_std(self._forward(x), 1)
        ln_std = ln_std * self.sigma_scale
        dln = ln_mean[:, 0] - y[:, 0]
        dv = np.abs(np.expm1(dln)) * _C_KMS
        z_true = np.expm1(y[:, 0])
        dz = np.expm1(ln_mean[:, 0]) - z_true
        limit = self.catastrophic_velocity.to_value(u.km / u.s)
        return {"z": {
            "n": int(len(y)),
            # normalised median absolute deviation of Δz/(1+z)
            "nmad_dz_1pz": float(1.4826 * np.median(np.abs(dz / (1 + z_true)
                                                           - np.median(dz / (1 + z_true))))),
            "std_dz_1pz": float(np.std(dz / (1 + z_true))),
            "bias_dz_1pz": float(np.mean(dz / (1 + z_true))),
            "median_abs_dv_kms": float(np.median(dv)),
            "catastrophic_fraction": float(np.mean(dv > limit)),
            "catastrophic_velocity_kms": float(limit),
            "pull_std": float(np.std(dln / ln_std[:, 0])),
            "coverage_68": float(np.mean(np.abs(dln) < ln_std[:, 0])),
        }}


def _take_rows(value, rows):
    """``value`` at ``rows`` when it is per spectrum (an array), else itself."""
    if value is None or np.ndim(value) == 0:
        return value
    return np.asarray(value)[rows]


def _lines_covered(batch, z):
    """Comma-separated names of the lines on good pixels at redshift ``z`` per row."""
    rest = np.asarray(LINES["wavelength"].to_value(u.AA))
    names = np.asarray(LINES["name"]).astype(str)
    wave = batch.wavelength_2d
    good = batch.good
    lo = np.min(np.where(good, wave, np.inf), axis=1)
    hi = np.max(np.where(good, wave, -np.inf), axis=1)
    with np.errstate(invalid="ignore"):
        observed = rest[None, :] * (1.0 + np.asarray(z, dtype=np.float64))[:, None]
        on = (observed >= lo[:, None]) & (observed <= hi[:, None])
    # one string per distinct pattern of covered lines (few of them)
    patterns, inverse = np.unique(on, axis=0, return_inverse=True)
    text = np.array([",".join(names[p]) for p in patterns], dtype=object)
    return text[np.ravel(inverse)].astype(str) if len(text) else np.array([], dtype=str)
