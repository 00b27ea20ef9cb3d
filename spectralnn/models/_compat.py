"""Work-arounds for third-party quirks (internal)."""

import contextlib
import warnings

__all__ = []


@contextlib.contextmanager
def keras_numpy_warnings():
    """
    Silence one known third-party DeprecationWarning while Keras trains.

    Keras 3 on TensorFlow converts its learning-rate variable with
    ``np.array(variable)`` (in ``ReduceLROnPlateau`` and the history logs),
    which numpy >= 2 reports as a DeprecationWarning about ``__array__`` and
    ``copy``; it is harmless and not ours to fix.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r"__array__ implementation doesn't accept a copy keyword",
            category=DeprecationWarning,
        )
        yield
