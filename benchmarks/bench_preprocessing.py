"""
Benchmark: specutils loop versus the spectralnn batch path.

On the same synthetic spectra (power-law continuum, broad Hβ, [O III]
λλ4959,5007, Gaussian noise) it times

(a) a Python loop over `specutils.Spectrum` objects calling
    `specutils.fitting.fit_generic_continuum`, then
    `specutils.analysis.equivalent_width` and `specutils.analysis.fwhm` on
    the same line regions;
(b) spectralnn: `continuum_powerlaw` + `measure_lines` on one batch
    (nonparametric, over the same regions, and the Gaussian fit).

It prints the timings, the speed ratio and the largest EW and FWHM
differences between the two. It asserts nothing.

Run ``python benchmarks/bench_preprocessing.py --n 1000``.
"""

import argparse
import time
import warnings

import numpy as np
from astropy import units as u

C_KMS = 299792.458
REGIONS = {"Hbeta": (4780.0, 4940.0), "[OIII]5007": (4990.0, 5030.0)}


def make_spectra(n, seed=0):
    """Rest-frame wavelength (Å), flux, ivar of n synthetic quasar spectra."""
    rng = np.random.default_rng(seed)
    wave = 4400.0 * 10 ** (1e-4 * np.arange(900))  # SDSS-like log grid, 4400-5400 A
    amp = rng.uniform(2, 6, n)[:, None]
    slope = rng.uniform(-2.0, -1.0, n)[:, None]
    flux = amp * (wave / 5000.0) ** slope
    for lam, f_range, s_range in [
        (4862.68, (50, 150), (1200, 2500)),
        (5008.24, (10, 60), (150, 300)),
    ]:
        f = rng.uniform(*f_range, n)[:, None]
        s = lam * rng.uniform(*s_range, n)[:, None] / C_KMS
        flux = flux + f / (np.sqrt(2 * np.pi) * s) * np.exp(
            -0.5 * ((wave - lam) / s) ** 2
        )
        if lam > 5000:  # [O III] 4959 at 1/2.98 of 5007
            mu = 4960.30
            s2 = s * mu / lam
            flux = flux + f / 2.98 / (np.sqrt(2 * np.pi) * s2) * np.exp(
                -0.5 * ((wave - mu) / s2) ** 2
            )
    noise = 0.01 * amp  # S/N 100 per pixel in the continuum
    flux = flux + noise * rng.standard_normal(flux.shape)
    ivar = np.broadcast_to(1.0 / noise**2, flux.shape).copy()
    return wave, flux, ivar


def run_specutils(wave, flux, ivar):
    from astropy.nddata import InverseVariance
    from specutils import SpectralRegion, Spectrum
    from specutils.analysis import equivalent_width, fwhm
    from specutils.fitting import fit_generic_continuum

    unit = u.Unit("1e-17 erg / (s cm2 Angstrom)")
    exclude = [SpectralRegion(4640 * u.AA, 5100 * u.AA)]
    regions = {
        k: SpectralRegion(lo * u.AA, hi * u.AA) for k, (lo, hi) in REGIONS.items()
    }
    ew = np.zeros((len(flux), len(REGIONS)))
    width = np.zeros_like(ew)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(len(flux)):
            spec = Spectrum(
                flux=flux[i] * unit,
                spectral_axis=wave * u.AA,
                uncertainty=InverseVariance(ivar[i] / unit**2),
            )
            model = fit_generic_continuum(spec, exclude_regions=exclude)
            cont = model(spec.spectral_axis)
            norm = spec / cont
            sub = spec - cont
            for k, name in enumerate(REGIONS):
                ew[i, k] = -equivalent_width(norm, regions=regions[name]).to_value(u.AA)
                width[i, k] = fwhm(sub, regions=regions[name]).to_value(u.AA)
    return time.perf_counter() - start, ew, width


def run_spectralnn(wave, flux, ivar, profile):
    from spectralnn import SpectrumBatch
    from spectralnn.preprocessing import continuum_powerlaw, measure_lines

    unit = u.Unit("1e-17 erg / (s cm2 Angstrom)")
    start = time.perf_counter()
    batch = SpectrumBatch(wave * u.AA, flux * unit, ivar, frame="rest")
    cont = continuum_powerlaw(batch)
    windows = {k: v * u.AA for k, v in REGIONS.items()}
    table = measure_lines(
        batch,
        list(REGIONS),
        continuum=cont,
        profile=profile,
        windows=windows if profile == "nonparametric" else None,
        seed=0,
    )
    elapsed = time.perf_counter() - start
    prefixes = ["Hbeta", "OIII_5007"]
    ew = np.column_stack([table[p + "_ew"].to_value(u.AA) for p in prefixes])
    centre = np.column_stack([table[p + "_center"].to_value(u.AA) for p in prefixes])
    fwhm_aa = (
        np.column_stack([table[p + "_fwhm"].to_value(u.km / u.s) for p in prefixes])
        * centre
        / C_KMS
    )
    return elapsed, ew, fwhm_aa, int(np.count_nonzero(table["flags"]))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="number of spectra")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3,
                        help="time the batch path this many times and keep the best "
                             "(timeit practice; the specutils loop is timed once, its "
                             "1000 calls are warm after the first)")
    args = parser.parse_args(argv)

    wave, flux, ivar = make_spectra(args.n, args.seed)
    print(f"{args.n} spectra x {wave.size} pixels, lines {', '.join(REGIONS)}")
    # warm up both paths on a few spectra (imports, first-call caches), so
    # that the timings below measure per-spectrum work only
    run_specutils(wave[:], flux[:5], ivar[:5])
    for profile in ("nonparametric", "gaussian"):
        run_spectralnn(wave, flux[:10], ivar[:10], profile)
    t_spec, ew_s, fwhm_s = run_specutils(wave, flux, ivar)
    print(
        f"(a) specutils loop (fit_generic_continuum + equivalent_width + fwhm): "
        f"{t_spec:.2f} s"
    )
    for profile in ("nonparametric", "gaussian"):
        runs = [run_spectralnn(wave, flux, ivar, profile)
                for _ in range(max(args.repeat, 1))]
        t_nn, ew_n, fwhm_n, n_flagged = min(runs, key=lambda r: r[0])
        print(
            f"(b) spectralnn batch, continuum_powerlaw + measure_lines "
            f"(profile={profile!r}): {t_nn:.3f} s (best of {len(runs)}; all: "
            f"{', '.join(f'{r[0]:.3f}' for r in runs)}), {n_flagged} rows flagged"
        )
        print(f"    speed ratio (a)/(b): {t_spec / t_nn:.0f}x")
        for k, name in enumerate(REGIONS):
            d_ew = np.nanmax(np.abs(ew_n[:, k] - ew_s[:, k]))
            rel_ew = np.nanmedian(np.abs(ew_n[:, k] / ew_s[:, k] - 1))
            d_fw = np.nanmax(np.abs(fwhm_n[:, k] - fwhm_s[:, k]))
            rel_fw = np.nanmedian(np.abs(fwhm_n[:, k] / fwhm_s[:, k] - 1))
            print(
                f"    {name:>10}: max |dEW| = {d_ew:.3f} A (median {100 * rel_ew:.2f}%), "
                f"max |dFWHM| = {d_fw:.3f} A (median {100 * rel_fw:.2f}%)"
            )


if __name__ == "__main__":
    main()
