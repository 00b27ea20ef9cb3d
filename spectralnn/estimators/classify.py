"""
`SpectralClassifier`: star, galaxy, quasar or BAL quasar, with a subclass.

The network reads the observed-frame spectrum — the redshift is unknown, so
there is no rest-frame step — resampled onto a common log-λ grid (3600–10000
Å, Δlog10λ = 1e-3, the grid of QuasarNET, Busca & Balland 2018,
arXiv:1808.09955), median-normalised, as flux, mask and error channels. One
softmax over *joint* labels ``'CLASS:SUBCLASS'`` (e.g. ``'STAR:M'``,
``'GALAXY:STARFORMING'``, ``'QSO:BROADLINE'``, ``'QSO:BAL'``) gives
everything at once: the probability of a class is the sum over its labels,
the BAL probability is that of ``'QSO:BAL'`` given a quasar, and the subclass
is the most probable label of the winning class, with its probability given
that class. The four top-level groups (star, galaxy, non-BAL quasar, BAL
quasar) are the classes of the BOSS DR12 CNN classifiers the issue quotes.

Subclasses follow SDSS: for galaxies the emission-line subclass of the SDSS
pipeline (``''`` for no lines, ``'STARFORMING'``, ``'STARBURST'``, ``'AGN'``,
``'BROADLINE'`` and combinations), for stars the spectral group (``'O'`` …
``'M'``, ``'L/T'``, ``'WD'``, ``'CV'``, ``'Carbon'``; the truth column
``spectral_group`` of `spectralnn.simulate.simulate_stars`). The label set is
whatever the training spectra hold; it is stored in the model metadata
(``metadata['labels']``).

Training balances the four groups by oversampling (``balance=True``) and
optionally calibrates the probabilities with one temperature (Guo et al.
2017) on held-out spectra (`SpectralClassifier.calibrate_uncertainties`).

Examples
--------
>>> from spectralnn.estimators import SpectralClassifier
>>> clf = SpectralClassifier("resnet1d", architecture_options={"filters": 8})
>>> clf.pipeline.steps
['deredden', 'resample', 'normalize']
>>> clf.is_trained
False
"""

import numpy as np
from astropy.table import QTable

from ..logger import log
from .base import OBSERVED_FRAME_PREPROCESSING, Estimator, _take

__all__ = ["SpectralClassifier", "CLASSES"]

#: Top-level classes, in the order of the ``prob_*`` columns.
CLASSES = ("STAR", "GALAXY", "QSO")

_BAL_LABEL = "QSO:BAL"
_QSO_LABEL = "QSO:BROADLINE"
#: per-label probabilities are floored here before taking a log (calibration)
_P_FLOOR = 1e-12


