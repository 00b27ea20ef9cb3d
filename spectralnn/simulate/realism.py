"""
How realistic are simulated quasars? Measured features, matching, tests.

The same measurements are run on real and on simulated spectra
(`quasar_features`: continuum slope, Hβ and Mg II FWHM and EW, [O III] 5007
EW, optical Fe II strength, S/N), each real spectrum is matched to simulated
ones of similar redshift and S/N (`match_by_z_snr`), and the two samples are
compared quantity by quantity (`compare_distributions`: medians and
16–84 % ranges) and as a whole by a classifier trained to tell them apart
(`classifier_auc`: cross-validated ROC AUC of a logistic regression, 0.5 =
indistinguishable).

Examples
--------
>>> import numpy as np
>>> from spectralnn.simulate.realism import compare_distributions
>>> from astropy.table import QTable
>>> rng = np.random.default_rng(0)
>>> a = QTable({"x": rng.normal(10, 1, 400)})
>>> b = QTable({"x": rng.normal(10, 1, 400)})
>>> row = compare_distributions(a, b, ["x"])[0]
>>> bool(row["median_ok"]), bool(row["spread_ok"])
(True, True)
"""

import warnings

import numpy as np
from astropy import units as u
from astropy.table import QTable

from ..batch import as_batch

_C_KMS = 299792.458

__all__ = [
    "FEATURES",
    "quasar_features",
    "match_by_z_snr",
    "compare_distributions",
    "classifier_auc",
    "roc_auc",
]

#: Measured features compared between real and simulated quasars.
FEATURES = (
    "continuum_slope",
    "Hbeta_fwhm",
    "Hbeta_ew",
    "MgII_fwhm",
    "MgII_ew",
    "OIII_5007_ew",
    "r_feii",
    "snr",
)

#: Rest-frame windows (Å) of the power-law continuum: free of strong Fe II
#: emission, unlike the Shen et al. (2011) windows at 4435-4640 and
#: 5100-5535 Å, so Fe II and the continuum are measured independently.
_WINDOWS = np.array(
    [
        [1350.0, 1360.0],
        [1445.0, 1465.0],
        [1690.0, 1705.0],
        [2190.0, 2210.0],
        [3010.0, 3040.0],
        [3240.0, 3270.0],
        [3790.0, 3810.0],
        [4200.0, 4230.0],
        [5080.0, 5100.0],
        [5600.0, 5630.0],
        [6005.0, 6035.0],
        [6110.0, 6250.0],
    ]
)
#: R_FeII window (Boroson & Green 1992): Fe II flux in 4434-4684 Å over Hβ.
_FEII_WINDOW = (4434.0, 4684.0)


def quasar_features(spectra, z=None, profile="double_gaussian"):
    """
    Measure the realism features of quasar spectra.

    The continuum slope is that of a power law fitted to line-free
    rest-frame windows (`_WINDOWS`) with
    `~spectralnn.preprocessing.continuum_powerlaw`; Mg II is fitted above it
    with `~spectralnn.preprocessing.measure_lines`. Hβ, [O III] and Fe II come
    from the joint fit of the virial-mass pipeline (power law, two broad
    Gaussians, narrow Hβ and [O III] core + wing, optical Fe II templates;
    `spectralnn.physics.virial_black_hole_mass`), and R_FeII =
    EW(Fe II 4434–4684 Å) / EW(Hβ broad) (Boroson & Green 1992, ApJS 80, 109).

    Parameters
    ----------
    spectra : `specutils.Spectrum`, `~spectralnn.SpectrumBatch` or list
        Observed-frame quasar spectra.
    z : array-like, optional
        Redshifts (default ``meta['z']``).

    Returns
    -------
    table : `~astropy.table.QTable`
        One row per spectrum: ``z``, ``snr`` (median S/N per good pixel),
        ``continuum_slope`` (α of f_λ ∝ λ^α), ``Hbeta_fwhm``, ``MgII_fwhm``
        (km/s), ``Hbeta_ew``, ``MgII_ew``, ``OIII_5007_ew`` (rest Å) and
        ``r_feii``. NaN where a quantity is not covered or its fit failed.

    Examples
    --------
    >>> from spectralnn.simulate import simulate_quasars
    >>> from spectralnn.simulate.realism import quasar_features
    >>> b = simulate_quasars(3, seed=2, z_range=(0.3, 0.5), snr_range=(20, 30))
    >>> t = quasar_features(b)
    >>> bool((t["Hbeta_fwhm"].value > 500).all())
    True
    """
    from ..preprocessing import continuum_powerlaw, measure_lines

    batch = as_batch(spectra)
    if z is None:
        z = batch.meta_column("z")
    z = np.asarray(z, dtype=float)
    batch.meta["z"] = z
    cont = continuum_powerlaw(batch, windows=_WINDOWS * u.AA, z=z, extrapolate=True)
    lines = measure_lines(batch, ["MgII"], z=z, continuum=cont, profile=profile)
    out = QTable()
    out["z"] = z
    out["snr"] = batch.snr
    out["continuum_slope"] = np.asarray(cont.meta["continuum_slope"])
    out["Hbeta_fwhm"] = np.full(z.size, np.nan) * u.km / u.s
    out["MgII_fwhm"] = lines["MgII_fwhm"].to(u.km / u.s)
    for col in ("Hbeta_ew", "OIII_5007_ew"):
        out[col] = np.full(z.size, np.nan) * u.AA
    out["MgII_ew"] = lines["MgII_ew"].to(u.AA)
    out["r_feii"] = np.full(z.size, np.nan)
    hb = _hbeta_region(batch, z)
    if hb is not None:
        rows, fwhm, ew_hb, ew_o3, r_fe = hb
        out["Hbeta_fwhm"][rows] = fwhm * u.km / u.s
        out["Hbeta_ew"][rows] = ew_hb * u.AA
        out["OIII_5007_ew"][rows] = ew_o3 * u.AA
        out["r_feii"][rows] = r_fe
    return out


