"""
Rest-frame PCA template bases for redshift fitting.

`fit_redshift` refines a redshift by fitting a few rest-frame eigen-spectra
(plus a low-order polynomial) to the observed spectrum at a grid of trial
redshifts, as redrock does for DESI (Bailey et al., in prep.; the method of
the SDSS pipeline, Bolton et al. 2012, AJ 144, 144). This module builds those
bases from the noiseless output of `spectralnn.simulate` and reads the
shipped set, ``spectralnn/data/templates/redshift-templates.npz``.

A `RedshiftTemplates` holds one or more *bases* per class (``'QSO'``,
``'GALAXY'``, ``'STAR'``): each basis is K eigen-spectra sampled on a
rest-frame log10-λ grid. Quasars and galaxies have one basis each; stars
have one per spectral group (O, B, A, F, G, K, M, L/T, WD, Carbon, CV) since
no handful of components spans O stars to T dwarfs.

How the bases are made (`build_redshift_templates`):

* **Quasars**: `~spectralnn.simulate.simulate_quasars` with ``forest=False``
  (the mean Lyα/Lyβ transmission, which is divided back out, so no single
  sight-line's forest is baked into the basis), no BALs and no DLAs; quasars
  with a Lyman-limit system are dropped. Each noiseless model is shifted to
  its rest frame and resampled on the common rest grid. The fit multiplies
  the basis by the mean forest transmission at each trial redshift.
* **Galaxies** at z = 0 and **stars** at zero radial velocity are simulated
  directly on the rest grid.
* Every model is convolved with a Gaussian line-spread function (σ = 65 km/s
  by default, the R ≈ 2000 of SDSS/BOSS), normalised to unit mean, and the
  basis is the first K right-singular vectors of the stack (an uncentred
  PCA: the first vector is close to the mean spectrum).

Examples
--------
>>> from spectralnn.preprocessing import load_redshift_templates
>>> templates = load_redshift_templates()
>>> templates.classes
('GALAXY', 'QSO', 'STAR')
>>> [b.n_components for b in templates.bases("QSO")]
[4]
"""

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.utils.data import get_pkg_data_path

from ..errors import ModelFileError
from ..logger import log
from ..models.registry import file_sha256

__all__ = [
    "REDSHIFT_CLASSES",
    "TemplateBasis",
    "RedshiftTemplates",
    "build_redshift_templates",
    "load_redshift_templates",
]

#: Classes `fit_redshift` knows (the SDSS/DESI ``SPECTYPE`` values).
REDSHIFT_CLASSES = ("GALAXY", "QSO", "STAR")

_C_KMS = 299792.458
_FORMAT_VERSION = 1
_DEFAULT_NAME = "redshift-templates"
_TEMPLATE_DIR = ("data", "templates")

# rest-frame range (Å) of each class's basis: quasars to z = 5.5 at 3600 Å and
# down to z = 0 at 10400 Å (BOSS red end); galaxies to z ~ 1 at 3600 Å; stars
# over the survey range with |v| up to a few thousand km/s
_REST_RANGE = {"QSO": (540.0, 11000.0), "GALAXY": (1700.0, 11000.0),
               "STAR": (3300.0, 10800.0)}
_QSO_Z_RANGE = (0.1, 5.0)


