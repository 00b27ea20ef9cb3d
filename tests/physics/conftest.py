"""Fixtures of the physics tests: SDSS spectra of SPIDERS quasars."""

import re

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.table import Table

from spectralnn import SpectrumBatch
from spectralnn.batch import concatenate
from spectralnn.io import read_sdss

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
    """One SDSS spec file as a batch, read by `spectralnn.io.read_sdss`, at redshift z."""
    return SpectrumBatch.from_spectrum(read_sdss(path), meta={"z": float(z)})


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
