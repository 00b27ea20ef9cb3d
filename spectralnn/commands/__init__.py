"""Subcommands of the ``spectralnn`` command line (see `spectralnn.cli`)."""