@dataclass(frozen=True)
class TemplateBasis:
    """
    K rest-frame eigen-spectra of one class (or one stellar group).

    Parameters
    ----------
    name : str
        Basis name, e.g. ``'QSO'`` or ``'STAR:M'``.
    spectype : str
        Class (one of `REDSHIFT_CLASSES`).
    log_wave0 : float
        log10 of the first rest wavelength (Å).
    dloglam : float
        Step of the rest grid in log10 λ.
    components : `~numpy.ndarray`
        Shape ``(L, K)``: the K eigen-spectra at the L grid points (stored
        pixel-major so that gathering rows is contiguous).

    Examples
    --------
    >>> import numpy as np
    >>> b = TemplateBasis("TOY", "GALAXY", 3.5, 1e-4, np.ones((10, 2)))
    >>> b.n_components, round(float(b.wavelength[-1]), 2)
    (2, 3168.84)
    """

    name: str
    spectype: str
    log_wave0: float
    dloglam: float
    components: np.ndarray

    @property
    def n_components(self):
        """Number of eigen-spectra K."""
        return self.components.shape[1]

    @property
    def wavelength(self):
        """Rest wavelengths of the grid in Å."""
        return 10.0 ** (self.log_wave0 + self.dloglam * np.arange(self.components.shape[0]))

    @property
    def wave_range(self):
        """First and last rest wavelength (Å)."""
        w = self.wavelength
        return float(w[0]), float(w[-1])

    def evaluate(self, log_rest):
        """
        Linearly interpolate the eigen-spectra at rest log10 wavelengths.

        Parameters
        ----------
        log_rest : `~numpy.ndarray`
            log10 of rest wavelengths in Å, any shape ``S``.

        Returns
        -------
        values : `~numpy.ndarray`
            Shape ``S + (K,)``; zero outside the grid.

        Examples
        --------
        >>> import numpy as np
        >>> b = TemplateBasis("TOY", "GALAXY", 0.0, 1.0, np.arange(6.0).reshape(3, 2))
        >>> b.evaluate(np.array([0.5, 5.0]))
        array([[1., 2.],
               [0., 0.]])
        """
        x = (np.asarray(log_rest, dtype=np.float64) - self.log_wave0) / self.dloglam
        n = self.components.shape[0]
        inside = (x >= 0) & (x <= n - 1)
        x = np.clip(x, 0, n - 1 - 1e-9)
        i0 = x.astype(np.int64)
        frac = (x - i0)[..., None]
        comp = self.components
        out = comp[i0] * (1.0 - frac) + comp[i0 + 1] * frac
        out[~inside] = 0.0
        return out


