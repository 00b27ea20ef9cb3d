"""Catalogue reading, joining and training-set building (spectralnn.datasets.catalog)."""

import shutil

import numpy as np
import pytest
from astropy import units as u
from astropy.io import fits
from astropy.table import Table

from spectralnn.datasets import (
    SDSS_LOGLAM_GRID,
    SpectrumDataset,
    build_training_set,
    join_catalog,
    parse_sdss_name,
    read_catalog,
)
from spectralnn.errors import DatasetError


def write_sdss_like(path, wave, flux, ivar, plate, mjd, fiber, z, *, zwarning=0,
                    ra=180.0, dec=30.0):
    """A minimal SDSS spec file (HDU1 COADD, HDU2 SPECOBJ) that read_sdss reads."""
    loglam = np.log10(wave)
    primary = fits.Header({"TELESCOP": "SDSS 2.5-M", "RUN2D": "26", "VERS2D": "v5_7_0",
                           "PLATEID": plate, "MJD": mjd, "FIBERID": fiber,
                           "COEFF0": float(loglam[0]), "COEFF1": 1e-4,
                           "BUNIT": "1E-17 erg/cm^2/s/Ang"})
    coadd = fits.BinTableHDU.from_columns([
        fits.Column("flux", "E", array=np.asarray(flux, np.float32)),
        fits.Column("loglam", "E", array=loglam.astype(np.float32)),
        fits.Column("ivar", "E", array=np.asarray(ivar, np.float32)),
        fits.Column("and_mask", "J", array=np.zeros(len(wave), np.int32)),
    ], name="COADD")
    specobj = fits.BinTableHDU.from_columns([
        fits.Column("PLATE", "J", array=[plate]), fits.Column("MJD", "J", array=[mjd]),
        fits.Column("FIBERID", "J", array=[fiber]), fits.Column("Z", "E", array=[z]),
        fits.Column("ZWARNING", "J", array=[zwarning]),
        fits.Column("CLASS", "6A", array=["QSO"]),
        fits.Column("PLUG_RA", "D", array=[ra]), fits.Column("PLUG_DEC", "D", array=[dec]),
    ], name="SPECOBJ")
    fits.HDUList([fits.PrimaryHDU(header=primary), coadd, specobj]).writeto(path)
    return path


def test_parse_sdss_name():
    ra, dec = parse_sdss_name(["SDSS J141324.6+530529.0", "XMMSL2 J000813.1-005752",
                               b"000001.20+240354.5", "no position here"])
    # 14h13m24.6s = 213.3525 deg; names truncate, so 0.1 s of RA = 1.5 arcsec
    np.testing.assert_allclose(ra[:3].value, [213.3525, 2.054583333, 0.005], atol=1e-6)
    np.testing.assert_allclose(dec[:3].value, [53.0913889, -0.9644444, 24.0651389],
                               atol=1e-6)
    assert np.isnan(ra[3]) and ra.unit == u.deg


def test_read_chen_style_catalogue():
    table = Table({"OBJECT": [b"000001.20+240354.5", b"000002.97+225645.9"],
                   "ZVI": [1.6162, 1.7591], "logMBH-Hb": [0.0, 0.0],
                   "logMBH-Ha-2": [0.0, 0.0], "logMBH-MgII-2": [8.9, 0.0],
                   "logMBH-CIV-2": [9.1, 8.7], "LMBH": [8.9, 0.0],
                   "CHEN EPOCH": ["7666-57339-0121", "7665-57328-0452"],
                   "Z": [1.6160, 1.7590], "N_EPOCHS": [1, 3]})
    cat = read_catalog(table)
    assert cat.meta["catalog_kind"] == "chen2019"
    assert cat["fiber"].tolist() == [121, 452] and cat["plate"].tolist() == [7666, 7665]
    assert cat["log_mbh"].unit == u.dex(u.solMass)
    assert cat["log_mbh"][0].value == 8.9 and np.isnan(cat["log_mbh"][1].value)  # 0 = missing
    assert np.isnan(cat["log_mbh_hbeta"].value).all()
    assert cat["log_mbh_civ"][1].value == 8.7
    assert np.isfinite(cat["ra"]).all()  # from the names
    assert "LMBH" in cat.colnames  # originals kept


def test_read_spiders_and_generic(tmp_path):
    path = tmp_path / "spiders.csv"
    Table({"name": ["XMMSL2 J153357.2+470137", "J093728.1+653837"],
           "redshift": [0.392, 0.2], "l5100": [9.6e40, -99.0], "fwhm1_hb": [502.0, -99.0],
           "logBHMA_hb": [8.566, -99.0]}).write(path)
    cat = read_catalog(path)
    assert cat.meta["catalog_kind"] == "spiders"
    assert np.isnan(cat["log_mbh"][1].value) and np.isnan(cat["fwhm_hbeta"][1].value)
    np.testing.assert_allclose(cat["log_lambda_l_5100"][0].value, np.log10(9.6e40))
    np.testing.assert_allclose(cat["ra"][0].to_value(u.deg), 233.48833, atol=1e-4)
    fits_path = tmp_path / "dr16q.fits"
    Table({"SDSS_NAME": ["J000000.45+174625.4"], "RA": [0.0018], "DEC": [17.774],
           "PLATE": [6173], "MJD": [56238], "FIBERID": [528], "Z": [2.31],
           "ZWARNING": [0], "Z_CONF": [3]}).write(fits_path)
    cat = read_catalog(fits_path)
    assert cat.meta["catalog_kind"] == "generic"
    assert cat["fiber"][0] == 528 and cat["z_conf"][0] == 3 and cat["ra"].unit == u.deg
    with pytest.raises(DatasetError, match="does not exist"):
        read_catalog(tmp_path / "missing.fits")
    with pytest.raises(ValueError, match="kind"):
        read_catalog(fits_path, kind="nonsense")


