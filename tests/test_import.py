"""`import spectralnn` and the physics must not pay for TensorFlow/Keras."""

import subprocess
import sys

import pytest

MODULES = [
    "spectralnn",
    "spectralnn.batch",
    "spectralnn.io",
    "spectralnn.preprocessing",
    "spectralnn.physics",
    "spectralnn.simulate",
    "spectralnn.datasets",
    "spectralnn.estimators",
    "spectralnn.cli",
]


@pytest.mark.parametrize("module", MODULES)
def test_no_tensorflow_on_import(module):
    code = (
        f"import sys, importlib; importlib.import_module({module!r}); "
        "heavy = [m for m in ('tensorflow', 'keras', 'jax', 'torch') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_public_names():
    import spectralnn

    for name in spectralnn.__all__:
        assert hasattr(spectralnn, name), name
    assert spectralnn.__version__