class RedshiftTemplates:
    """
    Template bases for all classes, with their provenance.

    Parameters
    ----------
    bases : sequence of `TemplateBasis`
        The bases.
    provenance : dict, optional
        How they were made (seed, numbers of objects, version...).

    Examples
    --------
    >>> import numpy as np
    >>> t = RedshiftTemplates([TemplateBasis("GALAXY", "GALAXY", 3.3, 1e-4,
    ...                                      np.ones((50, 3)))])
    >>> t.classes, len(t.bases("GALAXY"))
    (('GALAXY',), 1)
    """

    def __init__(self, bases, provenance=None):
        self._bases = tuple(bases)
        for b in self._bases:
            if b.spectype not in REDSHIFT_CLASSES:
                raise ValueError(f"basis {b.name!r} has unknown class {b.spectype!r}; "
                                 f"known: {REDSHIFT_CLASSES}")
        self.provenance = dict(provenance or {})
        self.sha256 = self.provenance.get("sha256", "")

    @property
    def classes(self):
        """The classes that have at least one basis (sorted)."""
        return tuple(sorted({b.spectype for b in self._bases}))

    def bases(self, spectype):
        """
        The bases of one class.

        Parameters
        ----------
        spectype : str
            One of `classes` (case-insensitive).

        Returns
        -------
        bases : list of `TemplateBasis`

        Raises
        ------
        ValueError
            If the class has no basis.
        """
        key = str(spectype).upper()
        found = [b for b in self._bases if b.spectype == key]
        if not found:
            raise ValueError(f"no redshift templates for class {spectype!r}; "
                             f"available: {self.classes}")
        return found

    def __iter__(self):
        return iter(self._bases)

    def __len__(self):
        return len(self._bases)

    def __repr__(self):
        parts = ", ".join(f"{b.name}({b.n_components})" for b in self._bases)
        return f"<RedshiftTemplates: {parts}>"

    # ------------------------------------------------------------------ files
    def write(self, path, *, overwrite=False):
        """
        Save as ``<path>.npz`` (arrays only) and ``<path>.json`` (provenance).

        The JSON records the sha256 of the ``.npz``, which `read` checks.

        Parameters
        ----------
        path : str or `~pathlib.Path`
            Path with or without the ``.npz`` suffix.
        overwrite : bool, optional
            Replace existing files. Default False.

        Returns
        -------
        npz_path : `~pathlib.Path`
            The written ``.npz`` file.

        Examples
        --------
        >>> import tempfile, numpy as np
        >>> t = RedshiftTemplates([TemplateBasis("GALAXY", "GALAXY", 3.3, 1e-4,
        ...                                      np.ones((50, 3)))])
        >>> with tempfile.TemporaryDirectory() as d:
        ...     p = t.write(os.path.join(d, "toy"))
        ...     RedshiftTemplates.read(p).bases("GALAXY")[0].n_components
        3
        """
        npz, meta = _paths(path)
        if not overwrite and (npz.exists() or meta.exists()):
            raise FileExistsError(f"{npz} exists; use overwrite=True")
        arrays = {
            "names": np.array([b.name for b in self._bases]),
            "spectypes": np.array([b.spectype for b in self._bases]),
            "log_wave0": np.array([b.log_wave0 for b in self._bases]),
            "dloglam": np.array([b.dloglam for b in self._bases]),
        }
        for i, b in enumerate(self._bases):
            arrays[f"basis_{i}"] = np.asarray(b.components, dtype=np.float32)
        np.savez_compressed(npz, **arrays)
        provenance = dict(self.provenance)
        provenance.update(format_version=_FORMAT_VERSION, sha256=file_sha256(npz),
                          bases={b.name: b.n_components for b in self._bases})
        meta.write_text(json.dumps(provenance, indent=2, sort_keys=True) + "\n")
        self.provenance = provenance
        self.sha256 = provenance["sha256"]
        return npz

    @classmethod
    def read(cls, path):
        """
        Read templates written by `write`, checking the sha256.

        Parameters
        ----------
        path : str or `~pathlib.Path`
            The ``.npz`` file (its ``.json`` must sit beside it).

        Returns
        -------
        templates : `RedshiftTemplates`

        Raises
        ------
        spectralnn.errors.ModelFileError
            If a file is missing, the hash does not match or the content is
            malformed.
        """
        npz, meta = _paths(path)
        from ..models.registry import read_json

        if not npz.exists():
            raise ModelFileError(f"redshift template file {npz} does not exist")
        provenance = read_json(meta, "redshift template metadata")
        digest = file_sha256(npz)
        if provenance.get("sha256") != digest:
            raise ModelFileError(
                f"sha256 of {npz} is {digest} but {meta.name} says "
                f"{provenance.get('sha256')}: the file is corrupt or was replaced")
        try:
            with np.load(npz, allow_pickle=False) as data:
                names = [str(x) for x in data["names"]]
                types = [str(x) for x in data["spectypes"]]
                bases = [
                    TemplateBasis(names[i], types[i], float(data["log_wave0"][i]),
                                  float(data["dloglam"][i]),
                                  np.asarray(data[f"basis_{i}"], dtype=np.float64))
                    for i in range(len(names))
                ]
        except (KeyError, ValueError, OSError) as exc:
            raise ModelFileError(f"{npz} is not a redshift-template file: {exc}") from exc
        log.debug("read redshift templates %s (sha256 %s)", npz, digest[:12])
        return cls(bases, provenance)


def _paths(path):
    path = Path(path)
    if path.suffix in (".npz", ".json"):
        path = path.with_suffix("")
    return path.with_name(path.name + ".npz"), path.with_name(path.name + ".json")


_CACHE = {}


def load_redshift_templates(path=None):
    """
    The shipped redshift templates, or templates from a file.

    Parameters
    ----------
    path : str or `~pathlib.Path`, optional
        A ``.npz`` written by `RedshiftTemplates.write`. Default: the shipped
        ``redshift-templates`` set (read once, then cached).

    Returns
    -------
    templates : `RedshiftTemplates`

    Raises
    ------
    spectralnn.errors.ModelFileError
        If the file is missing or its sha256 does not match its ``.json``.

    Examples
    --------
    >>> t = load_redshift_templates()
    >>> t.provenance["simulator"]
    'spectralnn.simulate'
    """
    if path is not None:
        return RedshiftTemplates.read(path)
    if "default" not in _CACHE:
        where = get_pkg_data_path(*_TEMPLATE_DIR, _DEFAULT_NAME + ".npz",
                                  package="spectralnn")
        _CACHE["default"] = RedshiftTemplates.read(where)
    return _CACHE["default"]


