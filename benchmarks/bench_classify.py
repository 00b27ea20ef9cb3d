"""
Throughput of spectralnn's classifier + redshift against a QuasarNET replica.

The peer is QuasarNET (Busca & Balland 2018) rebuilt in Keras 3
(`spectralnn.models.quasarnet`) with the weights QuasarNP ships for its tests
(``test_weights_6_layer.h5``: six convolutions of the paper's 100 filters;
``--weights`` picks another file, e.g. the 4 × 25-filter ``test_weights.h5``). Both pipelines run on
the same real DESI spectra (every DESI coadd / spectra file under ``--data``,
read with `spectralnn.io.read_spectra`), end to end:

* **replica**: read → QuasarNET rebinning and normalisation
  (`quasarnet_preprocess`) → network → box decoding (`quasarnet_redshift`:
  line confidences, class, z);
* **spectralnn**: read → `SpectralClassifier.predict` and
  `RedshiftEstimator.predict` (each: dereddening, resampling, normalisation,
  network, table with flags; the redshift's template refinement, its default,
  is on unless ``--no-refine`` or the networks are untrained, and takes its
  classes from the classifier's table).

The file list is replicated ``--repeat`` times (reading included each time)
and processed in chunks of about ``--chunk`` spectra, so the rates are
stable. Each pipeline runs ``--trials`` times after one warm-up, the two
alternating chunk by chunk so that both see the same load on a shared
machine; the best and the median rates are printed, with the ratio
spectralnn/replica (> 1: spectralnn faster), and the same without the read
(identical for both). Model-only rates (network forward passes on prepared
inputs, tiled to ``--model-n`` spectra, same batch size and calling
convention for both) are printed too, with one more peer: the paper's size
(4 convolutions × 100 filters, dense 100) with random weights, since the
speed of a network does not depend on its weights.

The shipped ``classifier-default`` / ``redshift-default`` weights are used
when installed; else ``--classifier PATH`` / ``--redshift PATH``; else
untrained networks of the default ``resnet1d`` architecture (the speed does
not depend on the training; a note says so)::

    python benchmarks/bench_classify.py --repeat 200
    python benchmarks/bench_classify.py --repeat 50 --weights test_weights.h5 --json out.json
"""

import argparse
import json
import statistics
import time
import warnings
from pathlib import Path

import numpy as np

#: real DESI files beside the checkout (developers' machines only)
_REAL_DESI = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "desi"

#: a plausible label set for an untrained classifier (speed only)
_LABELS = ["GALAXY:", "GALAXY:AGN", "GALAXY:BROADLINE", "GALAXY:STARBURST",
           "GALAXY:STARFORMING", "QSO:BAL", "QSO:BROADLINE", "STAR:A", "STAR:B",
           "STAR:CV", "STAR:Carbon", "STAR:F", "STAR:G", "STAR:K", "STAR:L/T", "STAR:M",
           "STAR:O", "STAR:WD"]


def desi_files(folder):
    """Every DESI coadd/spectra FITS file under folder, sorted."""
    from astropy.io import fits

    from spectralnn.io import is_desi_coadd

    found = []
    for path in sorted(Path(folder).rglob("*.fits")):
        try:
            with fits.open(path) as hdul:
                if is_desi_coadd(hdul):
                    found.append(path)
        except OSError:
            continue
    return found


def chunks(files, repeat, n_per_round, chunk):
    """File lists of about ``chunk`` spectra each, covering files × repeat."""
    rounds = max(1, int(round(chunk / max(n_per_round, 1))))
    left = repeat
    while left > 0:
        k = min(rounds, left)
        yield list(files) * k
        left -= k


def read(paths):
    from spectralnn.io import read_spectra

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # BUNIT assumed for QuasarNP's stripped file
        return read_spectra(paths)


def forward(model, x, batch_size):
    """Replica outputs (n_lines, N, 2 n_boxes): eager calls, as Estimator._forward."""
    parts = []
    for start in range(0, len(x), batch_size):
        out = model(x[start:start + batch_size, :, None], training=False)
        parts.append(np.stack([np.asarray(o) for o in out]))
    return np.concatenate(parts, axis=1)


