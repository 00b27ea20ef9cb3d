"""
Flux standardisation for network inputs, with statistics computed streaming.

Examples
--------
>>> import numpy as np, astropy.units as u
>>> from spectralnn import SpectrumBatch
>>> from spectralnn.datasets import Standardizer
>>> b = SpectrumBatch(np.arange(4000.0, 4004.0) * u.AA,
...                   np.array([[1.0, 2, 3, 4], [3.0, 4, 5, 6]]), np.ones((2, 4)),
...                   flux_unit=u.one)
>>> s = Standardizer("pixel").fit(b)
>>> s.mean.tolist()
[2.0, 3.0, 4.0, 5.0]
>>> s.transform(b).flux[0].tolist()  # (x - mean) / std, std = sqrt(2)
[-0.7071067811865475, -0.7071067811865475, -0.7071067811865475, -0.7071067811865475]
"""

import numpy as np

from ..batch import SpectrumBatch

__all__ = ["Standardizer"]


class Standardizer:
    """
    Standardise fluxes per pixel (dataset statistics) or per spectrum.

    Parameters
    ----------
    per : {'pixel', 'spectrum'}, optional
        ``'pixel'``: subtract the mean and divide by the standard deviation of
        each pixel over the dataset (good pixels only), computed in one
        streaming pass by `fit`. ``'spectrum'``: subtract each spectrum's own
        mean and divide by its own standard deviation over its good pixels
        (needs no fit). Default ``'pixel'``.

    Attributes
    ----------
    mean, std : ndarray or None
        Per-pixel statistics after `fit` (``per='pixel'``).
    count : ndarray or None
        Good pixels seen per pixel.

    Examples
    --------
    >>> Standardizer("spectrum").per
    'spectrum'
    """

    def __init__(self, per="pixel"):
        if per not in ("pixel", "spectrum"):
            raise ValueError(f"per must be 'pixel' or 'spectrum', not {per!r}")
        self.per = per
        self.mean = None
        self.std = None
        self.count = None
        self._m2 = None

    def partial_fit(self, batch):
        """
        Update the per-pixel statistics with one batch (Chan et al. 1979 merge).

        Parameters
        ----------
        batch : `~spectralnn.SpectrumBatch`
            Spectra on the dataset's grid.

        Returns
        -------
        self : `Standardizer`
        """
        if self.per != "pixel":
            return self
        good = ~batch.mask & (batch.ivar > 0)
        x = np.where(good, batch.flux, 0.0)
        nb = good.sum(axis=0).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            mb = np.where(nb > 0, x.sum(axis=0) / nb, 0.0)
        m2b = np.where(good, (batch.flux - mb) ** 2, 0.0).sum(axis=0)
        if self.count is None:
            self.count, self.mean, self._m2 = nb, mb, m2b
        else:
            if nb.shape != self.count.shape:
                raise ValueError(f"batch has {nb.size} pixels, the statistics "
                                 f"{self.count.size}")
            n = self.count + nb
            with np.errstate(invalid="ignore", divide="ignore"):
                delta = mb - self.mean
                frac = np.where(n > 0, nb / n, 0.0)
                self.mean = self.mean + delta * frac
                self._m2 = self._m2 + m2b + delta**2 * self.count * frac
            self.count = n
        with np.errstate(invalid="ignore", divide="ignore"):
            var = np.where(self.count > 1, self._m2 / (self.count - 1), np.nan)
        self.std = np.sqrt(var)
        return self

    def fit(self, data, batch_size=1024):
        """
        Compute the statistics from a batch, a dataset or an iterable of batches.

        Parameters
        ----------
        data : `~spectralnn.SpectrumBatch`, `SpectrumDataset` or iterable
            The training spectra.
        batch_size : int, optional
            Rows read at a time from a dataset. Default 1024.

        Returns
        -------
        self : `Standardizer`
        """
        from .hdf5 import SpectrumDataset

        self.mean = self.std = self.count = self._m2 = None
        if isinstance(data, SpectrumBatch):
            data = [data]
        elif isinstance(data, SpectrumDataset):
            data = data.iter_batches(batch_size)
        for batch in data:
            self.partial_fit(batch)
        return self

    def transform(self, batch):
        """
        Standardise a batch (flux and inverse variance scaled alike).

        Parameters
        ----------
        batch : `~spectralnn.SpectrumBatch`
            The spectra.

        Returns
        -------
        batch : `~spectralnn.SpectrumBatch`
            Dimensionless standardised flux; pixels with no statistics (or zero
            scatter) are masked.

        Raises
        ------
        RuntimeError
            If ``per='pixel'`` and `fit` was not called.
        """
        from astropy import units as u

        good = ~batch.mask & (batch.ivar > 0)
        if self.per == "pixel":
            if self.mean is None:
                raise RuntimeError("call fit() before transform() with per='pixel'")
            mean, std = self.mean[None, :], self.std[None, :]
        else:
            n = good.sum(axis=1, keepdims=True)
            with np.errstate(invalid="ignore", divide="ignore"):
                mean = np.where(good, batch.flux, 0.0).sum(axis=1, keepdims=True) / n
                var = np.where(good, (batch.flux - mean) ** 2, 0.0).sum(
                    axis=1, keepdims=True) / (n - 1)
            std = np.sqrt(var)
        usable = np.isfinite(mean) & np.isfinite(std) & (std > 0)
        usable = np.broadcast_to(usable, batch.flux.shape)
        safe_std = np.where(usable, std, 1.0)
        flux = np.where(usable, (batch.flux - np.where(usable, mean, 0.0)) / safe_std, 0.0)
        ivar = np.where(usable, batch.ivar * safe_std**2, 0.0)
        mask = batch.mask | ~usable
        ivar[mask] = 0.0
        return batch.copy(flux=flux, ivar=ivar, mask=mask,
                          flux_unit=u.dimensionless_unscaled)

    def to_dict(self):
        """
        The statistics as plain lists (JSON-serialisable, for model metadata).

        Returns
        -------
        state : dict
        """
        return {"per": self.per,
                "mean": None if self.mean is None else self.mean.tolist(),
                "std": None if self.std is None else self.std.tolist()}

    @classmethod
    def from_dict(cls, state):
        """
        Rebuild a fitted standardiser from `to_dict` output.

        Parameters
        ----------
        state : dict
            As returned by `to_dict`.

        Returns
        -------
        standardizer : `Standardizer`
        """
        obj = cls(state["per"])
        if state.get("mean") is not None:
            obj.mean = np.asarray(state["mean"], dtype=np.float64)
            obj.std = np.asarray(state["std"], dtype=np.float64)
        return obj
