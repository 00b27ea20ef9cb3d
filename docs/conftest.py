"""
pytest configuration of the documentation pages (their doctests run with ``--doctest-rst``).

``conf.py`` is Sphinx's configuration, not a test module; the other folders are
written by the documentation build (automodapi pages, executed tutorials).
"""

collect_ignore = ["conf.py"]
collect_ignore_glob = ["_build/*", "api/*", "generated/*", "tutorials/*"]