def run_replica(model, paths_chunks, batch_size):
    """End-to-end replica; returns (n spectra, seconds per stage, n quasars)."""
    from spectralnn.models.quasarnet import quasarnet_preprocess, quasarnet_redshift

    times = {"read": 0.0, "rebin": 0.0, "model": 0.0, "decode": 0.0}
    n = n_qso = 0
    for paths in paths_chunks:
        t0 = time.perf_counter()
        batch = read(paths)
        t1 = time.perf_counter()
        x, usable = quasarnet_preprocess(batch.wavelength, batch.flux, batch.ivar,
                                         mask=batch.mask)
        x = x[usable].astype(np.float32)
        t2 = time.perf_counter()
        out = forward(model, x, batch_size)
        t3 = time.perf_counter()
        table = quasarnet_redshift(out)
        t4 = time.perf_counter()
        times["read"] += t1 - t0
        times["rebin"] += t2 - t1
        times["model"] += t3 - t2
        times["decode"] += t4 - t3
        n += len(batch)
        n_qso += int(np.sum(table["is_qso"]))
    return n, times, n_qso


def run_spectralnn(classifier, redshift, paths_chunks):
    """End-to-end spectralnn; returns (n spectra, seconds per stage, n quasars)."""
    times = {"read": 0.0, "classify": 0.0, "redshift": 0.0}
    n = n_qso = 0
    for paths in paths_chunks:
        t0 = time.perf_counter()
        batch = read(paths)
        t1 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # unusable (e.g. sky) fibres are flagged
            classes = classifier.predict(batch)
            t2 = time.perf_counter()
            if _accepts(redshift.predict, "spectype"):
                # the classes just computed pick the refinement's templates
                redshift.predict(batch, spectype=np.asarray(classes["class"]).astype(str))
            else:
                redshift.predict(batch)
        t3 = time.perf_counter()
        times["read"] += t1 - t0
        times["classify"] += t2 - t1
        times["redshift"] += t3 - t2
        n += len(batch)
        n_qso += int(np.sum(classes["class"] == "QSO"))
    return n, times, n_qso


def _accepts(function, name):
    import inspect

    return name in inspect.signature(function).parameters


def load_estimators(classifier_path, redshift_path, sample, refine=None):
    """The two estimators and a note on where their weights come from."""
    from spectralnn.errors import ModelFileError
    from spectralnn.estimators import RedshiftEstimator, SpectralClassifier

    notes = []
    out = []
    untrained = False
    for cls, path in ((SpectralClassifier, classifier_path), (RedshiftEstimator, redshift_path)):
        kwargs = {}
        if cls is RedshiftEstimator:
            # the refinement's classifier is the one timed here, not a second copy
            if _accepts(cls, "classifier"):
                kwargs["classifier"] = out[0]
            if refine is not None and _accepts(cls, "refine"):
                kwargs["refine"] = refine
        if path is not None:
            est = cls(path, **kwargs)
            notes.append(f"{cls.__name__}: {path}")
        else:
            try:
                est = cls("default", **kwargs)
                notes.append(f"{cls.__name__}: shipped {est.metadata['name']}")
            except ModelFileError:
                est = _untrained(cls, sample, kwargs)
                untrained = True
                notes.append(f"{cls.__name__}: no shipped weights: an UNTRAINED "
                             "'resnet1d' network of the default architecture (speed only; "
                             "classes and redshifts meaningless)")
        out.append(est)
    if getattr(out[1], "refine", False) and untrained:
        # its cost depends on the classes and redshifts it starts from, which
        # untrained networks make meaningless (e.g. stars at z ~ 1.4)
        out[1].refine = False
        notes.append("RedshiftEstimator: template refinement switched OFF with untrained "
                     "networks (its cost depends on their meaningless classes and z)")
    elif getattr(out[1], "refine", False):
        notes.append("RedshiftEstimator: template refinement on (its default), with the "
                     "classes of the timed classifier; --no-refine times the network alone")
    return out[0], out[1], notes


