"""
Throughput of the quasar simulator and the instrument model.

Run as a script (``python benchmarks/bench_simulate.py``) for a table of
spectra per second, or with airspeed velocity (the ``time_*`` methods).

Measured on the shared 2-core development machine (numpy 2.4, one process,
other jobs running), 500 spectra per call, after one warm-up call:

=========================================  ===========
case                                       spectra / s
=========================================  ===========
simulate_quasars, SDSS, random forest      390-440
simulate_quasars, BOSS, random forest      ~370
simulate_quasars, DESI, random forest      ~250
simulate_quasars, SDSS, noiseless, mean F  ~650
observe() alone, SDSS                      ~5000
=========================================  ===========

The goal of the issue is 500 quasars/s with the forest on 2 cores; one process
reaches ~400/s on SDSS grids (about a third of the time goes to the per-object
random streams, Voigt profiles of DLAs and the emission lines). Chunks are
independent and deterministic per object, so two processes (one per core)
double it.
"""

import time

import numpy as np

from spectralnn.simulate import observe, simulate_quasars, survey_grid

N = 500


class TimeSimulate:
    """airspeed-velocity style benchmarks."""

    def setup(self):
        simulate_quasars(5, seed=0)  # warm caches (Fe II templates)
        self.wave = survey_grid("SDSS")
        self.flux = np.ones((N, self.wave.size))

    def time_quasars_sdss(self):
        simulate_quasars(N, seed=1)

    def time_quasars_desi(self):
        simulate_quasars(N, seed=1, survey="DESI")

    def time_observe_sdss(self):
        observe(self.wave, self.flux, snr=10.0, rng=1)


def _rate(func, n=N, repeat=3):
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        func()
        best = min(best, time.perf_counter() - t0)
    return n / best


def main():
    simulate_quasars(5, seed=0)
    wave = survey_grid("SDSS")
    flux = np.ones((N, wave.size))
    cases = {
        "simulate_quasars, SDSS, random forest": lambda: simulate_quasars(N, seed=1),
        "simulate_quasars, BOSS, random forest": lambda: simulate_quasars(
            N, seed=1, survey="BOSS"
        ),
        "simulate_quasars, DESI, random forest": lambda: simulate_quasars(
            N, seed=1, survey="DESI"
        ),
        "simulate_quasars, SDSS, noiseless, mean F": lambda: simulate_quasars(
            N, seed=1, noiseless=True, forest=False
        ),
        "observe() alone, SDSS": lambda: observe(wave, flux, snr=10.0, rng=1),
    }
    for name, func in cases.items():
        print(f"{name:45s} {_rate(func):8.0f} spectra/s")


if __name__ == "__main__":
    main()
