"""
Photoionisation-model grids for training gas-property estimators.

The MAPPINGS 5 grids distributed with NebulaBayes [1]_ (``pip install
spectralnn[ism]``) are read from the installed NebulaBayes package, never
copied: ``NebulaBayes/grids/NB_HII_grid.fits.gz`` (H II regions: 1,296
models on a regular grid of 9 log U × 12 log P/k × 12 values of
12 + log(O/H)) and ``NB_NLR_grid.fits.gz`` (AGN narrow-line regions, 9,504
models). NebulaBayes itself is not imported (it does not import on current
SciPy/NumPy); its FITS tables are read with `astropy.table.Table`.
Line fluxes in the grids are intrinsic (no dust) and normalised to Hβ = 1.

`NebularGrid` holds one grid as a cube of log10 line ratios and interpolates
it linearly in (log U, log P/k, 12 + log O/H), as NebulaBayes does; it can
withhold whole grid points (`NebularGrid.holdout`) so that a model is tested
on grid models it never saw. `make_nebular_training_set` draws a dense
training set from such a grid and adds flux noise as it is observed (one
relative error per line, larger for fainter lines).

References
----------
.. [1] Thomas, A. D. et al. 2018, ApJ 856, 89 (NebulaBayes; MAPPINGS 5 H II
   grid); Sutherland, R. S. & Dopita, M. A. 2017, ApJS 229, 34 (MAPPINGS 5)

Examples
--------
>>> from spectralnn.datasets import NebularGrid
>>> grid = NebularGrid.from_nebulabayes("HII")
>>> grid.shape
(9, 12, 12)
>>> float(grid(-3.0, 6.2, 8.605)["Hbeta"][0])  # log10(Hβ/Hβ)
0.0
"""

import importlib.util
from pathlib import Path

import numpy as np
from astropy.table import QTable, Table

from ..errors import SpectralNNError

__all__ = [
    "ISMDependencyError",
    "GRID_LINES",
    "GRID_PARAMETERS",
    "nebular_grid_path",
    "read_nebular_grid",
    "NebularGrid",
    "make_nebular_training_set",
]


class ISMDependencyError(SpectralNNError, ImportError):
    """
    An optional dependency of the gas-property (ISM) tools is missing.

    Install them with ``pip install spectralnn[ism]`` (scikit-learn, PyNeb,
    NebulaBayes).

    Examples
    --------
    >>> from spectralnn.errors import SpectralNNError
    >>> issubclass(ISMDependencyError, SpectralNNError)
    True
    """


#: spectralnn line name -> column of the NebulaBayes grids (fluxes / Hβ).
#: ``'[OII]3726,29'`` is the unresolved [O II] doublet.
GRID_LINES = {
    "[OII]3726": "OII3726",
    "[OII]3729": "OII3729",
    "[OII]3726,29": "OII3726_29",
    "[NeIII]3869": "NeIII3869",
    "Hdelta": "Hdelta",
    "Hgamma": "Hgamma",
    "[OIII]4363": "OIII4363",
    "HeII4686": "HeII4686",
    "Hbeta": "Hbeta",
    "[OIII]5007": "OIII5007",
    "HeI5876": "HeI5876",
    "[OI]6300": "OI6300",
    "Halpha": "Halpha",
    "[NII]6583": "NII6583",
    "[SII]6716": "SII6716",
    "[SII]6731": "SII6731",
}

#: output name -> column of the grids, for the three physical parameters
GRID_PARAMETERS = {
    "log_U": "log U",
    "log_P_k": "log P/k",
    "log_OH": "12 + log O/H",
}

#: ratios are floored here before the log (some lines are absent in some models)
_FLOOR = 1e-6

_NLR_FIXED = {"log E_peak": -1.25, "p_NT": 0.15}


