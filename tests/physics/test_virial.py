"""Tests of spectralnn.physics.virial against numbers from the papers."""

import numpy as np
import pytest
from astropy import units as u
from astropy.tests.helper import assert_quantity_allclose

from spectralnn.errors import SpectralUnitsError
from spectralnn.physics import (
    VIRIAL_CALIBRATIONS,
    VIRIAL_LINE_COVERAGE,
    VirialCalibration,
    choose_virial_line,
    get_calibration,
    virial_mass,
)

KMS = u.km / u.s
ERGS = u.erg / u.s


def assert_log_mass(actual, expected, atol):
    """Compare log masses in dex(M_sun) (atol in dex)."""
    assert actual.unit == u.dex(u.M_sun)
    np.testing.assert_allclose(actual.value, expected, rtol=0, atol=atol)


def test_vp06_hbeta_by_hand():
    # VP06 eq. 5: log M = log[(FWHM/1000)^2 (L/1e44)^0.5] + 6.91
    m, err = virial_mass(4000 * KMS, 3e44 * ERGS)
    expected = 2 * np.log10(4.0) + 0.5 * np.log10(3.0) + 6.91
    assert_log_mass(m, expected, 1e-12)
    assert err.value == 0


def test_md04_hbeta_by_hand():
    # MD04 eq. 5: M = 4.74 (λL5100/1e44 erg/s)^0.61 FWHM^2 (km/s)
    fwhm, lum = 2500.0, 5e43
    m, _ = virial_mass(fwhm * KMS, lum * ERGS, calibration="MD04")
    expected = np.log10(4.74 * (lum / 1e44) ** 0.61 * fwhm**2)
    assert_log_mass(m, expected, 1e-12)


def test_a11_hbeta_by_hand():
    m, _ = virial_mass(5000 * KMS, 1e45 * ERGS, line="hb", calibration="A11_Hbeta")
    expected = 0.895 + 0.52 * 1.0 + 2 * np.log10(5000.0)
    assert_log_mass(m, expected, 1e-12)


# Shen et al. (2011) DR7 quasar catalogue, SDSS J120550.19+342240.3
# (plate 2089, MJD 53498, fibre 427): published LOGL3000, FWHM_MGII,
# LOGL1350, FWHM_CIV and LOGBH_MGII_S10, LOGBH_MGII_VO09, LOGBH_CIV_VP06.
# The catalogue stores unrounded coefficients' results: 1e-4 dex tolerance.
@pytest.mark.parametrize(
    ("line", "cal", "log_l", "fwhm", "published"),
    [
        ("MgII", "S11", 46.368801937169536, 4729.812569514398, 9.558345063223292),
        ("MgII", "VO09", 46.368801937169536, 4729.812569514398, 9.394088830762948),
        ("CIV", "VP06", 46.634680779574154, 5230.7138671875, 9.493502740592843),
    ],
)
def test_shen11_catalogue_values(line, cal, log_l, fwhm, published):
    m, _ = virial_mass(fwhm * KMS, log_l * u.dex(ERGS), line=line, calibration=cal)
    assert_log_mass(m, published, 1e-4)


def test_error_propagation_matches_finite_differences():
    fwhm, lum = 3000.0, 2e44
    df, dl = 200.0, 3e43
    _, err = virial_mass(
        fwhm * KMS, lum * ERGS, line="MgII", fwhm_err=df * KMS, luminosity_err=dl * ERGS
    )
    cal = get_calibration("MgII")
    h = 1e-3
    dmdf = (cal.log_mass(fwhm * (1 + h), lum) - cal.log_mass(fwhm * (1 - h), lum)) / (
        2 * h * fwhm
    )
    dmdl = (cal.log_mass(fwhm, lum * (1 + h)) - cal.log_mass(fwhm, lum * (1 - h))) / (
        2 * h * lum
    )
    expected = np.hypot(dmdf * df, dmdl * dl)
    assert_quantity_allclose(err, expected * u.dex, rtol=1e-5)
    _, err_tot = virial_mass(
        fwhm * KMS,
        lum * ERGS,
        line="MgII",
        fwhm_err=df * KMS,
        luminosity_err=dl * ERGS,
        include_scatter=True,
    )
    assert_quantity_allclose(
        err_tot, np.hypot(expected, cal.scatter) * u.dex, rtol=1e-5
    )