# ---------------------------------------------------------------- building
def _rest_grid(lo, hi, dloglam):
    start = np.ceil(np.log10(lo) / dloglam - 1e-6)
    stop = np.floor(np.log10(hi) / dloglam + 1e-6)
    return start * dloglam, int(stop - start) + 1


def _survey(lo, hi, dloglam, name):
    from ..simulate import SURVEYS

    return replace(SURVEYS["SDSS"], name=name, wave_min=float(lo), wave_max=float(hi),
                   step=float(dloglam))


def _pca(models, n_components, lsf_pixels):
    """Uncentred PCA of LSF-convolved, mean-normalised models: (L, K)."""
    from scipy.ndimage import gaussian_filter1d

    if lsf_pixels > 0:
        models = gaussian_filter1d(models, lsf_pixels, axis=1, mode="nearest")
    models = models / np.mean(models, axis=1, keepdims=True)
    _, sv, vt = np.linalg.svd(models, full_matrices=False)
    k = min(n_components, vt.shape[0])
    comp = vt[:k].T
    # sign convention: the first component is positive on average
    comp *= np.where(comp.sum(axis=0) < 0, -1.0, 1.0)
    explained = float(np.sum(sv[:k] ** 2) / np.sum(sv**2))
    return comp, explained


def _quasar_models(n, seed, log0, npix, dloglam, chunk):
    from ..simulate import object_seeds, simulate_quasars
    from ..simulate.forest import mean_forest_transmission

    rest_lo, rest_hi = 10**log0, 10 ** (log0 + dloglam * (npix - 1))
    survey = _survey(rest_lo * (1 + _QSO_Z_RANGE[0]) * 0.999,
                     rest_hi * (1 + _QSO_Z_RANGE[1]) * 1.001, dloglam, "REST-QSO")
    out = []
    start = 0
    while sum(len(o) for o in out) < n:
        seeds = object_seeds(seed, start, start + chunk, "qso")
        start += chunk
        b = simulate_quasars(chunk, seed=seeds, survey=survey, z_range=_QSO_Z_RANGE,
                             bal_fraction=0.0, dla_rate=0.0, forest=False,
                             noiseless=True)
        z = np.asarray(b.meta["z"], dtype=np.float64)
        keep = (np.asarray(b.meta["n_lls"]) == 0) & (np.asarray(b.meta["n_dla"]) == 0)
        flux = b.flux[keep] / mean_forest_transmission(b.wavelength, z[keep])
        # log grids of equal step: the rest frame is a fractional pixel shift
        x = (np.log10(b.wavelength)[0] - np.log10(1 + z[keep]) - log0) / dloglam
        pix = np.arange(npix)[None, :] - x[:, None]
        i0 = np.floor(pix).astype(np.int64)
        frac = pix - i0
        rows = np.arange(flux.shape[0])[:, None]
        out.append(flux[rows, i0] * (1 - frac) + flux[rows, i0 + 1] * frac)
    return np.concatenate(out)[:n], start