def _feii_window_integrals():
    """∫ of the (pivot-scaled) optical Fe II fit templates over 4434-4684 Å."""
    from ..physics.blackhole import _FEII_FWHM, _SETUP
    from .feii import feii_template

    lam = np.linspace(_FEII_WINDOW[0], _FEII_WINDOW[1], 2501)
    pivot = _SETUP["Hbeta"]["pivot"]
    return np.array([np.trapezoid(feii_template(lam, f, "optical") * pivot, lam)
                     for f in _FEII_FWHM])


def _hbeta_region(batch, z):
    """
    Hβ, [O III] and Fe II from the joint fit of the virial-mass pipeline.

    Power law, two broad Gaussians, narrow Hβ and [O III] (core + wing) and
    non-negative optical Fe II templates are fitted together
    (`spectralnn.physics.virial_black_hole_mass`, Shen et al. 2011, §3.3).
    Returns ``(rows, fwhm, ew_hbeta, ew_oiii, r_feii)`` for the spectra that
    cover the Hβ region, or None.
    """
    from ..physics.blackhole import _fit_line
    from ..physics.virial import VIRIAL_LINE_COVERAGE
    from ..preprocessing.redshift import to_rest_frame

    ok_z = np.isfinite(z) & (z >= 0)
    lo, hi = VIRIAL_LINE_COVERAGE["Hbeta"]
    good = batch.good
    wave = batch.wavelength_2d
    with np.errstate(invalid="ignore"):
        wmin = np.where(good, wave, np.inf).min(axis=1) / (1 + z)
        wmax = np.where(good, wave, -np.inf).max(axis=1) / (1 + z)
    rows = np.flatnonzero(ok_z & (wmin <= lo) & (wmax >= hi))
    if rows.size == 0:
        return None
    rest = to_rest_frame(batch[rows], z=z[rows])
    res = _fit_line(rest, np.arange(rows.size), "Hbeta", None, False)
    p = res["params"]
    model_cls = _hbeta_model_layout()
    amp_c, alpha = p[:, 0], p[:, 1]
    pivot = model_cls["pivot"]

    def cont(lam):
        return amp_c * (lam / pivot) ** alpha

    def gflux(amp, sigma, lam0):  # Gaussian in velocity about lam0
        return amp * sigma * np.sqrt(2 * np.pi) * lam0 / _C_KMS

    hb0, o3 = model_cls["hbeta"], model_cls["oiii"]
    f_hb = sum(gflux(p[:, ia], p[:, isig], hb0) for ia, isig in model_cls["broad"])
    j = model_cls["narrow_start"]
    f_o3 = gflux(p[:, j], p[:, j + 3], o3) + gflux(p[:, j + 4], p[:, j + 6], o3)
    f_fe = p[:, model_cls["feii_start"]:] @ _feii_window_integrals()
    with np.errstate(divide="ignore", invalid="ignore"):
        ew_hb = f_hb / cont(hb0)
        ew_o3 = f_o3 / cont(o3)
        ew_fe = f_fe / cont(0.5 * (_FEII_WINDOW[0] + _FEII_WINDOW[1]))
        r_fe = ew_fe / ew_hb
    fit_ok = res["ok"] & (amp_c > 0)
    nan = np.nan
    return (rows, np.where(fit_ok, res["fwhm"], nan), np.where(fit_ok, ew_hb, nan),
            np.where(fit_ok, ew_o3, nan), np.where(fit_ok, r_fe, nan))