def test_units_vectorised_and_invalid():
    fwhm = np.array([3e6, -1.0, 4e6]) * u.m / u.s
    lum = 1e37 * u.W
    m, err = virial_mass(fwhm, lum)
    ref, _ = virial_mass(3000 * KMS, 1e44 * ERGS)
    assert_log_mass(m[0], ref.value, 1e-12)
    assert np.isnan(m[1].value) and np.isnan(err[1].value)
    assert m.shape == (3,)


def test_custom_calibration_and_errors():
    mine = VirialCalibration("mine", "Hbeta", 5100 * u.AA, 1.0, 0.5, 2.0, 0.3, "test")
    m, _ = virial_mass(1000 * KMS, 1e44 * ERGS, calibration=mine)
    assert_log_mass(m, 7.0, 1e-12)
    with pytest.raises(ValueError, match="is for CIV"):
        virial_mass(1000 * KMS, 1e44 * ERGS, calibration="VP06_CIV")
    with pytest.raises(ValueError, match="unknown calibration"):
        virial_mass(1000 * KMS, 1e44 * ERGS, calibration="XYZ")
    with pytest.raises(ValueError, match="unknown virial line"):
        virial_mass(1000 * KMS, 1e44 * ERGS, line="Halpha")
    with pytest.raises(SpectralUnitsError, match="needs a unit"):
        virial_mass(1000.0, 1e44 * ERGS)
    with pytest.raises(SpectralUnitsError, match="cannot be converted"):
        virial_mass(1000 * u.AA, 1e44 * ERGS)


@pytest.mark.parametrize(
    "cal", list(VIRIAL_CALIBRATIONS.values()), ids=lambda c: c.name
)
def test_registry_contract(cal):
    # every calibration: luminosity wavelength inside its line's coverage,
    # a reference, a positive scatter, FWHM slope 2 (virial)
    lo, hi = VIRIAL_LINE_COVERAGE[cal.line]
    assert lo <= cal.wavelength.to_value(u.AA) <= hi
    assert cal.reference and cal.scatter > 0 and cal.c == 2.0
    assert get_calibration(cal.line, cal.name) is cal


def test_choose_virial_line_boundaries():
    lo, hi = 3800 * u.AA, 9200 * u.AA
    z_hb = 9200 / VIRIAL_LINE_COVERAGE["Hbeta"][1] - 1  # Hβ leaves at the red end
    z_mg_lo = 3800 / VIRIAL_LINE_COVERAGE["MgII"][0] - 1  # MgII enters at the blue end
    eps = 1e-6
    got = choose_virial_line(
        [z_hb - eps, z_hb + eps, z_mg_lo - eps, z_mg_lo + eps], lo, hi
    )
    # z_hb ≈ 0.662 < z_mg_lo ≈ 0.727: a gap where neither Hβ nor MgII is whole
    assert list(got) == ["Hbeta", "", "", "MgII"]
    # CIV from 3800/1340 - 1 ≈ 1.836 and MgII up to 9200/3090 - 1 ≈ 1.977
    assert list(choose_virial_line([1.9, 2.0, np.nan], lo, hi)) == ["MgII", "CIV", ""]


def test_choose_virial_line_per_spectrum_coverage():
    # same z, different coverage: a DESI-like wide range keeps Hβ
    # (5535 Å × 1.75 = 9686 Å < 9824 Å but > 9200 Å)
    got = choose_virial_line(0.75, [3600, 3800] * u.AA, [9824, 9200] * u.AA)
    assert list(got) == ["Hbeta", "MgII"]
    got = choose_virial_line(0.75, 360 * u.nm, 982.4 * u.nm)
    assert got == "Hbeta"