def nebular_grid_path(grid: str = "HII") -> Path:
    """
    Path of a NebulaBayes grid file in the installed NebulaBayes package.

    Parameters
    ----------
    grid : {'HII', 'NLR'}, optional
        H II-region grid or AGN narrow-line-region grid. Default 'HII'.

    Returns
    -------
    path : `~pathlib.Path`
        ``.../NebulaBayes/grids/NB_<grid>_grid.fits.gz``.

    Raises
    ------
    ISMDependencyError
        If NebulaBayes is not installed (the package is located with
        `importlib.util.find_spec`; it is not imported).
    ValueError
        If ``grid`` is not 'HII' or 'NLR'.

    Examples
    --------
    >>> nebular_grid_path("HII").name
    'NB_HII_grid.fits.gz'
    """
    if grid not in ("HII", "NLR"):
        raise ValueError(f"grid must be 'HII' or 'NLR', not {grid!r}")
    spec = importlib.util.find_spec("NebulaBayes")
    if spec is None or spec.origin is None:
        raise ISMDependencyError(
            "the photoionisation grids come from the NebulaBayes package, which is "
            "not installed: pip install spectralnn[ism]"
        )
    path = Path(spec.origin).parent / "grids" / f"NB_{grid}_grid.fits.gz"
    if not path.is_file():
        raise ISMDependencyError(
            f"NebulaBayes is installed but its grid {path} is missing; reinstall it "
            "with pip install --force-reinstall spectralnn[ism]"
        )
    return path


def read_nebular_grid(grid: str = "HII", lines=None) -> QTable:
    """
    Read a NebulaBayes photoionisation grid as a table of line ratios.

    Parameters
    ----------
    grid : {'HII', 'NLR'}, optional
        Which grid. Default 'HII'. For 'NLR' only the models with
        log E_peak = -1.25 and p_NT = 0.15 are kept, so that the three
        parameters below span a regular grid.
    lines : list of str, optional
        spectralnn line names (keys of `GRID_LINES`). Default: all of them.

    Returns
    -------
    table : `~astropy.table.QTable`
        Columns ``log_U``, ``log_P_k`` (log10 of P/k in K cm⁻³),
        ``log_OH`` (12 + log O/H) and one column per line: its flux relative
        to Hβ (dimensionless, intrinsic; 0 where the grid has no value).

    Examples
    --------
    >>> t = read_nebular_grid("HII", ["Hbeta", "[NII]6583"])
    >>> len(t), t.colnames
    (1296, ['log_U', 'log_P_k', 'log_OH', 'Hbeta', '[NII]6583'])
    """
    lines = list(GRID_LINES) if lines is None else list(lines)
    unknown = [name for name in lines if name not in GRID_LINES]
    if unknown:
        raise KeyError(f"lines {unknown} are not in the grids; known: {list(GRID_LINES)}")
    raw = Table.read(nebular_grid_path(grid), hdu=1)
    if grid == "NLR":
        keep = np.ones(len(raw), bool)
        for col, value in _NLR_FIXED.items():
            keep &= np.isclose(raw[col], value)
        raw = raw[keep]
    table = QTable()
    for name, col in GRID_PARAMETERS.items():
        table[name] = np.asarray(raw[col], dtype=float)
    for name in lines:
        col = raw[GRID_LINES[name]]
        values = np.ma.filled(np.ma.asarray(col, dtype=float), np.nan)
        # masked or NaN: the line is absent from that model (a few [O III] at
        # low U and high O/H); such fluxes are zero
        table[name] = np.where(np.isfinite(values), values, 0.0)
    table.meta["grid"] = grid
    table.meta["source"] = str(nebular_grid_path(grid))
    table.meta["reference"] = "Thomas et al. 2018, ApJ 856, 89 (NebulaBayes, MAPPINGS 5)"
    return table


