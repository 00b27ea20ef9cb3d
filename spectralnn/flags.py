"""
Bit flags attached to every spectrum and every result row.

A batch never aborts because one spectrum is bad: the bad spectrum gets a flag
in ``meta['flags']`` (and in the ``flags`` column of every result table) and
the others go on. The flags are bits of one integer, so several can be set at
once; `describe_flags` turns a value back into names.

Examples
--------
>>> from spectralnn.flags import Flag, describe_flags
>>> value = Flag.MASKED_PIXELS | Flag.LOW_SNR
>>> describe_flags(value)
['MASKED_PIXELS', 'LOW_SNR']
"""

import enum

__all__ = ["Flag", "describe_flags"]


class Flag(enum.IntFlag):
    """
    Quality flags of a spectrum or of one result row.

    Examples
    --------
    >>> from spectralnn.flags import Flag
    >>> value = Flag.LOW_SNR | Flag.OUT_OF_DOMAIN
    >>> int(value), Flag.LOW_SNR in value, Flag.NO_DATA in value
    (528, True, False)
    """

    #: Some pixels had NaN/inf flux or invalid inverse variance and were masked.
    MASKED_PIXELS = 1
    #: No usable pixel is left (all masked or zero inverse variance).
    NO_DATA = 2
    #: Some inverse variances were negative (masked).
    NEGATIVE_IVAR = 4
    #: The spectrum does not cover the wavelengths the operation needs.
    OUT_OF_COVERAGE = 8
    #: Median S/N per pixel below ``spectralnn.conf.low_snr_threshold``.
    LOW_SNR = 16
    #: The file could not be read; the row is a placeholder.
    READ_ERROR = 32
    #: The spectrum had no uncertainty; it was estimated from the pixel scatter.
    ESTIMATED_UNCERTAINTY = 64
    #: A fit did not converge or gave an unphysical value.
    FIT_FAILED = 128
    #: Redshift unknown (needed for the operation).
    NO_REDSHIFT = 256
    #: Input outside the domain the model was trained on.
    OUT_OF_DOMAIN = 512


def describe_flags(value):
    """
    Names of the flags set in an integer flag value.

    Parameters
    ----------
    value : int
        A combination of `Flag` bits.

    Returns
    -------
    names : list of str
        The names of the bits that are set, lowest bit first.

    Examples
    --------
    >>> describe_flags(0)
    []
    >>> describe_flags(2)
    ['NO_DATA']
    """
    value = int(value)
    return [f.name for f in Flag if value & f.value]