class SpectralClassifier(Estimator):
    """
    Classify spectra as star, galaxy or quasar (BAL or not), with a subclass.

    Parameters
    ----------
    model : str, `~pathlib.Path` or `~spectralnn.models.LoadedModel`, optional
        ``'default'`` (the shipped ``classifier-default`` weights, when
        installed), the path of a trained ``.keras`` file, or ``'resnet1d'``
        to build and `fit` a new network.
    batch_size : int, optional
        Spectra per forward pass. Default 1024.
    preprocessing : dict, optional
        Preprocessing of a new network. Default: Galactic dereddening (E(B-V)
        from ``meta['ebv']``, else none), resampling onto 3600–10000 Å with
        Δlog10λ = 1e-3 in the observed frame, median normalisation, flux,
        mask and error channels; 30 % of the grid must be covered.
    architecture_options : dict, optional
        Options of the ``resnet1d`` trunk of a new network.

    Examples
    --------
    >>> SpectralClassifier("resnet1d", batch_size=64)
    <SpectralClassifier: model 'classification-resnet1d' (resnet1d, untrained), batch_size=64>
    """

    task = "classification"
    target_names = ("class",)
    target_units = ("",)
    default_model_name = "classifier-default"
    target_calibration = "SDSS-style CLASS and SUBCLASS (BAL quasars a class of their own)"
    default_preprocessing = OBSERVED_FRAME_PREPROCESSING

    def __init__(
        self,
        model="default",
        *,
        batch_size: int = 1024,
        preprocessing: dict | None = None,
        architecture_options: dict | None = None,
    ):
        if isinstance(model, str) and model in ("wren2021", "epoch_pooling"):
            raise ValueError(
                f"SpectralClassifier has a classification head for 'resnet1d' only, "
                f"not {model!r}"
            )
        super().__init__(model, batch_size=batch_size, preprocessing=preprocessing,
                         architecture_options=architecture_options)

    # ---------------------------------------------------------------- labels
    @property
    def labels(self):
        """The joint ``'CLASS:SUBCLASS'`` labels of the softmax (None before `fit`)."""
        labels = self.metadata.get("labels")
        return None if labels is None else list(labels)

    @property
    def temperature(self):
        """Probability temperature (1 if uncalibrated; see `calibrate_uncertainties`)."""
        return float(self.metadata.get("uncertainty", {}).get("temperature", 1.0))

    # ------------------------------------------------------------ prediction
    def predict(self, spectra, *, z=None, ebv=None):
        """
        Class, subclass and BAL probability of each spectrum.

        Parameters
        ----------
        spectra : `specutils.Spectrum`, list, `~spectralnn.SpectrumBatch` or path(s)
            Observed-frame spectra (any grid covering part of 3600–10000 Å).
        z : float or array-like, optional
            Not used (the classifier needs no redshift); accepted so that every
            estimator has the same signature.
        ebv : float or array-like, optional
            Galactic E(B-V) per spectrum. Default: ``meta['ebv']``, else 0.

        Returns
        -------
        table : `~astropy.table.QTable`
            One row per spectrum: the identifying meta columns present,
            ``class`` (``'STAR'``, ``'GALAXY'`` or ``'QSO'``) and
            ``class_prob``; ``prob_star``, ``prob_galaxy``, ``prob_qso`` (BAL
            quasars included; the three sum to one); ``bal`` (True for a
            quasar whose BAL probability exceeds 0.5) and ``bal_prob`` (the
            probability of a BAL given a quasar); ``subclass`` (SDSS style)
            and ``subclass_prob`` (given the class); ``snr`` and ``flags``.
            Unusable spectra get ``class = ''``, NaN probabilities and a flag.
        """
        return super().predict(spectra, z=None, ebv=ebv)

    def _predict_batch(self, batch, *, z, ebv):
        prepared = self.pipeline(batch, ebv=ebv)
        probs = self._probabilities(prepared.network_inputs, prepared.usable)
        self._report_unusable(prepared.usable, prepared.flags)
        return self._build_table(batch, prepared, None, None, self._columns(probs))

    def _probabilities(self, inputs, usable):
        """Calibrated label probabilities (N, L); NaN rows for unusable spectra."""
        labels = self.labels
        probs = np.full((len(usable), len(labels)), np.nan)
        rows = np.flatnonzero(usable)
        if rows.size:
            probs[rows] = _temper(self._forward(_take(inputs, rows)), self.temperature)
        return probs

    def _columns(self, probs):
        """Output columns (dict) from label probabilities (N, L)."""
        labels = np.array(self.labels)
        cls = np.array([label.split(":", 1)[0] for label in labels])
        sub = np.array([label.split(":", 1)[1] if ":" in label else "" for label in labels])
        n = len(probs)
        ok = np.all(np.isfinite(probs), axis=1)
        per_class = np.stack([probs[:, cls == name].sum(axis=1) for name in CLASSES],
                             axis=1)
        winner = np.argmax(np.where(np.isfinite(per_class), per_class, -1.0), axis=1)
        # subclass: best label of the winning class, probability given the class
        in_winner = cls[None, :] == np.array(CLASSES)[winner][:, None]
        masked = np.where(in_winner, np.nan_to_num(probs, nan=-1.0), -1.0)
        best = np.argmax(masked, axis=1)
        best_p = masked[np.arange(n), best]
        class_p = per_class[np.arange(n), winner]
        with np.errstate(invalid="ignore", divide="ignore"):
            subclass_prob = np.where(class_p > 0, best_p / class_p, np.nan)
            p_bal = probs[:, labels == _BAL_LABEL].sum(axis=1)
            bal_prob = np.where(per_class[:, 2] > 0, p_bal / per_class[:, 2], np.nan)
        columns = {
            "class": np.where(ok, np.array(CLASSES)[winner], ""),
            "class_prob": np.where(ok, class_p, np.nan),
        }
        for i, name in enumerate(CLASSES):
            columns[f"prob_{name.lower()}"] = per_class[:, i]
        columns["bal"] = ok & (columns["class"] == "QSO") & (np.nan_to_num(bal_prob) > 0.5)
        columns["bal_prob"] = bal_prob
        columns["subclass"] = np.where(ok, sub[best], "")
        columns["subclass_prob"] = np.where(ok, subclass_prob, np.nan)
        return columns

    def _build_table(self, batch, prepared, mean, std, extra=None):
        # no target columns of its own: the class columns come as ``extra``
        table = QTable()
        for name in ("object_id", "source", "plate", "mjd", "fiber", "z"):
            if name in batch.meta.colnames:
                table[name] = batch.meta[name]
        for name, column in (extra or {}).items():
            table[name] = column
        table["snr"] = prepared.snr
        table["flags"] = np.asarray(prepared.flags, dtype=np.int64)
        table.meta.update(self._table_meta())
        return table

    # --------------------------------------------------------------- training
    def fit(self, spectra, targets=None, *, balance: bool = True, validation=0.1,
            ebv=None, seed: int | None = None, **options):
        """
        Train the network (building it first for a new one).

        Parameters
        ----------
        spectra : `specutils.Spectrum`, list, `~spectralnn.SpectrumBatch` or path(s)
            Training spectra (not modified).
        targets : array-like of str, optional
            One label per spectrum: ``'STAR'``, ``'GALAXY'``, ``'QSO'`` or a
            joint ``'CLASS:SUBCLASS'`` label (``'QSO:BAL'`` for a BAL
            quasar). Default: from the truth meta of simulated or SDSS
            spectra (columns ``class``, ``subclass``, ``bal`` and, for stars,
            ``spectral_group``).
        balance : bool, optional
            Oversample the training spectra so that stars, galaxies, non-BAL
            and BAL quasars come in equal numbers. Default True.
        validation : float, tuple or None, optional
            Fraction held out at random (default 0.1; never oversampled), a
            ``(spectra, targets)`` tuple, or None.
        ebv : float or array-like, optional
            Galactic E(B-V) of the training spectra.
        seed : int, optional
            Seed of the split, the oversampling, the weights and shuffling.
        **options
            ``epochs``, ``batch_size``, ``learning_rate``, ``patience``,
            ``callbacks``, ``checkpoint_dir``, ``resume``, ``verbose`` as in
            `Estimator.fit`.

        Returns
        -------
        self : `SpectralClassifier`
        """
        options = {"epochs": 100, "batch_size": None, "learning_rate": None,
                   "patience": 10, "callbacks": None, "checkpoint_dir": None,
                   "resume": False, "verbose": 0, **options}
        x, y = self._prepare_training(spectra, targets, None, ebv)
        rng = np.random.default_rng(seed)
        if isinstance(validation, tuple):
            val = self._prepare_training(validation[0], validation[1])
        elif validation:
            if not 0 < float(validation) < 1:
                raise ValueError(f"validation fraction must be in (0, 1), got {validation}")
            order = rng.permutation(len(y))
            n_val = max(1, int(round(float(validation) * len(y))))
            if n_val >= len(y):
                raise ValueError("too few spectra to hold out a validation set")
            val = (_take(x, order[:n_val]), y[order[:n_val]])
            x, y = _take(x, order[n_val:]), y[order[n_val:]]
        else:
            val = None
        if balance:
            rows = _balanced_rows(self._groups(y[:, 0]), rng)
            x, y = _take(x, rows), y[rows]
        return self._fit_arrays(x, y, validation=val, seed=seed, **options)

    def _groups(self, index):
        """Group (0 star, 1 galaxy, 2 QSO, 3 BAL) of each label index."""
        labels = self.labels
        group = np.array([3 if lab == _BAL_LABEL else CLASSES.index(lab.split(":")[0])
                          for lab in labels])
        return group[np.asarray(index, dtype=np.int64)]

    def _targets(self, targets, batch):
        """Label indices (N, 1) as float32; NaN for unknown labels."""
        if targets is None:
            names = _labels_from_meta(batch.meta)
        else:
            names = np.array([_normalise_label(t) for t in np.asarray(targets).astype(str)])
            if len(names) != len(batch):
                raise ValueError(f"got {len(names)} targets for {len(batch)} spectra")
        known = names != ""
        if self.labels is None:
            if not known.any():
                raise ValueError("no spectrum has a known class")
            self.metadata["labels"] = sorted(set(names[known].tolist()))
        lookup = {lab: i for i, lab in enumerate(self.labels)}
        index = np.array([lookup.get(name, np.nan) for name in names], dtype=np.float64)
        unknown = int(np.sum(~np.isfinite(index) & known))
        if unknown:
            log.info("%d spectra have labels the network does not know: left out", unknown)
        return index[:, None]

    def _build(self, x, y):
        from ..models.architectures import build_classifier

        x = x[0] if isinstance(x, list) else x
        self._keras = build_classifier(
            self.architecture, x.shape[-2], n_classes=len(self.labels),
            n_channels=self.pipeline.n_channels,
            options=self.metadata["architecture"]["options"],
            name=self.metadata["name"].replace(" ", "_"),
        )

    def _loss(self):
        return "sparse_categorical_crossentropy"

    def _metrics(self, x, y):
        """Accuracies, purity and completeness per class on (x, y)."""
        probs = _temper(self._forward(x), self.temperature)
        truth = y[:, 0].astype(np.int64)
        cols = self._columns(probs)
        true_group = self._groups(truth)
        true_class = np.array(CLASSES)[np.minimum(true_group, 2)]
        metrics = {"n": int(len(truth)),
                   "accuracy": float(np.mean(cols["class"] == true_class)),
                   "label_accuracy": float(np.mean(np.argmax(probs, axis=1) == truth))}
        for name in CLASSES:
            pred = cols["class"] == name
            true = true_class == name
            metrics[name.lower()] = {
                "n": int(true.sum()),
                "purity": float(np.sum(pred & true) / max(pred.sum(), 1)),
                "completeness": float(np.sum(pred & true) / max(true.sum(), 1)),
            }
        qso = true_class == "QSO"
        if qso.any():
            metrics["bal_accuracy"] = float(np.mean(cols["bal"][qso] == (true_group[qso] == 3)))
        return metrics

    def calibrate_uncertainties(self, spectra, targets=None, *, ebv=None):
        """
        Calibrate the probabilities with one temperature on held-out spectra.

        Temperature scaling (Guo et al. 2017, ICML): the label probabilities
        become ``p**(1/T)`` renormalised (a softmax of the logits divided by
        ``T``); ``T`` minimises the cross-entropy on the given spectra, which
        must not be the training set. The most probable label is unchanged; a
        class, a sum over labels, can change where two classes are close.

        Parameters
        ----------
        spectra : `specutils.Spectrum`, list, `~spectralnn.SpectrumBatch` or path(s)
            Validation spectra.
        targets : array-like of str, optional
            Their labels (as in `fit`; default from their meta).
        ebv : float or array-like, optional
            Galactic E(B-V).

        Returns
        -------
        self : `SpectralClassifier`
            With ``metadata['uncertainty']`` holding ``temperature`` and the
            cross-entropy before and after.
        """
        x, y = self._prepare_training(spectra, targets, None, ebv)
        self._require_trained()
        raw = self._forward(x)
        truth = y[:, 0].astype(np.int64)
        grid = np.geomspace(0.25, 4.0, 121)
        nll = np.array([_cross_entropy(_temper(raw, t), truth) for t in grid])
        best = float(grid[np.argmin(nll)])
        self.metadata["uncertainty"] = {
            "temperature": best,
            "method": "temperature scaling: minimum cross-entropy on held-out spectra",
            "n": int(len(truth)),
            "cross_entropy_before": float(_cross_entropy(_temper(raw, 1.0), truth)),
            "cross_entropy_after": float(nll.min()),
        }
        log.info("probabilities tempered with T = %.3f (from %d spectra)", best, len(truth))
        return self


