"""
The bundled example spectrum: one simulated quasar in the SDSS spec-file layout.

The file ``spectralnn/data/examples/example_quasar_sdss.fits`` holds one
quasar simulated by `spectralnn.simulate.simulate_quasars` with a fixed seed
(`EXAMPLE_SEED`) at z ≈ 0.28, so that Hβ and [O III] fall inside the SDSS
wavelength range, with a median S/N of 20 per pixel. It follows the layout of
an SDSS ``spec-PLATE-MJD-FIBER.fits`` file (HDU 1 ``COADD`` with ``flux``,
``loglam``, ``ivar``, ``and_mask``; HDU 2 ``SPECOBJ`` with ``PLATE``, ``MJD``,
``FIBERID``, ``Z``, ``CLASS``, ``EXTINCTION`` ...), so specutils'
``"SDSS-III/IV spec"`` loader and `spectralnn.io.read_sdss` read it like a
real one. The simulation's truth is in the primary header (keywords
``TRUE*``, see `example_truth`). The plate/MJD/fibre numbers (9999, 59999, 1)
are placeholders, not a real SDSS observation.

`write_example_spectrum` regenerates the file
(``python -m spectralnn.datasets.examples``).
"""

from pathlib import Path

import numpy as np
from astropy import units as u

__all__ = [
    "EXAMPLE_SEED",
    "example_spectrum_path",
    "example_spectrum",
    "example_truth",
    "load_example",
    "write_example_spectrum",
]

#: seed of the simulated example quasar
EXAMPLE_SEED = 1

_FILENAME = "example_quasar_sdss.fits"

#: simulation options of the example (z ≈ 0.28: Hβ covered; S/N 20; no absorbers)
_SIMULATION = {
    "z_range": (0.28, 0.32),
    "snr_range": (20.0, 20.0),
    "bal_fraction": 0.0,
    "dla_rate": 0.0,
}

#: primary-header keyword -> (truth-table column, comment)
_TRUTH_KEYS = {
    "TRUEZ": ("z", "true redshift"),
    "TRUEMBH": ("log_mbh", "true log10(M_BH/M_sun)"),
    "TRUEVMBH": ("virial_log_mbh", "virial log10(M_BH/M_sun), noiseless"),
    "TRUEFWHB": ("fwhm_hbeta", "true broad Hbeta FWHM [km/s]"),
    "TRUEL510": ("log_lambda_l_5100", "true log10(lambda L5100 / erg/s)"),
    "TRUEEDD": ("log_edd_ratio", "true log10 Eddington ratio"),
    "TRUEEBV": ("ebv", "true Galactic E(B-V) [mag]"),
    "TRUESNR": ("snr", "median S/N per pixel"),
}

# SFD98 A_band/E(B-V) for ugriz (Schlegel et al. 1998, Table 6), the scale
# `spectralnn.io.read_sdss` recognises in an EXTINCTION column
_SFD98 = np.array([5.155, 3.793, 2.751, 2.086, 1.479])


def example_spectrum_path():
    """
    Path of the bundled example spectrum file.

    Returns
    -------
    path : `~pathlib.Path`
        ``spectralnn/data/examples/example_quasar_sdss.fits``.

    Examples
    --------
    >>> from spectralnn.datasets import example_spectrum_path
    >>> example_spectrum_path().name
    'example_quasar_sdss.fits'
    """
    from astropy.utils.data import get_pkg_data_path

    return Path(get_pkg_data_path("data", "examples", _FILENAME, package="spectralnn"))


def example_spectrum():
    """
    The bundled simulated SDSS quasar as a `specutils.Spectrum`.

    Read with `spectralnn.io.read_sdss`, so ``meta`` holds ``z``, ``ebv``,
    ``class``, ``object_id`` ... as for a real SDSS file, and ``meta['truth']``
    the simulation's truth (see `example_truth`).

    Returns
    -------
    spectrum : `specutils.Spectrum`
        Observed-frame flux in 1e-17 erg s⁻¹ cm⁻² Å⁻¹ with inverse-variance
        uncertainty.

    See Also
    --------
    load_example : the same function.

    Examples
    --------
    >>> from spectralnn.datasets import example_spectrum
    >>> spectrum = example_spectrum()
    >>> spectrum.meta["class"], round(spectrum.meta["z"], 3)
    ('QSO', 0.283)
    """
    from ..io import read_sdss

    spectrum = read_sdss(example_spectrum_path())
    spectrum.meta["truth"] = example_truth()
    return spectrum


#: alias of `example_spectrum`
load_example = example_spectrum


