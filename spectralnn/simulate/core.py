"""
One entry point for all simulators, streamed in chunks.

`simulate_spectra` yields `~spectralnn.SpectrumBatch` chunks of quasars,
galaxies, stars or a mix, each with its truth table as ``meta``. Every object
draws its random numbers from its own `numpy.random.SeedSequence`, keyed by
the run's seed, the kind of object and the object's index, so a run is
byte-for-byte reproducible for a given seed **whatever the chunk size**, and
the first ``k`` objects of a run of ``n`` are the objects of a run of ``k``.

Examples
--------
>>> from spectralnn.simulate import simulate_spectra
>>> chunks = list(simulate_spectra("star", 5, seed=1, chunk_size=2,
...                                noiseless=True))
>>> [len(c) for c in chunks]
[2, 2, 1]
>>> chunks[2].meta["object_id"].tolist()
[4]
"""

import numpy as np

from ..batch import FLUX_UNIT, SpectrumBatch, concatenate

__all__ = ["SIMULATION_KINDS", "simulate_spectra", "object_seeds"]

#: Kinds of objects `simulate_spectra` knows, with their key in the seed tree.
SIMULATION_KINDS = {"qso": 1, "galaxy": 2, "star": 3, "mixed": 0}

#: Default mix of kinds for ``kind='mixed'`` (fractions of objects).
_MIXED_FRACTIONS = {"qso": 0.4, "galaxy": 0.4, "star": 0.2}


def object_seeds(seed, start, stop, kind="galaxy"):
    """
    The `~numpy.random.SeedSequence` of each object of a simulation run.

    Parameters
    ----------
    seed : int
        The run's seed (a non-negative integer).
    start, stop : int
        Range of object indices.
    kind : str, optional
        One of `SIMULATION_KINDS`; objects of different kinds get unrelated
        streams. Default ``'galaxy'``.

    Returns
    -------
    seeds : list of `~numpy.random.SeedSequence`
        One per object, ``stop - start`` of them.

    Raises
    ------
    ValueError
        If the seed is not a non-negative integer or the kind is unknown.

    Examples
    --------
    >>> a = object_seeds(1, 0, 3)
    >>> b = object_seeds(1, 2, 3)
    >>> a[2].generate_state(1) == b[0].generate_state(1)
    array([ True])
    """
    if kind not in SIMULATION_KINDS:
        raise ValueError(f"kind must be one of {list(SIMULATION_KINDS)}, not {kind!r}")
    seed = _check_seed(seed)
    code = SIMULATION_KINDS[kind]
    return [np.random.SeedSequence(seed, spawn_key=(code, i)) for i in range(start, stop)]


def _check_seed(seed):
    if seed is None:
        return int(np.random.SeedSequence().entropy)
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    return int(seed)


def _generators(seed, n):
    """One Generator for the batch, or one per object when given a sequence."""
    if isinstance(seed, (list, tuple)):
        if len(seed) != n:
            raise ValueError(f"got {len(seed)} seeds for {n} objects")
        return [np.random.default_rng(s) for s in seed]
    return np.random.default_rng(seed)


def _uniforms(gens, n, k):
    """Uniform [0, 1) numbers of shape (n, k): k per object from its own stream."""
    if isinstance(gens, list):
        if n == 0:
            return np.zeros((0, k))
        return np.stack([g.random(k) for g in gens])
    return gens.random((n, k))


def _magnitude_scale(wave, flux, magnitude, band="r"):
    """Factor per row that brings noiseless f_λ rows to an AB magnitude."""
    from ..errors import WavelengthCoverageError
    from .photometry import synthetic_photometry

    if flux.shape[0] == 0:
        return np.ones(0)
    current = synthetic_photometry(wave, flux, bands=band)[band]
    if not np.all(np.isfinite(current)):
        raise WavelengthCoverageError(
            f"the wavelength grid {wave[0]:.0f}-{wave[-1]:.0f} Å does not cover the "
            f"{band} band: cannot normalise the simulated spectra to a magnitude"
        )
    return 10 ** (-0.4 * (np.asarray(magnitude) - current))


