import numpy as np
import pytest
from astropy.table import Table

from spectralnn.datasets import duplicate_rows, split_by_object


def test_objects_never_on_two_sides():
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 300, 2000)  # ~6.7 epochs per object
    parts = split_by_object(ids, seed=4)
    sides = [set(ids[p].tolist()) for p in parts.values()]
    assert not (sides[0] & sides[1]) and not (sides[0] & sides[2]) \
        and not (sides[1] & sides[2])
    assert sum(len(p) for p in parts.values()) == len(ids)
    # fractions of objects near 0.8/0.1/0.1 (binomial sd for 300 objects ~ 0.02)
    frac = np.array([len(s) for s in sides]) / len(set(ids.tolist()))
    assert np.allclose(frac, [0.8, 0.1, 0.1], atol=0.07)


def test_split_stable_and_seeded():
    ids = np.arange(1000)
    a = split_by_object(ids, seed=1)
    b = split_by_object(ids[:500], seed=1)  # growing the dataset keeps assignments
    assert set(b["test"]) == set(a["test"][a["test"] < 500])
    c = split_by_object(ids, seed=2)
    assert not np.array_equal(a["test"], c["test"])


def test_duplicates_removed():
    t = Table({"object_id": ["x", "x", "x", "y"], "mjd": [1, 1, 2, 1]})
    assert duplicate_rows(t).tolist() == [False, True, False, False]
    parts = split_by_object(t, fractions=(1, 0, 0))
    assert parts["train"].tolist() == [0, 2, 3]


def test_bad_fractions():
    with pytest.raises(ValueError, match="fractions"):
        split_by_object([1, 2], fractions=(1, 1))