def test_join_on_plate_mjd_fiber_then_position():
    cat = read_catalog(Table({"PLATE": [332, 500, -1], "MJD": [52367, 51000, -1],
                              "FIBERID": [639, 1, -1], "RA": [184.0, 10.0, 50.0],
                              "DEC": [-2.0, 5.0, 20.0], "Z": [0.10, 1.0, 0.3]}))
    spectra = Table({"plate": [332, 7, 8, 9, 10], "mjd": [52367, 1, 1, 1, 1],
                     "fiber": [639, 2, 2, 2, 2],
                     "ra": [184.0, 50.0 + 1 / 3600, 10.0, 120.0, np.nan],
                     "dec": [-2.0, 20.0, 5.0, 0.0, np.nan],
                     "z": [0.10, 0.3, 1.5, 0.1, 0.1]})
    m = join_catalog(spectra, cat)
    assert m["catalog_row"].tolist() == [0, 2, -1, -1, -1]
    assert m["join"].tolist() == ["plate-mjd-fiber", "position", "", "", ""]
    np.testing.assert_allclose(m["separation"][1].to_value(u.arcsec), 0.94, atol=0.01)
    assert "redshifts disagree" in m["reason"][2]  # right place, wrong object
    assert "arcsec away" in m["reason"][3] and "no position" in m["reason"][4]
    # position only: the first spectrum matches by position too; max_dz=None keeps #2
    m = join_catalog(spectra, cat, on="position", max_dz=None)
    assert m["catalog_row"].tolist() == [0, 2, 1, -1, -1]
    with pytest.raises(ValueError, match="needs ra and dec"):
        join_catalog(spectra["plate", "mjd", "fiber"], cat, on="position")
    with pytest.raises(ValueError, match="on must be"):
        join_catalog(spectra, cat, on="name")


@pytest.fixture
def survey_folder(tmp_path):
    """Eight SDSS-like files: 3 epochs of quasar A, 2 of B, one each of C, D, E."""
    from spectralnn.simulate import simulate_quasars

    batch = simulate_quasars(8, seed=2, survey="SDSS", z_range=(0.4, 0.6),
                             bal_fraction=0.0, dla_rate=0.0)
    folder = tmp_path / "spectra"
    folder.mkdir()
    objects = [("A", 10.0, 1.0, 0.50), ("A", 10.0, 1.0, 0.50), ("A", 10.0, 1.0, 0.50),
               ("B", 20.0, 2.0, 0.45), ("B", 20.0, 2.0, 0.45), ("C", 30.0, 3.0, 0.55),
               ("D", 40.0, 4.0, 0.42), ("E", 50.0, 5.0, 0.58)]
    for i, (_, ra, dec, z) in enumerate(objects):
        zwarning = 16 if i == 5 else 0  # C: a flagged pipeline redshift
        write_sdss_like(folder / f"spec-1000-{55000 + i}-0001.fits", batch.wavelength,
                        batch.flux[i], batch.ivar[i], 1000, 55000 + i, 1, z,
                        zwarning=zwarning, ra=ra + i * 1e-5, dec=dec)
    sub = folder / "again"
    sub.mkdir()
    shutil.copy(folder / "spec-1000-55000-0001.fits", sub)  # a duplicate download
    (folder / "spec-broken.fits").write_bytes(b"truncated download")
    catalog = Table({"SDSS_NAME": ["A", "B", "C", "D", "X"],
                     "RA": [10.0, 20.0, 30.0, 40.0, 70.0], "DEC": [1.0, 2.0, 3.0, 4.0, 7.0],
                     "Z": [0.5, 0.45, 0.55, 0.42, 1.0],
                     "LOG_MBH": [8.1, 8.6, 9.0, np.nan, 7.7]})  # D: no mass
    return folder, catalog, batch


