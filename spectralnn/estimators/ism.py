"""
`ISMEstimator`: gas metallicity, ionisation parameter and pressure from lines.

A GAME-style estimator (Ucci et al. 2017, 2018 [1]_ [2]_): ensembles of
AdaBoost regression trees (Drucker 1997 [3]_, as in scikit-learn) trained on
photoionisation models predict 12 + log(O/H), log U and log P/k from
emission-line fluxes. The models are the MAPPINGS 5 H II-region grid shipped
with NebulaBayes (Thomas et al. 2018 [4]_; read by
`spectralnn.datasets.NebularGrid`), interpolated to a dense training set with
noise added as observed. As in GAME, a missing line is handled by a model
trained for the subset of lines that is available (trained on demand,
seconds to a minute, and cached). A small network with a Gaussian
mean/variance head (one network for every subset that contains Hβ) is the
alternative (``method='network'``).

Alongside, the estimator returns the classical diagnostics
(`spectralnn.physics.nebular`): n_e from [S II] 6716/6731 and, when [O III]
4363 is measured, T_e and the direct-method 12 + log(O/H) (PyNeb atomic
data); the strong-line metallicities N2 and O3N2 (Pettini & Pagel 2004) and
R23 (McGaugh 1991 / Kobulnicky et al. 1999).

Inputs: a table of line fluxes with errors (the output of
`spectralnn.preprocessing.measure_lines`, or any table with
``<prefix>_flux`` and ``<prefix>_flux_err`` columns, ``prefix`` from
`~spectralnn.preprocessing.line_column_prefix`), spectra (their lines are
measured first: Gaussian fits by default), or an IFU cube (a
`specutils.Spectrum` with a 3-D flux array; its spaxels' lines measured in
seconds by the vectorised linear least squares of
`~spectralnn.preprocessing.linear_line_fluxes`; ``line_fit`` chooses): see
`ISMEstimator.map` and `radial_profile`.

The shipped ``ism-default`` trees are stored as plain arrays (``.npz`` read
with ``allow_pickle=False``, sha256-checked against the ``.json`` metadata)
and evaluated with vectorised NumPy: no pickle, no scikit-learn needed to
predict.

References
----------
.. [1] Ucci, G. et al. 2017, MNRAS 465, 1144 (GAME)
.. [2] Ucci, G. et al. 2018, MNRAS 477, 1484
.. [3] Drucker, H. 1997, Proc. ICML 97, 107 (AdaBoost.R2)
.. [4] Thomas, A. D. et al. 2018, ApJ 856, 89 (NebulaBayes)

Examples
--------
>>> from astropy.table import QTable
>>> from spectralnn.estimators import ISMEstimator
>>> lines = QTable({"Hbeta_flux": [1.0], "Hbeta_flux_err": [0.05],
...                 "OIII_5007_flux": [1.2], "OIII_5007_flux_err": [0.06],
...                 "Halpha_flux": [2.9], "Halpha_flux_err": [0.1],
...                 "NII_6583_flux": [0.35], "NII_6583_flux_err": [0.02],
...                 "OII_3727_flux": [2.5], "OII_3727_flux_err": [0.12],
...                 "OI_6300_flux": [0.05], "OI_6300_flux_err": [0.005],
...                 "SII_6716_flux": [0.25], "SII_6716_flux_err": [0.015],
...                 "SII_6731_flux": [0.18], "SII_6731_flux_err": [0.012]})
>>> t = ISMEstimator().predict(lines)
>>> bool(8.0 < t["log_OH"][0] < 9.3), t["lines_used"][0].count("+") + 1
(True, 8)
>>> t["n_e"].unit
Unit("1 / cm3")
"""

import hashlib
import json
import os
import warnings
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.table import QTable, Table

from ..errors import BatchItemWarning, ModelFileError
from ..flags import Flag
from ..logger import log

__all__ = ["ISMEstimator", "MODEL_LINES", "ISM_TARGETS", "radial_profile"]

#: The lines the default models use, in feature order ('[OII]3726,29' is the
#: unresolved [O II] doublet).
MODEL_LINES = ("[OII]3726,29", "Hbeta", "[OIII]5007", "[OI]6300", "Halpha",
               "[NII]6583", "[SII]6716", "[SII]6731")
#: Predicted quantities (all dimensionless logarithms).
ISM_TARGETS = ("log_OH", "log_U", "log_P_k")
#: columns of the grid parameters (log U, log P/k, 12 + log O/H) in ISM_TARGETS order
_PARAM_ORDER = [2, 0, 1]

#: Case-B Hα/Hβ at 10⁴ K and 100 cm⁻³ (Osterbrock & Ferland 2006, table 4.4).
BALMER_DECREMENT = 2.86

_TASK = "ism"
_DEFAULT_NAME = "ism-default"
#: relative errors are clipped to this range (log10) before entering a model
_RELERR_RANGE = (-2.3, 0.3)
#: how the lines of spectra and cubes are measured (ISMEstimator(line_fit=...))
_LINE_FITS = ("auto", "linear", "gaussian")
#: the other lines of the classical diagnostics
_EXTRA_LINES = ("[OIII]4363",)

#: line -> accepted column prefixes in an input table
_PREFIXES = {
    "[OII]3726,29": ("OII_3727", "OII_3726_29"),
    "Hbeta": ("Hbeta",),
    "[OIII]5007": ("OIII_5007",),
    "[OI]6300": ("OI_6300",),
    "Halpha": ("Halpha",),
    "[NII]6583": ("NII_6583",),
    "[SII]6716": ("SII_6716",),
    "[SII]6731": ("SII_6731",),
    "[OIII]4363": ("OIII_4363",),
}


# --------------------------------------------------------------------------
# features
# --------------------------------------------------------------------------
def _reference(lines):
    if "Hbeta" in lines:
        return "Hbeta"
    if "Halpha" in lines:
        return "Halpha"
    return None


def tree_features(flux, error, lines):
    """
    Features of the tree models (internal).

    Log flux ratios to the reference line (Hβ, else Hα) and log relative
    errors; ``flux`` and ``error`` are (N, len(lines)).
    """
    lines = list(lines)
    ref = lines.index(_reference(lines))
    eff = np.maximum(np.maximum(flux, error / 3.0), 1e-30)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.log10(eff / eff[:, [ref]])
        relerr = np.clip(np.log10(error / eff), *_RELERR_RANGE)
    others = [i for i in range(len(lines)) if i != ref]
    return np.hstack([ratios[:, others], relerr]).astype(np.float32)


