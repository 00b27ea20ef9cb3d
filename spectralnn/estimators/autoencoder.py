r"""
`SpectrumAutoencoder`: compact latent features and anomaly scores of spectra.

A Conv1D encoder compresses an observed-frame spectrum and its redshift into
a few numbers (the *latents*); a decoder draws the spectrum back from them
(`spectralnn.models.architectures.build_autoencoder`). The latents are
compact features for clustering, classification or plots
(`spectralnn.visualization.plot_latent_space`); the misfit of the
reconstruction is an anomaly score.

The decoder follows spender (Melchior et al. 2023, AJ 166, 74): a
multi-layer perceptron draws the *rest-frame* spectrum, from the latents and
the redshift, on a log-λ grid wide enough for every class (634–9289 Å
covers 3802–9190 Å observed for -0.01 ≤ z ≤ 5), which is then redshifted by
the spectrum's known z and linearly interpolated onto the observed grid
(`spectralnn.models.layers.RedshiftResample`). A line is drawn once, at its
rest wavelength, and lands where z puts it; an observed-frame decoder has to
learn each line at every position it can take, which is what kept the first
autoencoder of this package from reaching the noise (median χ²/pixel 3.2 on
the simulated hold-out, 7.5 for quasars). The redshift is an input: the
catalogue's or pipeline's ``meta['z']``, or ``z=``
(`spectralnn.estimators.RedshiftEstimator` gives one); a spectrum without one
is flagged ``NO_REDSHIFT``. Conditioning the decoder on z lets it learn, for
instance, that stars sit at z ≈ 0.

The input grid follows the Conv1D autoencoder of SDSS spectra with 1,792
pixels (Wren 2021): the SDSS range 3802–9190 Å resampled (ivar-weighted,
flux-conserving, with the inverse variance propagated) onto 1,792 pixels
uniform in log λ (Δlog10λ = 2.14e-4, 2.14 SDSS pixels each), after
Galactic dereddening, median-normalised; the encoder reads the flux, the
mask and an error weight. The network is trained to minimise the
reconstruction χ² itself,

.. math:: \chi^2_\nu = \frac{1}{N_{good}} \sum_{good} w_i (f_i - \hat f_i)^2,

with :math:`w_i` the *resampled* inverse variance in normalised units and
masked or zero-ivar pixels left out, as spender does. The same χ² per good
pixel is the anomaly score: about 1 for a spectrum the decoder reproduces to
within its noise, larger for one it cannot draw from its latents. A local
score, the largest χ² per pixel in any window of ``LOCAL_WINDOW`` adjacent
pixels, picks out a narrow defect (a glitch, one odd line) that the mean over
1,792 pixels dilutes.

The Lyα forest blueward of Lyα (λ_rest < 1216 Å) of a quasar is the
absorption of intervening gas, different along every sight-line: no decoder
draws it pixel by pixel from a handful of latents. The metadata's
``score.min_rest_wavelength`` says which pixels the χ² (training loss and
scores) uses; the shipped model leaves out λ_rest < 1216 Å (see the
documentation for the χ² with and without them).

Examples
--------
>>> from spectralnn.estimators import SpectrumAutoencoder
>>> ae = SpectrumAutoencoder("autoencoder", latent_dim=6)
>>> ae.latent_dim, ae.pipeline.n_pixels
(6, 1792)
"""

import functools
import logging

import numpy as np
from astropy import units as u
from astropy.table import QTable

from .._utils import per_spectrum
from ..batch import SpectrumBatch, as_batch
from ..flags import Flag
from ..models.pipeline import Pipeline
from .base import _ID_COLUMNS, Estimator

__all__ = ["AUTOENCODER_PREPROCESSING", "LOCAL_WINDOW", "SpectrumAutoencoder",
           "inject_anomalies"]

log = logging.getLogger(__name__)

#: Name of the autoencoder architecture (built by
#: `spectralnn.models.architectures.build_autoencoder`).
ARCHITECTURE = "autoencoder"

#: Preprocessing of the autoencoder: dereddening, the SDSS range 3802–9190 Å
#: on 1,792 log-λ pixels (Δlog10λ = 2.14e-4), median normalisation; flux,
#: mask and error channels; 30 % of the grid must be covered.
AUTOENCODER_PREPROCESSING = {
    "steps": ["deredden", "resample", "normalize"],
    "grid": {"start": 3802.0, "stop": 9190.0, "dloglam": 2.14e-4},
    "normalization": "median",
    "channels": ["flux", "mask", "ivar"],
    "min_good_fraction": 0.3,
}

#: Pixels of the windows of the local anomaly score (about 5,000 km/s on the
#: default grid: the width of a broad line, twice that of a 25-SDSS-pixel glitch)
LOCAL_WINDOW = 32

#: Rest wavelength (Å) below which the χ² of a new network leaves pixels out
#: (Lyα: the forest blueward of it is not drawn pixel by pixel); None keeps all
DEFAULT_MIN_REST_WAVELENGTH = 1216.0

