"""
`SpectrumBatch`: many spectra as N×M arrays, the currency inside spectralnn.

Users hold `specutils.Spectrum` objects, lists of them, files or arrays. Every
public function converts what it is given into a `SpectrumBatch` **once**, at
the boundary: units are stripped there (wavelength in Å, flux in one flux unit,
inverse variance in that unit to the power -2) and bad pixels are masked there.
Everything downstream works on plain numpy arrays, vectorised over spectra.
"""

import warnings

import numpy as np
from astropy import units as u
from astropy.nddata import (
    InverseVariance,
    StdDevUncertainty,
    VarianceUncertainty,
)
from astropy.table import QTable, Table, vstack

from .errors import (
    InvalidSpectrumError,
    MaskedPixelsWarning,
    SpectralUnitsError,
    WavelengthCoverageError,
)
from .flags import Flag

__all__ = ["SpectrumBatch", "FLUX_UNIT", "as_batch"]

#: The flux-density unit of SDSS, BOSS and DESI spectra, used by default.
FLUX_UNIT = u.Unit("1e-17 erg / (s cm2 Angstrom)")

_ON_INVALID = ("raise", "flag")


def _flux_unit_of(unit):
    """Return the flux unit to store, converting f_nu-like units to FLUX_UNIT."""
    if unit is None:
        raise SpectralUnitsError(
            "flux has no unit: pass an astropy Quantity or give flux_unit "
            "(use u.dimensionless_unscaled for continuum-normalised spectra)"
        )
    unit = u.Unit(unit)
    if unit.physical_type == "dimensionless":
        return unit
    if unit.is_equivalent(FLUX_UNIT):
        return unit
    if unit.is_equivalent(u.Jy):
        return FLUX_UNIT
    raise SpectralUnitsError(
        f"flux unit {unit} is neither a flux density (f_lambda or f_nu) nor "
        "dimensionless"
    )


def _wavelength_in_angstrom(spectral_axis):
    """Convert a spectral axis Quantity to a float64 array in Angstrom."""
    if not isinstance(spectral_axis, u.Quantity) or spectral_axis.unit in (
        None,
        u.dimensionless_unscaled,
    ):
        raise SpectralUnitsError(
            "wavelength has no unit: pass an astropy Quantity (e.g. wave * u.AA)"
        )
    try:
        return np.asarray(
            spectral_axis.to_value(u.AA, equivalencies=u.spectral()), dtype=np.float64
        )
    except u.UnitConversionError as exc:
        raise SpectralUnitsError(
            f"spectral axis unit {spectral_axis.unit} cannot be converted to a "
            "wavelength"
        ) from exc


def _estimate_ivar(flux):
    """Estimate a constant inverse variance per row from pixel-to-pixel scatter."""
    diff = np.diff(flux, axis=-1)
    mad = np.nanmedian(np.abs(diff - np.nanmedian(diff, axis=-1, keepdims=True)), axis=-1)
    sigma = 1.4826 * mad / np.sqrt(2.0)
    # a noiseless (e.g. model) spectrum has no scatter: give it unit weights
    sigma = np.where(np.isfinite(sigma) & (sigma > 0), sigma, 1.0)
    return np.broadcast_to((1.0 / sigma**2)[..., None], flux.shape).copy()


