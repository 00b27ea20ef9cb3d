"""
`MassEstimator`: black-hole masses of quasars from their spectra.

A network reads the whole rest-frame spectrum and predicts log10(M_BH/M_sun)
with its own uncertainty (a heteroscedastic Gaussian head); next to it, when
`spectralnn.physics.blackhole` is available, the classic single-epoch virial
mass from the broad-line FWHM and continuum luminosity is given for
comparison. Several epochs of one object are combined by
`MassEstimator.predict_epochs`: an inverse-variance weighted mean of the
per-epoch masses and, with an ``'epoch_pooling'`` network, a learned pooling.

The network sees the median-normalised rest-frame spectrum (flux, mask and
error channels on 1200–7000 Å, Δlog10λ = 1e-3) and, through a second input,
the log luminosity and redshift that the normalisation removes, so it can
learn the R–L part of the virial relation. ``MassEstimator()`` loads the
shipped ``mass-default`` weights (sha256-checked), trained on simulated
quasars (`spectralnn.simulate.simulate_quasars`) to reproduce the noiseless
catalogue-style virial mass (Hβ VP06 below z = 0.8, Mg II S11 below 1.9,
C IV VP06 above). The training set (60,000 quasars) gives each of the three
lines a third of the spectra (z 0.1–0.8, 0.8–1.9, 1.9–4.8) and widens the
scatter of the line widths about the virial relations to 0.40 dex (the
simulator's default is 0.15), so the network has to measure the broad line
rather than lean on the luminosity. Its hold-out accuracy (on the default
simulator), per line and per S/N, is recorded in
``metadata['metrics']['holdout']`` and reproduced by
``benchmarks/bench_mass.py``. Its uncertainties are temperature-scaled on a
validation set (``metadata['uncertainty']``).

Examples
--------
>>> from spectralnn.estimators import MassEstimator
>>> from spectralnn.simulate import simulate_quasars
>>> est = MassEstimator()
>>> table = est.predict(simulate_quasars(2, seed=5, z_range=(1.0, 1.5)))
>>> table["log_mbh"].unit
Unit("dex(solMass)")
>>> MassEstimator("wren2021", batch_size=64)
<MassEstimator: model 'black_hole_mass-wren2021' (wren2021, untrained), batch_size=64>
"""

import warnings
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.table import QTable

from ..batch import as_batch, concatenate
from ..errors import SpectralNNError
from ..logger import log
from .base import Estimator, _mean_std
from .pooling import EpochPooling, inverse_variance_mean

__all__ = ["MassEstimator"]

#: columns of the virial table that identify the spectrum (not copied again)
_SKIP_VIRIAL = {"object_id", "source", "plate", "mjd", "fiber", "z", "snr"}


