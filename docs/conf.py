# Sphinx configuration for spectralnn (sphinx-astropy based).
import datetime
import importlib.metadata

try:
    from sphinx_astropy.conf.v2 import *  # noqa: F403
except ImportError:  # pragma: no cover
    extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon"]

project = "spectralnn"
author = "The spectralnn developers"
copyright = f"{datetime.datetime.now().year}, {author}"
try:
    release = importlib.metadata.version("spectralnn")
except importlib.metadata.PackageNotFoundError:  # pragma: no cover
    release = "0.0.0"
version = ".".join(release.split(".")[:2])

# Offline builds: no intersphinx look-ups over the network.
intersphinx_mapping = {}
nitpicky = False
exclude_patterns = ["_build"]
