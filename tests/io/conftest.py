"""Fixtures of the spectralnn.io tests: small synthetic SDSS and DESI files."""

import csv

import numpy as np
import pytest
from astropy.io import fits


def make_sdss_file(
    path, *, n_pix=200, loglam0=3.6, z=0.5, cls="QSO", spall=False, seed=0
):
    """Write a minimal SDSS spec file that specutils' identifier accepts."""
    rng = np.random.default_rng(seed)
    loglam = loglam0 + 1e-4 * np.arange(n_pix)
    flux = 5.0 + rng.normal(0, 0.5, n_pix)
    ivar = np.full(n_pix, 4.0)
    and_mask = np.zeros(n_pix, dtype=np.int32)
    and_mask[10:15] = 1 << 4  # MANYBADCOLUMNS: informational
    and_mask[20:23] = 1 << 24  # NODATA: bad
    primary = fits.PrimaryHDU()
    primary.header.update(
        TELESCOP="SDSS 2.5-M",
        VERS2D="v5_7_0",
        FIBERID=12,
        PLATEID=1234,
        MJD=55555,
        BUNIT="1E-17 erg/cm^2/s/Ang",
        RA=10.0,
        DEC=20.0,
        PLUG_RA=10.5,
        PLUG_DEC=20.5,
        COEFF0=loglam0,
        COEFF1=1e-4,
    )
    coadd = fits.BinTableHDU.from_columns(
        [
            fits.Column("flux", "E", array=flux.astype(np.float32)),
            fits.Column("loglam", "E", array=loglam.astype(np.float32)),
            fits.Column("ivar", "E", array=ivar.astype(np.float32)),
            fits.Column("and_mask", "J", array=and_mask),
        ],
        name="COADD",
    )
    cols = [
        fits.Column("PLATE", "J", array=[1234]),
        fits.Column("MJD", "J", array=[55555]),
        fits.Column("FIBERID", "J", array=[12]),
        fits.Column("PLUG_RA", "D", array=[10.5]),
        fits.Column("PLUG_DEC", "D", array=[20.5]),
        fits.Column("CLASS", "6A", array=[cls]),
        fits.Column("SUBCLASS", "21A", array=["BROADLINE "]),
        fits.Column("Z", "E", array=[z]),
        fits.Column("Z_ERR", "E", array=[1e-4]),
        fits.Column("ZWARNING", "J", array=[4]),
        fits.Column("RUN2D", "8A", array=["v5_7_0"]),
        fits.Column("SPECTROFLUX", "5E", array=[[1.0, 2.0, 3.0, 4.0, 5.0]]),
        fits.Column("SPECTROFLUX_IVAR", "5E", array=[[4.0, 4.0, 4.0, 4.0, 0.0]]),
    ]
    if spall:
        # E(B-V) = 0.05 with the Schlafly & Finkbeiner (2011) coefficients
        ext = 0.05 * np.array([4.239, 3.303, 2.285, 1.698, 1.263])
        cols.append(fits.Column("EXTINCTION", "5E", array=[ext]))
    else:
        cols += [
            fits.Column("SURVEY", "6A", array=["boss"]),
            fits.Column("INSTRUMENT", "4A", array=["BOSS"]),
        ]
    labels = fits.BinTableHDU.from_columns(cols, name="SPALL" if spall else "SPECOBJ")
    fits.HDUList([primary, coadd, labels]).writeto(path)
    return path, loglam, flux, ivar, and_mask


def make_desi_file(path, *, n_targets=3, bunit=True, fibermap=True, seed=1):
    """Write a small DESI-like coadd: B/R/Z on one 0.8 Å lattice with overlaps."""
    rng = np.random.default_rng(seed)
    arms = {
        "B": (3600.0, 101),
        "R": (3600.0 + 0.8 * 90, 101),
        "Z": (3600.0 + 0.8 * 180, 60),
    }
    hdus = [fits.PrimaryHDU()]
    hdus[0].header.update(SURVEY="sv3", PROGRAM="dark", INFIL000="x")
    if fibermap:
        hdus.append(
            fits.BinTableHDU.from_columns(
                [
                    fits.Column("TARGETID", "K", array=100 + np.arange(n_targets)),
                    fits.Column(
                        "COADD_FIBERSTATUS", "J", array=np.zeros(n_targets, int)
                    ),
                    fits.Column("TARGET_RA", "D", array=np.linspace(10, 11, n_targets)),
                    fits.Column("TARGET_DEC", "D", array=np.linspace(-1, 1, n_targets)),
                    fits.Column("OBJTYPE", "3A", array=["TGT"] * n_targets),
                    fits.Column("EBV", "E", array=np.full(n_targets, 0.03)),
                ],
                name="FIBERMAP",
            )
        )
        hdus.append(
            fits.BinTableHDU.from_columns(
                [fits.Column("TARGETID", "K", array=100 + np.arange(n_targets))],
                name="EXP_FIBERMAP",
            )
        )
    truth = {}
    for arm, (start, n) in arms.items():
        wave = start + 0.8 * np.arange(n)
        level = {"B": 1.0, "R": 1.2, "Z": 1.5}[arm]  # arm-dependent, to test weighting
        flux = level + rng.normal(0, 0.01, (n_targets, n))
        ivar = np.full((n_targets, n), {"B": 1.0, "R": 3.0, "Z": 2.0}[arm])
        mask = np.zeros((n_targets, n), dtype=np.int32)
        truth[arm] = (wave, flux, ivar, mask)
        h = fits.ImageHDU(wave, name=f"{arm}_WAVELENGTH")
        h.header["BUNIT"] = "Angstrom"
        hdus.append(h)
        for kind, data, unit in (
            ("FLUX", flux, "10**-17 erg/(s cm2 Angstrom)"),
            ("IVAR", ivar, "10**+34 (s2 cm4 Angstrom2) / erg2"),
        ):
            h = fits.ImageHDU(data.astype(np.float32), name=f"{arm}_{kind}")
            if bunit:
                h.header["BUNIT"] = unit
            hdus.append(h)
        hdus.append(fits.ImageHDU(mask, name=f"{arm}_MASK"))
    if fibermap:
        hdus.append(
            fits.BinTableHDU.from_columns(
                [fits.Column("TARGETID", "K", array=100 + np.arange(n_targets))],
                name="SCORES",
            )
        )
    fits.HDUList(hdus).writeto(path)
    return path, truth


@pytest.fixture
def sdss_file(tmp_path):
    """(path, loglam, flux, ivar, and_mask) of a synthetic SDSS spec file."""
    return make_sdss_file(tmp_path / "spec-1234-55555-0012.fits")


@pytest.fixture
def desi_file(tmp_path):
    """(path, {arm: (wave, flux, ivar, mask)}) of a synthetic DESI coadd."""
    return make_desi_file(tmp_path / "coadd-synthetic.fits")


@pytest.fixture(scope="session")
def sdss_index(real_data):
    """Rows of spectra_index.csv for the SDSS/BOSS spec files."""
    with open(real_data / "spectra_index.csv", newline="") as fh:
        return [r for r in csv.DictReader(fh) if r["format"].startswith("sdss_spec")]


@pytest.fixture
def sdss_factory():
    """The synthetic SDSS file writer (`make_sdss_file`)."""
    return make_sdss_file


@pytest.fixture
def desi_factory():
    """The synthetic DESI coadd writer (`make_desi_file`)."""
    return make_desi_file
