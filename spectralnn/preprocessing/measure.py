"""
Emission-line measurements for many spectra at once.

`measure_lines` fits (or integrates) named lines of `spectralnn.lines.LINES`
in all spectra of a batch together and returns one table row per spectrum.
`equivalent_width`, `line_flux` and `line_fwhm` are specutils-style shortcuts
for one line or one region that return ``(value, error)`` Quantities.
"""

import re
import warnings

import numpy as np
from astropy import units as u
from astropy.table import QTable

from .._utils import spectrum_or_batch
from ..batch import as_batch
from ..errors import InvalidSpectrumError, SpectralUnitsError
from ..flags import Flag
from ..lines import get_line
from ..logger import log
from ._fitting import compact, levenberg_marquardt, propagate
from .continuum import _pair, _rest_arrays

__all__ = [
    "measure_lines",
    "line_column_prefix",
    "equivalent_width",
    "line_flux",
    "line_fwhm",
    "DEFAULT_LINES",
    "OIII_DOUBLET_RATIO",
    "NII_DOUBLET_RATIO",
]

#: speed of light in km/s
_C = 299792.458
_FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))

#: [O III] λ5007/λ4959 flux ratio fixed by atomic physics (Storey & Zeippen
#: 2000, MNRAS 312, 813).
OIII_DOUBLET_RATIO = 2.98
#: [N II] λ6583/λ6548 flux ratio (Storey & Zeippen 2000, MNRAS 312, 813).
NII_DOUBLET_RATIO = 3.05

#: Lines measured when ``lines`` is not given.
DEFAULT_LINES = (
    "Lya",
    "NV",
    "SiIV",
    "CIV",
    "CIII]",
    "MgII",
    "[OII]3726",
    "[OII]3729",
    "Hgamma",
    "[OIII]4363",
    "Hbeta",
    "[OIII]4959",
    "[OIII]5007",
    "[OI]6300",
    "[NII]6548",
    "Halpha",
    "[NII]6583",
    "[SII]6716",
    "[SII]6731",
)

#: lines fitted together (the first one leads: its window anchors the fit)
_GROUPS = (
    ("Lya", "NV"),
    ("[OII]3726", "[OII]3729"),
    ("Hgamma", "[OIII]4363"),
    ("Hbeta", "[OIII]4959", "[OIII]5007"),
    ("Halpha", "[NII]6548", "[NII]6583", "[SII]6716", "[SII]6731"),
)
#: line -> (line whose velocity and width it shares, flux ratio to it or None)
_TIES = {
    "[OIII]4959": ("[OIII]5007", 1.0 / OIII_DOUBLET_RATIO),
    "[NII]6548": ("[NII]6583", 1.0 / NII_DOUBLET_RATIO),
    "[OII]3729": ("[OII]3726", None),
    "[SII]6731": ("[SII]6716", None),
}
#: broad Balmer lines that get a narrow component tied to a forbidden line
_NARROW_PARTNER = {"Hbeta": "[OIII]5007", "Halpha": "[NII]6583"}

# bounds (km/s) of velocity shift and width
_V_BROAD, _V_NARROW = 3000.0, 1000.0
_S_MIN, _S_NARROW_MAX, _S_BROAD_MIN, _S_MAX = 20.0, 1000.0, 400.0, 10000.0

_PROFILES = ("gaussian", "double_gaussian", "nonparametric")
_QUANTITIES = ("flux", "ew", "fwhm", "sigma", "center", "velocity")


def line_column_prefix(name: str) -> str:
    """
    Column prefix of a line in the tables of `measure_lines`.

    Brackets are dropped and the wavelength is separated by an underscore, so
    the name is a valid Python identifier.

    Parameters
    ----------
    name : str
        Line name as in ``LINES['name']`` (optionally with ``'_narrow'``).

    Returns
    -------
    prefix : str

    Examples
    --------
    >>> line_column_prefix("[OIII]5007"), line_column_prefix("CIII]")
    ('OIII_5007', 'CIII')
    """
    clean = re.sub(r"[\[\]]", "", name)
    return re.sub(r"(?<=[A-Za-z])(?=\d)", "_", clean)


