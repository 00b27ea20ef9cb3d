"""Tests of spectralnn.preprocessing.dereddening."""

import numpy as np
import pytest
from astropy import units as u
from astropy.table import QTable
from astropy.tests.helper import assert_quantity_allclose
from dust_extinction.averages import G03_SMCBar
from dust_extinction.parameter_averages import F99, G23
from numpy.testing import assert_allclose, assert_array_equal
from specutils import Spectrum

from spectralnn.batch import FLUX_UNIT, SpectrumBatch
from spectralnn.errors import (
    BatchItemWarning,
    InvalidSpectrumError,
    WavelengthCoverageError,
)
from spectralnn.flags import Flag
from spectralnn.preprocessing.dereddening import (
    deredden,
    dust_model_names,
    extinction_model,
)
from spectralnn.preprocessing.redshift import to_rest_frame

EBV = np.array([0.02, 0.1, 0.35, 0.0])


@pytest.fixture
def batch(quasar_batch_arrays):
    wave, flux, ivar = quasar_batch_arrays
    return SpectrumBatch(wave * u.AA, flux * FLUX_UNIT, ivar, meta=QTable({"ebv": EBV}))


@pytest.mark.parametrize(
    ("model", "reference"),
    [("G23", G23(Rv=3.1)), (F99, F99(Rv=3.1)), (G03_SMCBar(), G03_SMCBar())],
    ids=["name", "class", "instance"],
)
def test_equals_dust_extinction(batch, model, reference):
    out = deredden(batch, model=model)
    for i, ebv in enumerate(EBV):
        transmitted = reference.extinguish(batch.spectral_axis, Ebv=ebv)
        assert_allclose(out.flux[i], batch.flux[i] / transmitted, rtol=1e-10)
        assert_allclose(out.ivar[i], batch.ivar[i] * transmitted**2, rtol=1e-10)
    assert_allclose(out.meta["ebv"], EBV)
    # S/N per pixel is unchanged by a deterministic rescaling
    assert_allclose(out.flux * np.sqrt(out.ivar), batch.flux * np.sqrt(batch.ivar),
                    rtol=1e-10)


def test_r_v_and_argument_ebv(batch):
    out = deredden(batch, ebv=0.2, r_v=5.0)
    transmitted = G23(Rv=5.0).extinguish(batch.spectral_axis, Ebv=0.2)
    assert_allclose(out.flux, batch.flux / transmitted, rtol=1e-10)
    assert_allclose(out.meta["ebv"], 0.2)
    # E(B-V) as a Quantity in magnitudes
    out_q = deredden(batch, ebv=0.2 * u.mag, r_v=5.0)
    assert_allclose(out_q.flux, out.flux, rtol=1e-15)


def test_per_row_grids(batch):
    # observed-frame spectra on different grids (e.g. different plates)
    shifts = np.array([1.0, 1.01, 0.99, 1.02])
    waves = batch.wavelength[None, :] * shifts[:, None]
    per_row = SpectrumBatch(waves * u.AA, batch.flux * FLUX_UNIT, batch.ivar,
                            meta=QTable({"ebv": EBV}))
    out = deredden(per_row)
    model = G23(Rv=3.1)
    for i in range(len(per_row)):
        transmitted = model.extinguish(waves[i] * u.AA, Ebv=EBV[i])
        assert_allclose(out.flux[i], per_row.flux[i] / transmitted, rtol=1e-10)


def test_single_spectrum(batch):
    spectrum = batch.to_spectrum(2)
    out = deredden(spectrum)
    assert isinstance(out, Spectrum)
    transmitted = G23(Rv=3.1).extinguish(spectrum.spectral_axis, Ebv=0.35)
    assert_quantity_allclose(out.flux, spectrum.flux / transmitted, rtol=1e-10)


def test_unknown_ebv_single_raises(quasar_batch_arrays):
    wave, flux, ivar = quasar_batch_arrays
    spectrum = Spectrum(flux=flux[0] * FLUX_UNIT, spectral_axis=wave * u.AA)
    with pytest.raises(InvalidSpectrumError, match="E\\(B-V\\) is unknown"):
        deredden(spectrum)
    with pytest.raises(InvalidSpectrumError, match="E\\(B-V\\)"):
        deredden(spectrum, ebv=-0.1)
    # ebv=0 is an explicit "no correction"
    out = deredden(spectrum, ebv=0)
    assert_quantity_allclose(out.flux, spectrum.flux)


def test_unknown_ebv_batch_flags(batch):
    with pytest.warns(BatchItemWarning, match="1 spectra have no valid E\\(B-V\\)"):
        out = deredden(batch, ebv=[0.1, np.nan, 0.1, 0.1])
    assert out.flags[1] & Flag.NO_DATA
    assert out.mask[1].all() and not out.ivar[1].any()
    assert not out.mask[[0, 2, 3]].any()
    assert_array_equal(out.flags[[0, 2, 3]], 0)


def test_rest_frame_refused(batch):
    rest = to_rest_frame(batch, z=0.3)
    with pytest.raises(InvalidSpectrumError, match="observed-frame"):
        deredden(rest)
    with pytest.raises(InvalidSpectrumError, match="observed-frame"):
        deredden(to_rest_frame(batch.to_spectrum(0), z=0.3))


def test_out_of_range_raises():
    wave = np.linspace(7000.0, 13000.0, 50) * u.AA
    batch = SpectrumBatch(wave, np.ones(50), np.ones(50), flux_unit=u.one,
                          meta={"ebv": 0.1})
    # D22 is defined for 0.8-4 micron only
    with pytest.raises(WavelengthCoverageError, match="8000.0-40000.0 Angstrom"):
        deredden(batch, model="D22")
    # masking the pixels outside the range makes it valid; they are left alone
    masked = batch.copy(mask=wave.value < 8000.0, ivar=np.where(wave.value < 8000.0,
                                                                0.0, 1.0)[None])
    out = deredden(masked, model="D22")
    assert_allclose(out.flux[0][wave.value < 8000.0], 1.0)
    assert np.all(out.flux[0][wave.value >= 8000.0] > 1.0)


def test_model_lookup():
    assert {"G23", "F99", "CCM89", "G03_SMCBar"} <= set(dust_model_names())
    assert isinstance(extinction_model(), G23)
    with pytest.raises(ValueError, match="unknown dust extinction model 'G99'"):
        extinction_model("G99")
    with pytest.raises(ValueError, match="conflicts"):
        extinction_model(G03_SMCBar, r_v=3.1)
    with pytest.raises(ValueError, match="conflicts"):
        extinction_model(G23(Rv=3.1), r_v=4.0)
    with pytest.raises(ValueError, match="not a dust_extinction model"):
        extinction_model(dict)