def network_features(flux, error, present):
    """
    Features of the network (internal).

    For every line of `MODEL_LINES` but Hβ its log ratio to Hβ, log relative
    error and presence, then Hβ's log relative error; missing lines are
    zeros with presence 0.
    """
    hb = MODEL_LINES.index("Hbeta")
    eff = np.maximum(np.maximum(flux, error / 3.0), 1e-30)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.log10(eff / eff[:, [hb]])
        relerr = np.clip(np.log10(error / eff), *_RELERR_RANGE)
    present = present.astype(bool)
    ratios = np.where(present, ratios, 0.0)
    relerr = np.where(present, relerr, 0.0)
    others = [i for i in range(len(MODEL_LINES)) if i != hb]
    return np.hstack([ratios[:, others], relerr[:, others], present[:, others],
                      relerr[:, [hb]]]).astype(np.float32)


# --------------------------------------------------------------------------
# tree ensembles as arrays
# --------------------------------------------------------------------------
class _TreeEnsemble:
    """
    An AdaBoost.R2 ensemble stored as complete binary trees of fixed depth.

    ``feature`` and ``threshold`` are (n_trees, 2**depth - 1) (split: go right
    when x > threshold, as scikit-learn), ``value`` is (n_trees, 2**depth)
    leaf values, ``weights`` the estimator weights; the prediction is the
    weighted median over trees (Drucker 1997; scikit-learn's rule).
    """

    def __init__(self, feature, threshold, value, weights):
        self.feature = np.asarray(feature, dtype=np.int16)
        self.threshold = np.asarray(threshold, dtype=np.float32)
        self.value = np.asarray(value, dtype=np.float32)
        self.weights = np.asarray(weights, dtype=np.float64)
        self.depth = int(np.log2(self.value.shape[1]))

    @classmethod
    def from_sklearn(cls, ensemble, depth):
        n = len(ensemble.estimators_)
        feature = np.zeros((n, 2**depth - 1), np.int16)
        threshold = np.full((n, 2**depth - 1), np.inf, np.float32)
        value = np.zeros((n, 2**depth), np.float32)
        for m, est in enumerate(ensemble.estimators_):
            tree = est.tree_
            stack = [(0, 0, 0)]  # (sklearn node, position in level, level)
            while stack:
                node, pos, level = stack.pop()
                left, right = tree.children_left[node], tree.children_right[node]
                if level == depth:
                    value[m, pos] = tree.value[node].ravel()[0]
                    continue
                slot = 2**level - 1 + pos
                if left == -1:  # leaf above the full depth: always go left
                    feature[m, slot] = 0
                    threshold[m, slot] = np.inf
                    stack.append((node, 2 * pos, level + 1))
                    # the right subtree is never reached; give it the same value
                    lo = (2 * pos + 1) * 2 ** (depth - level - 1)
                    value[m, lo:lo + 2 ** (depth - level - 1)] = tree.value[node].ravel()[0]
                else:
                    feature[m, slot] = tree.feature[node]
                    threshold[m, slot] = tree.threshold[node]
                    stack.append((left, 2 * pos, level + 1))
                    stack.append((right, 2 * pos + 1, level + 1))
        weights = np.asarray(ensemble.estimator_weights_[:n], dtype=float)
        return cls(feature, threshold, value, weights)

    def tree_values(self, x):
        """(N, n_trees) predictions of each tree."""
        x = np.asarray(x, dtype=np.float32)
        n, m = len(x), len(self.weights)
        node = np.zeros((n, m), dtype=np.int64)
        trees = np.arange(m)
        for _ in range(self.depth):
            feat = self.feature[trees, node]
            thr = self.threshold[trees, node]
            right = np.take_along_axis(x, feat.astype(np.int64), axis=1) > thr
            node = 2 * node + 1 + right
        leaf = node - (2**self.depth - 1)
        return self.value[trees, leaf]

    def predict(self, x):
        """Weighted median of the trees' predictions (AdaBoost.R2)."""
        preds = self.tree_values(x)
        order = np.argsort(preds, axis=1)
        cdf = np.cumsum(self.weights[order], axis=1)
        idx = np.argmax(cdf >= 0.5 * cdf[:, -1:], axis=1)
        return np.take_along_axis(preds, order[np.arange(len(preds)), idx][:, None],
                                  axis=1)[:, 0].astype(np.float64)

    def arrays(self, prefix):
        return {f"{prefix}/feature": self.feature, f"{prefix}/threshold": self.threshold,
                f"{prefix}/value": self.value, f"{prefix}/weights": self.weights}

    @classmethod
    def from_arrays(cls, arrays, prefix):
        return cls(*(arrays[f"{prefix}/{k}"] for k in ("feature", "threshold", "value",
                                                      "weights")))


class _SubsetModel:
    """Mean and scatter ensembles of the three targets for one set of lines."""

    def __init__(self, lines, means, sigmas, sigma_scale, metrics=None):
        self.lines = tuple(lines)
        self.means = list(means)
        self.sigmas = list(sigmas)
        self.sigma_scale = np.asarray(sigma_scale, dtype=float)
        self.metrics = metrics or {}

    def predict(self, flux, error):
        x = tree_features(flux, error, self.lines)
        mean = np.stack([m.predict(x) for m in self.means], axis=1)
        std = np.stack([s.predict(x) for s in self.sigmas], axis=1)
        return mean, np.maximum(std, 1e-3) * self.sigma_scale

    def arrays(self, key):
        out = {}
        for k, target in enumerate(ISM_TARGETS):
            out.update(self.means[k].arrays(f"{key}/{target}/mean"))
            out.update(self.sigmas[k].arrays(f"{key}/{target}/sigma"))
        return out

    @classmethod
    def from_arrays(cls, arrays, key, lines, sigma_scale, metrics=None):
        means = [_TreeEnsemble.from_arrays(arrays, f"{key}/{t}/mean") for t in ISM_TARGETS]
        sigmas = [_TreeEnsemble.from_arrays(arrays, f"{key}/{t}/sigma") for t in ISM_TARGETS]
        return cls(lines, means, sigmas, sigma_scale, metrics)


def _subset_key(lines):
    return "+".join(lines)


def _fit_ensemble(x, y, n_estimators, depth, seed):
    from sklearn.ensemble import AdaBoostRegressor
    from sklearn.tree import DecisionTreeRegressor

    model = AdaBoostRegressor(DecisionTreeRegressor(max_depth=depth, min_samples_leaf=5),
                              n_estimators=n_estimators, loss="linear", random_state=seed)
    model.fit(x, y)
    return _TreeEnsemble.from_sklearn(model, depth)