# --------------------------------------------------------------------------
# the multi-Gaussian model of one group of lines
# --------------------------------------------------------------------------
class _GroupModel:
    """Parameters, ties and bounds of one group of lines (built once)."""

    def __init__(self, members, profile, fit_continuum):
        self.names, self.lower, self.upper, self.kinds = [], [], [], []
        self.components = []  # (rest wavelength, amp index, scale, v index, s index)
        self.entities = {}  # reported name -> list of component indices
        self.fit_continuum = fit_continuum
        if fit_continuum:
            self._param("c0", -np.inf, np.inf, "c")
            self._param("c1", -np.inf, np.inf, "c")
        kin, amps = {}, {}
        ordered = [m for m in members if m not in _TIES] + [
            m for m in members if m in _TIES
        ]
        leader = members[0]
        for name in ordered:
            row = get_line(name)
            lam = float(row["wavelength"].to_value(u.AA))
            broad = row["kind"] == "broad"
            tie = _TIES.get(name)
            if tie is not None and tie[0] in kin:
                v_i, s_i = kin[tie[0]]
                if tie[1] is not None:
                    a_i, scale = amps[tie[0]], tie[1]
                else:
                    a_i, scale = self._param(name + ":amp", 0.0, np.inf, "a"), 1.0
                self.entities[name] = [self._component(lam, a_i, scale, v_i, s_i)]
                continue
            n_broad = (
                2 if (profile == "double_gaussian" and broad and name == leader) else 1
            )
            comps = []
            for k in range(n_broad):
                a_i = self._param(f"{name}:amp{k}", 0.0, np.inf, "a")
                vmax = _V_BROAD if broad else _V_NARROW
                v_i = self._param(f"{name}:v{k}", -vmax, vmax, "v")
                if n_broad == 2:
                    s_lo, s_hi, kind = _S_BROAD_MIN, _S_MAX, "sb"
                else:
                    s_lo, s_hi = _S_MIN, (_S_MAX if broad else _S_NARROW_MAX)
                    kind = "sb" if broad else "sn"
                s_i = self._param(f"{name}:s{k}", s_lo, s_hi, kind)
                comps.append(self._component(lam, a_i, 1.0, v_i, s_i))
                kin.setdefault(name, (v_i, s_i))
                amps.setdefault(name, a_i)
            self.entities[name] = comps
        if profile == "double_gaussian":
            for name in members:
                partner = _NARROW_PARTNER.get(name)
                if partner is not None and partner in kin:
                    lam = float(get_line(name)["wavelength"].to_value(u.AA))
                    a_i = self._param(name + "_narrow:amp", 0.0, np.inf, "a")
                    v_i, s_i = kin[partner]
                    self.entities[name + "_narrow"] = [
                        self._component(lam, a_i, 1.0, v_i, s_i)
                    ]
        self.lower = np.array(self.lower)
        self.upper = np.array(self.upper)
        comp = np.array(self.components)
        self.c_lam = comp[:, 0]
        self.c_amp = comp[:, 1].astype(int)
        self.c_scale = comp[:, 2]
        self.c_v = comp[:, 3].astype(int)
        self.c_s = comp[:, 4].astype(int)
        lines = [get_line(m) for m in members]
        self.window = (
            min(float(r["window_min"].to_value(u.AA)) for r in lines),
            max(float(r["window_max"].to_value(u.AA)) for r in lines),
        )
        self.lam_ref = float(lines[0]["wavelength"].to_value(u.AA))

    @property
    def n_params(self):
        return len(self.names)

    def _param(self, name, lo, hi, kind):
        self.names.append(name)
        self.lower.append(lo)
        self.upper.append(hi)
        self.kinds.append(kind)
        return len(self.names) - 1

    def _component(self, lam, a_i, scale, v_i, s_i):
        self.components.append((lam, a_i, scale, v_i, s_i))
        return len(self.components) - 1

    # ---- evaluation ------------------------------------------------------
    def centres(self, p):
        """Centres and widths (Å) of every component, shape (N, C)."""
        mu = self.c_lam * (1.0 + p[:, self.c_v] / _C)
        return mu, mu * p[:, self.c_s] / _C

    def continuum(self, p, x):
        if not self.fit_continuum:
            return np.zeros(np.broadcast_shapes(x.shape, p[:, :1].shape))
        return p[:, :1] + p[:, 1:2] * (x / self.lam_ref - 1.0)

    def __call__(self, p, x, with_jacobian=True):
        """Model (N, L) and its Jacobian (N, L, P) at wavelengths x (N, L)."""
        n, n_pix = x.shape
        values = self.continuum(p, x)
        jac = np.zeros((n, n_pix, self.n_params)) if with_jacobian else None
        if self.fit_continuum and with_jacobian:
            jac[..., 0] = 1.0
            jac[..., 1] = x / self.lam_ref - 1.0
        mu, s = self.centres(p)
        inv_s = 1.0 / s
        norm = inv_s / np.sqrt(2 * np.pi)
        for c in range(len(self.c_lam)):  # loop over a handful of components
            a = p[:, self.c_amp[c], None] * self.c_scale[c]
            uu = (x - mu[:, c, None]) * inv_s[:, c, None]
            g = np.exp(-0.5 * uu * uu) * norm[:, c, None]
            values = values + a * g
            if with_jacobian:
                # d g / d mu = g u / s and d g / d s = g (u^2 - 1) / s
                ag = a * inv_s[:, c, None] * g
                ag_s = ag * (uu * uu - 1.0)
                lam = self.c_lam[c]
                sig = p[:, self.c_s[c], None]
                jac[..., self.c_amp[c]] += self.c_scale[c] * g
                jac[..., self.c_v[c]] += (ag * uu + ag_s * sig / _C) * (lam / _C)
                jac[..., self.c_s[c]] += ag_s * (mu[:, c, None] / _C)
        return values, jac

    # ---- derived quantities ---------------------------------------------------
    def derived(self, p, entities, cont_at):
        """
        Flux, EW, FWHM, sigma, centre, velocity of each entity: (N, 6 * E).

        ``cont_at(p, lam_centre, lam_lab)`` gives the continuum for the EW.
        """
        mu, s = self.centres(p)
        flux_c = p[:, self.c_amp] * self.c_scale
        out = []
        for name in entities:
            idx = self.entities[name]
            lab = self.c_lam[idx[0]]
            f = flux_c[:, idx]
            total = f.sum(axis=1)
            safe = np.where(total != 0, total, np.nan)
            centre = (f * mu[:, idx]).sum(axis=1) / safe
            second = (f * (s[:, idx] ** 2 + mu[:, idx] ** 2)).sum(axis=1) / safe
            sigma_lam = np.sqrt(np.maximum(second - centre**2, 0.0))
            if len(idx) == 1:
                fwhm_lam = _FWHM_PER_SIGMA * s[:, idx[0]]
            else:
                fwhm_lam = _numeric_fwhm(f, mu[:, idx], s[:, idx], centre)
            cont = cont_at(p, centre, lab)
            out += [
                total,
                total / np.where(cont != 0, cont, np.nan),
                _C * fwhm_lam / centre,
                _C * sigma_lam / centre,
                centre,
                _C * (centre / lab - 1.0),
            ]
        return np.stack(out, axis=1)


def _numeric_fwhm(flux, mu, s, centre, n_grid=801):
    """FWHM (Å) of a sum of Gaussians, from its half-maximum crossings (N rows)."""
    reach = np.max(np.abs(mu - centre[:, None]) + 5 * s, axis=1)
    reach = np.where(np.isfinite(reach) & (reach > 0), reach, 1.0)
    t = np.linspace(-1.0, 1.0, n_grid)
    grid = np.nan_to_num(centre)[:, None] + reach[:, None] * t
    prof = np.zeros_like(grid)
    for k in range(mu.shape[1]):
        prof += (
            flux[:, k, None]
            * np.exp(-0.5 * ((grid - mu[:, k, None]) / s[:, k, None]) ** 2)
            / s[:, k, None]
        )
    return _half_max_width(grid, prof)


