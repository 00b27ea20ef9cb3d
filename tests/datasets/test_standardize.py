import numpy as np
import pytest
from astropy import units as u

from spectralnn import SpectrumBatch
from spectralnn.datasets import SpectrumDataset, Standardizer, write_dataset


def _batch(n=40, seed=0):
    rng = np.random.default_rng(seed)
    flux = 5 + 2 * rng.standard_normal((n, 20))
    mask = rng.random((n, 20)) < 0.1
    return SpectrumBatch(np.arange(4000.0, 4020.0) * u.AA, flux, np.ones((n, 20)),
                         mask=mask, flux_unit=u.one)


def test_streaming_equals_full(tmp_path):
    b = _batch()
    full = Standardizer().fit(b)
    path = write_dataset(b, tmp_path / "s.h5", dtype="float64")
    with SpectrumDataset(path) as ds:
        stream = Standardizer().fit(ds, batch_size=7)
    good = ~b.mask
    ref = np.array([b.flux[good[:, j], j].mean() for j in range(20)])
    assert np.allclose(full.mean, ref, rtol=1e-12)
    assert np.allclose(stream.mean, full.mean, rtol=1e-12)
    assert np.allclose(stream.std, full.std, rtol=1e-12)


def test_transform_and_state():
    b = _batch()
    s = Standardizer().fit(b)
    out = s.transform(b)
    good = ~out.mask
    assert abs(out.flux[good].mean()) < 1e-10
    # ivar scales with the flux: S/N is unchanged
    assert np.allclose(out.flux[good] * np.sqrt(out.ivar[good]),
                       (b.flux[good] - s.mean[np.nonzero(good)[1]]) * np.sqrt(b.ivar[good]))
    s2 = Standardizer.from_dict(s.to_dict())
    assert np.array_equal(s2.transform(b).flux, out.flux)
    per = Standardizer("spectrum").transform(b)
    assert np.allclose([per.flux[i, ~per.mask[i]].std(ddof=1) for i in range(3)], 1.0)
    with pytest.raises(RuntimeError, match="fit"):
        Standardizer().transform(b)
