"""
Rest wavelengths and fitting windows of the lines used everywhere.

One table, `LINES`, holds every emission line the package measures or
simulates; `CONTINUUM_WINDOWS` holds the standard line-free windows of quasar
spectra. All wavelengths are **vacuum**, in Å, as in SDSS, BOSS and DESI
spectra.

Wavelengths are vacuum values of the NIST Atomic Spectra Database for single
lines; for blended broad quasar features they are the composite-spectrum
values of Vanden Berk et al. (2001, AJ 122, 549, table 2). Continuum windows
follow Shen et al. (2011, ApJS 194, 45) and Vestergaard & Peterson (2006,
ApJ 641, 689).

Examples
--------
>>> from spectralnn.lines import LINES, get_line
>>> get_line("Hbeta")["wavelength"]
<Quantity 4862.68 Angstrom>
>>> "CIV" in LINES["name"]
True
"""

import numpy as np
from astropy import units as u
from astropy.table import QTable

__all__ = [
    "LINES",
    "CONTINUUM_WINDOWS",
    "LINE_COMPLEXES",
    "get_line",
    "line_names",
]

# name, vacuum wavelength (A), kind, fit window lo/hi (rest A), label
_LINE_DATA = [
    ("LyB", 1025.72, "broad", 1000.0, 1050.0, "Lyβ"),
    ("OVI", 1033.82, "broad", 1000.0, 1060.0, "O VI"),
    ("Lya", 1215.67, "broad", 1160.0, 1290.0, "Lyα"),
    ("NV", 1240.14, "broad", 1230.0, 1290.0, "N V"),
    ("CII", 1335.30, "broad", 1310.0, 1360.0, "C II"),
    ("SiIV", 1396.76, "broad", 1340.0, 1450.0, "Si IV+O IV]"),
    ("CIV", 1549.06, "broad", 1500.0, 1600.0, "C IV"),
    ("HeII1640", 1640.42, "broad", 1620.0, 1670.0, "He II"),
    ("CIII]", 1908.73, "broad", 1850.0, 1970.0, "C III]"),
    ("MgII", 2798.75, "broad", 2700.0, 2900.0, "Mg II"),
    ("[NeV]3426", 3426.84, "narrow", 3410.0, 3440.0, "[Ne V]"),
    ("[OII]3726", 3727.09, "narrow", 3710.0, 3745.0, "[O II]"),
    ("[OII]3729", 3729.88, "narrow", 3710.0, 3745.0, "[O II]"),
    ("[NeIII]3869", 3869.86, "narrow", 3855.0, 3885.0, "[Ne III]"),
    ("Hdelta", 4102.89, "broad", 4050.0, 4150.0, "Hδ"),
    ("Hgamma", 4341.68, "broad", 4290.0, 4390.0, "Hγ"),
    ("[OIII]4363", 4364.44, "narrow", 4355.0, 4375.0, "[O III]"),
    ("HeII4686", 4687.02, "broad", 4640.0, 4730.0, "He II"),
    ("Hbeta", 4862.68, "broad", 4640.0, 5100.0, "Hβ"),
    ("[OIII]4959", 4960.30, "narrow", 4940.0, 4980.0, "[O III]"),
    ("[OIII]5007", 5008.24, "narrow", 4990.0, 5030.0, "[O III]"),
    ("HeI5876", 5877.25, "broad", 5850.0, 5905.0, "He I"),
    ("[OI]6300", 6302.05, "narrow", 6285.0, 6320.0, "[O I]"),
    ("[NII]6548", 6549.86, "narrow", 6535.0, 6560.0, "[N II]"),
    ("Halpha", 6564.61, "broad", 6400.0, 6800.0, "Hα"),
    ("[NII]6583", 6585.27, "narrow", 6570.0, 6600.0, "[N II]"),
    ("[SII]6716", 6718.29, "narrow", 6705.0, 6725.0, "[S II]"),
    ("[SII]6731", 6732.67, "narrow", 6725.0, 6745.0, "[S II]"),
]


def _build_lines():
    names, wave, kind, lo, hi, label = zip(*_LINE_DATA)
    table = QTable()
    table["name"] = np.array(names)
    table["wavelength"] = np.array(wave) * u.AA
    table["kind"] = np.array(kind)
    table["window_min"] = np.array(lo) * u.AA
    table["window_max"] = np.array(hi) * u.AA
    table["label"] = np.array(label)
    table.add_index("name")
    table.meta["wavelengths"] = "vacuum"
    table.meta["references"] = [
        "NIST Atomic Spectra Database (single lines)",
        "Vanden Berk et al. 2001, AJ 122, 549 (quasar blends)",
    ]
    return table


#: Table of emission lines: ``name``, vacuum ``wavelength``, ``kind``
#: ('broad' or 'narrow' in quasars), the rest-frame fitting window
#: ``window_min``–``window_max`` and a display ``label``.
LINES = _build_lines()

#: Line-free rest-frame windows of quasar spectra (Å, vacuum) used for the
#: power-law continuum, from Shen et al. (2011) and Vestergaard & Peterson (2006).
CONTINUUM_WINDOWS = (
    np.array(
        [
            [1150.0, 1170.0],
            [1275.0, 1290.0],
            [1350.0, 1360.0],
            [1445.0, 1465.0],
            [1690.0, 1705.0],
            [1770.0, 1810.0],
            [1970.0, 2400.0],
            [2480.0, 2675.0],
            [2925.0, 3400.0],
            [3775.0, 3832.0],
            [4000.0, 4050.0],
            [4200.0, 4230.0],
            [4435.0, 4640.0],
            [5100.0, 5535.0],
            [6005.0, 6035.0],
            [6110.0, 6250.0],
            [6800.0, 7000.0],
            [7160.0, 7180.0],
            [7500.0, 7800.0],
            [8050.0, 8150.0],
        ]
    )
    * u.AA
)

#: Lines fitted together (a broad line and the narrow lines on top of it).
LINE_COMPLEXES = {
    "Hbeta": ("Hbeta", "[OIII]4959", "[OIII]5007"),
    "Halpha": ("Halpha", "[NII]6548", "[NII]6583", "[SII]6716", "[SII]6731"),
    "MgII": ("MgII",),
    "CIV": ("CIV",),
}


def line_names():
    """
    Names of all lines in `LINES`.

    Returns
    -------
    names : list of str
        In order of increasing wavelength.

    Examples
    --------
    >>> line_names()[:3]
    ['LyB', 'OVI', 'Lya']
    """
    return [str(name) for name in LINES["name"]]


def get_line(name):
    """
    One row of `LINES` by name.

    Parameters
    ----------
    name : str
        The line name as in ``LINES['name']`` (e.g. ``'Hbeta'``, ``'[OIII]5007'``).

    Returns
    -------
    row : `~astropy.table.Row`
        The line's row.

    Raises
    ------
    KeyError
        If the line is unknown; the message lists the known names.

    Examples
    --------
    >>> str(get_line("MgII")["kind"])
    'broad'
    """
    if name not in LINES["name"]:
        raise KeyError(f"unknown line {name!r}; known lines: {', '.join(line_names())}")
    return LINES.loc[name]