class MassEstimator(Estimator):
    """
    Predict quasar black-hole masses (log M_BH / M_sun) from spectra.

    Parameters
    ----------
    model : str, `~pathlib.Path` or `~spectralnn.models.LoadedModel`, optional
        ``'default'`` (the shipped ``mass-default`` weights), the path of a trained
        ``.keras`` file, or an architecture name (``'resnet1d'``,
        ``'wren2021'``, ``'epoch_pooling'``) to build and `fit` a new network.
    batch_size : int, optional
        Spectra per forward pass. Default 1024 (the default network is small;
        larger passes are faster on CPU).
    virial : bool, optional
        Add the single-epoch virial mass columns (needs
        `spectralnn.physics.blackhole`). Default True.
    preprocessing : dict, optional
        Preprocessing of a new network. Default (that of the shipped
        weights): Galactic dereddening, rest frame, resampling onto
        1200–7000 Å with Δlog10λ = 1e-3, median normalisation, flux, mask
        and error channels, and the scalar inputs log λL (median rest-frame
        L_λ times 3000 Å) and z; a spectrum must cover 10 % of the grid.
    architecture_options : dict, optional
        Options of a new network.

    Examples
    --------
    Train a small network (see the tests for a complete example):

    >>> est = MassEstimator("resnet1d", architecture_options={"filters": 8})
    >>> est.pipeline.steps
    ['deredden', 'rest_frame', 'resample', 'normalize']
    """

    task = "black_hole_mass"
    target_names = ("log_mbh",)
    target_units = ("dex(solMass)",)
    default_model_name = "mass-default"
    target_calibration = "single-epoch virial masses (Shen et al. 2011, ApJS 194, 45)"
    default_preprocessing = {
        "steps": ["deredden", "rest_frame", "resample", "normalize"],
        "grid": {"start": 1200.0, "stop": 7000.0, "dloglam": 1e-3},
        "normalization": "median",
        "channels": ["flux", "mask", "ivar"],
        "min_good_fraction": 0.1,
        # the luminosity median normalisation removes, and z, as a second input
        "scalars": {"names": ["log_lambda_l", "z"], "loc": [44.5, 2.0],
                    "scale": [1.0, 1.2]},
    }

    def __init__(
        self,
        model="default",
        *,
        batch_size: int = 1024,
        virial: bool = True,
        preprocessing: dict | None = None,
        architecture_options: dict | None = None,
    ):
        if (preprocessing is None and isinstance(model, str)
                and model == "epoch_pooling"):
            # the epoch-pooling network has no scalar branch
            preprocessing = {k: v for k, v in self.default_preprocessing.items()
                             if k != "scalars"}
        super().__init__(model, batch_size=batch_size, preprocessing=preprocessing,
                         architecture_options=architecture_options)
        self.virial = bool(virial)
        self._pooling = None
        path = getattr(self, "path", None)
        self._pooling_file = None if path is None else _pooling_path(path)

    @property
    def pooling(self):
        """
        Learned pooling of per-epoch masses (`EpochPooling`), or None.

        Used by `predict_epochs`; read on first use from
        ``<model>-pooling.keras`` beside the network when that file exists,
        or set by `fit_pooling`.
        """
        if self._pooling is None and self._pooling_file is not None:
            if self._pooling_file.is_file():
                self._pooling = EpochPooling.load(self._pooling_file)
            self._pooling_file = None  # looked once
        return self._pooling

    def predict(self, spectra, *, z=None, ebv=None):
        """
        Black-hole mass of each spectrum.

        Parameters
        ----------
        spectra : `specutils.Spectrum`, list, `~spectralnn.SpectrumBatch` or path(s)
            Observed-frame quasar spectra.
        z : float or array-like, optional
            Redshift per spectrum. Default: ``meta['z']``; a spectrum without
            one is flagged ``NO_REDSHIFT``.
        ebv : float or array-like, optional
            Galactic E(B-V) per spectrum. Default: ``meta['ebv']``, else 0.

        Returns
        -------
        table : `~astropy.table.QTable`
            One row per spectrum: the identifying meta columns present
            (``object_id``, ``z``, ...), ``log_mbh`` [dex(M_sun)] and
            ``log_mbh_err`` [dex] from the network; with ``virial=True`` the
            virial estimate ``virial_log_mbh``, ``virial_log_mbh_err``, the
            line used, its FWHM and the continuum luminosity (columns
            prefixed ``virial_``); ``snr`` and ``flags``. ``table.meta``
            names the model, its sha256 and the calibration it mimics.
        """
        return super().predict(spectra, z=z, ebv=ebv)

    def _predict_batch(self, batch, *, z, ebv):
        table = super()._predict_batch(batch, z=z, ebv=ebv)
        if self.virial:
            table = self._add_virial(table, batch, z=z, ebv=ebv)
        return table

    def _add_virial(self, table, batch, *, z, ebv):
        try:
            from ..physics.blackhole import virial_black_hole_mass
        except ImportError:
            log.info("spectralnn.physics.blackhole unavailable: no virial columns")
            return table
        try:
            virial = virial_black_hole_mass(batch, z=z, ebv=ebv)
        except SpectralNNError as exc:
            log.warning("virial masses failed for this batch: %s", exc)
            return table
        for name in virial.colnames:
            if name in _SKIP_VIRIAL:
                continue
            out = name if name.startswith("virial_") else f"virial_{name}"
            table[out] = virial[name]
        # the virial columns go before snr and flags
        order = [c for c in table.colnames if c not in ("snr", "flags")] + ["snr", "flags"]
        return table[order]

    def predict_epochs(self, spectra, *, z=None, ebv=None):
        """
        Combine several epochs of one object into one mass.

        Parameters
        ----------
        spectra : list of `specutils.Spectrum` or `~spectralnn.SpectrumBatch`
            The epochs (spectra of the same object).
        z : float, optional
            The object's redshift. Default: the spectra's ``meta['z']``.
        ebv : float, optional
            Galactic E(B-V). Default: ``meta['ebv']``, else 0.

        Returns
        -------
        table : `~astropy.table.QTable`
            One row: ``n_epochs`` (usable ones), ``log_mbh``/``log_mbh_err``
            (inverse-variance weighted mean of the per-epoch network masses
            and its uncertainty), ``log_mbh_chi2`` (χ² of the epochs about
            that mean: large values mean variability beyond the predicted
            errors) and, when the estimator has a learned pooling (an
            `EpochPooling` of the per-epoch masses, shipped with the default
            model, or an ``'epoch_pooling'`` network of the spectra),
            ``log_mbh_pooled``/``log_mbh_pooled_err`` from it;
            ``flags`` (OR of the epochs' flags).
        """
        self._require_trained()
        batch = as_batch(spectra, on_invalid="flag")
        prepared = self.pipeline(batch, z=z, ebv=ebv)
        mean, std = self._run_network(prepared.network_inputs, prepared.usable)
        self._report_unusable(prepared.usable, prepared.flags)
        m, s = mean[:, 0], std[:, 0]
        ok = np.isfinite(m) & np.isfinite(s) & (s > 0)
        unit = u.Unit(self.metadata["target"]["units"][0])
        table = QTable()
        table["n_epochs"] = [int(ok.sum())]
        ivw, ivw_err = (v[0] for v in inverse_variance_mean(m[None], s[None], ok[None]))
        chi2 = float(np.sum((m[ok] - ivw) ** 2 / s[ok] ** 2)) if ok.any() else np.nan
        table["log_mbh"] = [ivw] * unit
        table["log_mbh_err"] = [ivw_err] * u.dex
        table["log_mbh_chi2"] = [chi2]
        if not self._epoch_model and self.pooling is not None:
            snr = np.asarray(batch.snr, dtype=np.float64)
            pooled, pooled_err = self.pooling.predict(
                np.where(ok, m, np.nan)[None], s[None], snr[None]
            )
            table["log_mbh_pooled"] = [pooled[0]] * unit
            table["log_mbh_pooled_err"] = [pooled_err[0]] * u.dex
        elif self._epoch_model:
            pooled = pooled_err = np.nan
            if ok.any():
                x = prepared.inputs[ok][None]
                out = self._forward([x, np.ones((1, int(ok.sum())), dtype=np.float32)])
                pm, ps = _mean_std(out, 1)
                pooled, pooled_err = float(pm[0, 0]), float(ps[0, 0])
            table["log_mbh_pooled"] = [pooled] * unit
            table["log_mbh_pooled_err"] = [pooled_err] * u.dex
        table["flags"] = [int(np.bitwise_or.reduce(prepared.flags))]
        table.meta.update(self._table_meta())
        return table

    def fit_epochs(self, objects, targets, *, z=None, ebv=None, validation=0.1, **options):
        """
        Train an ``'epoch_pooling'`` network on multi-epoch objects.

        Parameters
        ----------
        objects : list
            One entry per object: a list of `specutils.Spectrum` or a
            `~spectralnn.SpectrumBatch` holding its epochs (any number).
        targets : array-like or `~astropy.units.Quantity`
            log M_BH per object.
        z, ebv : array-like, optional
            One value per object. Default: the spectra's meta.
        validation : float or None, optional
            Fraction of objects held out. Default 0.1.
        **options
            Passed on as in `Estimator.fit` (``epochs``, ``batch_size``,
            ``learning_rate``, ``patience``, ``callbacks``,
            ``checkpoint_dir``, ``resume``, ``seed``, ``verbose``).

        Returns
        -------
        self : `MassEstimator`

        Raises
        ------
        ValueError
            If the network is not an ``'epoch_pooling'`` one.
        """
        if not self._epoch_model:
            raise ValueError(
                "fit_epochs trains an 'epoch_pooling' network; this estimator holds a "
                f"{self.architecture!r} one (use fit)"
            )
        flat, prepared, owner, slot = self._prepare_objects(objects, z, ebv)
        n_obj, n_ep = int(owner.max()) + 1, int(slot.max()) + 1
        x = np.zeros((n_obj, n_ep, *prepared.inputs.shape[1:]), dtype=np.float32)
        mask = np.zeros((n_obj, n_ep), dtype=np.float32)
        x[owner, slot] = prepared.inputs
        mask[owner, slot] = prepared.usable
        y = self._targets(targets, _Rows(n_obj))
        keep = (mask.sum(axis=1) > 0) & np.all(np.isfinite(y), axis=1)
        if not keep.any():
            raise ValueError("no object has a usable epoch and a finite target")
        return self._fit_arrays([x[keep], mask[keep]], y[keep].astype(np.float32),
                                validation=validation, **_fit_defaults(options))


    def _prepare_objects(self, objects, z, ebv):
        """
        All epochs of all objects through the pipeline at once.

        Returns the concatenated batch, its prepared inputs, and for every row
        its object index and its epoch slot within that object.
        """
        groups = [as_batch(obj, on_invalid="flag") for obj in objects]
        if not groups:
            raise ValueError("no objects given")
        counts = np.array([len(g) for g in groups])
        owner = np.repeat(np.arange(len(groups)), counts)
        slot = np.arange(len(owner)) - np.repeat(np.cumsum(counts) - counts, counts)
        z_rows = None if z is None else np.asarray(z, dtype=np.float64)[owner]
        ebv_rows = None if ebv is None else np.asarray(ebv, dtype=np.float64)[owner]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            flat = concatenate(groups)
        return flat, self.pipeline(flat, z=z_rows, ebv=ebv_rows), owner, slot

    def fit_pooling(self, objects, targets, *, z=None, ebv=None, **options):
        """
        Train the learned pooling of per-epoch masses (`EpochPooling`).

        The network of this estimator predicts every epoch; the pooling learns
        to combine them into the objects' masses. `predict_epochs` then
        reports it beside the inverse-variance weighted mean, and `save`
        writes it beside the network (``<path>-pooling.keras``).

        Parameters
        ----------
        objects : list
            One entry per object: a `~spectralnn.SpectrumBatch` or list of
            spectra holding its epochs.
        targets : array-like or `~astropy.units.Quantity`
            log M_BH per object.
        z, ebv : array-like, optional
            One value per object. Default: the spectra's meta.
        **options
            Passed to `EpochPooling.fit` (``epochs``, ``seed``, ...).

        Returns
        -------
        self : `MassEstimator`

        Examples
        --------
        .. doctest-requires:: keras

            >>> from spectralnn import MassEstimator
            >>> from spectralnn.simulate import simulate_quasar_epochs
            >>> b = simulate_quasar_epochs(12, 3, seed=1, z_range=(1.0, 1.5))
            >>> objs = [b[b.meta["object_id"] == i] for i in range(12)]
            >>> y = [b.meta["virial_log_mbh"][b.meta["object_id"] == i].mean() for i in range(12)]
            >>> est = MassEstimator(virial=False).fit_pooling(objs, y, epochs=2, seed=0)
            >>> "log_mbh_pooled" in est.predict_epochs(objs[0]).colnames
            True
        """
        self._require_trained()
        flat, prepared, owner, slot = self._prepare_objects(objects, z, ebv)
        mean, std = self._run_network(prepared.network_inputs, prepared.usable)
        shape = (int(owner.max()) + 1, int(slot.max()) + 1)
        m, s, snr = (np.full(shape, np.nan) for _ in range(3))
        m[owner, slot], s[owner, slot] = mean[:, 0], std[:, 0]
        snr[owner, slot] = np.asarray(flat.snr, dtype=np.float64)
        y = self._targets(targets, _Rows(shape[0]))[:, 0]
        self._pooling = EpochPooling().fit(m, s, snr, y, **options)
        self._pooling_file = None
        return self

    def save(self, path, *, name=None, version=None, training_set=None):
        """
        Write the network, its metadata and, if trained, the epoch pooling.

        Parameters
        ----------
        path : str or `~pathlib.Path`
            Destination (``.keras`` suffix optional); the pooling goes to
            ``<path>-pooling.keras``.
        name, version : str, optional
            Model name and version written to the metadata.
        training_set : dict, optional
            Description of the training set (merged into the metadata).

        Returns
        -------
        path : `~pathlib.Path`
            The network's ``.keras`` file.
        """
        written = super().save(path, name=name, version=version, training_set=training_set)
        if self.pooling is not None and self.pooling.is_trained:
            network = self.metadata["name"]
            meta = dict(self.metadata)
            meta["name"] = f"{network}-pooling"
            meta["training_set"] = {"description": f"per-epoch predictions of {network} "
                                    "on simulated multi-epoch sets"}
            meta["metrics"] = {}
            self.pooling.save(_pooling_path(written), meta)
        return written


def _pooling_path(path):
    """``<stem>-pooling.keras`` beside a model's ``.keras`` file."""
    path = Path(path)
    return path.with_name(f"{path.with_suffix('').name}-pooling.keras")


class _Rows:
    """Stands in for a batch of ``n`` rows when checking per-object targets."""

    def __init__(self, n):
        self.n = n
        self.meta = QTable()

    def __len__(self):
        return self.n


def _fit_defaults(options):
    allowed = {"epochs": 100, "batch_size": None, "learning_rate": None, "patience": 10,
               "callbacks": None, "checkpoint_dir": None, "resume": False, "seed": None,
               "verbose": 0}
    unknown = set(options) - set(allowed)
    if unknown:
        raise TypeError(f"unknown fit options: {sorted(unknown)}")
    return {**allowed, **options}
