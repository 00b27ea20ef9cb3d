"""
Broad absorption line (BAL) troughs and the BALnicity index.

A BAL quasar's outflow absorbs blueward of its high-ionisation lines (C IV,
Si IV, N V; in LoBALs also Mg II) over thousands of km/s. A trough here is a
smooth-edged box in outflow velocity, from ``v_min`` to ``v_max`` with a
maximum fractional depth, the same in velocity for every line of the object
(as seen in real BALs, Weymann et al. 1991, ApJ 373, 23); it multiplies the
continuum and emission lines alike.

The BALnicity index is that of Weymann et al. (1991):

    BI = ∫_{3000}^{25000} (1 - f(v) / 0.9) C dv  (km/s),

where f is the normalised flux in the C IV trough and C = 1 only once the
flux has stayed below 0.9 for a contiguous 2000 km/s (counted from the low
velocity side), C = 0 otherwise. It is computed from the noiseless trough.

Examples
--------
>>> import numpy as np
>>> from spectralnn.simulate.bal import balnicity_index
>>> balnicity_index(np.array([5000.0]), np.array([10000.0]),
...                 np.array([1.0]))  # doctest: +FLOAT_CMP
array([3270.81293405])
"""

import numpy as np

__all__ = ["BAL_LINES", "trough_profile", "bal_transmission", "balnicity_index"]

_C_KMS = 299792.458

#: Lines with BAL troughs: name -> vacuum rest wavelength of the (doublet's
#: mean) absorption, Å.
BAL_LINES = {"NV": 1240.81, "SiIV": 1397.61, "CIV": 1549.48, "MgII": 2799.94}

#: Width (km/s) of the smooth trough edges.
_EDGE = 300.0


def trough_profile(velocity, v_min, v_max, depth):
    """
    Fractional absorption of a trough at outflow velocities (km/s, positive).

    Parameters
    ----------
    velocity : ndarray
        Outflow velocities, broadcastable against ``v_min[:, None]``.
    v_min, v_max, depth : ndarray
        Trough limits (km/s) and maximum depth (0-1), shape ``(N,)``.

    Returns
    -------
    absorption : ndarray
        Between 0 and ``depth``.

    Examples
    --------
    >>> import numpy as np
    >>> trough_profile(np.array([0.0, 6000.0]), np.array([4000.0]),
    ...                np.array([9000.0]), np.array([0.8])).round(3)
    array([[0. , 0.8]])
    """
    v_min, v_max, depth = (
        np.asarray(a, dtype=np.float64)[:, None] for a in (v_min, v_max, depth)
    )
    rise = 0.5 * (1 + np.tanh((velocity - v_min) / _EDGE))
    fall = 0.5 * (1 + np.tanh((v_max - velocity) / _EDGE))
    return depth * rise * fall


def bal_transmission(rest_wavelength, v_min, v_max, depth, lines=("NV", "SiIV", "CIV")):
    """
    Transmission of BAL troughs at rest wavelengths.

    Parameters
    ----------
    rest_wavelength : ndarray
        Rest-frame wavelengths in Å, shape ``(N, M)``.
    v_min, v_max, depth : ndarray
        Trough parameters, shape ``(N,)``; ``depth = 0`` means no BAL.
    lines : sequence of str, optional
        Keys of `BAL_LINES` to absorb. Default N V, Si IV, C IV.

    Returns
    -------
    transmission : ndarray
        Shape ``(N, M)``.

    Examples
    --------
    >>> import numpy as np
    >>> w = np.array([[1549.48 * (1 - 6000 / 299792.458), 1600.0]])
    >>> bal_transmission(w, np.array([4000.0]), np.array([9000.0]),
    ...                  np.array([0.8])).round(3)
    array([[0.2, 1. ]])
    """
    out = np.ones(np.shape(rest_wavelength))
    for name in lines:
        lam0 = BAL_LINES[name]
        velocity = _C_KMS * (1.0 - rest_wavelength / lam0)
        out *= 1.0 - trough_profile(velocity, v_min, v_max, depth)
    return out


def balnicity_index(v_min, v_max, depth):
    """
    BALnicity index (km/s) of C IV troughs (Weymann et al. 1991).

    Parameters
    ----------
    v_min, v_max, depth : ndarray
        Trough parameters, shape ``(N,)``.

    Returns
    -------
    bi : ndarray
        Shape ``(N,)``; 0 for no or too narrow/shallow troughs.

    Examples
    --------
    >>> import numpy as np
    >>> balnicity_index(np.array([5000.0]), np.array([6000.0]), np.array([0.9]))
    array([0.])
    """
    dv = 10.0
    v = np.arange(0.0, 29000.0, dv)
    flux = 1.0 - trough_profile(v[None, :], v_min, v_max, depth)
    below = flux < 0.9
    idx = np.arange(v.size)
    last_above = np.maximum.accumulate(np.where(~below, idx, -1), axis=1)
    run = (idx - last_above) * dv
    c = below & (run > 2000.0)
    window = (v >= 3000.0) & (v <= 25000.0)
    return np.sum((1.0 - flux / 0.9) * c * window, axis=1) * dv
