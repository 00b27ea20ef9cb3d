"""Fixtures of the quasar-simulator tests: one shared noiseless sample."""

import pytest

from spectralnn.simulate import simulate_quasars


@pytest.fixture(scope="module")
def noiseless_quasars():
    """2,000 noiseless SDSS quasars (mean forest, no instrument), seed 2001."""
    return simulate_quasars(2000, seed=2001, noiseless=True, forest=False)