#: Adam at 1e-3, down to 1e-5
_SCHEDULE = {"optimizer": "adam", "learning_rate": 1e-3, "final_learning_rate": 1e-5}

#: training losses of `SpectrumAutoencoder.fit`
_LOSSES = ("chi2", "log_chi2")

#: kinds of anomalies `inject_anomalies` knows
ANOMALY_KINDS = ("broad_line", "wrong_class", "glitch")


class SpectrumAutoencoder(Estimator):
    r"""
    Encode spectra into a few latents, decode them, and score anomalies.

    Parameters
    ----------
    model : str, `~pathlib.Path` or `~spectralnn.models.LoadedModel`, optional
        ``'default'`` (the shipped ``autoencoder-default`` weights), the path
        of a trained ``.keras`` file, or ``'autoencoder'`` for a new,
        untrained network to `fit`.
    latent_dim : int, optional
        Size of the latent vector of a new network (the same as
        ``architecture_options={'latent_dim': ...}``). Default 10, chosen by
        measurement (see the documentation's table of χ² per pixel against
        latent size). A trained model has its own.
    batch_size : int, optional
        Spectra per forward pass. Default 256.
    threshold : float, optional
        χ² per pixel above which ``anomalous`` is set in the `predict`
        table. Default: the threshold stored with the model (the 99th
        percentile of the scores of normal hold-out spectra), else 2.
    preprocessing : dict, optional
        Preprocessing of a new network. Default `AUTOENCODER_PREPROCESSING`.
    architecture_options : dict, optional
        Options of a new network (see
        `spectralnn.models.architectures.build_autoencoder`).
    min_rest_wavelength : float or None, optional
        For a new network: rest wavelength (Å) below which pixels are left
        out of the χ² (training loss and scores). Default 1216 (Lyα: the
        forest is left out); None keeps every pixel. A trained model has its
        own (``metadata['score']``).
    fit_scale : bool, optional
        For a new network: multiply each reconstruction by the amplitude
        that minimises its χ² (in closed form, :math:`a = \sum w f \hat f
        / \sum w \hat f^2`), in training and scoring, so that the decoder
        draws the shape and a 2 % error in the level of a bright spectrum
        does not dominate its χ². Default True.

    Raises
    ------
    spectralnn.errors.ModelFileError
        If the weights are missing, corrupt or for another task.
    ValueError
        If a setting is invalid.

    Examples
    --------
    >>> SpectrumAutoencoder("autoencoder", latent_dim=8, batch_size=64)
    <SpectrumAutoencoder: model 'autoencoder-autoencoder' (autoencoder, untrained), batch_size=64>
    """

    task = "autoencoder"
    target_names = ("chi2_per_pixel",)
    target_units = ("",)
    default_model_name = "autoencoder-default"
    target_calibration = "reconstruction chi^2 per good pixel (resampled ivar)"
    default_preprocessing = AUTOENCODER_PREPROCESSING

    def __init__(
        self,
        model="default",
        *,
        latent_dim: int | None = None,
        batch_size: int = 256,
        threshold: float | None = None,
        preprocessing: dict | None = None,
        architecture_options: dict | None = None,
        min_rest_wavelength: float | None = DEFAULT_MIN_REST_WAVELENGTH,
        fit_scale: bool = True,
    ):
        if threshold is not None and not float(threshold) > 0:
            raise ValueError(f"threshold must be positive, got {threshold}")
        if isinstance(model, str) and model == ARCHITECTURE:
            from ..models.architectures import AUTOENCODER_OPTIONS

            options = dict(architecture_options or {})
            if latent_dim is not None:
                if (isinstance(latent_dim, bool) or int(latent_dim) != latent_dim
                        or latent_dim < 1):
                    raise ValueError(f"latent_dim must be a positive integer, got {latent_dim}")
                options["latent_dim"] = int(latent_dim)
            unknown = set(options) - set(AUTOENCODER_OPTIONS)
            if unknown:
                raise ValueError(f"unknown architecture options {sorted(unknown)}; "
                                 f"known: {sorted(AUTOENCODER_OPTIONS)}")
            if min_rest_wavelength is not None and not float(min_rest_wavelength) > 0:
                raise ValueError("min_rest_wavelength must be positive or None, got "
                                 f"{min_rest_wavelength}")
            spec = preprocessing or AUTOENCODER_PREPROCESSING
            # the base builds regression networks by name; this one is built here
            super().__init__("resnet1d", batch_size=batch_size, preprocessing=spec)
            self.metadata = self._new_metadata(
                ARCHITECTURE, {**AUTOENCODER_OPTIONS, **options}, spec)
            self.metadata["score"] = {
                "min_rest_wavelength": None if min_rest_wavelength is None
                else float(min_rest_wavelength),
                "local_window": LOCAL_WINDOW,
                "fit_scale": bool(fit_scale),
            }
            self.pipeline = Pipeline(self.metadata["preprocessing"])
        else:
            if latent_dim is not None:
                raise ValueError("latent_dim applies to new networks only; a trained "
                                 "model has its own")
            super().__init__(model, batch_size=batch_size, preprocessing=preprocessing,
                             architecture_options=architecture_options)
            if self.metadata["architecture"]["options"].get("frame") is None:
                from ..errors import ModelFileError

                raise ModelFileError(
                    f"model {self.metadata['name']!r} is an observed-frame autoencoder "
                    "of spectralnn < 0.1 (no redshift input); retrain it")
        if self.pipeline.grid is None or "rest_frame" in self.pipeline.steps:
            raise ValueError("an autoencoder needs a 'resample' step onto an observed-frame "
                             "grid")
        if threshold is None:
            threshold = self.metadata.get("decision", {}).get("threshold", 2.0)
        self.threshold = float(threshold)

    # ------------------------------------------------------------ properties
    @property
    def latent_dim(self):
        """Number of latents."""
        return int(self.metadata["architecture"]["options"]["latent_dim"])

    @property
    def wavelength(self):
        """The model grid (observed frame), a `~astropy.units.Quantity` in Å."""
        return self.pipeline.grid

    @property
    def rest_wavelength(self):
        """The decoder's rest-frame grid, a `~astropy.units.Quantity` in Å."""
        from ..models.architectures import autoencoder_rest_grid

        start, step, n = autoencoder_rest_grid(self.metadata["preprocessing"]["grid"],
                                               self.metadata["architecture"]["options"])
        return 10.0 ** (start + step * np.arange(n)) * u.AA

    @property
    def min_rest_wavelength(self):
        """Rest wavelength (Å) below which pixels are left out of the χ² (None: none)."""
        value = self.metadata.get("score", {}).get("min_rest_wavelength")
        return None if value is None else float(value)

    @property
    def fit_scale(self):
        """Whether each reconstruction is scaled by its χ²-minimising amplitude."""
        return bool(self.metadata.get("score", {}).get("fit_scale", False))

    @property
    def local_window(self):
        """Pixels per window of the local score."""
        return int(self.metadata.get("score", {}).get("local_window", LOCAL_WINDOW))

    @property
    def _z_range(self):
        options = self.metadata["architecture"]["options"]
        return float(options.get("z_min", -0.01)), float(options.get("z_max", 5.0))

    # ------------------------------------------------------------ prediction
    def __call__(self, spectra, *, z=None, ebv=None):
        """Alias of `predict`."""
        return self.predict(spectra, z=z, ebv=ebv)

    def predict(self, spectra, *, z=None, ebv=None):
        r"""
        Latents and anomaly scores of each spectrum.

        Parameters
        ----------
        spectra : `specutils.Spectrum`, list, `~spectralnn.SpectrumBatch` or path(s)
            Observed-frame spectra (any grid covering part of 3802–9190 Å).
        z : float or array-like, optional
            Redshift per spectrum. Default ``meta['z']``; a spectrum without
            one (or outside the model's ``z_min``–``z_max``) is flagged
            ``NO_REDSHIFT`` and not scored.
        ebv : float or array-like, optional
            Galactic E(B-V) per spectrum. Default ``meta['ebv']``, else 0.

        Returns
        -------
        table : `~astropy.table.QTable`
            One row per spectrum: the identifying meta columns present;
            ``z_used``; ``latent`` (shape ``(N, latent_dim)``);
            ``chi2_per_pixel`` (the anomaly score, see `anomaly_score`) and
            ``chi2_per_pixel_err`` (its spread for a spectrum drawn to within
            the noise, :math:`\sqrt{2/N_{good}}`); ``chi2_local`` (the
            largest χ² per pixel in a window of `local_window` pixels);
            ``n_good`` (pixels they are computed on); ``anomalous``
            (``chi2_per_pixel > threshold``); ``snr`` and ``flags``.
            Unusable spectra have NaN values and a flag.
        """
        return super().predict(spectra, z=z, ebv=ebv)

    def _predict_batch(self, batch, *, z, ebv):
        prepared, z_used = self._prepare(batch, z, ebv)
        latents, recon = self._run(prepared, z_used)
        self._report_unusable(prepared.usable, prepared.flags)
        chi2, n_good, local = self._scores(prepared, recon, z_used)
        table = QTable()
        for name in _ID_COLUMNS:
            if name in batch.meta.colnames:
                table[name] = batch.meta[name]
        table["z_used"] = np.where(prepared.usable, z_used, np.nan)
        table["latent"] = latents
        table["chi2_per_pixel"] = chi2
        with np.errstate(divide="ignore", invalid="ignore"):
            table["chi2_per_pixel_err"] = np.where(n_good > 0, np.sqrt(2.0 / n_good), np.nan)
        table["chi2_local"] = local
        table["n_good"] = n_good
        table["anomalous"] = np.nan_to_num(chi2, nan=-1.0) > self.threshold
        table["snr"] = prepared.snr
        table["flags"] = np.asarray(prepared.flags, dtype=np.int64)
        table.meta.update(self._table_meta())
        table.meta["threshold"] = self.threshold
        table.meta["min_rest_wavelength"] = self.min_rest_wavelength
        table.meta["local_window"] = self.local_window
        return table

    def _prepare(self, spectra, z, ebv):
        """Pipeline result and redshifts; spectra without a usable z are flagged."""
        batch = as_batch(spectra, on_invalid="flag")
        prepared = self.pipeline(batch, ebv=ebv)
        z_values = per_spectrum(batch, z, "z", default=np.nan)
        z_min, z_max = self._z_range
        bad = ~np.isfinite(z_values) | (z_values < z_min) | (z_values > z_max)
        if np.any(bad & prepared.usable):
            log.info("%d spectra have no redshift in [%g, %g]: not scored",
                     int(np.sum(bad & prepared.usable)), z_min, z_max)
        prepared.flags[bad & prepared.usable] |= Flag.NO_REDSHIFT
        prepared.usable &= ~bad
        prepared.inputs[~prepared.usable] = 0.0
        return prepared, np.where(bad, 0.0, z_values)

    def _run(self, prepared, z):
        """Latents (N, k) and normalised reconstructions (N, M); NaN for unusable rows."""
        self._require_trained()
        usable = prepared.usable
        n, m = len(usable), self.pipeline.n_pixels
        latents = np.full((n, self.latent_dim), np.nan)
        recon = np.full((n, m), np.nan)
        rows = np.flatnonzero(usable)
        if rows.size:
            zz = _z_column(z[rows])
            latents[rows] = self._batched(self._encoder, [prepared.inputs[rows], zz])
            recon[rows] = self._batched(self._decoder, [latents[rows].astype(np.float32), zz])
        return latents, recon

    @property
    def _encoder(self):
        return self._keras.get_layer("encoder")

    @property
    def _decoder(self):
        return self._keras.get_layer("decoder")

    def _batched(self, network, x):
        arrays = x if isinstance(x, list) else [x]
        n = len(arrays[0])
        parts = []
        for i in range(0, n, self.batch_size):
            chunk = [a[i:i + self.batch_size] for a in arrays]
            out = network(chunk if isinstance(x, list) else chunk[0], training=False)
            parts.append(np.asarray(out, dtype=np.float64))
        return np.concatenate(parts) if parts else np.zeros((0,) + tuple(
            network.output.shape[1:]))

    def _scores(self, prepared, recon, z):
        """Global χ²/pixel, good pixels and local (windowed) χ²/pixel per spectrum."""
        flux, weight = _normalised(prepared)
        weight = self._score_weight(weight, z)
        recon = self._scaled(flux, weight, recon)
        chi2, n_good = _chi2_arrays(flux, weight, recon)
        local = _local_chi2(flux, weight, recon, self.local_window)
        usable = prepared.usable
        return (np.where(usable, chi2, np.nan), np.where(usable, n_good, 0),
                np.where(usable, local, np.nan))

    def _scaled(self, flux, weight, recon):
        """The reconstructions times their χ²-minimising amplitudes (if the model fits one)."""
        if not self.fit_scale:
            return recon
        return recon * _best_scale(flux, weight, recon)[:, None]

    def _score_weight(self, weight, z):
        """The χ² weights with the pixels below ``min_rest_wavelength`` set to 0."""
        cut = self.min_rest_wavelength
        if cut is None:
            return weight
        rest = self.wavelength.value[None, :] / (1.0 + np.asarray(z, dtype=float)[:, None])
        return np.where(rest >= cut, weight, 0.0)

    def encode(self, spectra, *, z=None, ebv=None):
        """
        Latent vectors of spectra.

        Parameters
        ----------
        spectra : `specutils.Spectrum`, list, `~spectralnn.SpectrumBatch` or path(s)
            Observed-frame spectra.
        z : float or array-like, optional
            Redshift per spectrum. Default ``meta['z']``.
        ebv : float or array-like, optional
            Galactic E(B-V) per spectrum. Default ``meta['ebv']``, else 0.

        Returns
        -------
        latents : `~numpy.ndarray`
            Shape ``(N, latent_dim)``; NaN rows for spectra that cannot be
            used (see the ``flags`` of `predict`).
        """
        self._require_trained()
        prepared, z_used = self._prepare(spectra, z, ebv)
        latents = np.full((len(prepared.usable), self.latent_dim), np.nan)
        rows = np.flatnonzero(prepared.usable)
        if rows.size:
            latents[rows] = self._batched(self._encoder, [prepared.inputs[rows],
                                                          _z_column(z_used[rows])])
        self._report_unusable(prepared.usable, prepared.flags)
        return latents

    def decode(self, latents, *, z, frame: str = "observed"):
        """
        Spectra drawn from latent vectors at given redshifts.

        Parameters
        ----------
        latents : array-like
            Shape ``(N, latent_dim)`` (or ``(latent_dim,)`` for one).
        z : float or array-like
            Redshift of each spectrum (the decoder is conditioned on it, and
            it places the rest-frame spectrum on the observed grid).
        frame : {'observed', 'rest'}, optional
            ``'observed'`` (default): the spectra on the model grid
            (`wavelength`); ``'rest'``: the decoder's rest-frame spectra on
            `rest_wavelength`, before redshifting.

        Returns
        -------
        spectra : `~spectralnn.SpectrumBatch`
            The decoded spectra, in units of the median flux
            (dimensionless), with unit inverse variance.

        Raises
        ------
        ValueError
            If the latents do not have ``latent_dim`` columns, latents or z
            are not finite, or the frame is unknown.
        """
        self._require_trained()
        code = np.atleast_2d(np.asarray(latents, dtype=np.float32))
        if code.ndim != 2 or code.shape[1] != self.latent_dim:
            raise ValueError(f"latents must have shape (N, {self.latent_dim}), got "
                             f"{np.shape(latents)}")
        if not np.all(np.isfinite(code)):
            raise ValueError("latents must be finite (NaN rows are unusable spectra)")
        z = np.broadcast_to(np.asarray(z, dtype=np.float64), (len(code),))
        if not np.all(np.isfinite(z)):
            raise ValueError("z must be finite")
        if frame == "observed":
            flux = self._batched(self._decoder, [code, _z_column(z)])
            wave, kind = self.wavelength, "observed"
        elif frame == "rest":
            flux = self._batched(self._decoder.get_layer("rest_decoder"),
                                 [code, _z_column(z)])
            wave, kind = self.rest_wavelength, "rest"
        else:
            raise ValueError(f"frame must be 'observed' or 'rest', not {frame!r}")
        from astropy.table import Table

        return SpectrumBatch(wave, flux * u.one, np.ones_like(flux),
                             meta=Table({"z": z}), frame=kind)

    def reconstruct(self, spectra, *, z=None, ebv=None):
        """
        The network's reconstruction of spectra, in their own flux units.

        Parameters
        ----------
        spectra : `specutils.Spectrum`, list, `~spectralnn.SpectrumBatch` or path(s)
            Observed-frame spectra.
        z : float or array-like, optional
            Redshift per spectrum. Default ``meta['z']``.
        ebv : float or array-like, optional
            Galactic E(B-V) per spectrum. Default ``meta['ebv']``, else 0.

        Returns
        -------
        spectra : `~spectralnn.SpectrumBatch`
            The input resampled onto the model grid (flux, ivar, mask, meta,
            dereddened) with its flux replaced by the reconstruction, scaled
            back by each spectrum's median; rows of unusable spectra are
            masked.
        """
        prepared, z_used = self._prepare(spectra, z, ebv)
        _, recon = self._run(prepared, z_used)
        self._report_unusable(prepared.usable, prepared.flags)
        flux, weight = _normalised(prepared)
        recon = self._scaled(flux, self._score_weight(weight, z_used), recon)
        norm = _norm(prepared)
        flux = np.nan_to_num(recon * norm[:, None], nan=0.0)
        mask = prepared.batch.mask | ~prepared.usable[:, None]
        return prepared.batch.copy(flux=flux, mask=mask)

    def anomaly_score(self, spectra, *, z=None, ebv=None, local: bool = False):
        r"""
        Reconstruction χ² per good pixel of each spectrum.

        :math:`\chi^2_\nu = \sum w_i (f_i - \hat f_i)^2 / N_{good}` over the
        good pixels of the spectrum on the model grid (those at rest
        wavelengths below `min_rest_wavelength` left out), with :math:`w_i`
        its resampled inverse variance: about 1 (± :math:`\sqrt{2/N_{good}}`)
        for a spectrum the decoder draws to within the noise.

        Parameters
        ----------
        spectra : `specutils.Spectrum`, list, `~spectralnn.SpectrumBatch` or path(s)
            Observed-frame spectra.
        z : float or array-like, optional
            Redshift per spectrum. Default ``meta['z']``.
        ebv : float or array-like, optional
            Galactic E(B-V) per spectrum. Default ``meta['ebv']``, else 0.
        local : bool, optional
            If True, the local score instead: the largest χ² per good pixel
            of any window of `local_window` adjacent pixels (windows with
            fewer than half their pixels good are skipped).

        Returns
        -------
        score : `~numpy.ndarray`
            Shape ``(N,)``; NaN for spectra that cannot be used.
        """
        prepared, z_used = self._prepare(spectra, z, ebv)
        _, recon = self._run(prepared, z_used)
        self._report_unusable(prepared.usable, prepared.flags)
        chi2, _, windowed = self._scores(prepared, recon, z_used)
        return windowed if local else chi2

    # --------------------------------------------------------------- training
    def fit(self, spectra, targets=None, *, z=None, validation=0.1, ebv=None,
            seed: int | None = None, loss: str = "chi2", **options):
        """
        Train the network to reproduce the spectra (building it first for a new one).

        Parameters
        ----------
        spectra : `specutils.Spectrum`, list, `~spectralnn.SpectrumBatch` or path(s)
            Training spectra (not modified).
        targets : None
            Not used (the spectra are their own targets); must be None.
        z : float or array-like, optional
            Redshift per training spectrum. Default ``meta['z']``.
        validation : float, `~spectralnn.SpectrumBatch` or None, optional
            Fraction held out at random (default 0.1), validation spectra
            (with ``meta['z']``), or None. Early stopping monitors the
            validation χ².
        ebv : float or array-like, optional
            Galactic E(B-V) of the training spectra.
        seed : int, optional
            Seed of the split, the weights and the shuffling.
        loss : {'chi2', 'log_chi2'}, optional
            What each spectrum contributes to the training loss: its χ² per
            good pixel (``'chi2'``, the default; bright spectra weigh most),
            or the logarithm of it (``'log_chi2'``: every spectrum weighs
            the same in relative terms).
        **options
            ``epochs``, ``batch_size``, ``learning_rate``, ``patience``,
            ``callbacks``, ``checkpoint_dir``, ``resume``, ``verbose`` as in
            `Estimator.fit`.

        Returns
        -------
        self : `SpectrumAutoencoder`
            ``metadata['metrics']`` holds the χ² per pixel on the validation
            spectra (median, mean, percentiles).
        """
        if targets is not None:
            raise ValueError("an autoencoder learns its spectra: targets must be None")
        if loss not in _LOSSES:
            raise ValueError(f"loss must be one of {_LOSSES}, not {loss!r}")
        self._loss_kind = loss
        self.metadata["training_set"] = {**self.metadata.get("training_set", {}),
                                         "loss": loss}
        options = {"epochs": 100, "batch_size": None, "learning_rate": None,
                   "patience": 10, "callbacks": None, "checkpoint_dir": None,
                   "resume": False, "verbose": 0, **options}
        x, y = self._training_arrays(spectra, z, ebv)
        if validation is not None and not isinstance(validation, (int, float)):
            validation = self._training_arrays(validation, None, None)
        _loss_class()  # registered before a checkpoint that names it is resumed
        return self._fit_arrays(x, y, validation=validation, seed=seed, **options)

    def _training_arrays(self, spectra, z, ebv):
        """Network inputs [(N, M, C), (N, 1)] and targets (N, M, 2): flux and weight."""
        prepared, z_used = self._prepare(spectra, z, ebv)
        if not prepared.usable.any():
            raise ValueError("no spectrum is usable for training (all flagged)")
        rows = np.flatnonzero(prepared.usable)
        flux, weight = _normalised(prepared)
        weight = self._score_weight(weight, z_used)
        y = np.stack([flux[rows], weight[rows]], axis=-1).astype(np.float32)
        return [prepared.inputs[rows], _z_column(z_used[rows])], y

    def _build(self, x, y):
        from ..models.architectures import build_autoencoder

        x = x[0] if isinstance(x, list) else x
        self._keras = build_autoencoder(
            x.shape[1], n_channels=x.shape[2], grid=self.metadata["preprocessing"]["grid"],
            options=self.metadata["architecture"]["options"],
            name=self.metadata["name"].replace(" ", "_").replace("-", "_"))

    def _base_schedule(self):
        """The autoencoder's own schedule (`_SCHEDULE`), not the architecture's."""
        return dict(_SCHEDULE)

    def _loss(self):
        return _loss_class()(log=getattr(self, "_loss_kind", "chi2") == "log_chi2",
                             fit_scale=self.fit_scale)

    def _metrics(self, x, y):
        """χ² per good pixel of the reconstructions of (x, y)."""
        recon = self._batched(self._keras, x)
        if self.fit_scale:
            recon = recon * _best_scale(y[..., 0], y[..., 1], recon)[:, None]
        chi2 = _chi2_arrays(y[..., 0], y[..., 1], recon)[0]
        chi2 = chi2[np.isfinite(chi2)]
        return {"chi2_per_pixel": {
            "n": int(chi2.size),
            "median": float(np.median(chi2)),
            "mean": float(np.mean(chi2)),
            "p16": float(np.percentile(chi2, 16)),
            "p84": float(np.percentile(chi2, 84)),
            "p95": float(np.percentile(chi2, 95)),
        }}

    def calibrate_uncertainties(self, *args, **kwargs):
        """Not available: the autoencoder predicts no value with an uncertainty."""
        raise NotImplementedError("SpectrumAutoencoder has no uncertainties to calibrate")

    def save(self, path, **kwargs):
        """
        Write the network and its metadata (``<path>.keras`` + ``<path>.json``).

        The network is saved without its training configuration (the loss is
        a spectralnn function), so that it loads in Keras' safe mode.

        Parameters
        ----------
        path : str or `~pathlib.Path`
            Destination.
        **kwargs
            ``name``, ``version``, ``training_set`` as `Estimator.save`.

        Returns
        -------
        path : `~pathlib.Path`
            The ``.keras`` file.
        """
        from .dla import _uncompiled_copy

        self._require_trained()
        trained = self._keras
        self._keras = _uncompiled_copy(trained)
        try:
            return super().save(path, **kwargs)
        finally:
            self._keras = trained


