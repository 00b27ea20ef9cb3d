# Sphinx configuration for spectralnn (sphinx-astropy based).
#
# Build (offline, runs every tutorial in ../examples):
#     pip install -e ".[docs]" && sphinx-build -W -b html docs docs/_build/html
import datetime
import importlib.metadata
import importlib.util
import os
import sys
import warnings
from pathlib import Path

if importlib.util.find_spec("spectralnn") is None:  # pragma: no cover
    # building from a checkout that is not installed: use the source tree
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # no TensorFlow start-up chatter
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

try:
    from sphinx_astropy.conf.v2 import *  # noqa: F403
except ImportError:  # pragma: no cover
    extensions = ["sphinx.ext.autodoc", "numpydoc", "sphinx_automodapi.automodapi"]

project = "spectralnn"
author = "The spectralnn developers"
copyright = f"{datetime.datetime.now().year}, {author}"
try:
    release = importlib.metadata.version("spectralnn")
except importlib.metadata.PackageNotFoundError:  # pragma: no cover
    release = "0.0.0"
version = ".".join(release.split(".")[:2])

# -- Offline and without Graphviz ---------------------------------------------
# No intersphinx look-ups over the network (the build must work offline), and
# no inheritance diagrams (they need Graphviz's ``dot``).
intersphinx_mapping = {}
extensions = [  # noqa: F405
    ext for ext in extensions  # noqa: F405
    if ext not in ("sphinx.ext.intersphinx", "sphinx.ext.inheritance_diagram")
]
automodapi_inheritance_diagram = False
nitpicky = False

# -- API reference ------------------------------------------------------------
automodapi_toctreedirnm = "api"
automodsumm_inherited_members = False
numpydoc_show_class_members = False
# Parameter types are prose ("array of float, shape (N,)"), not cross-references.
numpydoc_xref_param_type = False

# -- Command line: documented from the real argparse parser -------------------
extensions.append("sphinxarg.ext")

# -- Tutorials: sphinx-gallery runs every examples/plot_*.py at build time ----
extensions.append("sphinx_gallery.gen_gallery")
sphinx_gallery_conf = {
    "examples_dirs": ["../examples"],
    "gallery_dirs": ["tutorials"],
    "filename_pattern": r"/plot_",
    "within_subsection_order": "FileNameSortKey",
    "download_all_examples": False,
    "remove_config_comments": True,
    "abort_on_example_error": True,
    "matplotlib_animations": False,
    "min_reported_time": 1,
    "reset_modules": ("matplotlib", "seaborn"),
}

exclude_patterns = ["_build", "tutorials/*.ipynb", "tutorials/*.py"]
html_static_path = ["_static"]

# Matplotlib complains when a figure is shown with the Agg backend.
warnings.filterwarnings("ignore", message=".*FigureCanvasAgg is non-interactive.*")


def _link_argparse_roles(app, doctree):
    """
    Turn `name` in the command-line help into API links.

    sphinx-argparse parses the subcommands' descriptions (their modules'
    docstrings) without the ``default_role`` of this configuration, so a
    ```~spectralnn.x.y``` there would become an italic title reference.
    """
    from docutils import nodes
    from sphinx.addnodes import pending_xref

    if app.env.docname != "command_line":
        return
    for node in list(doctree.findall(nodes.title_reference)):
        target = node.astext()
        full = target.lstrip("~")
        text = full.rsplit(".", 1)[-1] if target.startswith("~") else full
        xref = pending_xref("", refdomain="py", reftype="obj", reftarget=full,
                            refexplicit=True, refwarn=False)
        xref += nodes.literal(text, text, classes=["xref", "py", "py-obj"])
        node.replace_self(xref)


def setup(app):
    app.connect("doctree-read", _link_argparse_roles)