def _untrained(cls, sample, kwargs):
    """An estimator of the default architecture with freshly initialised weights."""
    est = cls("resnet1d", **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x = est.pipeline(sample[:2]).network_inputs
    if cls.__name__ == "SpectralClassifier":
        est.metadata["labels"] = list(_LABELS)
        y = np.arange(2, dtype=np.float64)[:, None]
    else:
        y = np.log1p(np.array([[0.5], [2.5]]))
    est._build(x, y)
    return est


def model_only(replica, classifier, redshift, batch, n_model, batch_size, trials):
    """Forward-pass rates (spectra/s) on prepared inputs tiled to n_model."""
    from spectralnn.models.quasarnet import quasarnet_preprocess

    x, usable = quasarnet_preprocess(batch.wavelength, batch.flux, batch.ivar,
                                     mask=batch.mask)
    x = x[usable].astype(np.float32)
    reps = int(np.ceil(n_model / len(x)))
    xq = np.tile(x, (reps, 1))[:n_model]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = classifier.pipeline(batch)
    xs = np.asarray(prepared.network_inputs)
    xs = np.tile(xs, (int(np.ceil(n_model / len(xs))), 1, 1))[:n_model]
    from spectralnn.models.quasarnet import build_quasarnet

    # the paper's size (4 x 100 filters): speed only, so fresh random weights
    paper = build_quasarnet(4, filters=100, dense_units=100, padding="valid")
    forward(paper, xq[:batch_size], batch_size)
    rates = {"replica": [], "replica_paper_4x100": [], "classifier": [], "redshift": [],
             "classifier+redshift": []}
    for _ in range(trials):
        tp = time.perf_counter()
        forward(paper, xq, batch_size)
        t0 = time.perf_counter()
        forward(replica, xq, batch_size)
        t1 = time.perf_counter()
        rates["replica_paper_4x100"].append(n_model / (t0 - tp))
        classifier._forward(xs)
        t2 = time.perf_counter()
        redshift._forward(xs)
        t3 = time.perf_counter()
        rates["replica"].append(n_model / (t1 - t0))
        rates["classifier"].append(n_model / (t2 - t1))
        rates["redshift"].append(n_model / (t3 - t2))
        rates["classifier+redshift"].append(n_model / (t3 - t1))
    return rates


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=_REAL_DESI,
                        help="folder searched for DESI coadd files (default: the shared "
                             "real-data folder beside the checkout)")
    parser.add_argument("--weights", type=Path, default=None,
                        help="QuasarNET .h5 weights (default: "
                             "<data>/quasarnp/test_weights_6_layer.h5)")
    parser.add_argument("--classifier", type=Path, default=None)
    parser.add_argument("--redshift", type=Path, default=None)
    parser.add_argument("--repeat", type=int, default=100,
                        help="times the file list is read and processed (default 100)")
    parser.add_argument("--chunk", type=int, default=1024,
                        help="spectra per processing chunk (default 1024)")
    parser.add_argument("--batch-size", type=int, default=1024,
                        help="network batch size of both pipelines (default 1024, the "
                             "estimators' default)")
    parser.add_argument("--model-n", type=int, default=8192,
                        help="spectra in the model-only timing (default 8192)")
    parser.add_argument("--no-refine", action="store_true",
                        help="switch off the RedshiftEstimator's template refinement")
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    files = desi_files(args.data)
    if not files:
        raise SystemExit(f"no DESI coadd files under {args.data}")
    weights = args.weights or args.data / "quasarnp" / "test_weights_6_layer.h5"
    if not weights.exists() and (args.data / "quasarnp" / weights).exists():
        weights = args.data / "quasarnp" / weights

    import keras

    from spectralnn.models.quasarnet import load_quasarnet, read_quasarnet_config

    sample = read(files)
    n_round = len(sample)
    print(f"{len(files)} DESI files, {n_round} spectra per round: "
          + ", ".join(f.name for f in files))
    print(f"Keras {keras.__version__}, backend {keras.backend.backend()}")
    replica = load_quasarnet(weights)
    config = read_quasarnet_config(weights)
    print(f"replica: {weights.name} ({config['n_layers']} conv layers × "
          f"{config['filters']} filters, padding {config['padding']}, "
          f"{replica.count_params():,} parameters)")
    classifier, redshift, notes = load_estimators(args.classifier, args.redshift, sample,
                                                  refine=False if args.no_refine else None)
    for note in notes:
        print("note:", note)
    print(f"spectralnn: classifier {classifier.model.count_params():,} + redshift "
          f"{redshift.model.count_params():,} parameters")
    classifier.batch_size = redshift.batch_size = args.batch_size

    # warm-up (graph building, first-call allocations), not timed
    run_replica(replica, [list(files)], args.batch_size)
    run_spectralnn(classifier, redshift, [list(files)])

    results = {"replica": [], "spectralnn": []}
    stages = {"replica": [], "spectralnn": []}
    after_read = {"replica": [], "spectralnn": []}
    for trial in range(args.trials):
        # chunk by chunk, alternating which pipeline goes first, so that both
        # see the same load on a shared machine
        n = n2 = n_qso_r = n_qso_s = 0
        sec = sec2 = 0.0
        times = dict.fromkeys(("read", "rebin", "model", "decode"), 0.0)
        times2 = dict.fromkeys(("read", "classify", "redshift"), 0.0)
        for k, paths in enumerate(chunks(files, args.repeat, n_round, args.chunk)):
            for which in ((0, 1) if k % 2 == 0 else (1, 0)):
                t0 = time.perf_counter()
                if which == 0:
                    m, part, q = run_replica(replica, [paths], args.batch_size)
                    sec += time.perf_counter() - t0
                    n, n_qso_r = n + m, n_qso_r + q
                    times = {key: times[key] + part[key] for key in times}
                else:
                    m, part, q = run_spectralnn(classifier, redshift, [paths])
                    sec2 += time.perf_counter() - t0
                    n2, n_qso_s = n2 + m, n_qso_s + q
                    times2 = {key: times2[key] + part[key] for key in times2}
        results["replica"].append(n / sec)
        results["spectralnn"].append(n2 / sec2)
        after_read["replica"].append(n / (sec - times["read"]))
        after_read["spectralnn"].append(n2 / (sec2 - times2["read"]))
        stages["replica"].append({k: n / v for k, v in times.items() if v > 0})
        stages["spectralnn"].append({k: n2 / v for k, v in times2.items() if v > 0})
        print(f"trial {trial + 1}: {n} spectra; replica {results['replica'][-1]:,.0f}/s "
              f"({n_qso_r} QSO), spectralnn {results['spectralnn'][-1]:,.0f}/s "
              f"({n_qso_s} QSO)", flush=True)

    def summary(rates):
        return {"best": max(rates), "median": statistics.median(rates)}

    e2e = {k: summary(v) for k, v in results.items()}
    print("\nEnd to end (read, rebin/preprocess, predict, z), spectra/s:")
    for key in ("replica", "spectralnn"):
        best_trial = int(np.argmax(results[key]))
        stage_text = ", ".join(f"{k} {v:,.0f}/s" for k, v in stages[key][best_trial].items())
        print(f"  {key:<11} best {e2e[key]['best']:8,.0f}  median {e2e[key]['median']:8,.0f}"
              f"   (stages of the best trial: {stage_text})")
    best = e2e["spectralnn"]["best"] / e2e["replica"]["best"]
    median = e2e["spectralnn"]["median"] / e2e["replica"]["median"]
    print(f"  ratio spectralnn / replica: best {best:.2f}, median {median:.2f}")
    post = {k: summary(v) for k, v in after_read.items()}
    print("Same, excluding the (identical) read: "
          + ", ".join(f"{k} best {v['best']:,.0f} median {v['median']:,.0f}"
                      for k, v in post.items())
          + f"; ratio best {post['spectralnn']['best'] / post['replica']['best']:.2f}")

    rates = model_only(replica, classifier, redshift, sample, args.model_n,
                       args.batch_size, args.trials)
    mo = {k: summary(v) for k, v in rates.items()}
    print(f"\nModel only ({args.model_n} spectra, batch {args.batch_size}), spectra/s:")
    for key, value in mo.items():
        print(f"  {key:<21} best {value['best']:8,.0f}  median {value['median']:8,.0f}")
    for key in ("replica", "replica_paper_4x100"):
        ratio = mo["classifier+redshift"]["best"] / mo[key]["best"]
        print(f"  ratio (classifier+redshift) / {key}: best {ratio:.2f}")

    if args.json:
        args.json.write_text(json.dumps({
            "files": [str(f) for f in files], "spectra_per_round": n_round,
            "repeat": args.repeat, "chunk": args.chunk, "batch_size": args.batch_size,
            "weights": str(weights), "notes": notes, "end_to_end": e2e,
            "end_to_end_trials": results, "after_read": post, "stages": stages, "model_only": mo,
            "model_only_trials": rates}, indent=2))


if __name__ == "__main__":
    main()