def _z_column(z):
    """Redshifts as the network's (N, 1) float32 input."""
    return np.asarray(z, dtype=np.float32).reshape(-1, 1)


def _best_scale(flux, weight, recon):
    """Per row, the amplitude a minimising sum(w (f - a r)^2) (1 where undefined)."""
    recon = np.nan_to_num(recon)
    num = np.sum(weight * flux * recon, axis=1)
    den = np.sum(weight * recon * recon, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = num / den
    return np.where((den > 0) & np.isfinite(scale), scale, 1.0)


def _local_chi2(flux, weight, recon, window):
    """Largest χ² per good pixel of any ``window`` adjacent pixels (half good at least)."""
    good = weight > 0
    term = np.where(good, weight * (flux - np.nan_to_num(recon)) ** 2, 0.0)
    window = int(min(window, term.shape[1]))
    zero = np.zeros((term.shape[0], 1))
    csum = np.concatenate([zero, np.cumsum(term, axis=1)], axis=1)
    cgood = np.concatenate([zero, np.cumsum(good, axis=1)], axis=1)
    total = csum[:, window:] - csum[:, :-window]
    count = cgood[:, window:] - cgood[:, :-window]
    with np.errstate(divide="ignore", invalid="ignore"):
        per_pixel = np.where(count >= window / 2, total / count, -np.inf)
    best = per_pixel.max(axis=1) if per_pixel.shape[1] else np.full(len(term), -np.inf)
    return np.where(np.isfinite(best), best, np.nan)


def _norm(prepared):
    """The median each spectrum was divided by (1 where none was usable)."""
    from ..models.pipeline import _row_nanmedian

    if prepared.batch.n_pixels == 0:
        return np.ones(len(prepared.usable))
    flux = np.where(prepared.batch.good, prepared.batch.flux, np.nan)
    norm = _row_nanmedian(flux)
    return np.where(np.isfinite(norm) & (norm > 0), norm, 1.0)


def _normalised(prepared):
    """Normalised flux and inverse variance (N, M); weight 0 off the good pixels."""
    norm = _norm(prepared)
    good = prepared.batch.good & prepared.usable[:, None]
    flux = np.where(good, prepared.batch.flux / norm[:, None], 0.0)
    weight = np.where(good, prepared.batch.ivar * norm[:, None] ** 2, 0.0)
    return flux, weight


def _chi2_arrays(flux, weight, recon):
    """χ² per good pixel and number of good pixels (weight > 0) per row."""
    good = weight > 0
    n_good = good.sum(axis=1)
    resid = np.where(good, flux - np.nan_to_num(recon), 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        chi2 = np.sum(weight * resid**2, axis=1) / n_good
    chi2 = np.where(n_good > 0, chi2, np.nan)
    return chi2, n_good


def _chi2(prepared, recon):
    flux, weight = _normalised(prepared)
    chi2, n_good = _chi2_arrays(flux, weight, recon)
    usable = prepared.usable
    return np.where(usable, chi2, np.nan), np.where(usable, n_good, 0)


@functools.lru_cache(maxsize=1)
def _loss_class():
    """The χ² loss as a registered Keras `Loss` (defined at first use: Keras is lazy)."""
    import keras
    from keras import ops

    @keras.saving.register_keras_serializable(package="spectralnn")
    class ChiSquareLoss(keras.losses.Loss):
        """χ² per good pixel: ``sum(w (f - f_hat)^2) / N_good`` of each spectrum."""

        def __init__(self, log=False, fit_scale=False, name="chi2_per_pixel", **kwargs):
            super().__init__(name=name, **kwargs)
            self.log = bool(log)
            self.fit_scale = bool(fit_scale)

        def call(self, y_true, y_pred):
            flux, weight = y_true[..., 0], y_true[..., 1]
            if self.fit_scale:  # the χ²-minimising amplitude, in closed form
                num = ops.sum(weight * flux * y_pred, axis=1, keepdims=True)
                den = ops.sum(weight * y_pred * y_pred, axis=1, keepdims=True)
                y_pred = y_pred * ops.where(den > 0, num / ops.maximum(den, 1e-12), 1.0)
            n_good = ops.maximum(ops.sum(ops.cast(weight > 0, "float32"), axis=1), 1.0)
            chi2 = ops.sum(weight * ops.square(flux - y_pred), axis=1) / n_good
            return ops.log(ops.maximum(chi2, 1e-3)) if self.log else chi2

        def get_config(self):
            return {**super().get_config(), "log": self.log, "fit_scale": self.fit_scale}

    return ChiSquareLoss


def inject_anomalies(batch, kind, *, seed=None):
    """
    Copies of spectra with an injected anomaly of one kind.

    The three kinds used to test the anomaly score (see the Notes):

    ``'broad_line'``
        An artificial broad Gaussian emission line, FWHM 5000 km/s and
        observed equivalent width 150 Å (against the spectrum's median flux),
        at a random wavelength in 4200–8800 Å, added to the flux (the noise
        is kept).
    ``'wrong_class'``
        A stellar spectrum placed at a quasar-like redshift (z drawn in
        0.3–1.0): its wavelengths are multiplied by 1 + z, so its absorption
        bands fall where no star (z ≈ 0) nor galaxy of the training set puts
        them; the part of the grid it no longer covers is masked. The input
        spectra must be stars.
    ``'glitch'``
        An instrumental glitch: a run of 25 adjacent pixels (about 0.6 % of
        an SDSS spectrum) at a random position whose flux is offset by
        +5 σ per pixel (σ from the spectrum's own ivar), as a badly
        subtracted cosmic ray or a bad CCD column would, not masked.

    Parameters
    ----------
    batch : `~spectralnn.SpectrumBatch`
        Spectra to copy (not modified).
    kind : {'broad_line', 'wrong_class', 'glitch'}
        The anomaly.
    seed : int, optional
        Seed of the positions and redshifts.

    Returns
    -------
    batch : `~spectralnn.SpectrumBatch`
        The anomalous copies, with ``meta['anomaly']`` set to ``kind``.

    Raises
    ------
    ValueError
        If the kind is unknown.

    Notes
    -----
    An unsupervised autoencoder has no class labels, so a "wrong-class
    spectrum" is a spectrum of a kind absent from its training set: here a
    star at a redshift no star has.

    Examples
    --------
    >>> from spectralnn.simulate import simulate_stars
    >>> stars = simulate_stars(2, seed=3)
    >>> odd = inject_anomalies(stars, "wrong_class", seed=0)
    >>> odd.meta["anomaly"].tolist(), bool((odd.wavelength_2d > stars.wavelength_2d).all())
    (['wrong_class', 'wrong_class'], True)
    """
    if kind not in ANOMALY_KINDS:
        raise ValueError(f"kind must be one of {ANOMALY_KINDS}, not {kind!r}")
    batch = as_batch(batch)
    rng = np.random.default_rng(seed)
    n = len(batch)
    flux = np.array(batch.flux, dtype=np.float64)
    ivar = np.array(batch.ivar, dtype=np.float64)
    wave = batch.wavelength_2d
    meta = batch.meta.copy()
    meta["anomaly"] = np.full(n, kind)
    if kind == "wrong_class":
        z = rng.uniform(0.3, 1.0, n)
        meta["anomaly_z"] = z
        meta["z"] = z
        return SpectrumBatch._from_arrays_unchecked(
            wave * (1.0 + z)[:, None], flux, ivar, np.array(batch.mask), meta,
            batch.flux_unit, "observed")
    from ..models.pipeline import _row_nanmedian

    good = batch.good
    level = _row_nanmedian(np.where(good, flux, np.nan))
    level = np.where(np.isfinite(level) & (level > 0), level, 1.0)
    if kind == "broad_line":
        centre = rng.uniform(4200.0, 8800.0, n)
        sigma = 5000.0 / 2.3548 / 299792.458 * centre
        amplitude = 150.0 / (np.sqrt(2 * np.pi) * sigma) * level
        flux += amplitude[:, None] * np.exp(-0.5 * ((wave - centre[:, None])
                                                    / sigma[:, None]) ** 2)
        meta["anomaly_wavelength"] = centre
    else:  # glitch
        width = 25
        m = flux.shape[1]
        start = rng.integers(0, max(m - width, 1), n)
        cols = np.arange(m)[None, :]
        run = (cols >= start[:, None]) & (cols < start[:, None] + width)
        sigma = np.where(ivar > 0, 1.0 / np.sqrt(np.where(ivar > 0, ivar, 1.0)), 0.0)
        flux = np.where(run, flux + 5.0 * sigma, flux)
        meta["anomaly_wavelength"] = wave[np.arange(n), np.minimum(start + width // 2, m - 1)]
    return SpectrumBatch._from_arrays_unchecked(
        batch.wavelength, flux, ivar, np.array(batch.mask), meta, batch.flux_unit,
        "observed")

