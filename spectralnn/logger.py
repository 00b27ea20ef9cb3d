"""
The package logger.

spectralnn reports through the standard :mod:`logging` module under the logger
name ``"spectralnn"``: batch progress at INFO, per-spectrum detail at DEBUG.
Nothing in the package prints.

Examples
--------
>>> from spectralnn import log
>>> log.name
'spectralnn'
"""

import logging

__all__ = ["log"]

log = logging.getLogger("spectralnn")
log.addHandler(logging.NullHandler())