def example_truth():
    """
    The simulation truth of the example spectrum, read from its header.

    Returns
    -------
    truth : dict
        ``z``, ``log_mbh`` (the true mass), ``virial_log_mbh`` (the virial
        mass of the noiseless line width and luminosity with the calibration
        of Vestergaard & Peterson 2006), ``fwhm_hbeta`` (km/s),
        ``log_lambda_l_5100``, ``log_edd_ratio``, ``ebv``, ``snr``, ``seed``.

    Examples
    --------
    >>> from spectralnn.datasets import example_truth
    >>> sorted(example_truth())[:3]
    ['ebv', 'fwhm_hbeta', 'log_edd_ratio']
    """
    from astropy.io import fits

    header = fits.getheader(example_spectrum_path(), 0)
    truth = {column: float(header[key]) for key, (column, _) in _TRUTH_KEYS.items()}
    truth["seed"] = int(header["SIMSEED"])
    return truth


def write_example_spectrum(path, *, seed=EXAMPLE_SEED, overwrite=False):
    """
    Simulate the example quasar and write it as an SDSS spec file.

    Parameters
    ----------
    path : str or path-like
        Output FITS file.
    seed : int, optional
        Simulation seed. Default `EXAMPLE_SEED` (the bundled file).
    overwrite : bool, optional
        Replace an existing file. Default False.

    Returns
    -------
    path : `~pathlib.Path`
        The file written.

    Examples
    --------
    >>> from spectralnn.io import read_sdss
    >>> path = write_example_spectrum(getfixture("tmp_path") / "ex.fits")
    >>> read_sdss(path).meta["object_id"]
    'SDSS_9999-59999-1'
    """
    from astropy.io import fits

    from .. import __version__
    from ..simulate import simulate_quasars

    batch = simulate_quasars(1, seed=seed, survey="SDSS", **_SIMULATION)
    truth = batch.meta[0]
    loglam = np.log10(batch.wavelength)
    coeff0, coeff1 = float(loglam[0]), float(np.median(np.diff(loglam)))

    primary = fits.Header()
    primary["TELESCOP"] = ("SDSS 2.5-M", "SDSS spec-file layout (simulated)")
    primary["VERS2D"] = ("v5_7_0", "layout version (not an SDSS reduction)")
    primary["RUN2D"] = "26"
    primary["PLATEID"] = (9999, "placeholder plate (simulated spectrum)")
    primary["MJD"] = (59999, "placeholder MJD")
    primary["FIBERID"] = (1, "placeholder fibre")
    primary["COEFF0"] = (coeff0, "log10(lambda/A) of the first pixel")
    primary["COEFF1"] = (coeff1, "log10(lambda) step per pixel")
    primary["BUNIT"] = "1E-17 erg/cm^2/s/Ang"
    primary["OBJECT"] = "spectralnn simulated quasar"
    primary["SIMULATE"] = (True, "spectralnn.simulate.simulate_quasars")
    primary["SIMSEED"] = (int(seed), "simulate_quasars seed")
    primary["SIMVERS"] = (str(__version__)[:40], "spectralnn version")
    for key, (column, comment) in _TRUTH_KEYS.items():
        primary[key] = (float(np.asarray(u.Quantity(truth[column]).value)), comment)

    flux = batch.flux[0].astype(np.float32)
    ivar = np.where(batch.mask[0], 0.0, batch.ivar[0]).astype(np.float32)
    and_mask = np.where(batch.mask[0], 1 << 16, 0).astype(np.int32)  # NOPLUG-free bit
    coadd = fits.BinTableHDU.from_columns(
        [
            fits.Column("flux", "E", array=flux),
            fits.Column("loglam", "E", array=loglam.astype(np.float32)),
            fits.Column("ivar", "E", array=ivar),
            fits.Column("and_mask", "J", array=and_mask),
            fits.Column("or_mask", "J", array=and_mask),
        ],
        name="COADD",
    )
    ebv = float(truth["ebv"])
    specobj = fits.BinTableHDU.from_columns(
        [
            fits.Column("PLATE", "J", array=[9999]),
            fits.Column("MJD", "J", array=[59999]),
            fits.Column("FIBERID", "J", array=[1]),
            fits.Column("Z", "E", array=[float(truth["z"])]),
            fits.Column("Z_ERR", "E", array=[1e-4]),
            fits.Column("ZWARNING", "J", array=[0]),
            fits.Column("CLASS", "6A", array=["QSO"]),
            fits.Column("SUBCLASS", "21A", array=["BROADLINE"]),
            fits.Column("RUN2D", "6A", array=["26"]),
            fits.Column("INSTRUMENT", "4A", array=["SDSS"]),
            fits.Column("PLUG_RA", "D", array=[180.0]),
            fits.Column("PLUG_DEC", "D", array=[30.0]),
            fits.Column("EXTINCTION", "5E", array=[_SFD98 * ebv]),
        ],
        name="SPECOBJ",
    )
    path = Path(path)
    fits.HDUList([fits.PrimaryHDU(header=primary), coadd, specobj]).writeto(
        path, overwrite=overwrite
    )
    return path


if __name__ == "__main__":  # pragma: no cover - regenerates the bundled file
    from ..logger import log

    log.setLevel("INFO")
    log.info("wrote %s", write_example_spectrum(example_spectrum_path(), overwrite=True))