def _temper(probs, temperature):
    """Label probabilities at a temperature: softmax(log p / T)."""
    probs = np.asarray(probs, dtype=np.float64)
    if temperature == 1.0:
        return probs
    logp = np.log(np.clip(probs, _P_FLOOR, 1.0)) / temperature
    logp -= logp.max(axis=1, keepdims=True)
    out = np.exp(logp)
    return out / out.sum(axis=1, keepdims=True)


def _cross_entropy(probs, truth):
    return -np.mean(np.log(np.clip(probs[np.arange(len(truth)), truth], _P_FLOOR, 1.0)))


def _balanced_rows(groups, rng):
    """Row indices oversampling every group present to the size of the largest."""
    present = np.unique(groups)
    target = max(int(np.sum(groups == g)) for g in present)
    rows = np.concatenate([
        rng.choice(np.flatnonzero(groups == g), size=target,
                   replace=int(np.sum(groups == g)) < target)
        for g in present
    ])
    return rng.permutation(rows)


def _normalise_label(label):
    label = str(label).strip()
    if ":" in label:
        cls, sub = label.split(":", 1)
        return f"{cls.strip().upper()}:{sub.strip()}"
    cls = label.upper()
    if cls == "QSO":
        return _QSO_LABEL
    return f"{cls}:" if cls in CLASSES else ""


def _labels_from_meta(meta):
    """Joint labels from a truth table (class, subclass, bal, spectral_group)."""
    if "class" not in meta.colnames:
        raise ValueError("targets not given and the spectra's meta has no 'class' column")
    n = len(meta)
    cls = np.char.upper(np.char.strip(np.asarray(meta["class"]).astype(str)))
    sub = (np.char.strip(np.asarray(meta["subclass"]).astype(str))
           if "subclass" in meta.colnames else np.full(n, ""))
    group = (np.char.strip(np.asarray(meta["spectral_group"]).astype(str))
             if "spectral_group" in meta.colnames else np.full(n, ""))
    bal = (np.asarray(meta["bal"], dtype=bool) if "bal" in meta.colnames
           else np.char.find(np.char.upper(sub), "BAL") >= 0)
    star_sub = np.where(group != "", group, sub)
    galaxy_sub = sub
    qso_sub = np.where(bal, "BAL", "BROADLINE")
    sub_out = np.select([cls == "STAR", cls == "GALAXY", cls == "QSO"],
                        [star_sub, galaxy_sub, qso_sub], default="")
    known = np.isin(cls, CLASSES)
    labels = np.char.add(np.char.add(cls, ":"), sub_out)
    return np.where(known, labels, "")
