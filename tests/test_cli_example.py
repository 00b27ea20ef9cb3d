"""Tests of ``spectralnn example`` and the bundled example spectrum."""

import subprocess
import sys
import warnings

import numpy as np
from astropy import units as u
from astropy.io import fits
from specutils import Spectrum

from spectralnn.cli import main
from spectralnn.datasets import (
    example_spectrum,
    example_spectrum_path,
    example_truth,
    write_example_spectrum,
)
from spectralnn.io import identify_format


def test_example_file_is_small_and_sdss_shaped():
    path = example_spectrum_path()
    assert path.stat().st_size < 200_000
    assert identify_format(path) == "sdss"
    # specutils' own SDSS loader reads it without spectralnn (the SDSS BUNIT
    # '1E-17 erg/cm^2/s/Ang' has several slashes: astropy warns, as for real files)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*multiple slashes", u.UnitsWarning)
        spectrum = Spectrum.read(path, format="SDSS-III/IV spec")
    assert spectrum.flux.size == 3840
    with fits.open(path) as hdul:
        assert [h.name for h in hdul[1:]] == ["COADD", "SPECOBJ"]
        assert hdul[2].data["CLASS"][0].strip() == "QSO"


def test_example_spectrum_meta_and_truth():
    spectrum = example_spectrum()
    truth = example_truth()
    assert spectrum.meta["class"] == "QSO"
    # Z is stored as float32 in SPECOBJ: 1e-6 is its precision at z ~ 0.3
    assert abs(spectrum.meta["z"] - truth["z"]) < 1e-6
    assert abs(spectrum.meta["ebv"] - truth["ebv"]) < 1e-4  # from 5-band EXTINCTION
    # Hβ (4862.68 Å rest) must fall inside the spectrum
    hbeta = 4862.68 * (1 + truth["z"])
    assert spectrum.spectral_axis.value[0] < hbeta < spectrum.spectral_axis.value[-1]
    snr = np.median(spectrum.flux.value * np.sqrt(spectrum.uncertainty.array))
    assert 15 < snr < 30  # simulated at median S/N 20 per pixel


def test_example_can_be_regenerated(tmp_path):
    # the bundled file is regenerated with write_example_spectrum; the truth
    # parameters are drawn first from the seed, so they survive changes of the
    # simulator's spectral model (the flux itself may change with it)
    path = write_example_spectrum(tmp_path / "again.fits")
    with fits.open(path) as new, fits.open(example_spectrum_path()) as old:
        assert new[1].data["flux"].shape == old[1].data["flux"].shape
        for key in ("TRUEZ", "TRUEMBH", "SIMSEED"):
            assert new[0].header[key] == old[0].header[key]


def test_example_command_prints_virial_mass(capsys):
    assert main(["example"]) == 0
    out = capsys.readouterr().out
    assert "virial (measured)" in out and "truth (simulation)" in out
    row = next(line for line in out.splitlines() if "virial (measured)" in line)
    value, error = (float(x) for x in row.split()[2:4])
    # measured 8.382 +/- 0.023 against the simulation's noiseless virial 8.324:
    # 0.15 dex allows the unmodelled Fe II/Balmer continuum (see test_analysis)
    assert abs(value - example_truth()["virial_log_mbh"]) < 0.15
    assert 0.005 < error < 0.2


def test_example_command_runs_without_keras(tmp_path):
    # a fresh install without TensorFlow/Keras still gives the virial part
    code = (
        "import sys; sys.modules['keras'] = None; sys.modules['tensorflow'] = None\n"
        "from spectralnn.cli import main\n"
        f"sys.exit(main(['example', '-o', {str(tmp_path / 'ex.ecsv')!r}]))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "virial (measured)" in result.stdout
    assert (tmp_path / "ex.ecsv").exists()
