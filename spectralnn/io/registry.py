"""
spectralnn readers in the astropy/specutils I/O registry.

Importing `spectralnn.io` registers three formats, usable only by name (no
identifier is registered, so specutils' automatic format identification is
unchanged):

- ``Spectrum.read(path, format="spectralnn SDSS")``: `read_sdss` (pipeline
  labels and photometry in ``meta``);
- ``Spectrum.read(path, format="spectralnn 1D image")``:
  `read_fits_image_spectrum` (``error=``, ``flux_unit=`` are passed on);
- ``SpectrumList.read(path, format="spectralnn DESI merged")``: one
  arm-merged spectrum per target (``targets=``, ``rows=``, ``redrock=``).
"""

from specutils import Spectrum, SpectrumList
from specutils.io.registers import data_loader

from .desi import read_desi_coadd
from .fits_image import read_fits_image_spectrum
from .sdss import read_sdss

__all__ = ["REGISTERED_FORMATS"]


def _by_name_only(origin, *args, **kwargs):
    """Identify nothing: these formats are used only when named."""
    return False


#: The registry labels spectralnn adds, with the class they read into.
REGISTERED_FORMATS = {
    "spectralnn SDSS": Spectrum,
    "spectralnn 1D image": Spectrum,
    "spectralnn DESI merged": SpectrumList,
}


@data_loader(
    "spectralnn SDSS",
    dtype=Spectrum,
    identifier=_by_name_only,
    force=True,
    autogenerate_spectrumlist=False,
)
def _sdss_loader(file_obj, **kwargs):
    return read_sdss(file_obj, **kwargs)


@data_loader(
    "spectralnn 1D image",
    dtype=Spectrum,
    identifier=_by_name_only,
    force=True,
    autogenerate_spectrumlist=False,
)
def _image_loader(file_obj, **kwargs):
    return read_fits_image_spectrum(file_obj, **kwargs)


@data_loader(
    "spectralnn DESI merged", dtype=SpectrumList, identifier=_by_name_only, force=True
)
def _desi_loader(file_obj, **kwargs):
    return SpectrumList(read_desi_coadd(file_obj, **kwargs).to_spectra())