def _finish(wave, model, truth, *, survey, gens, noiseless, snr=None):
    """Observe noiseless models (already scaled) and wrap them in a batch."""
    n = model.shape[0]
    if noiseless:
        flux = model
        ivar = np.ones_like(model)
        mask = np.zeros(model.shape, dtype=bool)
        truth["ebv"] = np.zeros(n)
    else:
        from .instrument import observe

        flux, ivar, mask = observe(wave, model, survey=survey, snr=snr,
                                   ebv=np.asarray(truth["ebv"]), rng=gens)
    if "flags" not in truth.colnames:
        truth["flags"] = np.zeros(n, dtype=np.int64)
    return SpectrumBatch._from_arrays_unchecked(
        np.asarray(wave, dtype=np.float64), flux, ivar, mask, truth, FLUX_UNIT, "observed"
    )


def _simulate_kind(kind, n, seeds, *, survey, noiseless, **kwargs):
    """Run one simulator on per-object seeds."""
    if kind == "galaxy":
        from .galaxy import simulate_galaxies

        return simulate_galaxies(n, seed=seeds, survey=survey, noiseless=noiseless,
                                 **kwargs)
    if kind == "star":
        from .star import simulate_stars

        return simulate_stars(n, seed=seeds, survey=survey, noiseless=noiseless, **kwargs)
    if kind == "qso":
        try:
            from .quasar import simulate_quasars
        except ImportError as exc:  # pragma: no cover - only in partial builds
            raise NotImplementedError(
                "the quasar simulator (spectralnn.simulate.quasar) is not available "
                "in this build"
            ) from exc
        if noiseless:
            kwargs["noiseless"] = True
        return simulate_quasars(n, seed=seeds, survey=survey, **kwargs)
    raise ValueError(f"kind must be one of {list(SIMULATION_KINDS)}, not {kind!r}")


def _chunk(kind, seed, start, stop, *, survey, noiseless, fractions, kwargs):
    if kind != "mixed":
        batch = _simulate_kind(kind, stop - start, object_seeds(seed, start, stop, kind),
                               survey=survey, noiseless=noiseless, **kwargs)
        batch.meta["object_id"] = np.arange(start, stop, dtype=np.int64)
        return batch
    # the kind of each object comes from its own stream too
    names = list(fractions)
    cum = np.cumsum([fractions[k] for k in names])
    cum /= cum[-1]
    kind_u = np.array([np.random.default_rng(s).random() for s in
                       object_seeds(seed, start, stop, "mixed")])
    which = np.searchsorted(cum, kind_u, side="right")
    parts, order = [], []
    for j, name in enumerate(names):
        idx = np.flatnonzero(which == j) + start
        if idx.size == 0:
            continue
        seeds = [np.random.SeedSequence(seed, spawn_key=(SIMULATION_KINDS[name], int(i)))
                 for i in idx]
        part = _simulate_kind(name, idx.size, seeds, survey=survey, noiseless=noiseless,
                              **kwargs.get(name, {}))
        part.meta["object_id"] = idx.astype(np.int64)
        parts.append(part)
        order.append(idx)
    batch = concatenate(parts) if len(parts) > 1 else parts[0]
    back = np.argsort(np.concatenate(order), kind="stable")
    return batch[back]