def test_build_training_set(survey_folder, tmp_path):
    folder, catalog, batch = survey_folder
    out = tmp_path / "train.h5"
    report = build_training_set(folder, catalog, out, fractions=(0.5, 0.25, 0.25),
                                seed=3)
    meta = report.meta
    assert meta["n_spectra"] == 10  # 8 + the duplicate + the broken file
    assert meta["n_unreadable"] == 1 and meta["n_unjoined"] == 1  # E is not catalogued
    assert meta["n_duplicate"] == 1 and meta["n_cut"] == 2  # C's ZWARNING, D's mass
    assert meta["n_written"] == 5 and meta["n_joined"] == 8
    assert meta["n_catalog"] == 5 and meta["n_catalog_matched"] == 4
    assert meta["path"] == str(out)
    status = dict(zip(report["source"], report["status"], strict=True))
    assert status["spec-1000-55007-0001.fits"] == "unjoined"
    assert status["spec-1000-55005-0001.fits"] == "cut"
    reasons = dict(zip(report["source"], report["reason"], strict=True))
    assert "ZWARNING = 16" in reasons["spec-1000-55005-0001.fits"]
    assert "no log_mbh" in reasons["spec-1000-55006-0001.fits"]
    with SpectrumDataset(out) as ds:
        m = ds.meta
        assert len(ds) == 5 and ds.n_pixels == SDSS_LOGLAM_GRID.size
        assert m["object_id"].tolist() == ["A", "A", "A", "B", "B"]
        assert m["log_mbh"].unit == u.dex(u.solMass)
        np.testing.assert_allclose(m["log_mbh"].value, [8.1, 8.1, 8.1, 8.6, 8.6])
        # every epoch of an object on the same side of the split
        sides = {o: set(m["split"][m["object_id"] == o]) for o in ("A", "B")}
        assert all(len(s) == 1 for s in sides.values())
        assert ds.provenance["catalog_kind"] == "generic"
        # placed on the SDSS lattice without resampling: the pixels are the file's
        first = ds.read(0)
        start = int(round((np.log10(batch.wavelength[0]) - SDSS_LOGLAM_GRID[0]) / 1e-4))
        np.testing.assert_allclose(first.flux[0, start:start + batch.n_pixels],
                                   batch.flux[0].astype(np.float32), rtol=1e-6)
        assert first.mask[0, :start].all()
    with pytest.raises(DatasetError, match="exists"):
        build_training_set(folder, catalog, out)


def test_build_reports_when_nothing_joins(survey_folder, tmp_path):
    folder, _, _ = survey_folder
    far = Table({"RA": [300.0], "DEC": [-60.0], "Z": [2.0], "LOG_MBH": [9.0]})
    report = build_training_set(folder, far, tmp_path / "none.h5")
    assert report.meta["n_written"] == 0 and report.meta["path"] is None
    assert report.meta["n_unjoined"] == 9
    assert not (tmp_path / "none.h5").exists()
    with pytest.raises(ValueError, match="no column 'mass'"):
        build_training_set(folder, far, tmp_path / "x.h5", target="mass")


# --------------------------------------------------------------- real data
@pytest.mark.shared_data
@pytest.mark.slow
def test_real_spectra_with_dr16q_chen2019(real_data, tmp_path):
    """
    All the shared real SDSS/BOSS files against DR16Q + Chen et al. (2019).

    Chen's quasars all have 1.46 < z < 1.80 (Mg II and C IV both observed);
    the shared spectra are z < 0.7 broad-line AGN, RM017 (z = 0.456) and one
    object at z = 1.92: none is in the table, and the build says so, file by
    file, and writes no empty dataset.
    """
    chen = real_data / "catalogs" / "chen2019_dr16q_mbh" / "quasars.parquet"
    report = build_training_set(real_data / "sdss", chen, tmp_path / "chen.h5")
    meta = report.meta
    assert meta["n_catalog"] == 30920
    assert meta["n_spectra"] == 162  # 161 spectra + PyQSOFit's fit-result table
    assert meta["n_unreadable"] == 1
    assert meta["n_joined"] == 0 and meta["n_unjoined"] == 161
    assert meta["path"] is None and not (tmp_path / "chen.h5").exists()
    unjoined = report[report["status"] == "unjoined"]
    # joined first on plate-MJD-fibre (CHEN EPOCH), then on position (the names)
    assert all(r.startswith("plate-mjd-fiber not in the catalogue; nearest catalogue "
                            "source") for r in unjoined["reason"])


@pytest.mark.shared_data
def test_real_rm017_epochs_with_spiders_masses(real_data, tmp_path):
    """
    RM017's 52 epochs get the SPIDERS Hβ mass (8.29, MANIFEST) as one object.

    Matched on position (X-ray positions: 15 arcsec) with |Δz| < 0.01; all
    epochs share the object id and therefore the side of the split.
    """
    spiders = real_data / "catalogs" / "spiders_dr16_mbh" / "spiders_quasar_features.csv"
    report = build_training_set(real_data / "sdss" / "rm017_multiepoch", spiders,
                                tmp_path / "rm017.h5", radius=15 * u.arcsec, max_dz=0.01)
    meta = report.meta
    assert meta["n_spectra"] == 52 and meta["n_joined"] == 52
    assert meta["n_written"] == 52 and meta["n_catalog_matched"] == 1
    with SpectrumDataset(tmp_path / "rm017.h5") as ds:
        m = ds.meta
        assert set(m["object_id"]) == {"XMMSL2 J141324.6+530529"}
        assert len(set(m["split"])) == 1
        np.testing.assert_allclose(m["log_mbh"].value, 8.29, atol=0.01)
        assert ds.n_pixels == SDSS_LOGLAM_GRID.size