def _hbeta_model_layout():
    """Parameter layout of the Hβ model of `spectralnn.physics.blackhole`."""
    from ..physics.blackhole import _LineModel

    m = _LineModel("Hbeta", np.ones((1, 2)) * 4861.0)
    return {
        "pivot": m.pivot,
        "hbeta": m.center,
        "oiii": m.terms[m.n_broad][0],
        "broad": [(ia, isig) for _, ia, _, _, isig in m.broad_terms],
        "narrow_start": m.narrow_start,
        "feii_start": m.feii_start,
    }


def match_by_z_snr(real, simulated, k=5, *, z_scale=0.05, log_snr_scale=0.15):
    """
    Match each real spectrum to its ``k`` nearest simulated ones in (z, S/N).

    The distance is ``hypot(Δz / z_scale, Δlog10(S/N) / log_snr_scale)``;
    simulated spectra are drawn without replacement, real spectra taking
    their turn in random-free order (by increasing z).

    Parameters
    ----------
    real, simulated : `~astropy.table.Table`
        Tables with ``z`` and ``snr`` columns.
    k : int, optional
        Simulated spectra per real one. Default 5.
    z_scale, log_snr_scale : float, optional
        Tolerances that make a unit distance. Defaults 0.05 and 0.15 dex.

    Returns
    -------
    index : ndarray of int, shape (len(real), k)
        Rows of ``simulated``; -1 where none was left.

    Examples
    --------
    >>> from astropy.table import Table
    >>> real = Table({"z": [0.1, 0.5], "snr": [10.0, 5.0]})
    >>> sim = Table({"z": [0.5, 0.11, 0.9, 0.1], "snr": [5.0, 10.0, 5.0, 20.0]})
    >>> match_by_z_snr(real, sim, k=1).ravel().tolist()
    [1, 0]
    """
    zr = np.asarray(real["z"], float)
    sr = np.log10(np.clip(np.asarray(real["snr"], float), 1e-3, None))
    zs = np.asarray(simulated["z"], float)
    ss = np.log10(np.clip(np.asarray(simulated["snr"], float), 1e-3, None))
    dist = np.hypot((zr[:, None] - zs[None, :]) / z_scale,
                    (sr[:, None] - ss[None, :]) / log_snr_scale)
    out = np.full((zr.size, k), -1, dtype=np.int64)
    used = np.zeros(zs.size, dtype=bool)
    for i in np.argsort(zr, kind="stable"):  # k picks per real spectrum
        d = np.where(used, np.inf, dist[i])
        pick = np.argsort(d, kind="stable")[:k]
        pick = pick[np.isfinite(d[pick])]
        out[i, : pick.size] = pick
        used[pick] = True
    return out


def _spread(x):
    q16, q84 = np.percentile(x, [16, 84])
    return q84 - q16


def compare_distributions(real, simulated, columns=FEATURES, *, median_tol=0.25,
                          spread_factor=1.5):
    """
    Compare real and simulated distributions, column by column.

    Parameters
    ----------
    real, simulated : `~astropy.table.Table`
        Feature tables (e.g. from `quasar_features`).
    columns : sequence of str, optional
        Columns to compare. Default `FEATURES`.
    median_tol : float, optional
        Largest accepted relative difference of the medians,
        ``|med_sim - med_real| / |med_real|``. Default 0.25.
    spread_factor : float, optional
        Largest accepted ratio of the 16–84 % ranges (either way). Default 1.5.

    Returns
    -------
    table : `~astropy.table.QTable`
        One row per column: ``quantity``, ``n_real``, ``n_sim``,
        ``median_real``, ``median_sim``, ``median_rel_diff``, ``spread_real``,
        ``spread_sim`` (16–84 % ranges), ``spread_ratio`` (sim / real),
        ``median_ok``, ``spread_ok``.

    Examples
    --------
    >>> import numpy as np
    >>> from astropy.table import Table
    >>> rng = np.random.default_rng(0)
    >>> real = Table({"snr": rng.normal(20, 5, 200)})
    >>> simulated = Table({"snr": rng.normal(21, 5, 500)})
    >>> row = compare_distributions(real, simulated, columns=["snr"])[0]
    >>> bool(row["median_ok"]), bool(row["spread_ok"])
    (True, True)
    """
    rows = []
    for col in columns:
        a = np.asarray(u.Quantity(real[col]).value, float)
        b = np.asarray(u.Quantity(simulated[col]).value, float)
        a, b = a[np.isfinite(a)], b[np.isfinite(b)]
        if a.size < 3 or b.size < 3:
            rows.append((col, a.size, b.size) + (np.nan,) * 6 + (False, False))
            continue
        ma, mb = np.median(a), np.median(b)
        rel = abs(mb - ma) / abs(ma) if ma != 0 else np.inf
        sa, sb = _spread(a), _spread(b)
        ratio = sb / sa if sa > 0 else np.inf
        rows.append((col, a.size, b.size, ma, mb, rel, sa, sb, ratio,
                     bool(rel <= median_tol),
                     bool(1 / spread_factor <= ratio <= spread_factor)))
    names = ("quantity", "n_real", "n_sim", "median_real", "median_sim",
             "median_rel_diff", "spread_real", "spread_sim", "spread_ratio",
             "median_ok", "spread_ok")
    return QTable(rows=rows, names=names)