def simulate_spectra(kind, n, *, seed=None, survey="SDSS", chunk_size=1000,
                     noiseless=False, fractions=None, processes=1, **kwargs):
    """
    Simulate ``n`` spectra in chunks, deterministically for a seed.

    Parameters
    ----------
    kind : {'qso', 'galaxy', 'star', 'mixed'}
        What to simulate. ``'mixed'`` draws each object's kind from
        ``fractions``.
    n : int
        Number of spectra.
    seed : int, optional
        Seed of the run. The same seed gives byte-identical chunks whatever
        ``chunk_size`` is. Default: fresh entropy (not reproducible).
    survey : str, optional
        Survey whose grid, resolution and noise to use (see
        `spectralnn.simulate.SURVEYS`). Default ``'SDSS'``.
    chunk_size : int, optional
        Spectra per yielded chunk (bounds the memory). Default 1000.
    noiseless : bool, optional
        Skip the instrument model (galaxies and stars). Default False.
    fractions : dict, optional
        For ``kind='mixed'``: fraction of each kind, e.g.
        ``{'qso': 0.4, 'galaxy': 0.4, 'star': 0.2}`` (the default).
    processes : int, optional
        Worker processes that simulate chunks in parallel (default 1: in this
        process). Every object draws from its own seed, so the chunks are
        byte-identical to the serial ones and come in the same order; at most
        ``processes + 1`` chunks are held at a time.
    **kwargs
        Passed to the simulator of ``kind`` (e.g. ``z_range``); for
        ``'mixed'``, a dict per kind (``galaxy={'z_range': (0, 0.3)}``).

    Yields
    ------
    batch : `~spectralnn.SpectrumBatch`
        Up to ``chunk_size`` spectra on the survey grid; ``meta`` is the truth
        table with an ``object_id`` equal to the object's index in the run.

    Raises
    ------
    ValueError
        If ``kind``, ``n``, ``chunk_size``, ``processes`` or ``seed`` is
        invalid.
    NotImplementedError
        If ``kind='qso'`` and the quasar simulator is not available.

    Examples
    --------
    >>> from spectralnn.simulate import simulate_spectra
    >>> batch = next(simulate_spectra("galaxy", 3, seed=7, noiseless=True))
    >>> len(batch), sorted(set(batch.meta["class"].tolist()))
    (3, ['GALAXY'])
    """
    if kind not in SIMULATION_KINDS:
        raise ValueError(f"kind must be one of {list(SIMULATION_KINDS)}, not {kind!r}")
    if int(n) != n or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n}")
    if int(chunk_size) != chunk_size or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size}")
    seed = _check_seed(seed)
    if kind == "mixed":
        fractions = dict(_MIXED_FRACTIONS if fractions is None else fractions)
        unknown = set(fractions) - {"qso", "galaxy", "star"}
        if unknown or not fractions or any(v < 0 for v in fractions.values()) \
                or sum(fractions.values()) <= 0:
            raise ValueError(
                "fractions must map some of 'qso', 'galaxy', 'star' to non-negative "
                f"numbers with a positive sum, got {fractions}"
            )
    if int(processes) != processes or processes < 1:
        raise ValueError(f"processes must be a positive integer, got {processes}")
    if int(processes) > 1:
        return _generate_parallel(kind, int(n), seed, survey, int(chunk_size), noiseless,
                                  fractions, kwargs, int(processes))
    return _generate(kind, int(n), seed, survey, int(chunk_size), noiseless, fractions,
                     kwargs)


def _one_chunk(args):
    """Simulate objects [start, stop) of a run (a worker-process task)."""
    kind, seed, start, stop, survey, noiseless, fractions, kwargs = args
    batch = _chunk(kind, seed, start, stop, survey=survey, noiseless=noiseless,
                   fractions=fractions, kwargs=kwargs)
    batch.meta["seed"] = np.full(len(batch), seed, dtype=np.int64)
    return batch


def _tasks(kind, n, seed, survey, chunk_size, noiseless, fractions, kwargs):
    for start in range(0, n, chunk_size):
        yield (kind, seed, start, min(n, start + chunk_size), survey, noiseless,
               fractions, kwargs)


def _generate(kind, n, seed, survey, chunk_size, noiseless, fractions, kwargs):
    for task in _tasks(kind, n, seed, survey, chunk_size, noiseless, fractions, kwargs):
        yield _one_chunk(task)


def _generate_parallel(kind, n, seed, survey, chunk_size, noiseless, fractions, kwargs,
                       processes):
    """Chunks from a pool of worker processes, in order, a bounded number ahead."""
    import multiprocessing
    from collections import deque

    tasks = _tasks(kind, n, seed, survey, chunk_size, noiseless, fractions, kwargs)
    # not fork: numpy's BLAS threads make forking a multi-threaded process
    # unsafe (and Python warns about it)
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    with ctx.Pool(processes) as pool:
        pending = deque()
        for task in tasks:
            pending.append(pool.apply_async(_one_chunk, (task,)))
            if len(pending) > processes:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()
