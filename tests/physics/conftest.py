"""Fixtures of the physics tests: SDSS spectra of SPIDERS quasars."""

import re

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import Table

from spectralnn import SpectrumBatch
from spectralnn.batch import FLUX_UNIT, concatenate

#: SDSS SPPIXMASK bits that make a pixel unusable: NOPLUG (0), BADTRACE (1),
#: BADFLAT (2), BADARC (3), FULLREJECT (18), NOSKY (22), BRIGHTSKY (23),
#: NODATA (24), COMBINEREJ (25), BADFLUXFACTOR (26), BADSKYCHI (27). The
#: informational bits (e.g. MANYBADCOLUMNS = 4, NEARBADPIXEL = 16, LOWFLAT =
#: 17, SCATTEREDLIGHT = 20) are set over whole CCD halves of some legacy
#: spectra whose pixels are fine (positive ivar), so they are not used.
_SERIOUS = sum(1 << b for b in (0, 1, 2, 3, 18, 22, 23, 24, 25, 26, 27))

_NAME = re.compile(
    r"J(\d{2})(\d{2})(\d{2}(?:\.\d+)?)([+-])(\d{2})(\d{2})(\d{2}(?:\.\d+)?)"
)


def parse_j2000(names):
    """SkyCoord of catalogue names like 'XMMSL2 J153357.2+470137' (NaN if none)."""
    ra, dec = [], []
    for name in names:
        m = _NAME.search(str(name))
        if m is None:
            ra.append(np.nan)
            dec.append(np.nan)
            continue
        hh, mm, ss, sign, dd, dm, ds = m.groups()
        ra.append(15 * (int(hh) + int(mm) / 60 + float(ss) / 3600))
        d = int(dd) + int(dm) / 60 + float(ds) / 3600
        dec.append(-d if sign == "-" else d)
    return SkyCoord(np.array(ra) * u.deg, np.array(dec) * u.deg)


def read_sdss_spec(path, z):
    """One SDSS spec file as a batch (10**loglam, flux, ivar, serious and_mask bits)."""
    with fits.open(path) as hdul:
        coadd = hdul[1].data
        wave = 10.0 ** np.asarray(coadd["loglam"], dtype=np.float64)
        flux = np.asarray(coadd["flux"], dtype=np.float64)
        ivar = np.asarray(coadd["ivar"], dtype=np.float64)
        mask = (np.asarray(coadd["and_mask"]) & _SERIOUS) != 0
    return SpectrumBatch(
        wave * u.AA,
        flux,
        ivar=ivar,
        mask=mask,
        meta={"z": float(z)},
        flux_unit=FLUX_UNIT,
    )


@pytest.fixture(scope="session")
def spiders_sample(real_data):
    """(batch, table) of `load_spiders_sample`, read once per session."""
    return load_spiders_sample(real_data)


def load_spiders_sample(real_data):
    """
    (batch, table) of the SDSS spectra matched to SPIDERS Hβ masses.

    Matching as described in MANIFEST.md: catalogue names parsed to J2000
    positions, within 15 arcsec and |Δz| < 0.01 of ``spectra_index.csv``;
    spectra flagged Z_SUSPECT are dropped and the catalogue redshift is used.
    """
    index = Table.read(real_data / "spectra_index.csv", format="ascii.csv")
    index = index[
        [
            str(p).startswith(("sdss/lowz_broadline_agn", "sdss/rm017"))
            for p in index["path"]
        ]
    ]
    index = index[["Z_SUSPECT" not in str(f) for f in index["flags"]]]
    cat = Table.read(
        real_data / "catalogs" / "spiders_dr16_mbh" / "spiders_quasar_features.csv",
        format="ascii.csv",
    )
    cat_pos = parse_j2000(cat["name"])
    spec_pos = SkyCoord(
        np.asarray(index["ra"], dtype=float) * u.deg,
        np.asarray(index["dec"], dtype=float) * u.deg,
    )
    idx, sep, _ = spec_pos.match_to_catalog_sky(cat_pos)
    z_cat = np.asarray(cat["redshift"], dtype=float)[idx]
    ok = (sep < 15 * u.arcsec) & (
        np.abs(z_cat - np.asarray(index["label_z"], float)) < 0.01
    )
    index = index[ok]
    matched = cat[idx[ok]]
    batches = [
        read_sdss_spec(real_data / p, z)
        for p, z in zip(index["path"], matched["redshift"], strict=True)
    ]
    batch = concatenate(batches)
    table = Table()
    table["object_id"] = index["object_id"]
    table["path"] = index["path"]
    table["z"] = np.asarray(matched["redshift"], dtype=float)
    table["name"] = matched["name"]
    table["logBHMA_hb"] = np.asarray(matched["logBHMA_hb"], dtype=float)
    table["l5100"] = np.asarray(matched["l5100"], dtype=float)
    table["fwhm1_hb"] = np.asarray(matched["fwhm1_hb"], dtype=float)
    return batch, table