def roc_auc(score, label):
    """
    Area under the ROC curve (Mann–Whitney U statistic, ties counted half).

    Parameters
    ----------
    score : array-like
        Classifier score per item (higher means more likely positive).
    label : array-like of bool or int
        True (1) for the positive items.

    Returns
    -------
    auc : float
        Probability that a random positive item scores above a random
        negative one: 0.5 for a useless score, 1 for a perfect one.

    Examples
    --------
    >>> roc_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])
    0.75
    """
    score = np.asarray(score, float)
    label = np.asarray(label, bool)
    n1, n0 = label.sum(), (~label).sum()
    if n1 == 0 or n0 == 0:
        return np.nan
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(score.size)
    s = score[order]
    # average ranks of ties
    _, first, counts = np.unique(s, return_index=True, return_counts=True)
    avg = first + (counts - 1) / 2.0 + 1.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[label].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def _fit_logistic(x, y, weight, l2=1.0, n_iter=50):
    """Weighted L2-regularised logistic regression by Newton's method."""
    xb = np.hstack([x, np.ones((x.shape[0], 1))])
    w = np.zeros(xb.shape[1])
    reg = np.full(xb.shape[1], l2)
    reg[-1] = 0.0
    for _ in range(n_iter):
        p = 1.0 / (1.0 + np.exp(-xb @ w))
        g = xb.T @ (weight * (p - y)) + reg * w
        h = (xb * (weight * p * (1 - p))[:, None]).T @ xb + np.diag(reg + 1e-9)
        step = np.linalg.solve(h, g)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w


def classifier_auc(x_real, x_sim, *, folds=5, groups=None, l2=1.0, seed=0):
    """
    Cross-validated ROC AUC of a logistic regression telling real from simulated.

    Features are standardised on each training fold; classes are weighted to
    equal total weight. 0.5 means the classifier cannot tell them apart.

    Parameters
    ----------
    x_real, x_sim : array-like, shape (n_real, d) and (n_sim, d)
        Features (rows with a non-finite value are dropped).
    folds : int, optional
        Number of folds. Default 5.
    groups : array-like, optional
        Group label of each real row (e.g. the object, so that two epochs of
        one quasar never sit on both sides of a split); simulated rows are
        assigned to folds at random.
    l2 : float, optional
        Ridge penalty on the standardised coefficients. Default 1.
    seed : int, optional
        Seed of the fold assignment.

    Returns
    -------
    auc : float
        AUC of the out-of-fold scores.
    coef : ndarray, shape (d,)
        Coefficients of a fit to all rows (standardised features): which
        features give the simulation away (positive: larger in real spectra).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(1)
    >>> auc, coef = classifier_auc(rng.normal(0, 1, (200, 2)),
    ...                            rng.normal(0, 1, (200, 2)))
    >>> bool(abs(auc - 0.5) < 0.1)
    True
    """
    rng = np.random.default_rng(seed)
    a, b = np.asarray(x_real, float), np.asarray(x_sim, float)
    ka, kb = np.all(np.isfinite(a), axis=1), np.all(np.isfinite(b), axis=1)
    if groups is None:
        ga = rng.integers(0, folds, a.shape[0])
    else:
        _, inv = np.unique(np.asarray(groups), return_inverse=True)
        ga = rng.permutation(inv.max() + 1)[inv] % folds
    gb = rng.integers(0, folds, b.shape[0])
    x = np.vstack([a[ka], b[kb]])
    y = np.concatenate([np.ones(ka.sum()), np.zeros(kb.sum())])
    fold = np.concatenate([ga[ka], gb[kb]])
    weight = np.where(y == 1, 0.5 / max(y.sum(), 1), 0.5 / max((1 - y).sum(), 1))
    weight = weight * y.size
    score = np.zeros(y.size)
    for f in range(folds):
        test = fold == f
        train = ~test
        if not test.any() or np.unique(y[train]).size < 2:
            continue
        mu, sd = x[train].mean(0), x[train].std(0) + 1e-12
        w = _fit_logistic((x[train] - mu) / sd, y[train], weight[train], l2)
        score[test] = ((x[test] - mu) / sd) @ w[:-1] + w[-1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        auc = roc_auc(score, y)
    mu, sd = x.mean(0), x.std(0) + 1e-12
    coef = _fit_logistic((x - mu) / sd, y, weight, l2)[:-1]
    return auc, coef