def _half_max_width(x, prof):
    """Distance between the outermost half-maximum crossings of each row."""
    n, m = prof.shape
    rows = np.arange(n)
    half = prof.max(axis=1) / 2.0
    above = prof >= half[:, None]
    first = np.argmax(above, axis=1)
    last = m - 1 - np.argmax(above[:, ::-1], axis=1)

    def cross(i_out, i_in):
        y0, y1 = prof[rows, i_out], prof[rows, i_in]
        x0, x1 = x[rows, i_out], x[rows, i_in]
        frac = np.where(y1 != y0, (half - y0) / np.where(y1 != y0, y1 - y0, 1.0), 0.0)
        return x0 + frac * (x1 - x0)

    left = cross(np.maximum(first - 1, 0), first)
    right = cross(np.minimum(last + 1, m - 1), last)
    width = right - left
    # a profile that does not fall to half its peak inside the window has no FWHM
    open_ends = (first == 0) | (last == m - 1) | ~(half > 0)
    return np.where(open_ends, np.nan, width)


# --------------------------------------------------------------------------
# preparing the data of one window
# --------------------------------------------------------------------------
def _rest_data(batch, z, continuum):
    """Rest-frame wavelength, flux density, ivar, continuum and flags (N, M)."""
    lam, zz, flags = _rest_arrays(batch, z)
    zfac = 1.0 + np.nan_to_num(zz, nan=0.0)
    rest = batch.frame == "rest"  # z = 0: the arrays are used as they are
    flux = batch.flux if rest else batch.flux * zfac[:, None]
    ivar = batch.ivar if rest else batch.ivar / zfac[:, None] ** 2
    good = batch.good & np.isfinite(zz)[:, None]
    cont = None
    if continuum is not None:
        batch_c, cont_b = _pair(batch, continuum)
        cont = np.broadcast_to(cont_b.flux, batch.flux.shape)
        if not rest:
            cont = cont * zfac[:, None]
        good &= ~np.broadcast_to(cont_b.mask, batch.flux.shape)
    return lam, flux, ivar, good, cont, flags


def _gradient(x):
    """np.gradient along axis 1 that tolerates fewer than two columns."""
    if x.shape[1] < 2:
        return np.zeros_like(x)
    return np.gradient(x, axis=1)


def _gather(index, valid, *arrays):
    out = []
    for a in arrays:
        g = np.take_along_axis(
            np.broadcast_to(a, index.shape[:1] + a.shape[1:]), index, axis=1
        )
        out.append(g)
    return out


def _window_arrays(lam, flux, ivar, good, cont, lo, hi):
    """Gather the good pixels inside [lo, hi] (per row) into (N, L) arrays."""
    lo = np.broadcast_to(lo, (lam.shape[0],))[:, None]
    hi = np.broadcast_to(hi, (lam.shape[0],))[:, None]
    select = good & (lam >= lo) & (lam <= hi)
    index, valid = compact(select)
    # pixel widths on the full grid (a shared grid: once for all rows)
    dlam = _gradient(lam[:1]) if lam.strides[0] == 0 else _gradient(lam)
    arrays = [lam, flux, ivar, dlam] + ([cont] if cont is not None else [])
    gathered = _gather(index, valid, *arrays)
    x, y, w, dx = gathered[:4]
    c = gathered[4] if cont is not None else None
    w = np.where(valid, w, 0.0)
    y = np.where(valid, y, 0.0)
    return x, y, w, dx, c, valid


def _coverage(lam, good, lab, lo, hi, min_side=3, min_fraction=0.5):
    """Rows whose good pixels cover a line's window on both sides of the line."""
    in_win = good & (lam >= lo) & (lam <= hi)
    left = (in_win & (lam < lab)).sum(axis=1)
    right = (in_win & (lam > lab)).sum(axis=1)
    dl = _gradient(lam)
    span = np.where(in_win, dl, 0.0).sum(axis=1)
    return (left >= min_side) & (right >= min_side) & (span >= min_fraction * (hi - lo))


