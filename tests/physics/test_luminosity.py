"""Tests of spectralnn.physics.luminosity against direct cosmology calculations."""

import numpy as np
import pytest
from astropy import units as u
from astropy.cosmology import FlatLambdaCDM, Planck18
from astropy.tests.helper import assert_quantity_allclose

from spectralnn.errors import SpectralUnitsError
from spectralnn.physics import luminosity_distance, monochromatic_luminosity

FLAM = u.erg / (u.s * u.cm**2 * u.AA)


def direct(f, wave, z, cosmo):
    """4π d_L² λ f_λ written out with astropy quantities."""
    return (4 * np.pi * cosmo.luminosity_distance(z) ** 2 * wave * f).to(u.erg / u.s)


@pytest.mark.parametrize("cosmo", [None, FlatLambdaCDM(H0=70, Om0=0.3)])
def test_matches_direct_calculation(cosmo):
    z = np.array([0.05, 0.5, 2.0])
    f = np.array([3.0, 1.0, 0.2]) * 1e-17 * FLAM
    lum = monochromatic_luminosity(f, 5100 * u.AA, z, cosmology=cosmo)
    expected = direct(f, 5100 * u.AA, z, cosmo or Planck18)
    # both are the same closed formula: agreement to rounding
    assert_quantity_allclose(lum, expected, rtol=1e-12)


def test_rest_and_observed_frame_agree():
    # a flux-conserving shift f_rest = (1+z) f_obs, λ_rest = λ_obs/(1+z)
    # must give the same λL_λ (derivation in the module docstring)
    z = 0.7
    f_obs = 2e-17 * FLAM
    lam_rest = 3000 * u.AA
    rest = monochromatic_luminosity((1 + z) * f_obs, lam_rest, z)
    obs = monochromatic_luminosity(f_obs, lam_rest * (1 + z), z, frame="observed")
    assert_quantity_allclose(rest, obs, rtol=1e-12)


def test_luminosity_from_integrated_line_is_consistent():
    # a flat rest-frame L_λ integrated over 100 Å must equal 4π d_L² × observed
    # flux integrated over the (1+z)-stretched interval
    z = 1.5
    f_rest = 1e-17 * FLAM
    lam_l = monochromatic_luminosity(f_rest, 1.0 * u.AA, z)  # = L_λ × 1 Å
    line_lum = lam_l / u.AA * 100 * u.AA
    f_obs = f_rest / (1 + z)
    flux = f_obs * 100 * u.AA * (1 + z)
    assert_quantity_allclose(
        line_lum,
        (4 * np.pi * Planck18.luminosity_distance(z) ** 2 * flux).to(u.erg / u.s),
    )


def test_fnu_input_and_errors():
    z = 0.3
    f = 1e-17 * FLAM
    fnu = f.to(u.mJy, equivalencies=u.spectral_density(5100 * u.AA))
    lum, err = monochromatic_luminosity(fnu, 5100 * u.AA, z, flux_density_err=0.1 * fnu)
    assert_quantity_allclose(lum, direct(f, 5100 * u.AA, z, Planck18), rtol=1e-10)
    # linear in flux: relative errors are preserved
    assert_quantity_allclose(err, 0.1 * lum, rtol=1e-10)


def test_nan_and_nonpositive_redshift_give_nan():
    lum = monochromatic_luminosity(
        np.ones(3) * 1e-17 * FLAM, 5100 * u.AA, [np.nan, 0.0, 0.1]
    )
    assert np.isnan(lum[:2]).all() and np.isfinite(lum[2])
    assert np.isnan(luminosity_distance(-0.1))


def test_bad_inputs():
    with pytest.raises(SpectralUnitsError, match="flux density"):
        monochromatic_luminosity(1.0 * u.Jy * u.s, 5100 * u.AA, 0.1)
    with pytest.raises(SpectralUnitsError, match="flux-density unit"):
        monochromatic_luminosity(1.0, 5100 * u.AA, 0.1)
    with pytest.raises(SpectralUnitsError, match="wavelength"):
        monochromatic_luminosity(1e-17 * FLAM, 5100, 0.1)
    with pytest.raises(TypeError, match="astropy.cosmology"):
        monochromatic_luminosity(1e-17 * FLAM, 5100 * u.AA, 0.1, cosmology="Planck18")
    with pytest.raises(ValueError, match="frame"):
        monochromatic_luminosity(1e-17 * FLAM, 5100 * u.AA, 0.1, frame="lab")
