"""
Vectorised least squares for many spectra at once (private).

Every solver here fits N independent problems of the same shape in one go: the
normal equations of all N problems are assembled as an ``(N, P, P)`` array and
solved with one call to `numpy.linalg.solve`. No Python loop runs over spectra.

Not public API: names here can change without deprecation.
"""

import numpy as np

__all__ = []

#: relative ridge added to the normal matrix so parameters without data stay finite
_RIDGE = 1e-12


class FitResult:
    """
    Parameters, covariance and diagnostics of N batched fits.

    Attributes
    ----------
    params : ndarray, shape (N, P)
        Best-fitting parameters.
    covariance : ndarray, shape (N, P, P)
        Covariance of the parameters, ``(J^T W J)^-1`` at the solution (not
        rescaled by the reduced chi^2). NaN where the matrix is singular.
    chi2 : ndarray, shape (N,)
        Weighted sum of squared residuals.
    dof : ndarray, shape (N,)
        Number of weighted points minus number of parameters.
    success : ndarray of bool, shape (N,)
        True where the iteration converged to finite values.
    n_iter : int
        Iterations used (for the slowest problem).
    """

    def __init__(self, params, covariance, chi2, dof, success, n_iter):
        self.params = params
        self.covariance = covariance
        self.chi2 = chi2
        self.dof = dof
        self.success = success
        self.n_iter = n_iter

    @property
    def errors(self):
        """1-sigma parameter errors, shape (N, P)."""
        with np.errstate(invalid="ignore"):
            return np.sqrt(np.diagonal(self.covariance, axis1=1, axis2=2))


def compact(select):
    """
    Column indices that gather the selected pixels of each row to the left.

    Parameters
    ----------
    select : ndarray of bool, shape (N, M)
        Pixels to keep.

    Returns
    -------
    index : ndarray of int, shape (N, L)
        For each row, the indices of its selected pixels (in order), padded
        with index 0; ``L`` is the largest number selected in any row.
    valid : ndarray of bool, shape (N, L)
        False in the padding.
    """
    counts = select.sum(axis=1)
    width = max(int(counts.max()) if counts.size else 0, 1)
    order = np.argsort(~select, axis=1, kind="stable")[:, :width]
    valid = np.arange(width) < counts[:, None]
    return np.where(valid, order, 0), valid


def _solve(a, b):
    """Solve a batch of symmetric systems ``a x = b``; NaN rows where singular."""
    try:
        return np.linalg.solve(a, b[..., None])[..., 0]
    except np.linalg.LinAlgError:
        out = np.full(b.shape, np.nan)
        for i in range(a.shape[0]):  # rare fallback: isolate the singular problems
            try:
                out[i] = np.linalg.solve(a[i], b[i])
            except np.linalg.LinAlgError:
                pass
        return out


def _inverse(a):
    """Invert a batch of matrices; NaN matrices where singular."""
    try:
        return np.linalg.inv(a)
    except np.linalg.LinAlgError:
        out = np.full(a.shape, np.nan)
        for i in range(a.shape[0]):  # rare fallback, see _solve
            try:
                out[i] = np.linalg.inv(a[i])
            except np.linalg.LinAlgError:
                pass
        return out


def _normal_matrix(jac, weight):
    """``J^T W J`` for jac (N, L, P) and weight (N, L)."""
    jw = jac * weight[..., None]
    return np.matmul(jw.transpose(0, 2, 1), jac)


def linear_least_squares(design, y, weight):
    """
    Weighted linear least squares of N problems.

    Parameters
    ----------
    design : ndarray, shape (N, L, P) or (L, P)
        Design matrix.
    y : ndarray, shape (N, L)
        Data.
    weight : ndarray, shape (N, L)
        Weights (inverse variances); zero excludes a point.

    Returns
    -------
    params : ndarray, shape (N, P)
    covariance : ndarray, shape (N, P, P)
    """
    design = np.broadcast_to(design, y.shape + design.shape[-1:])
    a = _normal_matrix(design, weight)
    b = np.einsum("nlp,nl->np", design, weight * y)
    a = a + _RIDGE * np.trace(a, axis1=1, axis2=2)[:, None, None] * np.eye(a.shape[-1])
    cov = _inverse(a)
    return np.einsum("npq,nq->np", cov, b), cov