# --------------------------------------------------------------------------
# profile fits
# --------------------------------------------------------------------------
def _initial(model, x, y, w, valid, cont_known):
    """Starting parameters of a group for all rows (vectorised)."""
    n = x.shape[0]
    p0 = np.zeros((n, model.n_params))
    nv = valid.sum(axis=1)
    if model.fit_continuum:
        # a line through the medians of the outer 10% of pixels on each side
        pos = np.cumsum(valid, axis=1)
        edge = np.maximum(nv // 10, 2)[:, None]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            lsel = valid & (pos <= edge)
            rsel = valid & (pos > nv[:, None] - edge)
            yl = np.nanmedian(np.where(lsel, y, np.nan), axis=1)
            yr = np.nanmedian(np.where(rsel, y, np.nan), axis=1)
            xl = np.nanmedian(np.where(lsel, x, np.nan), axis=1)
            xr = np.nanmedian(np.where(rsel, x, np.nan), axis=1)
        slope = np.where(xr > xl, (yr - yl) / np.where(xr > xl, xr - xl, 1.0), 0.0)
        slope = np.nan_to_num(slope)
        c_ref = np.nan_to_num(yl + slope * (model.lam_ref - xl))
        p0[:, 0] = c_ref
        p0[:, 1] = slope * model.lam_ref
        resid = y - (c_ref[:, None] + slope[:, None] * (x - model.lam_ref))
    else:
        resid = y.copy()
    resid = np.where(valid, resid, 0.0)
    kinds = np.array(model.kinds)
    for c in range(len(model.c_lam)):
        lam = model.c_lam[c]
        s_i, a_i = model.c_s[c], model.c_amp[c]
        if p0[0, s_i] == 0:
            if kinds[s_i] == "sn":
                sig = np.full(n, 150.0)
            else:
                # width from the number of pixels above half the peak
                near = valid & (np.abs(x / lam - 1) * _C < 6000)
                peak = np.max(np.where(near, resid, -np.inf), axis=1)
                above = near & (resid > peak[:, None] / 2)
                fwhm = np.where(above, np.abs(_gradient(x)), 0).sum(axis=1)
                sig = np.clip(_C * fwhm / lam / _FWHM_PER_SIGMA, 300.0, 5000.0)
                same = [
                    k
                    for k in range(len(model.c_lam))
                    if model.c_s[k] != s_i
                    and model.c_amp[k] != a_i
                    and kinds[model.c_s[k]] == "sb"
                    and model.c_lam[k] == lam
                ]
                if same:  # the two Gaussians of a double profile start apart
                    sig = sig * (0.7 if s_i < min(model.c_s[k] for k in same) else 1.8)
            p0[:, s_i] = np.clip(sig, model.lower[s_i] * 1.01, model.upper[s_i] * 0.99)
        sig_lam = lam * p0[:, s_i] / _C
        near = valid & (np.abs(x - lam) < 2 * sig_lam[:, None])
        height = np.max(np.where(near, resid, 0.0), axis=1)
        if model.c_scale[c] == 1.0 and p0[0, a_i] == 0:
            n_share = sum(
                1
                for k in range(len(model.c_lam))
                if model.c_amp[k] != a_i and model.c_lam[k] == lam
            )
            p0[:, a_i] = (
                np.maximum(height, 0.0) * np.sqrt(2 * np.pi) * sig_lam / (1 + n_share)
            )
    amp = kinds == "a"
    p0[:, amp] = np.maximum(p0[:, amp], 1e-6 * np.abs(p0[:, :1]).max() + 1e-12)
    return p0


def _fit_group(model, entities, lam, flux, ivar, good, cont, max_iter):
    """Fit one group in all rows; returns values and errors (N, 6 * E) and flags."""
    n = lam.shape[0]
    lo, hi = model.window
    x, y, w, dx, c, valid = _window_arrays(lam, flux, ivar, good, cont, lo, hi)
    if c is not None:
        y = np.where(valid, y - c, 0.0)
    enough = valid.sum(axis=1) >= model.n_params + 5
    w = np.where(enough[:, None], w, 0.0)
    p0 = _initial(model, x, y, w, valid, c is not None)

    def fun(p, rows):
        return model(p, x[rows])

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        fit = levenberg_marquardt(
            fun, p0, y, w, lower=model.lower, upper=model.upper, max_iter=max_iter
        )

    if c is None:

        def cont_at(p, centre, lab):
            return model.continuum(p, centre[:, None])[:, 0]
    else:
        # the given continuum at the line's laboratory wavelength (per row)
        k = np.argmin(np.where(valid, np.abs(x - model.lam_ref), np.inf), axis=1)
        lab_cont = {}
        for name in entities:
            lab = model.c_lam[model.entities[name][0]]
            k = np.argmin(np.where(valid, np.abs(x - lab), np.inf), axis=1)
            lab_cont[lab] = c[np.arange(n), k]

        def cont_at(p, centre, lab):
            return lab_cont[lab]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        values, errors = propagate(
            lambda p: model.derived(p, entities, cont_at), fit.params, fit.covariance
        )
    flags = np.zeros((n, len(entities)), dtype=np.int64)
    failed = ~fit.success | ~enough
    flags[failed] |= Flag.FIT_FAILED
    flags[~enough] |= Flag.OUT_OF_COVERAGE
    return values, errors, flags, fit


# --------------------------------------------------------------------------
# nonparametric measurements
# --------------------------------------------------------------------------
def _side_continuum(x, y, w, valid, lo, hi, band=0.15):
    """
    Weighted straight line through the outer ``band`` of a window, per row.

    Returns the continuum (N, L) and a function giving, for a statistic with
    derivative ``h`` with respect to the continuum pixels, its derivative
    with respect to the data pixels through the continuum fit.
    """
    width = (hi - lo)[:, None]
    side = valid & ((x < lo[:, None] + band * width) | (x > hi[:, None] - band * width))
    ww = np.where(side, w, 0.0)
    t = x - 0.5 * (lo + hi)[:, None]
    s0, s1, s2 = ww.sum(1), (ww * t).sum(1), (ww * t * t).sum(1)
    b0, b1 = (ww * y).sum(1), (ww * t * y).sum(1)
    det = s0 * s2 - s1**2
    ok = det > 0
    det = np.where(ok, det, 1.0)
    a0 = (s2 * b0 - s1 * b1) / det
    a1 = (s0 * b1 - s1 * b0) / det
    cont = np.where(ok[:, None], a0[:, None] + a1[:, None] * t, np.nan)

    def through_continuum(h):
        h0, h1 = h.sum(1), (h * t).sum(1)
        # M^-1 [h0, h1] with M = [[s0, s1], [s1, s2]]
        m0 = (s2 * h0 - s1 * h1) / det
        m1 = (s0 * h1 - s1 * h0) / det
        return ww * (m0[:, None] + m1[:, None] * t)

    return cont, through_continuum


def _nonparametric(x, y, w, dx, c, valid, lo, hi, n_mc, rng):
    """
    Flux, EW, FWHM (Å), sigma (Å), centre (Å) and their errors, shape (N, 5).

    ``c`` is the continuum on the pixels, or None for a straight line through
    the window's side bands, whose error is then propagated too.
    """
    n = x.shape[0]
    dx = np.where(valid, dx, 0.0)
    if c is None:

        def continuum(yy):
            return _side_continuum(x, yy, w, valid, np.full(n, lo), np.full(n, hi))

        # the side-band continuum is linear in the data: the continuum of the
        # noise alone is what a noise realisation adds to it
        side = continuum
    else:
        c_fixed = c
        side = None

        def continuum(yy):
            return c_fixed, (lambda h: np.zeros_like(h))

    c, through = continuum(y)
    c = np.where(valid, c, 1.0)
    r = np.where(valid, y - c, 0.0)
    # padding pixels repeat the last wavelength with zero width
    x = np.where(valid, x, np.max(np.where(valid, x, -np.inf), axis=1, keepdims=True))
    flux, ew, fwhm, sigma, centre = _nonparametric_stats(x, dx, r, c)
    var_pix = np.where(valid & (w > 0), 1.0 / np.where(w > 0, w, 1.0), 0.0)
    safe = np.where(flux != 0, flux, np.nan)[:, None]
    derivs = []
    g = dx
    derivs.append(g + through(-dx))
    derivs.append(dx / c + through(-y * dx / c**2))
    g = (
        dx
        * ((x - centre[:, None]) ** 2 - sigma[:, None] ** 2)
        / safe
        / (2 * sigma[:, None])
    )
    derivs.append(g + through(-g))
    g = dx * (x - centre[:, None]) / safe
    derivs.append(g + through(-g))
    errs = [np.sqrt((d**2 * var_pix).sum(axis=1)) for d in derivs]
    if n_mc > 0:
        fwhm_err = _fwhm_scatter(x, r, var_pix, valid, side, n_mc, rng)
    else:
        fwhm_err = np.full(n, np.nan)
    values = np.stack([flux, ew, fwhm, sigma, centre], axis=1)
    errors = np.stack([errs[0], errs[1], fwhm_err, errs[2], errs[3]], axis=1)
    return values, errors


def _fwhm_scatter(x, r, var_pix, valid, side, n_mc, rng):
    """
    Scatter of the half-maximum width over ``n_mc`` noise realisations.

    Each realisation adds Gaussian noise of the pixel variances to the
    continuum-subtracted profile ``r`` (and, when the continuum is the
    side-band line ``side``, subtracts that line fitted to the noise, which
    is what refitting it would change). Realisations are processed in chunks
    of the batch so the temporaries stay small.
    """
    n, m = r.shape
    sd = np.sqrt(var_pix)
    widths = np.empty((n_mc, n))
    for k in range(n_mc):  # loop over realisations, each vectorised over N
        noise = rng.standard_normal((n, m))
        noise *= sd
        if side is not None:
            noise -= np.where(valid, side(noise)[0], 0.0)
        noise += r
        widths[k] = _half_max_width(x, noise)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanstd(widths, axis=0, ddof=1)


def _nonparametric_stats(x, dx, r, cont):
    """Flux, EW, FWHM, sigma (Å), centre from a continuum-subtracted profile."""
    flux = (r * dx).sum(axis=1)
    safe = np.where(flux != 0, flux, np.nan)
    ew = (r / cont * dx).sum(axis=1)
    centre = (r * x * dx).sum(axis=1) / safe
    var = (r * (x - centre[:, None]) ** 2 * dx).sum(axis=1) / safe
    sigma = np.sqrt(np.where(var > 0, var, np.nan))
    fwhm = _half_max_width(x, r)
    return flux, ew, fwhm, sigma, centre


def _measure_nonparametric(name, lam, flux, ivar, good, cont, window, n_mc, rng):
    lab = float(get_line(name)["wavelength"].to_value(u.AA))
    lo, hi = window
    n = lam.shape[0]
    x, y, w, dx, c, valid = _window_arrays(lam, flux, ivar, good, cont, lo, hi)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        v, e = _nonparametric(x, y, w, dx, c, valid, lo, hi, n_mc, rng)
    centre = v[:, 4]
    values = np.stack(
        [
            v[:, 0],
            v[:, 1],
            _C * v[:, 2] / centre,
            _C * v[:, 3] / centre,
            centre,
            _C * (centre / lab - 1),
        ],
        axis=1,
    )
    errors = np.stack(
        [
            e[:, 0],
            e[:, 1],
            _C * e[:, 2] / centre,
            _C * e[:, 3] / centre,
            e[:, 4],
            _C * e[:, 4] / lab,
        ],
        axis=1,
    )
    flags = np.zeros(n, dtype=np.int64)
    flags[~np.isfinite(values[:, 0])] |= Flag.FIT_FAILED
    return values, errors, flags


# --------------------------------------------------------------------------
# the public function
# --------------------------------------------------------------------------
def _check_lines(lines):
    if lines is None:
        return list(DEFAULT_LINES)
    if isinstance(lines, str):
        lines = [lines]
    lines = list(lines)
    for name in lines:
        get_line(name)  # raises KeyError naming the known lines
    return lines


def _windows_arg(windows):
    out = {}
    for name, win in (windows or {}).items():
        get_line(name)
        if not isinstance(win, u.Quantity):
            raise SpectralUnitsError(
                f"window of {name} needs a unit, e.g. (4800, 4920) * u.AA"
            )
        lo, hi = win.to_value(u.AA, equivalencies=u.spectral())
        if not hi > lo:
            raise ValueError(f"window of {name} must be (lower, upper), got {win}")
        out[name] = (float(lo), float(hi))
    return out


@spectrum_or_batch
def measure_lines(
    spectra,
    lines=None,
    *,
    z=None,
    continuum=None,
    profile: str = "gaussian",
    windows=None,
    max_iter: int = 100,
    n_mc: int = 30,
    seed=None,
) -> QTable:
    """
    Measure emission lines in all spectra at once.

    Each requested line is measured in the rest frame: for an observed-frame
    batch the wavelengths are divided by (1 + z) and the flux density
    multiplied by it (so integrated fluxes are unchanged and equivalent
    widths are rest-frame).

    With ``profile='gaussian'`` or ``'double_gaussian'`` the lines are fitted
    by a batched Levenberg–Marquardt fit of all spectra together, group by
    group: Lyα + N V; [O II] 3726 + 3729 (common velocity and width); Hγ +
    [O III] 4363; Hβ + [O III] 4959, 5007; Hα + [N II] 6548, 6583 + [S II]
    6716, 6731; every other line alone in its `~spectralnn.lines.LINES`
    window. The whole group is always modelled (so a blend is not missed)
    even when only some of its lines are reported. The [O III] and [N II]
    doublets share velocity and width, with flux ratios fixed at
    `OIII_DOUBLET_RATIO` = 2.98 and `NII_DOUBLET_RATIO` = 3.05 (Storey &
    Zeippen 2000, MNRAS 312, 813); the [S II] and [O II] doublets share
    kinematics with free ratios. With ``'gaussian'`` each line is one
    Gaussian; with ``'double_gaussian'`` the leading broad line of each group
    (Lyα, Si IV, C IV, C III], Mg II, Hγ, Hβ, Hα) is two broad Gaussians, and
    Hβ and Hα also get a narrow component with the velocity and width of
    [O III] 5007 and [N II] 6583, reported as ``Hbeta_narrow`` and
    ``Halpha_narrow``. The FWHM of a two-Gaussian profile is measured
    numerically on the fitted model; sigma is its second moment and the
    centre its flux-weighted centroid. Unless ``continuum`` is given, a
    straight local continuum is fitted together with the lines. Errors come
    from the fit covariance, propagated with a numerical Jacobian. No Fe II
    template is fitted.

    With ``profile='nonparametric'`` the continuum-subtracted flux is
    integrated over each line's window (flux, EW, flux-weighted centroid and
    second moment, FWHM from the outermost half-maximum crossings); the
    continuum is ``continuum`` or a straight line through the outer 15% of
    the window on each side. Errors are propagated analytically (the
    continuum error is neglected), and for the FWHM by ``n_mc`` noise
    realisations.

    Parameters
    ----------
    spectra : `specutils.Spectrum`, `~spectralnn.SpectrumBatch` or list
        The spectra.
    lines : str or list of str, optional
        Names from ``spectralnn.lines.LINES['name']``. Default
        `DEFAULT_LINES`.
    z : float or array-like, optional
        Redshift per spectrum, for an observed-frame batch (default
        ``meta['z']``; rows without one are flagged ``NO_REDSHIFT``).
    continuum : `specutils.Spectrum` or `~spectralnn.SpectrumBatch`, optional
        A continuum model on the grid of ``spectra`` (for example from
        `~spectralnn.preprocessing.continuum_powerlaw`) to subtract before
        fitting; the EW then uses its value at the line's laboratory
        wavelength. Its masked pixels are ignored.
    profile : {'gaussian', 'double_gaussian', 'nonparametric'}, optional
        Line model. Default 'gaussian'.
    windows : dict, optional
        For ``'nonparametric'``: rest-frame ``(lower, upper)`` Quantity per
        line name, replacing the `~spectralnn.lines.LINES` window.
    max_iter : int, optional
        Maximum Levenberg–Marquardt iterations. Default 100.
    n_mc : int, optional
        Noise realisations for the nonparametric FWHM error. Default 30.
    seed : int or `numpy.random.Generator`, optional
        Random seed of those realisations.

    Returns
    -------
    table : `~astropy.table.QTable`
        One row per spectrum. For every reported line with prefix
        ``P = line_column_prefix(name)`` (``Hbeta``, ``OIII_5007``,
        ``Hbeta_narrow``...): ``P_flux`` (flux unit × Å, e.g.
        1e-17 erg s⁻¹ cm⁻²), ``P_ew`` (rest-frame Å, positive for emission),
        ``P_fwhm`` and ``P_sigma`` (km/s), ``P_center`` (rest-frame vacuum Å),
        ``P_velocity`` (km/s, relative to the laboratory wavelength), each
        with a ``_err`` column, and ``P_flags``. A ``flags`` column ORs the
        spectrum's flags and those of its lines; ``object_id`` and ``z`` are
        copied from the meta when present. Values are NaN only where the
        line's flags say why: ``OUT_OF_COVERAGE`` (the line's window is not
        covered on both sides of the line by at least half its width of good
        pixels), ``NO_REDSHIFT``, or ``FIT_FAILED`` (the fit did not converge:
        all values NaN; or one quantity could not be computed, e.g. a
        nonparametric second moment that came out negative: that value NaN).
        A single spectrum gives a one-row table (it does not raise).

    Raises
    ------
    KeyError
        If a line name is unknown.
    ValueError
        If ``profile`` is not one of the three.

    Examples
    --------
    >>> import numpy as np, astropy.units as u
    >>> from spectralnn import SpectrumBatch
    >>> from spectralnn.preprocessing import measure_lines
    >>> wave = np.linspace(4600, 5150, 1100)
    >>> sig = 4862.68 * 2000 / 299792.458
    >>> flux = 1 + 30 / (np.sqrt(2 * np.pi) * sig) * np.exp(
    ...     -0.5 * ((wave - 4862.68) / sig) ** 2)
    >>> b = SpectrumBatch(wave * u.AA, flux, np.full(1100, 1e4),
    ...                   flux_unit=u.Unit("1e-17 erg/(s cm2 AA)"), frame="rest")
    >>> t = measure_lines(b, ["Hbeta"])
    >>> t["Hbeta_sigma"][0]  # doctest: +FLOAT_CMP
    <Quantity 2000. km / s>
    >>> t["Hbeta_ew"][0]  # doctest: +FLOAT_CMP
    <Quantity 30. Angstrom>
    """
    if profile not in _PROFILES:
        raise ValueError(f"profile must be one of {_PROFILES}, not {profile!r}")
    batch = spectra
    names = _check_lines(lines)
    win_override = _windows_arg(windows)
    n = len(batch)
    lam, flux, ivar, good, cont, base_flags = _rest_data(batch, z, continuum)
    results = {}  # entity -> (values (N, 6), errors (N, 6), flags (N,))

    if profile == "nonparametric":
        rng = np.random.default_rng(seed)
        for name in names:
            row = get_line(name)
            win = win_override.get(
                name,
                (
                    float(row["window_min"].to_value(u.AA)),
                    float(row["window_max"].to_value(u.AA)),
                ),
            )
            values, errors, flags = _measure_nonparametric(
                name, lam, flux, ivar, good, cont, win, n_mc, rng
            )
            results[name] = (values, errors, flags)
    else:
        todo = list(names)
        while todo:
            name = todo[0]
            members = next((g for g in _GROUPS if name in g), (name,))
            wanted = [m for m in members if m in names]
            model = _GroupModel(members, profile, fit_continuum=cont is None)
            entities = wanted + [
                m + "_narrow" for m in wanted if m + "_narrow" in model.entities
            ]
            values, errors, flags, fit = _fit_group(
                model, entities, lam, flux, ivar, good, cont, max_iter
            )
            for k, ent in enumerate(entities):
                sl = slice(6 * k, 6 * k + 6)
                results[ent] = (values[:, sl], errors[:, sl], flags[:, k])
            todo = [m for m in todo if m not in wanted]
            log.debug("fitted %s in %d iterations", "+".join(members), fit.n_iter)

    table = QTable()
    for col in ("object_id", "z"):
        if col in batch.meta.colnames:
            table[col] = batch.meta[col]
    line_unit = batch.flux_unit * u.AA
    units = (line_unit, u.AA, u.km / u.s, u.km / u.s, u.AA, u.km / u.s)
    row_flags = np.asarray(batch.meta["flags"], dtype=np.int64) | base_flags
    for ent, (values, errors, flags) in results.items():
        base = ent.replace("_narrow", "")
        row = get_line(base)
        lo = float(row["window_min"].to_value(u.AA))
        hi = float(row["window_max"].to_value(u.AA))
        if ent in win_override:
            lo, hi = win_override[ent]
        lab = float(row["wavelength"].to_value(u.AA))
        covered = _coverage(lam, good, lab, lo, hi)
        flags = flags | base_flags
        flags[~covered] |= Flag.OUT_OF_COVERAGE
        bad = (
            flags
            & (Flag.OUT_OF_COVERAGE | Flag.FIT_FAILED | Flag.NO_REDSHIFT | Flag.NO_DATA)
        ) != 0
        # one quantity that could not be computed is NaN alone, with the flag
        nonfinite = ~np.all(np.isfinite(values) & np.isfinite(errors), axis=1)
        flags[nonfinite] |= Flag.FIT_FAILED
        prefix = line_column_prefix(ent)
        for k, (qname, unit) in enumerate(zip(_QUANTITIES, units)):
            table[f"{prefix}_{qname}"] = np.where(bad, np.nan, values[:, k]) * unit
            table[f"{prefix}_{qname}_err"] = np.where(bad, np.nan, errors[:, k]) * unit
        table[f"{prefix}_flags"] = flags
        row_flags |= flags
    table["flags"] = row_flags
    table.meta["profile"] = profile
    table.meta["frame"] = "rest"
    if n:
        log.info("measured %d lines in %d spectra (%s)", len(names), n, profile)
    return table


# --------------------------------------------------------------------------
# specutils-style shortcuts
# --------------------------------------------------------------------------
def _one_line(spectrum, line, regions, continuum, z, profile, quantity):
    from specutils import Spectrum

    single = isinstance(spectrum, Spectrum) and spectrum.flux.ndim == 1
    batch = as_batch(spectrum)
    if (line is None) == (regions is None):
        raise ValueError("give exactly one of line (a name from LINES) or regions")
    if isinstance(continuum, (int, float)) and not isinstance(continuum, bool):
        continuum = batch.copy(
            flux=np.full_like(batch.flux, float(continuum)),
            ivar=np.zeros_like(batch.ivar),
            mask=np.zeros_like(batch.mask),
        )
    if line is not None:
        table = measure_lines(batch, [line], z=z, continuum=continuum, profile=profile)
        prefix = line_column_prefix(line)
        value, error = table[f"{prefix}_{quantity}"], table[f"{prefix}_{quantity}_err"]
    else:
        # a region in the frame of the spectrum: measured as it is, no redshift
        from specutils import SpectralRegion

        if not isinstance(regions, SpectralRegion) or len(regions) != 1:
            raise ValueError(
                "regions must be one specutils SpectralRegion of one interval"
            )
        lo = regions.lower.to_value(u.AA, equivalencies=u.spectral())
        hi = regions.upper.to_value(u.AA, equivalencies=u.spectral())
        lo, hi = min(lo, hi), max(lo, hi)
        flux = batch.flux
        cont = None
        good = batch.good
        if continuum is not None:
            _, cont_b = _pair(batch, continuum)
            cont = np.broadcast_to(cont_b.flux, flux.shape)
            good = good & ~np.broadcast_to(cont_b.mask, flux.shape)
        x, y, w, dx, c, valid = _window_arrays(
            batch.wavelength_2d, flux, batch.ivar, good, cont, lo, hi
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            v, e = _nonparametric(
                x, y, w, dx, c, valid, lo, hi, 30, np.random.default_rng(0)
            )
        covered = _coverage(batch.wavelength_2d, good, 0.5 * (lo + hi), lo, hi)
        if quantity == "flux":
            value = v[:, 0] * batch.flux_unit * u.AA
            error = e[:, 0] * batch.flux_unit * u.AA
        elif quantity == "ew":
            value, error = v[:, 1] * u.AA, e[:, 1] * u.AA
        else:
            value = _C * v[:, 2] / v[:, 4] * u.km / u.s
            error = _C * e[:, 2] / v[:, 4] * u.km / u.s
        value = np.where(covered, value, np.nan)
        error = np.where(covered, error, np.nan)
        if not covered.all():
            if single:
                from ..errors import WavelengthCoverageError

                raise WavelengthCoverageError(
                    f"the spectrum does not cover the region {lo:.1f}-{hi:.1f} Angstrom"
                )
            log.warning("%d spectra do not cover the region", int((~covered).sum()))
    value = u.Quantity(value)
    error = u.Quantity(error)
    if single:
        if not np.isfinite(value[0]):
            raise InvalidSpectrumError(
                f"{quantity} of {line or 'the region'} could not be measured (flags "
                f"{int(table[f'{line_column_prefix(line)}_flags'][0]) if line else 0}); "
                "see measure_lines for the flags"
            )
        return value[0], error[0]
    return value, error


def equivalent_width(
    spectrum,
    line=None,
    *,
    regions=None,
    continuum=None,
    z=None,
    profile="nonparametric",
):
    """
    Rest-frame equivalent width of one emission line, with its error.

    Parameters
    ----------
    spectrum : `specutils.Spectrum` or `~spectralnn.SpectrumBatch`
        The spectrum (or spectra).
    line : str, optional
        A line name from `~spectralnn.lines.LINES`, measured in its rest-frame
        window with `measure_lines` (needs ``z`` or ``meta['z']`` for an
        observed-frame spectrum).
    regions : `specutils.SpectralRegion`, optional
        Instead of ``line``: one interval in the frame of the spectrum,
        integrated as it is (no redshift correction).
    continuum : float, `specutils.Spectrum` or `~spectralnn.SpectrumBatch`, optional
        Continuum (a constant, as specutils' ``continuum=1`` for a normalised
        spectrum, or a model on the same grid). Default: a straight line
        through the outer 15% of the window.
    z : float, optional
        Redshift, for ``line`` on an observed-frame spectrum.
    profile : {'nonparametric', 'gaussian', 'double_gaussian'}, optional
        How ``line`` is measured. Default 'nonparametric'.

    Returns
    -------
    ew, ew_err : `~astropy.units.Quantity`
        EW in Å (positive for emission, unlike specutils) and its 1-sigma
        error; scalars for one Spectrum, arrays (NaN where not measurable) for
        a batch.

    Raises
    ------
    spectralnn.errors.InvalidSpectrumError
        For one Spectrum whose line cannot be measured (e.g. not covered).

    Examples
    --------
    >>> import numpy as np, astropy.units as u
    >>> from specutils import Spectrum, SpectralRegion
    >>> from spectralnn.preprocessing import equivalent_width
    >>> wave = np.linspace(6400, 6700, 601) * u.AA
    >>> flux = (1 + 2 * np.exp(-0.5 * ((wave.value - 6550) / 5) ** 2)) * u.Unit(
    ...     "1e-17 erg/(s cm2 AA)")
    >>> ew, err = equivalent_width(Spectrum(flux=flux, spectral_axis=wave),
    ...                            regions=SpectralRegion(6500 * u.AA, 6600 * u.AA))
    >>> ew  # doctest: +FLOAT_CMP
    <Quantity 25.06628275 Angstrom>
    """
    return _one_line(spectrum, line, regions, continuum, z, profile, "ew")


def line_flux(
    spectrum,
    line=None,
    *,
    regions=None,
    continuum=None,
    z=None,
    profile="nonparametric",
):
    """
    Integrated flux of one emission line above the continuum, with its error.

    Parameters
    ----------
    spectrum : `specutils.Spectrum` or `~spectralnn.SpectrumBatch`
        The spectrum (or spectra).
    line : str, optional
        A line name from `~spectralnn.lines.LINES`, measured in its rest-frame
        window with `measure_lines` (needs ``z`` or ``meta['z']`` for an
        observed-frame spectrum).
    regions : `specutils.SpectralRegion`, optional
        Instead of ``line``: one interval in the frame of the spectrum,
        integrated as it is (no redshift correction).
    continuum : float, `specutils.Spectrum` or `~spectralnn.SpectrumBatch`, optional
        Continuum (a constant, or a model on the same grid). Default: a
        straight line through the outer 15% of the window.
    z : float, optional
        Redshift, for ``line`` on an observed-frame spectrum.
    profile : {'nonparametric', 'gaussian', 'double_gaussian'}, optional
        How ``line`` is measured. Default 'nonparametric'.

    Returns
    -------
    flux, flux_err : `~astropy.units.Quantity`
        In flux unit × Å (e.g. 1e-17 erg s⁻¹ cm⁻² for SDSS spectra).

    Examples
    --------
    >>> import numpy as np, astropy.units as u
    >>> from specutils import Spectrum, SpectralRegion
    >>> from spectralnn.preprocessing import line_flux
    >>> wave = np.linspace(6400, 6700, 601) * u.AA
    >>> flux = (1 + 2 * np.exp(-0.5 * ((wave.value - 6550) / 5) ** 2)) * u.Unit(
    ...     "1e-17 erg/(s cm2 AA)")
    >>> f, err = line_flux(Spectrum(flux=flux, spectral_axis=wave),
    ...                    regions=SpectralRegion(6500 * u.AA, 6600 * u.AA))
    >>> f.to(u.erg / u.s / u.cm**2)  # doctest: +FLOAT_CMP
    <Quantity 2.50662827e-16 erg / (s cm2)>
    """
    return _one_line(spectrum, line, regions, continuum, z, profile, "flux")


def line_fwhm(
    spectrum,
    line=None,
    *,
    regions=None,
    continuum=None,
    z=None,
    profile="nonparametric",
):
    """
    FWHM of one emission line in km/s, with its error.

    Parameters
    ----------
    spectrum : `specutils.Spectrum` or `~spectralnn.SpectrumBatch`
        The spectrum (or spectra).
    line : str, optional
        A line name from `~spectralnn.lines.LINES`, measured in its rest-frame
        window with `measure_lines` (needs ``z`` or ``meta['z']`` for an
        observed-frame spectrum).
    regions : `specutils.SpectralRegion`, optional
        Instead of ``line``: one interval in the frame of the spectrum,
        integrated as it is (no redshift correction).
    continuum : float, `specutils.Spectrum` or `~spectralnn.SpectrumBatch`, optional
        Continuum (a constant, or a model on the same grid). Default: a
        straight line through the outer 15% of the window.
    z : float, optional
        Redshift, for ``line`` on an observed-frame spectrum.
    profile : {'nonparametric', 'gaussian', 'double_gaussian'}, optional
        How ``line`` is measured. Default 'nonparametric'.

    Returns
    -------
    fwhm, fwhm_err : `~astropy.units.Quantity`
        In km/s (the width in Å over the centroid wavelength, times c).

    Examples
    --------
    >>> import numpy as np, astropy.units as u
    >>> from specutils import Spectrum, SpectralRegion
    >>> from spectralnn.preprocessing import line_fwhm
    >>> wave = np.linspace(6400, 6700, 3001) * u.AA
    >>> flux = (1 + 2 * np.exp(-0.5 * ((wave.value - 6550) / 5) ** 2)) * u.Jy
    >>> w, err = line_fwhm(Spectrum(flux=flux, spectral_axis=wave),
    ...                    regions=SpectralRegion(6500 * u.AA, 6600 * u.AA))
    >>> round(float(w.to_value(u.km / u.s)))
    539
    """
    return _one_line(spectrum, line, regions, continuum, z, profile, "fwhm")