def _import_sklearn():
    try:
        import sklearn  # noqa: F401
    except ImportError as exc:
        from ..datasets.nebular_grids import ISMDependencyError

        raise ISMDependencyError(
            "training the ISM trees needs scikit-learn: pip install spectralnn[ism]"
        ) from exc


def train_subset(grid, lines, *, n_train=40000, n_estimators=30, max_depth=10,
                 sigma_fraction=0.25, seed=0):
    """
    Train the tree models of one line subset on a grid (internal).

    The training set (`make_nebular_training_set`) is split: the mean
    ensembles learn on ``1 - sigma_fraction`` of it; their absolute residuals
    on the rest train the scatter ensembles, and a factor per target makes
    68.3 % of those residuals fall within ±1 sigma.
    """
    from ..datasets.nebular_grids import make_nebular_training_set

    _import_sklearn()
    rng = np.random.default_rng(seed)
    params, flux, error = make_nebular_training_set(grid, n_train, list(lines), seed=rng)
    params = params[:, _PARAM_ORDER]
    model = _train_on_arrays(params, flux, error, lines, n_estimators, max_depth,
                             int(rng.integers(2**31)), sigma_fraction)
    log.info("trained ISM trees for lines %s on %d models", "+".join(lines), n_train)
    return model


# --------------------------------------------------------------------------
# the network
# --------------------------------------------------------------------------
def _build_network(n_inputs, loc, scale, width=128, depth=3):
    import keras

    from ..models.heads import GaussianNLL, HeteroscedasticHead

    inputs = keras.Input((n_inputs,), name="line_features")
    h = inputs
    for i in range(depth):
        h = keras.layers.Dense(width, activation="gelu", name=f"dense_{i}")(h)
    out = HeteroscedasticHead(len(ISM_TARGETS), loc=list(loc), scale=list(scale),
                              name="head")(h)
    model = keras.Model(inputs, out, name="ism_mlp")
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=GaussianNLL())
    return model


def _network_training_set(grid, n, seed, drop=0.25):
    from ..datasets.nebular_grids import make_nebular_training_set

    rng = np.random.default_rng(seed)
    params, flux, error = make_nebular_training_set(grid, n, list(MODEL_LINES), seed=rng)
    params = params[:, _PARAM_ORDER]
    present = rng.random(flux.shape) > drop
    present[:, MODEL_LINES.index("Hbeta")] = True
    return network_features(flux, error, present), params.astype(np.float32)


# --------------------------------------------------------------------------
# input tables
# --------------------------------------------------------------------------
def _column(table, prefixes, suffix):
    for prefix in prefixes:
        name = f"{prefix}_{suffix}"
        if name in table.colnames:
            return table[name]
    return None


def _plain(column, unit):
    if column is None:
        return None
    if isinstance(column, u.Quantity) or getattr(column, "unit", None) is not None:
        q = u.Quantity(column)
        if unit is None:
            return q.value.astype(float), q.unit
        return q.to_value(unit).astype(float), unit
    return np.asarray(column, dtype=float), unit


def _line_arrays(table):
    """Fluxes and errors (N,) per line from a line table; NaN where absent."""
    n = len(table)
    unit = None
    flux, error = {}, {}
    for line, prefixes in _PREFIXES.items():
        f = _column(table, prefixes, "flux")
        e = _column(table, prefixes, "flux_err")
        if f is None and line == "[OII]3726,29":
            a, b = _column(table, ("OII_3726",), "flux"), _column(table, ("OII_3729",), "flux")
            if a is not None and b is not None:
                fa, unit = _plain(a, unit)
                fb, unit = _plain(b, unit)
                flux[line] = fa + fb
                ea = _column(table, ("OII_3726",), "flux_err")
                eb = _column(table, ("OII_3729",), "flux_err")
                if ea is not None and eb is not None:
                    error[line] = np.hypot(_plain(ea, unit)[0], _plain(eb, unit)[0])
                continue
        if f is None:
            continue
        flux[line], unit = _plain(f, unit)
        if e is not None:
            error[line] = _plain(e, unit)[0]
    for line in flux:
        if line not in error:
            log.warning("no error column for %s: taken as exact", line)
            error[line] = np.zeros(n)
    return flux, error


def _is_cube(data):
    from specutils import Spectrum

    return isinstance(data, Spectrum) and np.ndim(data.flux) == 3


def _cube_batch(cube):
    """The spaxels of a cube as a SpectrumBatch (rows in C order over y, x)."""
    from astropy.nddata import InverseVariance, StdDevUncertainty, VarianceUncertainty

    from ..batch import SpectrumBatch

    flux = cube.flux
    ny, nx, nlam = flux.shape
    unc = cube.uncertainty
    if unc is None:
        ivar = np.ones((ny * nx, nlam))
    elif isinstance(unc, InverseVariance):
        ivar = np.asarray(unc.array).reshape(-1, nlam)
    elif isinstance(unc, StdDevUncertainty):
        with np.errstate(divide="ignore"):
            ivar = 1.0 / np.asarray(unc.array).reshape(-1, nlam) ** 2
    elif isinstance(unc, VarianceUncertainty):
        with np.errstate(divide="ignore"):
            ivar = 1.0 / np.asarray(unc.array).reshape(-1, nlam)
    else:
        raise TypeError(f"unsupported cube uncertainty {type(unc).__name__}")
    ivar = np.where(np.isfinite(ivar), ivar, 0.0)
    mask = None if cube.mask is None else np.asarray(cube.mask).reshape(-1, nlam)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BatchItemWarning)
        return SpectrumBatch(cube.spectral_axis, flux.reshape(-1, nlam), ivar, mask,
                             frame="observed"), (ny, nx)


