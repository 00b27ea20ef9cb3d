"""
Simulate spectra with truth tables into an HDF5 dataset.

The spectra are generated and written in chunks (bounded memory); the same
seed gives the same file contents whatever the chunk size.
"""

from ..logger import log

__all__ = ["add_arguments", "run"]


def add_arguments(parser):
    """
    Declare the options of ``spectralnn simulate``.

    Parameters
    ----------
    parser : `argparse.ArgumentParser`
        The subcommand's parser.

    Examples
    --------
    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="spectralnn simulate")
    >>> add_arguments(parser)
    >>> args = parser.parse_args(["--kind", "qso", "--n", "100", "-o", "qso.h5"])
    >>> args.kind, args.n, args.survey, args.seed
    ('qso', 100, 'SDSS', 0)
    """
    parser.add_argument("--kind", choices=("qso", "galaxy", "star", "mixed"),
                        default="mixed", help="objects to simulate (default: mixed)")
    parser.add_argument("--n", type=int, required=True, help="number of spectra")
    parser.add_argument("-o", "--output", required=True, help="output HDF5 file")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--survey", default="SDSS",
                        help="survey grid and instrument: SDSS, BOSS, DESI, 4MOST")
    parser.add_argument("--chunk-size", type=int, default=1000,
                        help="spectra generated and written at a time (default: 1000)")
    parser.add_argument("--processes", type=int, default=1,
                        help="worker processes (default: 1); the output is identical "
                             "whatever the number")
    parser.add_argument("--noiseless", action="store_true",
                        help="write the noiseless models (no instrument)")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                        help="storage type of flux and ivar (default: float32)")
    parser.add_argument("--overwrite", action="store_true", help="replace the output")


def _progress(total):
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="spectra", desc="simulate", disable=None)


def run(args):
    """
    Run ``spectralnn simulate``.

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
    >>> from spectralnn.datasets import SpectrumDataset
    >>> parser = argparse.ArgumentParser(prog="spectralnn simulate")
    >>> add_arguments(parser)
    >>> out = getfixture("tmp_path") / "stars.h5"
    >>> run(parser.parse_args(["--kind", "star", "--n", "3", "-o", str(out), "--seed", "1"]))
    0
    >>> with SpectrumDataset(out) as dataset:
    ...     len(dataset)
    3
    """
    from .. import __version__
    from ..datasets import DatasetWriter
    from ..simulate import simulate_spectra

    if args.n < 1:
        log.error("--n must be positive, got %d", args.n)
        return 1
    processes = getattr(args, "processes", 1)
    if processes < 1:
        log.error("--processes must be positive, got %d", processes)
        return 1
    provenance = {
        "generator": f"spectralnn.simulate.simulate_spectra (spectralnn {__version__})",
        "kind": args.kind,
        "seed": int(args.seed),
        "survey": args.survey,
        "noiseless": bool(args.noiseless),
        "command": f"spectralnn simulate --kind {args.kind} --n {args.n} "
                   f"--seed {args.seed} --survey {args.survey}",
    }
    chunks = simulate_spectra(args.kind, args.n, seed=args.seed, survey=args.survey,
                              chunk_size=args.chunk_size, noiseless=args.noiseless,
                              processes=processes)
    bar = _progress(args.n)
    done = 0
    try:
        with DatasetWriter(args.output, overwrite=args.overwrite, dtype=args.dtype,
                           provenance=provenance) as writer:
            for batch in chunks:
                writer.append(batch)
                done += len(batch)
                if bar is not None:
                    bar.update(len(batch))
                else:
                    log.info("simulated %d / %d spectra", done, args.n)
    except (ValueError, NotImplementedError) as exc:
        log.error(str(exc))
        return 1
    finally:
        if bar is not None:
            bar.close()
    log.info("wrote %d %s spectra to %s", done, args.kind, args.output)
    return 0
