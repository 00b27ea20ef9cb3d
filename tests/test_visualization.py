"""Tests of spectralnn.visualization (Agg backend, no display)."""

import numpy as np
import pytest

from spectralnn.datasets import example_spectrum
from spectralnn.errors import WavelengthCoverageError
from spectralnn.physics.blackhole import virial_black_hole_mass

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from spectralnn.visualization import plot_mass_fit  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_plot_mass_fit_draws_data_and_model():
    spectrum = example_spectrum()
    ax = plot_mass_fit(spectrum)
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels[0].startswith("spectrum") and "power-law continuum" in labels
    assert any("broad Hbeta" in label for label in labels)
    data, continuum, broad, total = (line.get_ydata() for line in ax.get_lines()[:4])
    # the model follows the data: residual rms below 2x the median noise level
    noise = 1 / np.sqrt(np.median(spectrum.uncertainty.array))
    resid = np.nanstd(data - total)
    assert resid < 2 * noise
    # the broad line rises above the continuum at Hβ
    lam = ax.get_lines()[0].get_xdata()
    at = np.argmin(np.abs(lam - 4862.68))
    assert broad[at] > 1.5 * continuum[at]
    title = ax.get_legend().get_title().get_text()
    mass = virial_black_hole_mass(spectrum)["log_mbh"][0].value
    assert f"{mass:.2f}" in title


def test_plot_mass_fit_shows_network_row_on_given_axes():
    from astropy import units as u
    from astropy.table import QTable

    fig, ax = plt.subplots()
    row = QTable({"log_mbh": [8.5] * u.dex(u.M_sun), "log_mbh_err": [0.3] * u.dex})[0]
    out = plot_mass_fit(example_spectrum(), row, ax=ax)
    assert out is ax
    assert "network: log M = 8.50 ± 0.30" in ax.get_legend().get_title().get_text()


def test_plot_mass_fit_without_line_raises():
    with pytest.raises(WavelengthCoverageError, match="covers no virial line"):
        # at z = 0.7 the 3800-9200 Å spectrum is 2235-5410 Å rest: it misses
        # both the Mg II (2200-3090 Å) and the Hβ (4435-5535 Å) fitting ranges
        plot_mass_fit(example_spectrum(), z=0.7)


def test_plot_confusion_matrix_rows_are_fractions_of_the_true_class():
    from spectralnn.visualization import plot_confusion_matrix

    true = ["QSO"] * 4 + ["STAR"] * 2 + ["GALAXY"]
    pred = ["QSO", "QSO", "QSO", "STAR", "STAR", "GALAXY", "GALAXY"]
    ax = plot_confusion_matrix(true, pred, labels=["STAR", "GALAXY", "QSO"])
    shown = ax.images[0].get_array()
    np.testing.assert_allclose(shown.sum(axis=1), 1.0)
    assert shown[2, 2] == pytest.approx(0.75) and shown[2, 0] == pytest.approx(0.25)
    counts = plot_confusion_matrix(true, pred, normalize=False).images[0].get_array()
    assert counts.sum() == len(true)
    with pytest.raises(ValueError, match="same length"):
        plot_confusion_matrix(true, pred[:-1])


def test_plot_redshift_comparison_flags_catastrophic_failures():
    from spectralnn.visualization import plot_redshift_comparison

    rng = np.random.default_rng(1)
    z = rng.uniform(0.1, 4, 200)
    z_pred = z + 0.001 * (1 + z) * rng.normal(size=z.size)
    z_pred[:5] += 0.5  # 5 failures, far beyond 6000 km/s
    top, bottom = plot_redshift_comparison(z, z_pred, z_err=0.001 * (1 + z))
    assert "catastrophic (>6000 km/s): 5 (2.50%)" in top.get_title()
    nmad = float(top.get_title().rsplit("= ", 1)[1])
    assert 0.0007 < nmad < 0.0013  # the scatter put in
    # 1000 km/s: the same residuals are failures far more often
    top, _ = plot_redshift_comparison(z, z_pred, catastrophic_velocity=100.0)
    assert int(top.get_title().split(": ")[1].split()[0]) > 50
    with pytest.raises(ValueError, match="no finite"):
        plot_redshift_comparison([np.nan], [1.0])