class Bounds:
    """
    Box constraints handled by reparametrisation (as in MINUIT).

    An internal, unbounded parameter ``q`` maps to ``p`` by
    ``p = lo + (hi - lo) (1 + sin q) / 2`` for two finite bounds and
    ``p = lo - 1 + sqrt(q^2 + 1)`` (or the mirror image) for one.
    """

    def __init__(self, lower, upper, n_params):
        lower = np.broadcast_to(
            np.asarray(-np.inf if lower is None else lower, dtype=float), (n_params,)
        )
        upper = np.broadcast_to(
            np.asarray(np.inf if upper is None else upper, dtype=float), (n_params,)
        )
        if np.any(lower >= upper):
            raise ValueError("every lower bound must be below its upper bound")
        self.lower, self.upper = lower, upper
        self.both = np.isfinite(lower) & np.isfinite(upper)
        self.low_only = np.isfinite(lower) & ~np.isfinite(upper)
        self.up_only = ~np.isfinite(lower) & np.isfinite(upper)
        self.lo = np.where(np.isfinite(lower), lower, 0.0)
        self.hi = np.where(np.isfinite(upper), upper, 0.0)

    def to_external(self, q):
        """Return ``(p, dp/dq)`` for internal parameters ``q``."""
        span = self.hi - self.lo
        root = np.sqrt(q**2 + 1.0)
        p = np.where(self.both, self.lo + span * (1 + np.sin(q)) / 2, q)
        p = np.where(self.low_only, self.lo - 1 + root, p)
        p = np.where(self.up_only, self.hi + 1 - root, p)
        d = np.where(self.both, span * np.cos(q) / 2, 1.0)
        d = np.where(self.low_only, q / root, d)
        d = np.where(self.up_only, -q / root, d)
        return p, d

    def to_internal(self, p):
        """Internal parameters of ``p`` (clipped strictly inside the bounds)."""
        span = self.hi - self.lo
        with np.errstate(invalid="ignore", divide="ignore"):
            s = np.clip(
                2 * (p - self.lo) / np.where(span > 0, span, 1) - 1, -0.999, 0.999
            )
            q = np.where(self.both, np.arcsin(s), p)
            # start a little inside one-sided bounds so the gradient is not zero
            dl = np.maximum(p - self.lo, 1e-3) + 1
            du = np.maximum(self.hi - p, 1e-3) + 1
            q = np.where(self.low_only, np.sqrt(dl**2 - 1), q)
            q = np.where(self.up_only, np.sqrt(du**2 - 1), q)
        return q


