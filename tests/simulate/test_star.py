import numpy as np
import pytest
from astropy import units as u

from spectralnn.simulate import STAR_GROUPS, STAR_SUBCLASSES, simulate_stars


@pytest.fixture(scope="module")
def stars():
    return simulate_stars(150, seed=2, noiseless=True)


def test_groups_cover_ten_or_more(stars):
    groups = set(stars.meta["spectral_group"])
    assert len(set(STAR_GROUPS)) >= 10
    assert groups == set(STAR_GROUPS)
    assert set(stars.meta["class"]) == {"STAR"}
    assert set(stars.meta["subclass"]) <= set(STAR_SUBCLASSES["subclass"])


def test_teff_in_subclass_range(stars):
    t = STAR_SUBCLASSES
    t.add_index("subclass") if not t.indices else None
    for row in stars.meta:
        ref = t.loc[row["subclass"]]
        assert ref["teff_min"] <= row["teff"] <= ref["teff_max"]


def test_temperature_sequence():
    # hotter stars are bluer: g - r colour from the noiseless spectra
    from spectralnn.simulate import synthetic_photometry

    b = simulate_stars(4, seed=0, subclasses=["A0"], noiseless=True)
    m = simulate_stars(4, seed=0, subclasses=["M5"], noiseless=True)
    gr_a = np.subtract(*[synthetic_photometry(b.wavelength, b.flux)[k] for k in "gr"])
    gr_m = np.subtract(*[synthetic_photometry(m.wavelength, m.flux)[k] for k in "gr"])
    assert np.all(gr_a < 0.2) and np.all(gr_m > 1.0)


def test_tio_band_in_m_dwarfs():
    m = simulate_stars(3, seed=1, subclasses=["M5"], noiseless=True, rv_sigma=0 * u.km / u.s)
    w = m.wavelength
    # TiO 7054 head: flux just red of the head falls well below just blue of it
    blue = m.flux[:, (w > 7020) & (w < 7045)].mean(axis=1)
    red = m.flux[:, (w > 7065) & (w < 7090)].mean(axis=1)
    assert np.all(red < 0.8 * blue)


def test_radial_velocity_shift():
    s = simulate_stars(2, seed=9, subclasses=["A0"], noiseless=True,
                       rv_sigma=300 * u.km / u.s)
    z = np.asarray(s.meta["z"])
    assert np.allclose(z, s.meta["rv"].to_value(u.km / u.s) / 299792.458)
    w = s.wavelength
    for i in range(2):
        win = (w > 6500) & (w < 6630)
        centre = w[win][np.argmin(s.flux[i, win])]
        # Hα minimum within two pixels (2 x 1.5 Å) of the shifted line
        assert abs(centre - 6564.61 * (1 + z[i])) < 3.0


def test_unknown_subclass():
    with pytest.raises(ValueError, match="unknown stellar subclasses"):
        simulate_stars(1, subclasses=["X9"])