class NebularGrid:
    """
    A regular grid of log10 line ratios (to Hβ), interpolated linearly.

    Parameters
    ----------
    axes : tuple of three 1-D arrays
        The grid values of log U, log P/k and 12 + log O/H (increasing).
    values : dict
        Line name -> array of shape ``(len(axes[0]), len(axes[1]),
        len(axes[2]))`` of log10(F / F(Hβ)).
    held_out : array of int, shape (n, 3), optional
        Indices of grid points whose models were withheld (see `holdout`).

    Examples
    --------
    >>> grid = NebularGrid.from_nebulabayes("HII", lines=["Hbeta", "[NII]6583"])
    >>> train, test = grid.holdout(0.1, seed=0)
    >>> len(test) > 0, train.held_out.shape[1]
    (True, 3)
    """

    def __init__(self, axes, values, held_out=None):
        self.axes = tuple(np.asarray(a, dtype=float) for a in axes)
        self.shape = tuple(len(a) for a in self.axes)
        self.values = {k: np.asarray(v, dtype=float) for k, v in values.items()}
        for name, cube in self.values.items():
            if cube.shape != self.shape:
                raise ValueError(f"line {name!r} has shape {cube.shape}, grid is {self.shape}")
        self.held_out = (np.zeros((0, 3), dtype=int) if held_out is None
                         else np.asarray(held_out, dtype=int).reshape(-1, 3))

    @property
    def lines(self):
        """Names of the lines the grid holds."""
        return list(self.values)

    @property
    def bounds(self):
        """((min, max) of log U, of log P/k, of 12 + log O/H)."""
        return tuple((float(a[0]), float(a[-1])) for a in self.axes)

    @classmethod
    def from_nebulabayes(cls, grid: str = "HII", lines=None):
        """
        Build the interpolator from an installed NebulaBayes grid.

        Parameters
        ----------
        grid : {'HII', 'NLR'}, optional
            Default 'HII'.
        lines : list of str, optional
            Line names (default: all of `GRID_LINES`).

        Returns
        -------
        grid : `NebularGrid`
        """
        table = read_nebular_grid(grid, lines)
        names = list(GRID_PARAMETERS)
        axes = [np.unique(np.round(np.asarray(table[n]), 4)) for n in names]
        index = [np.searchsorted(axis, np.round(np.asarray(table[n]), 4))
                 for axis, n in zip(axes, names, strict=True)]
        shape = tuple(len(a) for a in axes)
        filled = np.zeros(shape, bool)
        filled[tuple(index)] = True
        if not filled.all():
            raise ValueError(f"the {grid} grid is not a complete regular grid")
        values = {}
        for name in table.colnames[3:]:
            cube = np.empty(shape)
            cube[tuple(index)] = np.log10(np.maximum(np.asarray(table[name]), _FLOOR))
            values[name] = cube
        return cls(axes, values)

    def nodes(self, index=None):
        """
        Parameters and log ratios of grid points (not interpolated).

        Parameters
        ----------
        index : array of int, shape (n, 3), optional
            Grid indices; default all points.

        Returns
        -------
        params : ndarray, shape (n, 3)
            log U, log P/k, 12 + log O/H.
        log_ratios : dict
            Line name -> array (n,).
        """
        if index is None:
            index = np.stack(np.meshgrid(*[np.arange(s) for s in self.shape],
                                         indexing="ij"), -1).reshape(-1, 3)
        index = np.asarray(index, dtype=int).reshape(-1, 3)
        params = np.stack([self.axes[k][index[:, k]] for k in range(3)], axis=1)
        ratios = {name: cube[tuple(index.T)] for name, cube in self.values.items()}
        return params, ratios

    def holdout(self, fraction: float = 0.1, *, seed=0, interior: bool = True):
        """
        Withhold whole grid points: a training grid without them, and them.

        The withheld models are removed and their values replaced by a linear
        interpolation of their grid neighbours (along each axis on which both
        neighbours are kept; averaged over those axes; repeated for points
        whose neighbours were withheld too), so interpolating the returned
        grid never uses a withheld model.

        Parameters
        ----------
        fraction : float, optional
            Fraction of the eligible points to withhold. Default 0.1.
        seed : int or `numpy.random.Generator`, optional
            Random seed of the choice.
        interior : bool, optional
            Choose only points off the grid's faces (a model on a face could
            only be reached by extrapolation). Default True.

        Returns
        -------
        train : `NebularGrid`
            The grid with the withheld points filled from their neighbours
            (``train.held_out`` lists them).
        test_index : ndarray of int, shape (n, 3)
            Grid indices of the withheld points (use `nodes` on the original
            grid for their true values).
        """
        rng = np.random.default_rng(seed)
        grid_index = np.stack(np.meshgrid(*[np.arange(s) for s in self.shape],
                                          indexing="ij"), -1).reshape(-1, 3)
        if interior:
            inner = np.all((grid_index > 0) & (grid_index < np.array(self.shape) - 1), axis=1)
            grid_index = grid_index[inner]
        n = max(1, round(fraction * len(grid_index)))
        chosen = grid_index[np.sort(rng.choice(len(grid_index), n, replace=False))]
        return self.without(chosen), chosen

    def without(self, index):
        """
        The grid with some points' models replaced by their neighbours'.

        Each withheld point gets the mean, over the axes on which both of its
        neighbours are kept, of the linear interpolation between them; points
        with no such axis are filled in later passes from points filled
        before them (and, if isolated, from the nearest kept point).

        Parameters
        ----------
        index : array of int, shape (n, 3)
            Grid indices of the points to withhold.

        Returns
        -------
        grid : `NebularGrid`
            A new grid; ``grid.held_out`` is ``index``.
        """
        index = np.asarray(index, dtype=int).reshape(-1, 3)
        known = np.ones(self.shape, bool)
        known[tuple(index.T)] = False
        values = {name: cube.copy() for name, cube in self.values.items()}
        todo = [tuple(i) for i in index]
        while todo:
            updates, still = [], []
            for idx in todo:
                estimates = []
                for k in range(3):
                    lo, hi = list(idx), list(idx)
                    lo[k] -= 1
                    hi[k] += 1
                    if lo[k] < 0 or hi[k] >= self.shape[k]:
                        continue
                    lo, hi = tuple(lo), tuple(hi)
                    if known[lo] and known[hi]:
                        a = self.axes[k]
                        w = (a[idx[k]] - a[lo[k]]) / (a[hi[k]] - a[lo[k]])
                        estimates.append((lo, hi, w))
                (updates if estimates else still).append((idx, estimates))
            for idx, estimates in updates:
                for cube in values.values():
                    cube[idx] = np.mean([(1 - w) * cube[lo] + w * cube[hi]
                                         for lo, hi, w in estimates])
                known[idx] = True
            if not updates:  # an isolated block: copy the nearest kept point
                idx = still.pop(0)[0]
                dist = np.abs(np.indices(self.shape)
                              - np.array(idx)[:, None, None, None]).sum(0)
                nearest = np.unravel_index(np.argmin(np.where(known, dist, np.inf)),
                                           self.shape)
                for cube in values.values():
                    cube[idx] = cube[nearest]
                known[idx] = True
            todo = [idx for idx, _ in still]
        return NebularGrid(self.axes, values, held_out=index)

    def __call__(self, log_u, log_p_k, log_oh):
        """
        Interpolated log10 line ratios at the given parameters.

        Parameters
        ----------
        log_u, log_p_k, log_oh : float or array-like
            Inside `bounds` (outside, the edge value is used).

        Returns
        -------
        log_ratios : dict
            Line name -> array of log10(F / F(Hβ)).
        """
        pts = np.broadcast_arrays(*(np.atleast_1d(np.asarray(v, float))
                                    for v in (log_u, log_p_k, log_oh)))
        lower, weight = [], []
        for axis, x in zip(self.axes, pts, strict=True):
            x = np.clip(x, axis[0], axis[-1])
            i = np.clip(np.searchsorted(axis, x, side="right") - 1, 0, len(axis) - 2)
            lower.append(i)
            weight.append((x - axis[i]) / (axis[i + 1] - axis[i]))
        out = {}
        for name, cube in self.values.items():
            acc = 0.0
            for corner in range(8):
                bits = [(corner >> k) & 1 for k in range(3)]
                w = np.ones_like(weight[0])
                for k, b in enumerate(bits):
                    w = w * (weight[k] if b else 1 - weight[k])
                acc = acc + w * cube[lower[0] + bits[0], lower[1] + bits[1],
                                     lower[2] + bits[2]]
            out[name] = acc
        return out

    def sample(self, n: int, *, seed=None):
        """
        Parameters drawn uniformly in the grid's box and their line ratios.

        Parameters
        ----------
        n : int
            Number of models.
        seed : int or `numpy.random.Generator`, optional

        Returns
        -------
        params : ndarray, shape (n, 3)
            log U, log P/k, 12 + log O/H.
        log_ratios : dict
            Line name -> array (n,).
        """
        rng = np.random.default_rng(seed)
        params = np.stack([rng.uniform(lo, hi, n) for lo, hi in self.bounds], axis=1)
        return params, self(*params.T)


