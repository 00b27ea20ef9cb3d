"""
Measure the bundled example spectrum: the quickest check of an installation.

``spectralnn example`` reads the simulated SDSS quasar shipped with the
package (`spectralnn.datasets.example_spectrum`), measures its classic virial
black-hole mass (no network, no Keras needed) and, when default weights are
installed, the `~spectralnn.estimators.MassEstimator` prediction, and prints
both next to the simulation's truth.
"""

import sys

import numpy as np
from astropy import units as u
from astropy.table import QTable

from ..errors import ModelFileError
from ..logger import log

__all__ = ["add_arguments", "run", "example_table"]


def add_arguments(parser):
    """
    Declare the options of ``spectralnn example``.

    Parameters
    ----------
    parser : `argparse.ArgumentParser`
        The subcommand's parser.

    Examples
    --------
    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="spectralnn example")
    >>> add_arguments(parser)
    >>> parser.parse_args([]).model
    'default'
    """
    parser.add_argument("-o", "--output", default=None,
                        help="also write the table (ECSV) to this file")
    parser.add_argument("--model", default="default",
                        help="trained mass model for the network row (default: the "
                             "installed default weights, if any)")


def _network_row(spectrum, model):
    """(name, log_mbh, log_mbh_err) from the network, or None without weights/Keras."""
    try:
        from ..analysis import black_hole_mass

        estimator = None if model == "default" else model
        mass = black_hole_mass(spectrum, estimator=estimator)
    except ModelFileError as exc:
        log.info("no network prediction: %s", exc)
        return None
    except ImportError as exc:  # Keras or a backend missing: the physics still runs
        log.info("no network prediction (Keras unavailable: %s)", exc)
        return None
    name = "network (default weights)" if model == "default" else f"network ({model})"
    return name, float(mass.value), float(mass.uncertainty.value)


def example_table(model="default"):
    """
    The table ``spectralnn example`` prints.

    Parameters
    ----------
    model : str, optional
        Mass model for the network row (``'default'``: the installed default
        weights; the row is left out when there are none).

    Returns
    -------
    table : `~astropy.table.QTable`
        One row per method: ``method``, ``log_mbh`` [dex(M_sun)],
        ``log_mbh_err`` [dex] and ``note``; the first row is the simulation
        truth (true mass), then the virial mass of the noiseless spectrum,
        the measured virial mass and, when available, the network's.

    Examples
    --------
    >>> t = example_table()
    >>> [str(method) for method in t["method"][:3]]
    ['truth (simulation)', 'virial, noiseless (simulation)', 'virial (measured)']
    """
    from ..datasets import example_spectrum
    from ..physics.blackhole import virial_black_hole_mass

    spectrum = example_spectrum()
    truth = spectrum.meta["truth"]
    virial = virial_black_hole_mass(spectrum)
    rows = [
        ("truth (simulation)", truth["log_mbh"], np.nan,
         f"z = {truth['z']:.4f}, S/N = {truth['snr']:.0f}"),
        ("virial, noiseless (simulation)", truth["virial_log_mbh"], np.nan,
         f"Hbeta FWHM = {truth['fwhm_hbeta']:.0f} km/s"),
        ("virial (measured)", float(virial["log_mbh"][0].value),
         float(virial["log_mbh_err"][0].value),
         f"{virial['line'][0]} {virial['calibration'][0]}, FWHM = "
         f"{virial['fwhm'][0].to_value(u.km / u.s):.0f} km/s"),
    ]
    network = _network_row(spectrum, model)
    if network is not None:
        rows.append((*network, "MassEstimator"))
    table = QTable(rows=rows, names=("method", "log_mbh", "log_mbh_err", "note"))
    table["log_mbh"] = np.asarray(table["log_mbh"], dtype=float) * u.dex(u.M_sun)
    table["log_mbh_err"] = np.asarray(table["log_mbh_err"], dtype=float) * u.dex
    table["log_mbh"].info.format = ".3f"
    table["log_mbh_err"].info.format = ".3f"
    table.meta["spectrum"] = spectrum.meta["source"]
    return table


def run(args):
    """
    Run ``spectralnn example``.

    Parameters
    ----------
    args : `argparse.Namespace`
        Parsed options.

    Returns
    -------
    status : int
        0 on success.

    Examples
    --------
    >>> import argparse
    >>> run(argparse.Namespace(model="default", output=None))  # doctest: +ELLIPSIS
    spectralnn example: ...
    0
    """
    table = example_table(args.model)
    out = sys.stdout
    out.write(f"spectralnn example: {table.meta['spectrum']} "
              "(simulated SDSS quasar, bundled with the package)\n")
    out.write("\n".join(table.pformat(max_lines=-1, max_width=-1)) + "\n")
    if len(table) < 4:
        out.write("(no network row: no default mass weights installed; see "
                  "spectralnn.estimators.MassEstimator)\n")
    if args.output:
        table.write(args.output, format="ascii.ecsv", overwrite=True)
        log.info("wrote %s", args.output)
    return 0