def levenberg_marquardt(
    model, p0, y, weight, *, lower=None, upper=None, max_iter=100, rtol=1e-7, atol=1e-3
):
    """
    Fit N nonlinear models at once with a damped Gauss–Newton iteration.

    Each problem has its own damping factor, raised when a step would
    increase its chi^2 and lowered when a step is accepted (Levenberg 1944;
    Marquardt 1963). A problem stops when an accepted step lowers its chi^2
    by less than ``rtol`` (relative) or when its damping overflows; the
    others go on. Bounds are handled by reparametrisation (`Bounds`).

    Parameters
    ----------
    model : callable
        ``model(p, rows) -> (values, jacobian)`` with ``p`` of shape (K, P)
        for the problems selected by ``rows`` (an index array of length K,
        or ``slice(None)`` for all N problems);
        ``values`` has shape (K, L) and ``jacobian`` (K, L, P), with respect
        to the (external, bounded) parameters.
    p0 : ndarray, shape (N, P)
        Starting parameters (moved inside the bounds if needed).
    y, weight : ndarray, shape (N, L)
        Data and inverse-variance weights (zero for ignored points).
    lower, upper : array-like, shape (P,), optional
        Bounds (``-inf``/``inf`` or None for none).
    max_iter : int, optional
        Maximum number of iterations. Default 100.
    rtol, atol : float, optional
        An accepted step that lowers chi^2 by less than ``rtol * chi^2`` or
        ``atol`` (statistically meaningless) ends the iteration of that
        problem. Defaults 1e-7 and 1e-3.

    Returns
    -------
    result : `FitResult`
    """
    n, n_par = p0.shape
    bounds = Bounds(lower, upper, n_par)
    q = bounds.to_internal(np.asarray(p0, dtype=float))
    p, dpdq = bounds.to_external(q)
    values, jac = model(p, slice(None))
    chi2 = np.sum(weight * (y - values) ** 2, axis=1)
    lam = np.full(n, 1e-3)
    active = np.isfinite(chi2)
    converged = np.zeros(n, dtype=bool)
    eye = np.eye(n_par)
    n_iter = 0
    for n_iter in range(1, max_iter + 1):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        # while every problem is active, slices avoid copying the arrays
        sel = slice(None) if idx.size == n else idx
        w = weight[sel]
        resid = y[sel] - values[sel]
        j_sel, dq = jac[sel], dpdq[sel]
        # J_q = J_p diag(dp/dq): scale the small normal matrix, not the Jacobian
        a = _normal_matrix(j_sel, w) * dq[:, :, None] * dq[:, None, :]
        g = np.matmul((w * resid)[:, None, :], j_sel)[:, 0, :] * dq
        diag = np.diagonal(a, axis1=1, axis2=2)
        scale = np.maximum(
            diag, _RIDGE * np.maximum(diag.max(axis=1, keepdims=True), 1e-300)
        )
        a_damped = a + (lam[idx][:, None] * scale)[:, :, None] * eye
        a_damped = a_damped + (_RIDGE * scale)[:, :, None] * eye
        step = _solve(a_damped, g)
        q_new = q[idx] + np.nan_to_num(step)
        p_new, dpdq_new = bounds.to_external(q_new)
        v_new, j_new = model(p_new, sel)
        chi2_new = np.sum(w * (y[sel] - v_new) ** 2, axis=1)
        better = np.isfinite(chi2_new) & (chi2_new <= chi2[idx])
        small = better & (chi2[idx] - chi2_new <= np.maximum(rtol * chi2[idx], atol))
        acc = idx[better]
        q[acc], p[acc], dpdq[acc] = q_new[better], p_new[better], dpdq_new[better]
        if acc.size == n:  # every step accepted: take the new arrays whole
            values, jac = v_new, j_new
        else:
            values[acc], jac[acc] = v_new[better], j_new[better]
        chi2[acc] = chi2_new[better]
        lam[idx] = np.where(better, np.maximum(lam[idx] / 10, 1e-10), lam[idx] * 10)
        stuck = lam[idx] > 1e10
        done = small | stuck
        converged[idx[done]] = True
        active[idx[done]] = False

    a = _normal_matrix(jac, weight)
    diag = np.diagonal(a, axis1=1, axis2=2)
    a = (
        a
        + (_RIDGE * np.maximum(diag.max(axis=1, keepdims=True), 1e-300))[:, :, None]
        * eye
    )
    cov = _inverse(a)
    dof = np.sum(weight > 0, axis=1) - n_par
    ok = (
        converged
        & np.all(np.isfinite(p), axis=1)
        & np.all(np.isfinite(np.diagonal(cov, axis1=1, axis2=2)), axis=1)
        & (dof > 0)
    )
    return FitResult(p, cov, chi2, dof, ok, n_iter)


def propagate(func, params, covariance, *, rel_step=1e-3):
    """
    Propagate a parameter covariance to derived quantities.

    The Jacobian of ``func`` is taken by central differences, each parameter
    stepped by ``rel_step`` times its own error, for all N problems at once.

    Parameters
    ----------
    func : callable
        ``func(params) -> values`` with ``params`` (N, P) and values (N, K).
    params : ndarray, shape (N, P)
    covariance : ndarray, shape (N, P, P)
    rel_step : float, optional
        Step as a fraction of each parameter's error. Default 1e-3.

    Returns
    -------
    values, errors : ndarray, shape (N, K)
    """
    values = func(params)
    with np.errstate(invalid="ignore"):
        err = np.sqrt(np.diagonal(covariance, axis1=1, axis2=2))
    step = rel_step * np.where(
        np.isfinite(err) & (err > 0), err, 1e-6 * np.maximum(np.abs(params), 1e-6)
    )
    n_par = params.shape[1]
    jac = np.empty(values.shape + (n_par,))
    for j in range(n_par):  # loop over parameters, each call vectorised over N
        dp = np.zeros_like(params)
        dp[:, j] = step[:, j]
        jac[..., j] = (func(params + dp) - func(params - dp)) / (2 * step[:, j, None])
    var = np.einsum("nkp,npq,nkq->nk", jac, covariance, jac)
    with np.errstate(invalid="ignore"):
        return values, np.sqrt(np.where(var >= 0, var, np.nan))
