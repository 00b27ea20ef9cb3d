"""
Class balancing: class weights for the loss, or sampling weights.

Examples
--------
>>> from spectralnn.datasets import class_weights
>>> class_weights(["QSO", "QSO", "QSO", "STAR"])
{'QSO': 0.6666666666666666, 'STAR': 2.0}
"""

import numpy as np

__all__ = ["class_weights", "sample_weights", "balanced_indices"]


def class_weights(labels):
    """
    Weight per class, inversely proportional to its frequency.

    ``w_c = N / (K n_c)`` for K classes, so the weights average to 1 over the
    rows (the convention of Keras' ``class_weight``).

    Parameters
    ----------
    labels : array-like
        One label per row.

    Returns
    -------
    weights : dict
        Label -> weight.

    Examples
    --------
    >>> class_weights([0, 1, 1, 1])
    {0: 2.0, 1: 0.6666666666666666}
    """
    labels = np.asarray(labels)
    uniq, counts = np.unique(labels, return_counts=True)
    w = len(labels) / (len(uniq) * counts)
    return {k.item() if hasattr(k, "item") else k: float(v) for k, v in zip(uniq, w)}


def sample_weights(labels):
    """
    Weight per row such that every class has the same total weight.

    Parameters
    ----------
    labels : array-like
        One label per row.

    Returns
    -------
    weights : ndarray
        One weight per row (mean 1).

    Examples
    --------
    >>> sample_weights(["a", "b", "b"]).tolist()
    [1.5, 0.75, 0.75]
    """
    labels = np.asarray(labels)
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    return len(labels) / (len(counts) * counts[inverse])


def balanced_indices(labels, n=None, *, seed=None, indices=None):
    """
    Row indices drawn with replacement so that classes are equally frequent.

    Parameters
    ----------
    labels : array-like
        One label per row of the dataset.
    n : int, optional
        Number of indices to draw. Default: as many as rows considered.
    seed : int, optional
        Random seed.
    indices : array of int, optional
        Draw only among these rows (e.g. the training split).

    Returns
    -------
    idx : ndarray of int
        Rows, e.g. for ``SpectrumDataset.iter_batches(indices=idx)``.

    Examples
    --------
    >>> idx = balanced_indices(["a"] * 90 + ["b"] * 10, 1000, seed=0)
    >>> bool(0.4 < (idx >= 90).mean() < 0.6)
    True
    """
    labels = np.asarray(labels)
    rows = np.arange(len(labels)) if indices is None else np.asarray(indices)
    w = sample_weights(labels[rows])
    n = len(rows) if n is None else int(n)
    rng = np.random.default_rng(seed)
    return rows[rng.choice(len(rows), size=n, replace=True, p=w / w.sum())]
