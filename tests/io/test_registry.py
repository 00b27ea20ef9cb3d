"""Tests of spectralnn.io.registry."""

import pytest
from astropy import units as u
from specutils import Spectrum, SpectrumList

import spectralnn.io  # noqa: F401  (registers the formats)


def test_formats_by_name(sdss_file, desi_file):
    spec = Spectrum.read(sdss_file[0], format="spectralnn SDSS")
    assert spec.meta["object_id"] == "SDSS_1234-55555-12"
    spectra = SpectrumList.read(
        desi_file[0], format="spectralnn DESI merged", targets=[101]
    )
    assert len(spectra) == 1 and spectra[0].meta["targetid"] == 101


@pytest.mark.filterwarnings("ignore:.*multiple slashes")  # specutils' own loader
def test_auto_identification_unchanged(sdss_file):
    # no identifier is registered: specutils still picks its own SDSS loader
    spec = Spectrum.read(sdss_file[0])
    assert "object_id" not in spec.meta


def test_image_format(tmp_path):
    import numpy as np
    from astropy.io import fits

    hdu = fits.PrimaryHDU(np.ones(5, dtype=np.float32))
    hdu.header.update(CRVAL1=4000.0, CDELT1=1.0, BUNIT="Jy")
    hdu.writeto(tmp_path / "s.fits")
    spec = Spectrum.read(tmp_path / "s.fits", format="spectralnn 1D image")
    assert spec.flux.unit == u.Jy
