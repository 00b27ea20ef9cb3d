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

import argparse
import multiprocessing
import os
import subprocess
import sys
import tempfile
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


def _chunk_worker(args):
    """Simulate objects [start, stop) of a run with their own seeds."""
    from spectralnn.simulate import object_seeds

    seed, start, stop = args
    batch = simulate_quasars(stop - start, seed=object_seeds(seed, start, stop, "qso"))
    return batch.flux, batch.ivar


def parallel_quasars(n, seed=1, processes=2, chunk_size=250):
    """
    Simulate ``n`` quasars in ``processes`` worker processes.

    Each object draws from its own `numpy.random.SeedSequence`
    (`spectralnn.simulate.object_seeds`), so the result is identical to one
    serial `simulate_quasars` run of the same seed.
    """
    tasks = [(seed, a, min(n, a + chunk_size)) for a in range(0, n, chunk_size)]
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(processes, initializer=simulate_quasars, initargs=(2,)) as pool:
        parts = pool.map(_chunk_worker, tasks)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def quasar_rate(n, processes):
    """Quasars per second with a random forest on the SDSS grid."""
    if processes == 1:
        t0 = time.perf_counter()
        simulate_quasars(n, seed=1)
        return n / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    parallel_quasars(n, seed=1, processes=processes)
    return n / (time.perf_counter() - t0)


def cli_memory(n, chunk_size=1000):
    """
    Peak resident memory (MiB) and wall time of ``spectralnn simulate`` writing
    ``n`` quasars to HDF5 (a child process; its ``ru_maxrss``).
    """
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "sim.h5")
        code = (
            "import resource, sys; from spectralnn.cli import main; "
            f"rc = main(['simulate', '--kind', 'qso', '--n', '{n}', '-o', {out!r}, "
            f"'--chunk-size', '{chunk_size}']); "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(rc)"
        )
        t0 = time.perf_counter()
        res = subprocess.run([sys.executable, "-c", code], capture_output=True,
                             text=True, check=True)
        wall = time.perf_counter() - t0
        size = os.path.getsize(out)
    return int(res.stdout.split()[-1]) / 1024.0, wall, size / 2**20


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--n", type=int, default=N, help="spectra per timing case")
    parser.add_argument("--processes", type=int, default=2,
                        help="worker processes of the parallel case (default 2)")
    parser.add_argument("--memory-n", type=int, default=0,
                        help="also write this many quasars to HDF5 through the CLI "
                             "and report the peak memory (e.g. 100000)")
    args = parser.parse_args(argv)
    n = args.n
    simulate_quasars(5, seed=0)
    # the parallel run reproduces the serial one exactly
    small = min(n, 300)
    flux, _ = parallel_quasars(small, seed=3, processes=args.processes, chunk_size=64)
    assert np.array_equal(flux, simulate_quasars(small, seed=3).flux)
    wave = survey_grid("SDSS")
    flux = np.ones((n, wave.size))
    cases = {
        "simulate_quasars, SDSS, random forest": lambda: simulate_quasars(n, seed=1),
        "simulate_quasars, BOSS, random forest": lambda: simulate_quasars(
            n, seed=1, survey="BOSS"
        ),
        "simulate_quasars, DESI, random forest": lambda: simulate_quasars(
            n, seed=1, survey="DESI"
        ),
        "simulate_quasars, SDSS, noiseless, mean F": lambda: simulate_quasars(
            n, seed=1, noiseless=True, forest=False
        ),
        "observe() alone, SDSS": lambda: observe(wave, flux, snr=10.0, rng=1),
    }
    for name, func in cases.items():
        print(f"{name:45s} {_rate(func, n, repeat=2):8.0f} spectra/s")
    rate = quasar_rate(n, args.processes)
    print(f"{'SDSS quasars, forest, %d processes' % args.processes:45s} "
          f"{rate:8.0f} spectra/s")
    if args.memory_n:
        peak, wall, size = cli_memory(args.memory_n)
        print(f"CLI simulate --kind qso --n {args.memory_n}: peak RSS {peak:.0f} MiB, "
              f"{wall:.0f} s, file {size:.0f} MiB")


if __name__ == "__main__":
    main()