# --------------------------------------------------------------------------
# the estimator
# --------------------------------------------------------------------------
class ISMEstimator:
    """
    Gas-phase 12 + log(O/H), log U and log P/k from emission-line fluxes.

    Parameters
    ----------
    model : str, `~pathlib.Path` or None, optional
        ``'default'`` (the shipped ``ism-default`` trees and network), the
        path of a model saved with `save` (``.json`` beside ``.npz`` and,
        with a network, ``.keras``), or None (no model yet: `fit` one, or
        let subsets be trained on demand).
    method : {'trees', 'network'}, optional
        GAME-style AdaBoost trees (default) or the network.
    deredden : bool, optional
        Correct the fluxes for dust with the Balmer decrement (Hα/Hβ against
        `BALMER_DECREMENT`, Cardelli et al. 1989 curve with R_V = 3.1;
        E(B-V) ≥ 0) where both lines are measured. Default True; set False
        for fluxes already corrected (or intrinsic model fluxes).
    train_missing : bool, optional
        Train (and cache) tree models for line subsets that have no shipped
        model (needs scikit-learn and NebulaBayes; a few seconds to a minute
        each). Default True; if False those rows are NaN and flagged.
    baselines : bool, optional
        Add the classical diagnostics as columns (n_e, T_e and the direct
        method, N2, O3N2, R23). Default True.
    n_train, n_estimators, max_depth : int, optional
        Training set size, trees per ensemble and their depth for models
        trained by `fit` or on demand. Defaults 40,000, 30, 10.
    seed : int, optional
        Random seed of training. Default 0.
    line_fit : {'auto', 'linear', 'gaussian'}, optional
        How the lines of spectra and cubes are measured: ``'linear'``, the
        vectorised linear least-squares fluxes of
        `~spectralnn.preprocessing.linear_line_fluxes` (one width per group
        of lines common to all spectra, one velocity per spectrum: meant for
        the spaxels of one object; seconds for a 100 × 100 cube);
        ``'gaussian'``, the iterative Gaussian fits of
        `~spectralnn.preprocessing.measure_lines` (free width and velocity per
        line and spectrum; minutes for a cube). ``'auto'`` (default): linear
        for a cube, Gaussian for other spectra.

    Raises
    ------
    spectralnn.errors.ModelFileError
        If model files are missing, corrupt (sha256) or for another task.

    Examples
    --------
    >>> from spectralnn.estimators import ISMEstimator
    >>> est = ISMEstimator()
    >>> est.method, len(est.available_subsets())
    ('trees', 5)
    >>> est.available_subsets()[-1]
    ('Hbeta', '[OIII]5007', 'Halpha', '[NII]6583')
    """

    def __init__(self, model="default", *, method: str = "trees", deredden: bool = True,
                 train_missing: bool = True, baselines: bool = True, n_train: int = 40000,
                 n_estimators: int = 30, max_depth: int = 10, seed: int = 0,
                 line_fit: str = "auto"):
        if method not in ("trees", "network"):
            raise ValueError(f"method must be 'trees' or 'network', not {method!r}")
        if line_fit not in _LINE_FITS:
            raise ValueError(f"line_fit must be one of {_LINE_FITS}, not {line_fit!r}")
        for name, value, low in (("n_train", n_train, 100), ("n_estimators", n_estimators, 1),
                                 ("max_depth", max_depth, 1)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if max_depth > 14:
            raise ValueError(f"max_depth must be <= 14 (complete trees), got {max_depth}")
        self.method = method
        self.deredden = bool(deredden)
        self.train_missing = bool(train_missing)
        self.baselines = bool(baselines)
        self.n_train, self.n_estimators, self.max_depth = n_train, n_estimators, max_depth
        self.seed = seed
        self.line_fit = line_fit
        self._subsets = {}
        self._network = None
        self._grid = None
        self.metadata = self._new_metadata()
        self.path = None
        if model is not None:
            self._load(model)
        if method == "network" and model is not None and self._network is None:
            raise ModelFileError(f"model {self.metadata['name']!r} has no network")

    def __repr__(self):
        return (f"<ISMEstimator: model {self.metadata['name']!r}, method {self.method!r}, "
                f"line_fit {self.line_fit!r}, "
                f"{len(self._subsets)} line subsets, network "
                f"{'yes' if self._network is not None else 'no'}>")

    def _new_metadata(self):
        return {
            "format_version": 1, "name": "ism-untrained", "version": "0.0.0",
            "task": _TASK,
            "architecture": {"name": "ism_mlp", "options": {}},
            "preprocessing": {"steps": []},
            "target": {"names": list(ISM_TARGETS), "units": ["", "", ""],
                       "calibration": "MAPPINGS 5 H II grid of NebulaBayes"},
            "training_set": {}, "metrics": {}, "sha256": "0" * 64,
            "keras_version": "", "backend": "",
            "trees": {"file": "", "sha256": "", "subsets": []},
        }

    # ---------------------------------------------------------------- files
    def _load(self, model):
        from ..models.registry import find_model, read_json, validate_metadata

        if isinstance(model, (str, os.PathLike)) and os.fspath(model) == "default":
            model = find_model(_DEFAULT_NAME)
        path = Path(model)
        stem = path.with_suffix("") if path.suffix in (".json", ".npz", ".keras") else path
        meta_path = stem.with_suffix(".json")
        metadata = read_json(meta_path, "ISM model metadata")
        validate_metadata(metadata)
        if metadata["task"] != _TASK:
            raise ModelFileError(f"model {metadata['name']!r} is for task "
                                 f"{metadata['task']!r}, not {_TASK!r}")
        trees = metadata.get("trees")
        if not isinstance(trees, dict) or not isinstance(trees.get("subsets"), list):
            raise ModelFileError(f"{meta_path} has no valid 'trees' entry")
        npz = stem.parent / str(trees.get("file", ""))
        if not npz.is_file() or npz.parent != stem.parent:
            raise ModelFileError(f"ISM tree file {npz} does not exist")
        digest = hashlib.sha256(npz.read_bytes()).hexdigest()
        if digest != trees.get("sha256"):
            raise ModelFileError(f"sha256 of {npz} is {digest} but its metadata says "
                                 f"{trees.get('sha256')}: the file is corrupt or was replaced")
        with np.load(npz, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        for entry in trees["subsets"]:
            lines = tuple(entry["lines"])
            if any(line not in MODEL_LINES for line in lines) or _reference(lines) is None:
                raise ModelFileError(f"{meta_path}: invalid line subset {lines}")
            try:
                self._subsets[lines] = _SubsetModel.from_arrays(
                    arrays, _subset_key(lines), lines, entry["sigma_scale"],
                    entry.get("metrics"))
            except KeyError as exc:
                raise ModelFileError(f"{npz} lacks the arrays {exc}") from exc
        self.metadata = metadata
        self.path = stem
        keras_path = stem.with_suffix(".keras")
        if self.method == "network" and keras_path.is_file():
            from ..models.registry import load_model

            self._network = load_model(keras_path, task=_TASK).model

    def save(self, path):
        """
        Write the models to disk.

        ``<path>.json`` (metadata), ``<path>.npz`` (trees) and, with a
        network, ``<path>.keras``.

        Parameters
        ----------
        path : str or `~pathlib.Path`
            Destination stem (a suffix is replaced).

        Returns
        -------
        path : `~pathlib.Path`
            The ``.json`` file.
        """
        from .. import __version__
        from ..models.registry import save_model, validate_metadata

        path = Path(path)
        stem = path.with_suffix("") if path.suffix in (".json", ".npz", ".keras") else path
        stem.parent.mkdir(parents=True, exist_ok=True)
        arrays, entries = {}, []
        for lines, sub in self._subsets.items():
            arrays.update(sub.arrays(_subset_key(lines)))
            entries.append({"lines": list(lines), "sigma_scale": sub.sigma_scale.tolist(),
                            "metrics": sub.metrics})
        npz = stem.with_suffix(".npz")
        np.savez_compressed(npz, **arrays)
        meta = json.loads(json.dumps(self.metadata))
        meta["name"] = stem.name if meta["name"] == "ism-untrained" else meta["name"]
        meta["trees"] = {"file": npz.name,
                         "sha256": hashlib.sha256(npz.read_bytes()).hexdigest(),
                         "subsets": entries}
        meta["spectralnn_version"] = __version__
        if self._network is not None:
            save_model(self._network, stem, meta)
        else:
            validate_metadata(meta)
            stem.with_suffix(".json").write_text(json.dumps(meta, indent=2, sort_keys=True)
                                                 + "\n")
        self.metadata = json.loads(stem.with_suffix(".json").read_text())
        self.path = stem
        return stem.with_suffix(".json")

    def available_subsets(self):
        """Line subsets with a trained tree model (list of tuples)."""
        return list(self._subsets)

    # -------------------------------------------------------------- training
    def _training_grid(self):
        if self._grid is None:
            from ..datasets.nebular_grids import NebularGrid

            grid = NebularGrid.from_nebulabayes("HII", lines=list(MODEL_LINES))
            held = self.metadata.get("training_set", {}).get("held_out_index")
            if held:
                grid = grid.without(np.asarray(held, dtype=int))
            self._grid = grid
        return self._grid

    def fit(self, *, subsets=None, network: bool = False, holdout: float = 0.1,
            k_folds: int = 0, network_epochs: int = 30, n_network: int = 200000):
        """
        Train tree models (and optionally the network) on the NebulaBayes grid.

        Parameters
        ----------
        subsets : list of tuple of str, optional
            Line subsets to train (each must contain Hβ or Hα). Default: all
            of `MODEL_LINES`.
        network : bool, optional
            Also train the network. Default False.
        holdout : float, optional
            Fraction of interior grid points withheld from training (recorded
            in the metadata for testing). Default 0.1.
        k_folds : int, optional
            If > 1, report k-fold cross-validation RMS of the trees over the
            training set in ``metadata['metrics']['cv']``. Default 0.
        network_epochs, n_network : int, optional
            Epochs and training-set size of the network.

        Returns
        -------
        self : `ISMEstimator`
        """
        from ..datasets.nebular_grids import NebularGrid

        full = NebularGrid.from_nebulabayes("HII", lines=list(MODEL_LINES))
        if holdout > 0:
            grid, held = full.holdout(holdout, seed=self.seed)
        else:
            grid, held = full, np.zeros((0, 3), int)
        self._grid = grid
        self.metadata["name"] = "ism-trained" if self.metadata["name"] == "ism-untrained" \
            else self.metadata["name"]
        self.metadata["training_set"] = {
            "grid": "NebulaBayes NB_HII_grid (MAPPINGS 5), interpolated linearly",
            "n_train": self.n_train, "noise": "Hβ relative error log-uniform 0.02-0.3, "
            "fainter lines r0 (F/F_Hβ)^-beta, beta uniform 0-0.5",
            "held_out_index": held.tolist(), "holdout_fraction": holdout,
            "seed": self.seed,
        }
        for lines in subsets or [MODEL_LINES]:
            lines = tuple(lines)
            if _reference(lines) is None:
                raise ValueError(f"subset {lines} needs Hbeta or Halpha")
            self._subsets[lines] = train_subset(
                grid, lines, n_train=self.n_train, n_estimators=self.n_estimators,
                max_depth=self.max_depth, seed=self.seed)
        if k_folds > 1:
            self.metadata["metrics"]["cv"] = self.cross_validate(k_folds)
        if network:
            self._fit_network(grid, network_epochs, n_network)
        return self

    def cross_validate(self, k_folds=5, lines=MODEL_LINES):
        """
        k-fold cross-validation of the trees on a fresh training set.

        Returns
        -------
        metrics : dict
            Per target: RMS and 68 % coverage of the out-of-fold predictions,
            mean and standard deviation over folds.
        """
        from ..datasets.nebular_grids import make_nebular_training_set

        grid = self._training_grid()
        rng = np.random.default_rng(self.seed + 1)
        params, flux, error = make_nebular_training_set(grid, self.n_train, list(lines),
                                                        seed=rng)
        params = params[:, _PARAM_ORDER]
        folds = np.array_split(rng.permutation(len(params)), k_folds)
        rms = {t: [] for t in ISM_TARGETS}
        cover = {t: [] for t in ISM_TARGETS}
        for k in range(k_folds):
            test = folds[k]
            train = np.concatenate([folds[j] for j in range(k_folds) if j != k])
            sub = _train_on_arrays(params[train], flux[train], error[train], lines,
                                   self.n_estimators, self.max_depth, self.seed + k)
            mean, std = sub.predict(flux[test], error[test])
            for i, t in enumerate(ISM_TARGETS):
                r = mean[:, i] - params[test, i]
                rms[t].append(float(np.sqrt(np.mean(r**2))))
                cover[t].append(float(np.mean(np.abs(r) < std[:, i])))
        return {t: {"rms_mean": float(np.mean(rms[t])), "rms_std": float(np.std(rms[t])),
                    "coverage68_mean": float(np.mean(cover[t])), "k": k_folds}
                for t in ISM_TARGETS}

    def _fit_network(self, grid, epochs, n):
        import keras

        x, y = _network_training_set(grid, n, self.seed + 7)
        n_val = n // 10
        keras.utils.set_random_seed(self.seed)
        model = _build_network(x.shape[1], y.mean(0), y.std(0))
        model.fit(x[n_val:], y[n_val:], validation_data=(x[:n_val], y[:n_val]),
                  epochs=epochs, batch_size=512, verbose=0,
                  callbacks=[keras.callbacks.ReduceLROnPlateau(patience=3, factor=0.3),
                             keras.callbacks.EarlyStopping(patience=6,
                                                           restore_best_weights=True)])
        out = np.asarray(model.predict(x[:n_val], batch_size=8192, verbose=0), float)
        k = len(ISM_TARGETS)
        std = np.exp(0.5 * out[:, k:])
        z = np.abs(out[:, :k] - y[:n_val]) / std
        scale = np.quantile(z, 0.6827, axis=0)
        self._network = model
        self.metadata["architecture"] = {"name": "ism_mlp",
                                         "options": {"width": 128, "depth": 3}}
        self.metadata["uncertainty"] = {"sigma_scale": scale.tolist()}
        self.metadata["metrics"]["network_validation_rms"] = np.sqrt(
            np.mean((out[:, :k] - y[:n_val]) ** 2, axis=0)).tolist()
        log.info("trained the ISM network on %d models", n)

    def _subset_model(self, lines):
        if lines in self._subsets:
            return self._subsets[lines]
        if not self.train_missing:
            return None
        log.info("no model for lines %s: training one (GAME-style)", "+".join(lines))
        self._subsets[lines] = train_subset(
            self._training_grid(), lines, n_train=self.n_train,
            n_estimators=self.n_estimators, max_depth=self.max_depth, seed=self.seed)
        return self._subsets[lines]

    # ------------------------------------------------------------ prediction
    def __call__(self, data, *, z=None):
        """Alias of `predict`."""
        return self.predict(data, z=z)

    def predict(self, data, *, z=None) -> QTable:
        """
        Gas properties of each object (or spaxel).

        Parameters
        ----------
        data : `~astropy.table.Table`, spectra or a cube
            A table of line fluxes and errors (``<prefix>_flux``,
            ``<prefix>_flux_err``; the [O II] doublet as ``OII_3727`` or as
            ``OII_3726`` + ``OII_3729``), anything
            `~spectralnn.preprocessing.measure_lines` accepts (its lines are
            measured first, as ``line_fit`` says), or a `specutils.Spectrum`
            with a 3-D flux
            (ny, nx, spectral): one row per spaxel, with ``y`` and ``x``
            columns (see `map`).
        z : float or array-like, optional
            Redshift for spectra and cubes (default from their meta).

        Returns
        -------
        table : `~astropy.table.QTable`
            ``log_OH`` (12 + log O/H), ``log_U``, ``log_P_k`` (log P/k in
            K cm⁻³), each with ``_err`` (1 sigma); ``n_e`` and ``n_e_err``
            (cm⁻³, [S II]); with ``baselines``: ``T_e``, ``log_OH_Te``
            (direct method; NaN without [O III] 4363), ``log_OH_N2``,
            ``log_OH_O3N2``, ``log_OH_R23``, each with ``_err``; ``ebv``
            (the Balmer-decrement E(B-V) applied), ``lines_used`` and
            ``flags`` (``NO_DATA``: no usable set of lines). Rows without a
            model are NaN and flagged.
        """
        shape = None
        if isinstance(data, Table):
            lines_table = data
        elif _is_cube(data):
            batch, shape = _cube_batch(data)
            lines_table = self._measure(batch, z, cube=True)
        else:
            from ..batch import as_batch

            lines_table = self._measure(as_batch(data, on_invalid="flag"), z)
        flux, error = _line_arrays(lines_table)
        table = self.predict_fluxes(flux, error)
        for name in ("object_id", "z"):
            if name in lines_table.colnames:
                table.add_column(lines_table[name], name=name, index=0)
        if shape is not None:
            yy, xx = np.indices(shape)
            table.add_column(yy.ravel(), name="y", index=0)
            table.add_column(xx.ravel(), name="x", index=1)
            table.meta["shape"] = list(shape)
        return table

    def _measure(self, batch, z, cube=False):
        """Line fluxes of spectra (``line_fit``; 'auto': linear for a cube)."""
        needed = ["[OII]3726", "[OII]3729", "Hbeta", "[OIII]5007", "[OI]6300", "Halpha",
                  "[NII]6583", "[SII]6716", "[SII]6731", "[OIII]4363"]
        fit = self.line_fit if self.line_fit != "auto" else ("linear" if cube else "gaussian")
        if fit == "linear":
            from ..preprocessing.line_fluxes import linear_line_fluxes

            # the doublet partners fitted jointly with fixed ratios, and Hγ
            # beside [O III] 4363 (their windows overlap)
            extra = ["[OIII]4959", "[NII]6548", "Hgamma"]
            return linear_line_fluxes(batch, needed + extra, z=z)
        from ..preprocessing.measure import measure_lines

        # Gaussian fits: the [O II], Hα + [N II] + [S II] blends are fitted
        # together (integrating LINES windows would count blended lines twice)
        return measure_lines(batch, needed, z=z, profile="gaussian")

    def predict_fluxes(self, flux: dict, error: dict) -> QTable:
        """
        The prediction table from fluxes and errors given as arrays.

        Parameters
        ----------
        flux, error : dict
            Line name (`MODEL_LINES`, ``'[OIII]4363'``) -> array (N,) in any
            one unit; NaN (or an absent key) for an unmeasured line.

        Returns
        -------
        table : `~astropy.table.QTable`
            As `predict`.
        """
        n = len(next(iter(flux.values()))) if flux else 0
        names = list(MODEL_LINES) + list(_EXTRA_LINES)
        f = np.full((n, len(names)), np.nan)
        e = np.full((n, len(names)), np.nan)
        for j, name in enumerate(names):
            if name in flux:
                f[:, j] = np.asarray(flux[name], float)
                e[:, j] = np.asarray(error.get(name, np.zeros(n)), float)
        usable = np.isfinite(f) & np.isfinite(e) & (e >= 0) & ~((f <= 0) & (e == 0))
        f = np.where(usable, f, np.nan)
        e = np.where(usable, e, np.nan)
        ebv = np.zeros(n)
        if self.deredden:
            f, e, ebv = _balmer_correct(f, e, names)
        nm = len(MODEL_LINES)
        mean = np.full((n, 3), np.nan)
        std = np.full((n, 3), np.nan)
        used = np.full(n, "", dtype=object)
        present = usable[:, :nm]
        if self.method == "network":
            rows = np.flatnonzero(present[:, MODEL_LINES.index("Hbeta")])
            if rows.size:
                mean[rows], std[rows] = self._run_network(f[rows, :nm], e[rows, :nm],
                                                          present[rows])
                used[rows] = ["+".join(np.asarray(MODEL_LINES)[p]) for p in present[rows]]
        else:
            patterns, inverse = np.unique(present, axis=0, return_inverse=True)
            for k, pattern in enumerate(patterns):
                lines = tuple(str(x) for x in np.asarray(MODEL_LINES)[pattern])
                if len(lines) < 2 or _reference(lines) is None:
                    continue
                sub = self._subset_model(lines)
                if sub is None:
                    continue
                rows = np.flatnonzero(inverse.ravel() == k)
                mean[rows], std[rows] = sub.predict(f[rows, :nm][:, pattern],
                                                    e[rows, :nm][:, pattern])
                used[rows] = "+".join(lines)
        table = QTable()
        for i, name in enumerate(ISM_TARGETS):
            table[name] = mean[:, i]
            table[f"{name}_err"] = std[:, i]
        col = {name: j for j, name in enumerate(names)}
        self._add_density(table, f, e, col)
        if self.baselines:
            self._add_baselines(table, f, e, col)
        table["ebv"] = ebv * u.mag
        table["lines_used"] = used.astype(str)
        flags = np.where(np.isfinite(mean[:, 0]), 0, int(Flag.NO_DATA)).astype(np.int64)
        table["flags"] = flags
        if np.any(flags):
            log.info("%d of %d rows had no usable set of lines", int(np.sum(flags != 0)), n)
        table.meta.update(self._table_meta())
        return table

    def _run_network(self, f, e, present):
        x = network_features(np.nan_to_num(f), np.nan_to_num(e), present)
        parts = [np.asarray(self._network(x[i:i + 16384], training=False), float)
                 for i in range(0, len(x), 16384)]
        out = np.concatenate(parts)
        k = len(ISM_TARGETS)
        scale = np.asarray(self.metadata.get("uncertainty", {}).get("sigma_scale", [1.0] * k))
        return out[:, :k], np.exp(0.5 * out[:, k:]) * scale

    @staticmethod
    def _add_density(table, f, e, col):
        from ..physics.nebular import sii_density

        a, b = col["[SII]6716"], col["[SII]6731"]
        ok = np.isfinite(f[:, a]) & np.isfinite(f[:, b])
        ne = np.full(len(f), np.nan)
        ne_err = np.full(len(f), np.nan)
        if ok.any():
            val, err = sii_density(f[ok, a], f[ok, b], e[ok, a], e[ok, b])
            ne[ok], ne_err[ok] = val.to_value(u.cm**-3), err.to_value(u.cm**-3)
        table["n_e"] = ne * u.cm**-3
        table["n_e_err"] = ne_err * u.cm**-3

    @staticmethod
    def _add_baselines(table, f, e, col):
        from ..physics.nebular import (
            direct_metallicity,
            n2_metallicity,
            o3n2_metallicity,
            r23_metallicity,
        )

        def c(name):
            return f[:, col[name]], e[:, col[name]]

        o2, o2e = c("[OII]3726,29")
        hb, hbe = c("Hbeta")
        o3, o3e = c("[OIII]5007")
        ha, hae = c("Halpha")
        n2, n2e = c("[NII]6583")
        o4363, o4363e = c("[OIII]4363")
        with np.errstate(divide="ignore", invalid="ignore"):
            te_rows = np.isfinite(o4363) & (o4363 > 0) & np.isfinite(o2) & np.isfinite(o3)
            oh_te = np.full(len(f), np.nan)
            oh_te_err = np.full(len(f), np.nan)
            te = np.full(len(f), np.nan)
            te_err = np.full(len(f), np.nan)
            if te_rows.any():
                dens = np.asarray(table["n_e"].to_value(u.cm**-3))[te_rows]
                dens = np.where(np.isfinite(dens), dens, 100.0)
                r = direct_metallicity(o2[te_rows], o4363[te_rows], o3[te_rows], hb[te_rows],
                                       o2e[te_rows], o4363e[te_rows], o3e[te_rows],
                                       hbe[te_rows], density=dens)
                oh_te[te_rows], oh_te_err[te_rows] = r[0], r[1]
                te[te_rows], te_err[te_rows] = r[2].to_value(u.K), r[3].to_value(u.K)
            table["T_e"] = te * u.K
            table["T_e_err"] = te_err * u.K
            table["log_OH_Te"], table["log_OH_Te_err"] = oh_te, oh_te_err
            table["log_OH_N2"], table["log_OH_N2_err"] = n2_metallicity(n2, ha, n2e, hae)
            table["log_OH_O3N2"], table["log_OH_O3N2_err"] = o3n2_metallicity(
                o3, hb, n2, ha, o3e, hbe, n2e, hae)
            table["log_OH_R23"], table["log_OH_R23_err"] = r23_metallicity(
                o2, o3, hb, n2, ha, oii3727_err=o2e, oiii5007_err=o3e, hbeta_err=hbe)

    def _table_meta(self):
        from .. import __version__

        return {"spectralnn_version": __version__, "task": _TASK,
                "model_name": self.metadata["name"],
                "model_version": self.metadata["version"],
                "model_sha256": self.metadata.get("trees", {}).get("sha256") or "unsaved",
                "method": self.method,
                "calibration": self.metadata["target"].get("calibration", "")}

    # ----------------------------------------------------------------- cubes
    def map(self, cube, *, z=None) -> dict:
        """
        Maps of the gas properties of an IFU cube.

        Parameters
        ----------
        cube : `specutils.Spectrum`
            Flux of shape (ny, nx, n_spectral) (spectral axis last, as
            specutils), with its uncertainty and mask.
        z : float, optional
            Redshift (default from the cube's meta).

        Returns
        -------
        maps : dict
            Column name of `predict` -> 2-D array or `~astropy.units.Quantity`
            of shape (ny, nx) (``lines_used`` excluded).
        """
        if not _is_cube(cube):
            raise TypeError("map needs a specutils.Spectrum with a 3-D flux array")
        table = self.predict(cube, z=z)
        return maps_from_table(table)


def maps_from_table(table):
    """2-D maps (dict) of the numeric columns of a cube's prediction table."""
    shape = tuple(table.meta["shape"])
    maps = {}
    for name in table.colnames:
        if name in ("x", "y", "lines_used"):
            continue
        col = table[name]
        maps[name] = (col.reshape(shape) if isinstance(col, u.Quantity)
                      else np.asarray(col).reshape(shape))
    return maps


def _train_on_arrays(params, flux, error, lines, n_estimators, max_depth, seed,
                     sigma_fraction=0.25):
    rng = np.random.default_rng(seed)
    x = tree_features(flux, error, lines)
    n_fit = int(round((1 - sigma_fraction) * len(x)))
    means, sigmas, scales, metrics = [], [], [], {}
    for k in range(len(ISM_TARGETS)):
        mean = _fit_ensemble(x[:n_fit], params[:n_fit, k], n_estimators, max_depth,
                             int(rng.integers(2**31)))
        resid = np.abs(mean.predict(x[n_fit:]) - params[n_fit:, k])
        sigma = _fit_ensemble(x[n_fit:], resid, max(10, n_estimators // 2),
                              max(6, max_depth - 2), int(rng.integers(2**31)))
        scales.append(float(np.quantile(resid / np.maximum(sigma.predict(x[n_fit:]), 1e-3),
                                        0.6827)))
        means.append(mean)
        sigmas.append(sigma)
        metrics[ISM_TARGETS[k]] = {"rms_calibration_split": float(np.sqrt(np.mean(resid**2))),
                                   "sigma_scale": scales[-1]}
    return _SubsetModel(lines, means, sigmas, scales, metrics)


def _balmer_correct(f, e, names):
    """Deredden with the Balmer decrement (CCM89, R_V = 3.1); E(B-V) >= 0."""
    from ..lines import get_line
    from ..preprocessing.dereddening import extinction_model

    ia, ib = names.index("Halpha"), names.index("Hbeta")
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = f[:, ia] / f[:, ib]
    waves = {}
    for name in names:
        key = "[OII]3726" if name == "[OII]3726,29" else name
        waves[name] = get_line(key)["wavelength"]
    curve = extinction_model("CCM89", r_v=3.1)
    k = np.array([3.1 * float(curve(waves[name])) for name in names])  # A(λ)/E(B-V)
    with np.errstate(divide="ignore", invalid="ignore"):
        ebv = 2.5 / (k[ib] - k[ia]) * np.log10(ratio / BALMER_DECREMENT)
    ebv = np.where(np.isfinite(ebv) & (f[:, ia] > 0) & (f[:, ib] > 0), np.maximum(ebv, 0), 0.0)
    factor = 10.0 ** (0.4 * ebv[:, None] * k[None, :])
    return f * factor, e * factor, ebv


def radial_profile(image, center, *, bin_width: float = 1.0, max_radius=None,
                   error=None, statistic: str = "median", pixel_scale=None) -> QTable:
    """
    Azimuthally averaged radial profile of a 2-D map.

    Parameters
    ----------
    image : array-like or `~astropy.units.Quantity`, shape (ny, nx)
        The map (NaN pixels are ignored), e.g. ``maps['log_OH']`` from
        `ISMEstimator.map`.
    center : tuple of float
        (x, y) of the centre in pixels.
    bin_width : float, optional
        Annulus width in pixels. Default 1.
    max_radius : float, optional
        Outer radius in pixels (default: the farthest pixel).
    error : array-like, optional
        Per-pixel 1-sigma errors; with ``statistic='mean'`` the mean is
        inverse-variance weighted and its error propagated.
    statistic : {'median', 'mean'}, optional
        Default 'median' (its error: 1.2533 × std / sqrt(n)).
    pixel_scale : `~astropy.units.Quantity`, optional
        Size of a pixel (e.g. ``0.5 * u.arcsec`` or ``0.3 * u.kpc``) to give
        radii in those units.

    Returns
    -------
    profile : `~astropy.table.QTable`
        ``radius`` (annulus centre), ``value``, ``value_err``, ``n_pixels``,
        and ``gradient``/``gradient_err`` in ``meta`` (weighted linear fit of
        value against radius).

    Examples
    --------
    >>> import numpy as np
    >>> yy, xx = np.indices((41, 41))
    >>> oh = 8.7 - 0.02 * np.hypot(xx - 20, yy - 20)
    >>> p = radial_profile(oh, (20, 20), bin_width=2)
    >>> round(float(p.meta["gradient"]), 3)
    -0.02
    """
    if statistic not in ("median", "mean"):
        raise ValueError(f"statistic must be 'median' or 'mean', not {statistic!r}")
    if bin_width <= 0:
        raise ValueError(f"bin_width must be positive, got {bin_width}")
    unit = getattr(image, "unit", None)
    data = np.asarray(image.value if unit is not None else image, dtype=float)
    if data.ndim != 2:
        raise ValueError(f"image must be 2-D, got shape {data.shape}")
    err = None if error is None else np.asarray(getattr(error, "value", error), float)
    yy, xx = np.indices(data.shape)
    r = np.hypot(xx - center[0], yy - center[1])
    good = np.isfinite(data) & (np.isfinite(err) & (err > 0) if err is not None else True)
    rmax = float(r[good].max()) if max_radius is None and good.any() else float(max_radius or 0)
    edges = np.arange(0.0, rmax + bin_width, bin_width)
    which = np.digitize(r, edges) - 1
    rows = []
    for b in range(len(edges) - 1):
        sel = good & (which == b)
        n = int(sel.sum())
        if n == 0:
            rows.append((0.5 * (edges[b] + edges[b + 1]), np.nan, np.nan, 0))
            continue
        v = data[sel]
        if statistic == "mean" and err is not None:
            w = 1.0 / err[sel] ** 2
            val, val_err = np.sum(w * v) / np.sum(w), 1.0 / np.sqrt(np.sum(w))
        elif statistic == "mean":
            val = v.mean()
            val_err = v.std(ddof=1) / np.sqrt(n) if n > 1 else np.nan
        else:
            val = np.median(v)
            val_err = 1.2533 * v.std(ddof=1) / np.sqrt(n) if n > 1 else np.nan
        rows.append((0.5 * (edges[b] + edges[b + 1]), val, val_err, n))
    radius, value, value_err, npix = (np.array(c) for c in zip(*rows, strict=True))
    profile = QTable()
    scale = 1.0 if pixel_scale is None else pixel_scale
    profile["radius"] = radius * scale
    profile["value"] = value * (unit or 1)
    profile["value_err"] = value_err * (unit or 1)
    profile["n_pixels"] = npix.astype(int)
    ok = np.isfinite(value) & (npix > 0)
    if ok.sum() >= 2:
        w = np.where(np.isfinite(value_err[ok]) & (value_err[ok] > 0),
                     1.0 / np.where(value_err[ok] > 0, value_err[ok], 1.0) ** 2, 1.0)
        if not np.isfinite(value_err[ok]).any() or np.all(value_err[ok] == 0):
            w = np.ones(ok.sum())
        coef, cov = np.polyfit(radius[ok], value[ok], 1, w=np.sqrt(w), cov="unscaled") \
            if ok.sum() > 2 else (np.polyfit(radius[ok], value[ok], 1), np.zeros((2, 2)))
        profile.meta["gradient"] = float(coef[0])
        profile.meta["gradient_err"] = float(np.sqrt(cov[0, 0]))
        per = "pixel" if pixel_scale is None else str(u.Quantity(pixel_scale).unit)
        profile.meta["gradient_unit"] = f"{unit or ''} per {per}"
    return profile