def build_redshift_templates(
    *,
    n_quasars: int = 1500,
    n_galaxies: int = 1500,
    n_stars: int = 2200,
    seed: int = 20240601,
    n_components=None,
    dloglam: float = 5e-5,
    lsf_sigma=65.0 * u.km / u.s,
    chunk_size: int = 250,
):
    """
    Build rest-frame PCA bases from noiseless simulated spectra.

    Parameters
    ----------
    n_quasars, n_galaxies, n_stars : int, optional
        Objects per class (stars are split over the spectral groups). Defaults
        1500, 1500, 2200 (the shipped set).
    seed : int, optional
        Simulation seed. Use a different one for anything the templates are
        evaluated on. Default 20240601 (the shipped set).
    n_components : dict, optional
        Eigen-spectra per class. Default ``{'QSO': 4, 'GALAXY': 6, 'STAR': 3}``
        (the stellar number applies to each group). More quasar components
        fit each spectrum better but let the fit trade a line shift for a
        change of line shape: on a simulated hold-out 4 gave a smaller
        redshift scatter than 6.
    dloglam : float, optional
        Step of the rest grid in log10 λ. Default 5e-5 (half an SDSS pixel).
    lsf_sigma : `~astropy.units.Quantity`, optional
        Gaussian line-spread function the models are convolved with.
        Default 65 km/s (R ≈ 2000).
    chunk_size : int, optional
        Objects simulated at a time (bounds memory). Default 250.

    Returns
    -------
    templates : `RedshiftTemplates`
        With the provenance (seed, numbers, version, explained variance).

    Examples
    --------
    >>> t = build_redshift_templates(n_quasars=0, n_galaxies=20, n_stars=0,
    ...                              n_components={"GALAXY": 3})
    >>> t.classes, t.bases("GALAXY")[0].n_components
    (('GALAXY',), 3)
    """
    from .. import __version__
    from ..simulate import STAR_GROUPS, object_seeds, simulate_galaxies, simulate_stars

    ncomp = {"QSO": 4, "GALAXY": 6, "STAR": 3}
    ncomp.update(n_components or {})
    lsf = u.Quantity(lsf_sigma, u.km / u.s).value
    lsf_pixels = lsf / (_C_KMS * np.log(10.0) * dloglam)
    bases, explained, used = [], {}, {}

    if n_quasars > 0:
        log0, npix = _rest_grid(*_REST_RANGE["QSO"], dloglam)
        models, n_sim = _quasar_models(n_quasars, seed, log0, npix, dloglam, chunk_size)
        comp, explained["QSO"] = _pca(models, ncomp["QSO"], lsf_pixels)
        bases.append(TemplateBasis("QSO", "QSO", log0, dloglam, comp))
        used["QSO"] = {"n_models": int(models.shape[0]), "n_simulated": int(n_sim)}

    if n_galaxies > 0:
        log0, npix = _rest_grid(*_REST_RANGE["GALAXY"], dloglam)
        survey = _survey(10**log0, 10 ** (log0 + dloglam * (npix - 1)), dloglam,
                         "REST-GALAXY")
        parts = []
        for start in range(0, n_galaxies, chunk_size):
            stop = min(n_galaxies, start + chunk_size)
            parts.append(simulate_galaxies(stop - start, survey=survey, z_range=(0.0, 0.0),
                                           seed=object_seeds(seed, start, stop, "galaxy"),
                                           noiseless=True).flux)
        comp, explained["GALAXY"] = _pca(np.concatenate(parts), ncomp["GALAXY"], lsf_pixels)
        bases.append(TemplateBasis("GALAXY", "GALAXY", log0, dloglam, comp))
        used["GALAXY"] = {"n_models": int(n_galaxies)}

    if n_stars > 0:
        log0, npix = _rest_grid(*_REST_RANGE["STAR"], dloglam)
        survey = _survey(10**log0, 10 ** (log0 + dloglam * (npix - 1)), dloglam,
                         "REST-STAR")
        flux, groups = [], []
        for start in range(0, n_stars, chunk_size):
            stop = min(n_stars, start + chunk_size)
            b = simulate_stars(stop - start, survey=survey, rv_sigma=0.0 * u.km / u.s,
                               seed=object_seeds(seed, start, stop, "star"), noiseless=True)
            flux.append(b.flux)
            groups.append(np.asarray(b.meta["spectral_group"]))
        flux, groups = np.concatenate(flux), np.concatenate(groups)
        used["STAR"] = {}
        for group in STAR_GROUPS:
            rows = groups == group
            if not rows.any():
                continue
            name = f"STAR:{group}"
            comp, explained[name] = _pca(flux[rows], ncomp["STAR"], lsf_pixels)
            bases.append(TemplateBasis(name, "STAR", log0, dloglam, comp))
            used["STAR"][group] = int(rows.sum())

    provenance = {
        "name": _DEFAULT_NAME,
        "simulator": "spectralnn.simulate",
        "spectralnn_version": __version__,
        "seed": int(seed),
        "objects": used,
        "n_components": ncomp,
        "dloglam": dloglam,
        "lsf_sigma_kms": lsf,
        "quasar_z_range": list(_QSO_Z_RANGE),
        "explained_variance": explained,
        "builder": "spectralnn.preprocessing.build_redshift_templates",
    }
    log.info("built redshift templates: %s", ", ".join(b.name for b in bases))
    return RedshiftTemplates(bases, provenance)


def _default_path():
    """Where the shipped templates live inside the package (for the builder script)."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return os.path.join(here, *_TEMPLATE_DIR, _DEFAULT_NAME)
