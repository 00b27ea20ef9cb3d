import numpy as np
import pytest

from spectralnn.simulate import object_seeds, simulate_spectra


def _collect(kind, n, chunk, **kw):
    chunks = list(simulate_spectra(kind, n, seed=4, chunk_size=chunk, **kw))
    return chunks


@pytest.mark.parametrize("noiseless", [True, False])
@pytest.mark.parametrize("kind", ["galaxy", "star"])
def test_same_seed_any_chunk_size(kind, noiseless):
    a = _collect(kind, 7, 7, noiseless=noiseless)
    b = _collect(kind, 7, 3, noiseless=noiseless)
    assert [len(c) for c in b] == [3, 3, 1]
    for attr in ("flux", "ivar", "mask"):
        x = np.concatenate([getattr(c, attr) for c in a])
        y = np.concatenate([getattr(c, attr) for c in b])
        assert x.tobytes() == y.tobytes()
    ids = np.concatenate([c.meta["object_id"] for c in b])
    assert ids.tolist() == list(range(7))


def test_prefix_property_and_seed_matters():
    a = next(simulate_spectra("star", 5, seed=1, chunk_size=5))
    b = next(simulate_spectra("star", 2, seed=1))
    # equal to rounding (exact once observe is row-exact, see above)
    np.testing.assert_allclose(a.flux[:2], b.flux, rtol=1e-12, atol=1e-12)
    c = next(simulate_spectra("star", 2, seed=2))
    assert not np.array_equal(b.flux, c.flux)


def test_mixed_kinds():
    frac = {"galaxy": 0.5, "star": 0.5}
    a = np.concatenate([c.flux for c in simulate_spectra("mixed", 12, seed=3, chunk_size=5,
                                                         fractions=frac, noiseless=True)])
    chunks = list(simulate_spectra("mixed", 12, seed=3, chunk_size=12, fractions=frac,
                                   noiseless=True))
    assert np.array_equal(a, chunks[0].flux)
    assert set(chunks[0].meta["class"]) == {"GALAXY", "STAR"}
    assert chunks[0].meta["object_id"].tolist() == list(range(12))


def test_object_seeds_independent_of_start():
    a = object_seeds(8, 0, 4, "star")[3]
    b = object_seeds(8, 3, 4, "star")[0]
    assert np.array_equal(a.generate_state(4), b.generate_state(4))


def test_invalid():
    with pytest.raises(ValueError, match="kind"):
        simulate_spectra("planet", 3)
    with pytest.raises(ValueError, match="chunk_size"):
        simulate_spectra("star", 3, chunk_size=0)
    with pytest.raises(ValueError, match="seed"):
        simulate_spectra("star", 3, seed=-1)
    with pytest.raises(ValueError, match="fractions"):
        simulate_spectra("mixed", 3, fractions={"planet": 1})


def test_processes_byte_identical_to_serial():
    # two worker processes: same chunks, same order, same bytes (per-object seeds)
    kw = dict(seed=11, chunk_size=4, z_range=(0.5, 2.5))
    serial = list(simulate_spectra("qso", 10, **kw))
    parallel = list(simulate_spectra("qso", 10, processes=2, **kw))
    assert [len(c) for c in parallel] == [4, 4, 2]
    for a, b in zip(serial, parallel, strict=True):
        for attr in ("flux", "ivar", "mask"):
            assert getattr(a, attr).tobytes() == getattr(b, attr).tobytes()
        assert a.meta["object_id"].tolist() == b.meta["object_id"].tolist()
        assert np.array_equal(a.meta["log_mbh"], b.meta["log_mbh"])
    with pytest.raises(ValueError, match="processes"):
        simulate_spectra("star", 3, processes=0)