class SpectrumBatch:
    """
    N spectra as N×M arrays of flux, inverse variance and mask.

    The wavelength grid is either shared by all spectra (shape ``(M,)``) or one
    grid per spectrum (shape ``(N, M)``, e.g. after shifting spectra with
    different redshifts to their rest frames). Wavelengths are in Å (vacuum),
    flux is in `flux_unit`, inverse variance in ``flux_unit**-2``; ``mask`` is
    True for bad pixels. Masked pixels always carry zero inverse variance.

    Parameters
    ----------
    wavelength : `~astropy.units.Quantity`
        Spectral axis, shape ``(M,)`` or ``(N, M)``, strictly increasing along
        the last axis. Frequencies and energies are converted.
    flux : `~astropy.units.Quantity` or array-like
        Flux density, shape ``(N, M)`` or ``(M,)`` for one spectrum.
    ivar : array-like, optional
        Inverse variance in units of ``flux_unit**-2`` (a Quantity is converted).
        If omitted, a constant per spectrum is estimated from the pixel-to-pixel
        scatter and the `~spectralnn.flags.Flag.ESTIMATED_UNCERTAINTY` flag is set.
    mask : array-like of bool, optional
        True where a pixel is bad. Default: no pixel masked.
    meta : `~astropy.table.Table` or dict, optional
        One row per spectrum (e.g. ``z``, ``ebv``, ``object_id``). A dict of
        scalars is used for a single spectrum.
    flux_unit : `~astropy.units.Unit`, optional
        Unit of ``flux`` when it is a plain array. Required in that case.
    frame : {'observed', 'rest'}, optional
        Whether the wavelengths are observed or rest-frame. Default 'observed'.
    on_invalid : {'flag', 'raise'}, optional
        What to do with unusable values: with ``'flag'`` (the default) NaN or
        infinite flux and negative inverse variance are masked with a
        `~spectralnn.errors.MaskedPixelsWarning`, and a spectrum with no usable
        pixel is flagged `~spectralnn.flags.Flag.NO_DATA`; with ``'raise'``
        each of these raises `~spectralnn.errors.InvalidSpectrumError`.

    Raises
    ------
    spectralnn.errors.SpectralUnitsError
        If the wavelength or flux has no (or an unusable) unit.
    spectralnn.errors.InvalidSpectrumError
        If shapes disagree, wavelengths are unsorted or duplicated, or (with
        ``on_invalid='raise'``) values are unusable.

    Examples
    --------
    >>> import numpy as np
    >>> import astropy.units as u
    >>> from spectralnn import SpectrumBatch
    >>> wave = np.linspace(4000, 5000, 101) * u.AA
    >>> flux = np.ones((3, 101)) * u.Unit("1e-17 erg / (s cm2 AA)")
    >>> batch = SpectrumBatch(wave, flux, ivar=np.full((3, 101), 4.0))
    >>> len(batch), batch.n_pixels
    (3, 101)
    >>> batch.to_spectrum(0).flux.unit
    Unit("1e-17 erg / (Angstrom s cm2)")
    """

    def __init__(
        self,
        wavelength,
        flux,
        ivar=None,
        mask=None,
        meta=None,
        *,
        flux_unit=None,
        frame="observed",
        on_invalid="flag",
    ):
        if on_invalid not in _ON_INVALID:
            raise ValueError(f"on_invalid must be one of {_ON_INVALID}, not {on_invalid!r}")
        if frame not in ("observed", "rest"):
            raise ValueError(f"frame must be 'observed' or 'rest', not {frame!r}")

        wave = _wavelength_in_angstrom(wavelength)

        if isinstance(flux, u.Quantity):
            unit = _flux_unit_of(flux.unit if flux_unit is None else flux_unit)
            if unit.is_equivalent(FLUX_UNIT) and not flux.unit.is_equivalent(unit):
                # f_nu -> f_lambda needs the wavelength of every pixel
                wq = np.broadcast_to(wave, flux.shape) * u.AA
                flux_values = flux.to_value(unit, equivalencies=u.spectral_density(wq))
                if ivar is not None:
                    if np.shape(ivar) != flux.shape:
                        raise InvalidSpectrumError(
                            f"ivar shape {np.shape(ivar)} does not match flux shape "
                            f"{flux.shape}"
                        )
                    scale = (flux_values / np.where(flux.value == 0, 1, flux.value))
                    ivar = np.asarray(ivar, dtype=np.float64) / np.where(
                        scale == 0, 1, scale
                    ) ** 2
            else:
                flux_values = flux.to_value(unit)
        else:
            unit = _flux_unit_of(flux_unit)
            flux_values = flux
        flux_values = np.array(flux_values, dtype=np.float64, ndmin=1)
        if flux_values.ndim == 1:
            flux_values = flux_values[None, :]
        if flux_values.ndim != 2:
            raise InvalidSpectrumError(
                f"flux must have shape (N, M) or (M,), got {flux_values.shape}"
            )
        n, m = flux_values.shape

        if wave.ndim == 2 and wave.shape[0] == 1 and n == 1:
            wave = wave[0]
        if wave.shape not in ((m,), (n, m)):
            raise InvalidSpectrumError(
                f"wavelength shape {wave.shape} does not match flux shape {(n, m)}"
            )
        if not np.all(np.isfinite(wave)):
            raise InvalidSpectrumError("wavelength contains NaN or infinite values")
        dw = np.diff(wave, axis=-1)
        if m > 1 and not np.all(dw > 0):
            if np.all(dw < 0):
                # a strictly decreasing axis (e.g. converted from frequency) is reversed
                wave = wave[..., ::-1]
                flux_values = flux_values[:, ::-1]
                if ivar is not None:
                    ivar = np.asarray(ivar)[..., ::-1]
                if mask is not None:
                    mask = np.asarray(mask)[..., ::-1]
            elif np.any(dw == 0):
                raise InvalidSpectrumError(
                    "wavelengths contain duplicated values; the spectral axis "
                    "must be strictly increasing"
                )
            else:
                raise InvalidSpectrumError(
                    "wavelengths are not sorted; the spectral axis must be "
                    "strictly increasing"
                )

        flags = np.zeros(n, dtype=np.int64)
        if ivar is None:
            ivar_values = _estimate_ivar(flux_values)
            flags |= Flag.ESTIMATED_UNCERTAINTY
        else:
            if isinstance(ivar, u.Quantity):
                ivar = ivar.to_value(unit**-2)
            ivar = np.asarray(ivar, dtype=np.float64)
            try:
                ivar_values = np.array(np.broadcast_to(ivar, (n, m)))
            except ValueError:
                raise InvalidSpectrumError(
                    f"ivar shape {ivar.shape} does not match flux shape {(n, m)}"
                ) from None
        if mask is None:
            mask_values = np.zeros((n, m), dtype=bool)
        else:
            mask = np.asarray(mask, dtype=bool)
            try:
                mask_values = np.array(np.broadcast_to(mask, (n, m)))
            except ValueError:
                raise InvalidSpectrumError(
                    f"mask shape {mask.shape} does not match flux shape {(n, m)}"
                ) from None

        # ---- invalid values -------------------------------------------------
        bad_flux = ~np.isfinite(flux_values) & ~mask_values
        bad_ivar = ~np.isfinite(ivar_values)
        neg_ivar = ivar_values < 0
        if on_invalid == "raise":
            if bad_flux.any():
                raise InvalidSpectrumError(
                    f"flux contains {int(bad_flux.sum())} NaN or infinite values in "
                    "unmasked pixels; mask them or use on_invalid='flag'"
                )
            if neg_ivar.any():
                raise InvalidSpectrumError(
                    f"inverse variance is negative in {int(neg_ivar.sum())} pixels"
                )
            if bad_ivar.any():
                raise InvalidSpectrumError("inverse variance contains NaN or infinite values")
        invalid = bad_flux | bad_ivar | neg_ivar
        rows_invalid = invalid.any(axis=1)
        if rows_invalid.any():
            flags[rows_invalid] |= Flag.MASKED_PIXELS
            flags[neg_ivar.any(axis=1)] |= Flag.NEGATIVE_IVAR
            warnings.warn(
                f"{int(invalid.sum())} pixels in {int(rows_invalid.sum())} spectra "
                "had NaN/inf flux or invalid inverse variance and were masked",
                MaskedPixelsWarning,
                stacklevel=2,
            )
        mask_values |= invalid
        ivar_values[mask_values] = 0.0
        flux_values[~np.isfinite(flux_values)] = 0.0

        no_data = ~(ivar_values > 0).any(axis=1)
        if no_data.any():
            if on_invalid == "raise":
                raise InvalidSpectrumError(
                    "spectrum has no usable pixel (all masked or zero inverse variance)"
                )
            flags[no_data] |= Flag.NO_DATA

        self.wavelength = wave
        self.flux = flux_values
        self.ivar = ivar_values
        self.mask = mask_values
        self.flux_unit = unit
        self.frame = frame
        self.meta = self._make_meta(meta, n)
        if "flags" in self.meta.colnames:
            self.meta["flags"] = np.asarray(self.meta["flags"], dtype=np.int64) | flags
        else:
            self.meta["flags"] = flags

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _make_meta(meta, n):
        if meta is None:
            return _empty_meta(n)
        if isinstance(meta, dict):
            if n != 1:
                raise InvalidSpectrumError("a dict meta describes one spectrum; use a Table")
            row = {k: [v] for k, v in meta.items() if np.isscalar(v) or v is None}
            row = {k: v for k, v in row.items() if v[0] is not None}
            table = QTable(row) if row else _empty_meta(1)
            return table
        table = QTable(meta, copy=True)
        if len(table) != n:
            raise InvalidSpectrumError(f"meta has {len(table)} rows for {n} spectra")
        return table

    @classmethod
    def _from_arrays_unchecked(cls, wavelength, flux, ivar, mask, meta, flux_unit, frame):
        """Build a batch from arrays already validated (internal, no copies)."""
        obj = cls.__new__(cls)
        obj.wavelength = wavelength
        obj.flux = flux
        obj.ivar = ivar
        obj.mask = mask
        obj.meta = meta
        obj.flux_unit = flux_unit
        obj.frame = frame
        return obj

    def copy(self, **changes):
        """
        A copy of the batch, optionally with some arrays replaced.

        Parameters
        ----------
        **changes
            Any of ``wavelength``, ``flux``, ``ivar``, ``mask``, ``meta``,
            ``flux_unit``, ``frame`` to replace (not copied).

        Returns
        -------
        batch : `SpectrumBatch`
            The new batch.

        Examples
        --------
        >>> import numpy as np, astropy.units as u
        >>> b = SpectrumBatch(np.arange(1.0, 4.0) * u.AA, np.ones(3), np.ones(3),
        ...                   flux_unit=u.one)
        >>> b.copy(flux=2 * b.flux).flux
        array([[2., 2., 2.]])
        """
        state = {
            "wavelength": self.wavelength,
            "flux": self.flux,
            "ivar": self.ivar,
            "mask": self.mask,
            "meta": self.meta,
            "flux_unit": self.flux_unit,
            "frame": self.frame,
        }
        for key in changes:
            if key not in state:
                raise TypeError(f"unknown SpectrumBatch attribute {key!r}")
        copied = {k: (v.copy() if hasattr(v, "copy") and k not in changes else v)
                  for k, v in state.items()}
        copied.update(changes)
        return self._from_arrays_unchecked(**copied)

    # ------------------------------------------------------------ properties
    def __len__(self):
        return self.flux.shape[0]

    @property
    def n_spectra(self):
        """Number of spectra N."""
        return self.flux.shape[0]

    @property
    def n_pixels(self):
        """Number of pixels M per spectrum."""
        return self.flux.shape[1]

    @property
    def shared_grid(self):
        """True if all spectra share one wavelength grid."""
        return self.wavelength.ndim == 1

    @property
    def wavelength_2d(self):
        """The wavelength broadcast to shape (N, M) (a read-only view)."""
        return np.broadcast_to(self.wavelength, self.flux.shape)

    @property
    def spectral_axis(self):
        """The wavelength as a `~astropy.units.Quantity` in Å."""
        return self.wavelength * u.AA

    @property
    def good(self):
        """Boolean (N, M): pixels that are unmasked and have positive ivar."""
        return ~self.mask & (self.ivar > 0)

    @property
    def flags(self):
        """Integer flag per spectrum (see `spectralnn.flags.Flag`)."""
        return np.asarray(self.meta["flags"])

    @property
    def snr(self):
        """Median S/N per good pixel of each spectrum (0 where none is good)."""
        good = self.good
        with np.errstate(invalid="ignore"):
            s = np.abs(self.flux) * np.sqrt(self.ivar)
        # a sort per row puts the good pixels first (bad ones as +inf): the
        # median is then picked by index, for all rows at once (np.nanmedian
        # loops over rows)
        s = np.sort(np.where(good & np.isfinite(s), s, np.inf), axis=1)
        n = np.sum(np.isfinite(s), axis=1)
        rows = np.arange(s.shape[0])
        lo = s[rows, np.maximum(n - 1, 0) // 2]
        hi = s[rows, np.maximum(n, 1) // 2 - (n == 0)]
        with np.errstate(invalid="ignore"):
            med = 0.5 * (lo + hi)
        return np.where(n > 0, med, 0.0)

    def meta_column(self, name, default=np.nan):
        """
        A meta column as a float array, or ``default`` where it is absent.

        Parameters
        ----------
        name : str
            Column name (e.g. ``'z'`` or ``'ebv'``).
        default : float, optional
            Value where the column is missing or masked. Default NaN.

        Returns
        -------
        values : `~numpy.ndarray`
            Shape (N,), float64.

        Examples
        --------
        >>> import numpy as np, astropy.units as u
        >>> b = SpectrumBatch(np.arange(1.0, 4.0) * u.AA, np.ones(3), np.ones(3),
        ...                   meta={"z": 0.5}, flux_unit=u.one)
        >>> b.meta_column("z"), b.meta_column("ebv")
        (array([0.5]), array([nan]))
        """
        if name not in self.meta.colnames:
            return np.full(len(self), default, dtype=np.float64)
        col = self.meta[name]
        values = np.ma.filled(np.ma.asarray(getattr(col, "value", col), dtype=np.float64),
                              default)
        return np.where(np.isfinite(values), values, default)

    def __repr__(self):
        lo, hi = float(np.min(self.wavelength)), float(np.max(self.wavelength))
        grid = "shared grid" if self.shared_grid else "per-spectrum grids"
        return (
            f"<SpectrumBatch: {len(self)} spectra x {self.n_pixels} pixels, "
            f"{lo:.1f}-{hi:.1f} Angstrom ({self.frame}, {grid}), flux unit "
            f"{self.flux_unit}>"
        )

    # ------------------------------------------------------------- indexing
    def __getitem__(self, item):
        if isinstance(item, (int, np.integer)):
            item = [int(item)]
        wave = self.wavelength if self.shared_grid else self.wavelength[item]
        return self._from_arrays_unchecked(
            wave,
            self.flux[item],
            self.ivar[item],
            self.mask[item],
            self.meta[item],
            self.flux_unit,
            self.frame,
        )

    def __iter__(self):
        for i in range(len(self)):
            yield self.to_spectrum(i)

    # ---------------------------------------------------------- conversions
    def to_spectrum(self, index=0):
        """
        One spectrum of the batch as a `specutils.Spectrum`.

        Parameters
        ----------
        index : int, optional
            Which spectrum. Default 0.

        Returns
        -------
        spectrum : `specutils.Spectrum`
            With `~astropy.nddata.InverseVariance` uncertainty, the mask and
            the meta row as a dict in ``spectrum.meta``.

        Examples
        --------
        >>> import numpy as np, astropy.units as u
        >>> b = SpectrumBatch(np.arange(1.0, 4.0) * u.AA, np.ones(3), np.ones(3),
        ...                   flux_unit=u.one)
        >>> type(b.to_spectrum(0).uncertainty).__name__
        'InverseVariance'
        """
        from specutils import Spectrum

        wave = self.wavelength if self.shared_grid else self.wavelength[index]
        meta = {}
        row = self.meta[index]
        for name in self.meta.colnames:
            value = row[name]
            if isinstance(value, u.Quantity) or np.ndim(value) > 0:
                meta[name] = value
            else:
                meta[name] = value.item() if hasattr(value, "item") else value
        meta["frame"] = self.frame
        return Spectrum(
            flux=self.flux[index] * self.flux_unit,
            spectral_axis=wave * u.AA,
            uncertainty=InverseVariance(self.ivar[index] / self.flux_unit**2),
            mask=self.mask[index].copy(),
            meta=meta,
        )

    def to_spectra(self):
        """
        All spectra of the batch as a list of `specutils.Spectrum`.

        Returns
        -------
        spectra : list of `specutils.Spectrum`
            One per row.

        Examples
        --------
        >>> import numpy as np, astropy.units as u
        >>> b = SpectrumBatch(np.arange(1.0, 4.0) * u.AA, np.ones((2, 3)),
        ...                   np.ones((2, 3)), flux_unit=u.one)
        >>> len(b.to_spectra())
        2
        """
        return [self.to_spectrum(i) for i in range(len(self))]

    @classmethod
    def from_spectrum(cls, spectrum, *, on_invalid="raise", meta=None):
        """
        Convert one `specutils.Spectrum` (or the deprecated ``Spectrum1D``).

        A 2-D spectrum (several fluxes on one spectral axis, as a DESI coadd
        camera) becomes a batch of several rows.

        Parameters
        ----------
        spectrum : `specutils.Spectrum`
            The spectrum. Its uncertainty may be `~astropy.nddata.InverseVariance`,
            `~astropy.nddata.StdDevUncertainty` or
            `~astropy.nddata.VarianceUncertainty`; without one, the inverse
            variance is estimated from the pixel scatter.
        on_invalid : {'raise', 'flag'}, optional
            See `SpectrumBatch`. Default ``'raise'``: a single spectrum with
            unusable values is an error.
        meta : dict, optional
            Extra metadata overriding what the spectrum's ``meta`` provides.

        Returns
        -------
        batch : `SpectrumBatch`

        Examples
        --------
        >>> import numpy as np, astropy.units as u
        >>> from specutils import Spectrum
        >>> s = Spectrum(flux=np.ones(5) * u.Jy, spectral_axis=np.arange(5000., 5005.) * u.AA)
        >>> SpectrumBatch.from_spectrum(s).flux_unit
        Unit("1e-17 erg / (Angstrom s cm2)")
        """
        from specutils import Spectrum

        if not isinstance(spectrum, Spectrum):
            raise TypeError(f"expected a specutils Spectrum, got {type(spectrum).__name__}")
        flux = spectrum.flux
        ivar = _ivar_from_uncertainty(spectrum.uncertainty, flux.unit)
        mask = spectrum.mask
        info = _meta_from_spectrum(spectrum)
        if meta:
            info.update(meta)
        frame = (spectrum.meta or {}).get("frame", "observed")
        if frame not in ("observed", "rest"):
            frame = "observed"
        n = 1 if flux.ndim == 1 else flux.shape[0]
        table = _meta_table([info] * n if n > 1 else [info])
        if n > 1:
            table["spectrum_index"] = np.arange(n)
        return cls(
            spectrum.spectral_axis,
            flux,
            ivar=ivar,
            mask=mask,
            meta=table,
            frame=frame,
            on_invalid=on_invalid,
        )

    @classmethod
    def from_spectra(cls, spectra, *, grid=None, on_invalid="flag"):
        """
        Stack several spectra into one batch.

        Spectra that already share one grid are stacked as they are. Spectra on
        different log-λ grids with the same step (SDSS/BOSS coadds) are aligned
        exactly, padding with masked pixels. Otherwise they are resampled onto
        ``grid`` (default: a log-λ grid spanning all of them) with the
        ivar-weighted, flux-conserving resampler.

        Parameters
        ----------
        spectra : iterable of `specutils.Spectrum` or `SpectrumBatch`
            The spectra.
        grid : `~astropy.units.Quantity`, optional
            Target wavelength grid.
        on_invalid : {'flag', 'raise'}, optional
            See `SpectrumBatch`. Default ``'flag'``.

        Returns
        -------
        batch : `SpectrumBatch`

        Examples
        --------
        >>> import numpy as np, astropy.units as u
        >>> from specutils import Spectrum
        >>> w = 10 ** (3.6 + 1e-4 * np.arange(100)) * u.AA
        >>> a = Spectrum(flux=np.ones(80) * u.Jy, spectral_axis=w[:80])
        >>> b = Spectrum(flux=np.ones(80) * u.Jy, spectral_axis=w[20:])
        >>> SpectrumBatch.from_spectra([a, b]).flux.shape
        (2, 100)
        """
        batches = []
        for item in spectra:
            if isinstance(item, SpectrumBatch):
                batches.append(item)
            else:
                batches.append(cls.from_spectrum(item, on_invalid=on_invalid))
        if not batches:
            raise InvalidSpectrumError("no spectra given")
        return concatenate(batches, grid=grid)


def _empty_meta(n):
    table = QTable()
    table["flags"] = np.zeros(n, dtype=np.int64)
    return table


def _ivar_from_uncertainty(uncertainty, flux_unit):
    if uncertainty is None:
        return None
    array = np.asarray(uncertainty.array, dtype=np.float64)
    unc_unit = uncertainty.unit
    if isinstance(uncertainty, InverseVariance):
        ivar = array
        if unc_unit is not None and flux_unit is not None:
            ivar = (array * unc_unit).to_value(flux_unit**-2)
        return ivar
    if isinstance(uncertainty, StdDevUncertainty):
        if unc_unit is not None and flux_unit is not None:
            array = (array * unc_unit).to_value(flux_unit)
        with np.errstate(divide="ignore"):
            return np.where(array > 0, 1.0 / np.where(array > 0, array, 1.0) ** 2,
                            np.where(array < 0, -1.0, 0.0))
    if isinstance(uncertainty, VarianceUncertainty):
        if unc_unit is not None and flux_unit is not None:
            array = (array * unc_unit).to_value(flux_unit**2)
        return np.where(array > 0, 1.0 / np.where(array > 0, array, 1.0),
                        np.where(array < 0, -1.0, 0.0))
    raise SpectralUnitsError(
        f"unsupported uncertainty type {type(uncertainty).__name__}; use "
        "InverseVariance, StdDevUncertainty or VarianceUncertainty"
    )


#: meta keys looked up in a Spectrum's meta (and its FITS header) -> batch column
_META_KEYS = {
    "z": ("z", "Z", "redshift", "REDSHIFT"),
    "z_err": ("z_err", "Z_ERR", "ZERR"),
    "ebv": ("ebv", "EBV", "E(B-V)"),
    "object_id": ("object_id", "OBJECT_ID", "targetid", "TARGETID"),
    "source": ("source", "filename"),
    "class": ("class", "CLASS", "spectype", "SPECTYPE"),
    "subclass": ("subclass", "SUBCLASS", "subtype", "SUBTYPE"),
    "plate": ("plate", "PLATE", "PLATEID"),
    "mjd": ("mjd", "MJD"),
    "fiber": ("fiber", "FIBERID", "FIBER"),
    "ra": ("ra", "RA", "PLUG_RA"),
    "dec": ("dec", "DEC", "PLUG_DEC"),
    "zwarning": ("zwarning", "ZWARNING", "ZWARN"),
}


#: meta columns that may be taken from a FITS header keyword
_HEADER_COLUMNS = ("z", "z_err", "ebv")


def _meta_from_spectrum(spectrum):
    meta = dict(spectrum.meta or {})
    header = meta.get("header")
    info = {}
    for column, keys in _META_KEYS.items():
        for key in keys:
            if key in meta and np.isscalar(meta[key]):
                info[column] = meta[key]
                break
            if header is not None and column in _HEADER_COLUMNS and key in header:
                # only unambiguous keywords: RA/DEC/MJD mean different things
                # (plate centre, sexagesimal strings, ...) in different headers
                info[column] = header[key]
                break
    if "flags" in meta and np.isscalar(meta["flags"]):
        info["flags"] = int(meta["flags"])
    return info


def _meta_table(rows):
    names = []
    for row in rows:
        for key in row:
            if key not in names:
                names.append(key)
    table = QTable()
    for name in names:
        values = [row.get(name) for row in rows]
        sample = next((v for v in values if v is not None), None)
        if isinstance(sample, str):
            table[name] = np.array(["" if v is None else str(v) for v in values])
        elif isinstance(sample, (bool, np.bool_)):
            table[name] = np.array([bool(v) if v is not None else False for v in values])
        elif isinstance(sample, (int, np.integer)) and name != "z":
            fill = -1
            table[name] = np.array([fill if v is None else int(v) for v in values])
        else:
            table[name] = np.array(
                [np.nan if v is None else float(v) for v in values], dtype=np.float64
            )
    if "flags" not in table.colnames:
        table["flags"] = np.zeros(len(rows), dtype=np.int64)
    return table


def _common_log_alignment(batches):
    """Offsets that place batches on one log grid of equal step, or None."""
    grids = []
    for b in batches:
        if not b.shared_grid or b.n_pixels < 2:
            return None
        grids.append(np.log10(b.wavelength))
    step = grids[0][1] - grids[0][0]
    for g in grids:
        d = np.diff(g)
        if not np.allclose(d, step, rtol=1e-5, atol=1e-9):
            return None
    start = min(g[0] for g in grids)
    offsets = [(g[0] - start) / step for g in grids]
    if not all(abs(o - round(o)) < 1e-3 for o in offsets):
        return None
    offsets = [int(round(o)) for o in offsets]
    total = max(o + b.n_pixels for o, b in zip(offsets, batches))
    return start, step, offsets, total


def concatenate(batches, *, grid=None):
    """
    Join several `SpectrumBatch` objects into one.

    Parameters
    ----------
    batches : sequence of `SpectrumBatch`
        The batches, all with fluxes in compatible units.
    grid : `~astropy.units.Quantity`, optional
        Force this common wavelength grid (resampling every batch onto it).

    Returns
    -------
    batch : `SpectrumBatch`

    Raises
    ------
    spectralnn.errors.SpectralUnitsError
        If the flux units are not convertible.

    Examples
    --------
    >>> import numpy as np, astropy.units as u
    >>> from spectralnn.batch import concatenate
    >>> a = SpectrumBatch(np.arange(1.0, 4.0) * u.AA, np.ones(3), np.ones(3),
    ...                   flux_unit=u.one)
    >>> len(concatenate([a, a]))
    2
    """
    batches = list(batches)
    unit = batches[0].flux_unit
    converted = []
    for b in batches:
        if b.flux_unit != unit:
            try:
                scale = (1.0 * b.flux_unit).to_value(unit)
            except u.UnitConversionError as exc:
                raise SpectralUnitsError(
                    f"cannot join batches with flux units {unit} and {b.flux_unit}"
                ) from exc
            b = b.copy(flux=b.flux * scale, ivar=b.ivar / scale**2, flux_unit=unit)
        converted.append(b)
    batches = converted
    frames = {b.frame for b in batches}
    if len(frames) > 1:
        raise InvalidSpectrumError("cannot join observed-frame and rest-frame batches")
    frame = frames.pop()
    meta = vstack([Table(b.meta) for b in batches], join_type="outer",
                  metadata_conflicts="silent")
    meta = _fill_meta(QTable(meta))

    if grid is None:
        first = batches[0]
        if all(b.shared_grid and b.n_pixels == first.n_pixels
               and np.array_equal(b.wavelength, first.wavelength) for b in batches):
            return SpectrumBatch._from_arrays_unchecked(
                first.wavelength.copy(),
                np.concatenate([b.flux for b in batches]),
                np.concatenate([b.ivar for b in batches]),
                np.concatenate([b.mask for b in batches]),
                meta, unit, frame,
            )
        aligned = _common_log_alignment(batches)
        if aligned is not None:
            start, step, offsets, total = aligned
            n = sum(len(b) for b in batches)
            flux = np.zeros((n, total))
            ivar = np.zeros((n, total))
            mask = np.ones((n, total), dtype=bool)
            row = 0
            for off, b in zip(offsets, batches):
                sl = slice(off, off + b.n_pixels)
                flux[row:row + len(b), sl] = b.flux
                ivar[row:row + len(b), sl] = b.ivar
                mask[row:row + len(b), sl] = b.mask
                row += len(b)
            wave = 10.0 ** (start + step * np.arange(total))
            return SpectrumBatch._from_arrays_unchecked(wave, flux, ivar, mask, meta,
                                                        unit, frame)
        from .preprocessing.resample import log_wavelength_grid

        lo = min(float(np.min(b.wavelength)) for b in batches)
        hi = max(float(np.max(b.wavelength)) for b in batches)
        step = min(float(np.median(np.diff(np.log10(b.wavelength_2d[0]))))
                   for b in batches)
        grid = log_wavelength_grid(lo * u.AA, hi * u.AA, dloglam=step)
    from .preprocessing.resample import resample

    parts = [resample(b, grid) for b in batches]
    for p in parts:
        if not p.shared_grid:
            raise WavelengthCoverageError("resampling did not give a shared grid")
    return SpectrumBatch._from_arrays_unchecked(
        parts[0].wavelength,
        np.concatenate([p.flux for p in parts]),
        np.concatenate([p.ivar for p in parts]),
        np.concatenate([p.mask for p in parts]),
        meta, unit, frame,
    )


def _fill_meta(meta):
    """Replace masked entries of an outer-joined meta table by neutral values."""
    for name in meta.colnames:
        col = meta[name]
        if hasattr(col, "mask") and np.any(col.mask):
            kind = col.dtype.kind
            fill = "" if kind in "US" else (-1 if kind in "iu" else (False if kind == "b"
                                                                      else np.nan))
            if name == "flags":
                fill = 0
            meta[name] = col.filled(fill)
    if "flags" in meta.colnames:
        meta["flags"] = np.asarray(meta["flags"], dtype=np.int64)
    return meta


def as_batch(spectra, *, on_invalid=None, grid=None):
    """
    Convert anything a user holds into a `SpectrumBatch` (the one boundary).

    Parameters
    ----------
    spectra : `specutils.Spectrum`, `SpectrumBatch`, `specutils.SpectrumList`, list, str or path
        One spectrum, a batch, a list of spectra or batches, or file path(s)
        read with `spectralnn.io.read_spectra`.
    on_invalid : {'raise', 'flag'}, optional
        Default: ``'raise'`` for a single spectrum, ``'flag'`` for several.
    grid : `~astropy.units.Quantity`, optional
        Common grid for spectra on different grids.

    Returns
    -------
    batch : `SpectrumBatch`

    Raises
    ------
    TypeError
        If the input is of an unsupported type.

    Examples
    --------
    >>> import numpy as np, astropy.units as u
    >>> from specutils import Spectrum
    >>> s = Spectrum(flux=np.ones(5) * u.Jy, spectral_axis=np.arange(5000., 5005.) * u.AA)
    >>> len(as_batch([s, s]))
    2
    """
    import os

    from specutils import Spectrum

    if isinstance(spectra, SpectrumBatch):
        return spectra
    if isinstance(spectra, Spectrum):
        return SpectrumBatch.from_spectrum(spectra, on_invalid=on_invalid or "raise")
    if isinstance(spectra, (str, os.PathLike)):
        spectra = [spectra]
    if isinstance(spectra, (list, tuple)) or hasattr(spectra, "__iter__"):
        items = list(spectra)
        if items and all(isinstance(x, (str, os.PathLike)) for x in items):
            from .io import read_spectra

            return read_spectra(items, grid=grid)
        if items and all(isinstance(x, (Spectrum, SpectrumBatch)) for x in items):
            return SpectrumBatch.from_spectra(items, grid=grid,
                                              on_invalid=on_invalid or "flag")
    raise TypeError(
        "expected a specutils Spectrum, a SpectrumBatch, a list of them, or file "
        f"paths; got {type(spectra).__name__}"
    )