def make_nebular_training_set(grid, n: int, lines, *, noise=(0.02, 0.3), seed=None):
    """
    A dense, noisy training set of line fluxes drawn from a grid.

    Parameters are drawn uniformly in the grid's box and the line ratios
    interpolated (`NebularGrid.sample`). Noise is added as observed: each
    model gets a relative error ``r0`` on Hβ drawn log-uniformly in
    ``noise``, each line the error ``r0 * (F / F_Hβ) ** -beta`` (fainter
    lines are noisier; ``beta`` uniform in 0–0.5 per model; clipped to
    0.005–2); its flux is perturbed by a Gaussian of that width, and the
    error reported for it is that relative error times the perturbed flux
    (clipped to 0.5–2 times the true flux), as an observer would quote it.

    Parameters
    ----------
    grid : `NebularGrid`
        The grid (possibly with held-out points).
    n : int
        Number of models.
    lines : list of str
        Lines to return (must be in the grid; include ``'Hbeta'``).
    noise : tuple of float or float, optional
        Range of the relative error of Hβ (or one value: every line gets that
        relative error, ``beta = 0``). Default (0.02, 0.3).
    seed : int or `numpy.random.Generator`, optional

    Returns
    -------
    params : ndarray, shape (n, 3)
        True log U, log P/k, 12 + log O/H.
    flux : ndarray, shape (n, len(lines))
        Observed fluxes relative to the true Hβ (may be negative).
    error : ndarray, shape (n, len(lines))
        Their reported 1-sigma errors.

    Examples
    --------
    >>> grid = NebularGrid.from_nebulabayes("HII", lines=["Hbeta", "Halpha"])
    >>> p, f, e = make_nebular_training_set(grid, 1000, ["Hbeta", "Halpha"],
    ...                                     noise=0.1, seed=1)
    >>> f.shape, bool(abs((e / f).mean() - 0.1) < 0.01)
    ((1000, 2), True)
    """
    rng = np.random.default_rng(seed)
    params, ratios = grid.sample(n, seed=rng)
    true = np.stack([10.0 ** ratios[name] for name in lines], axis=1)
    if np.ndim(noise) == 0:
        rel = np.full(true.shape, float(noise))
    else:
        lo, hi = noise
        r0 = 10.0 ** rng.uniform(np.log10(lo), np.log10(hi), n)
        beta = rng.uniform(0.0, 0.5, n)
        rel = np.clip(r0[:, None] * true ** -beta[:, None], 0.005, 2.0)
    flux = true + rel * true * rng.standard_normal(true.shape)
    # the reported error is what an observer would quote: the relative error
    # times the *measured* flux (kept within 0.5-2 times the true flux, for
    # lines measured near zero); an error computed from the true flux would
    # tell a model the noise realisation (error / flux = rel * true / flux)
    error = rel * np.clip(flux, 0.5 * true, 2.0 * true)
    return params, flux, error
