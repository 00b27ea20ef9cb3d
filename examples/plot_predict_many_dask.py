"""
Predict a million spectra with Dask (scaled down)
=================================================

`spectralnn.distributed.predict_many` runs reading, preprocessing and the
networks in *partitions* on a `dask.distributed` cluster and writes every
finished partition to disk at once, so a run over a survey can be stopped and
resumed without losing or duplicating a row. The same call runs on a
`~distributed.LocalCluster` (the default, one single-threaded worker process
per core) or on any cluster a `~distributed.Client` is connected to.

Here the "survey" is 600 simulated quasars written to two HDF5 datasets, run on
two workers in partitions of 100 spectra; a million spectra are the same
call with more files, more workers and a bigger ``partition_size``.
"""

# %%
# Write the input files
# ---------------------
# Any mix of SDSS/BOSS spec files, DESI coadds, folders of them and spectralnn
# HDF5 datasets can be given. We simulate quasars at 0.3 < z < 2 (Hβ or Mg II
# observed) and store them as two datasets.
import tempfile
from pathlib import Path

import numpy as np

from spectralnn.datasets import write_dataset
from spectralnn.simulate import simulate_quasars

work = Path(tempfile.mkdtemp())
paths = []
for k in range(2):
    batch = simulate_quasars(300, seed=40 + k, z_range=(0.3, 2.0), snr_range=(5, 30))
    batch.meta["object_id"] = batch.meta["object_id"] + 300 * k
    write_dataset(batch, work / f"quasars-{k}.h5")
    paths.append(work / f"quasars-{k}.h5")
print([p.name for p in paths])

# %%
# Run on a cluster, writing partitions
# ------------------------------------
# ``estimators`` names what to predict; each worker builds its estimators once
# (the shipped mass network, here without the slower classical virial fit).
# The partitions land in ``output`` as ECSV files beside a ``manifest.json``.
#
# Without ``client``, `~spectralnn.distributed.predict_many` starts a
# `~distributed.LocalCluster` of single-threaded worker *processes* (one per
# core) and closes it at the end. Worker processes are started by re-importing
# the calling script, so a script must keep its work under
# ``if __name__ == "__main__":``::
#
#     if __name__ == "__main__":
#         table = predict_many(paths, ["mass"], n_workers=8, output="masses/")
#
# This page runs inside the documentation build, so it connects to a small
# cluster of two worker *threads* instead; any `~distributed.Client` (a
# cluster on a batch system, a Kubernetes cluster ...) is passed the same way.
from distributed import Client, LocalCluster

from spectralnn.distributed import predict_many
from spectralnn.estimators import MassEstimator

cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                       dashboard_address=None)
client = Client(cluster)
out = work / "masses"
table = predict_many(paths, [(MassEstimator, {"virial": False})], client=client,
                     partition_size=100, output=out, progress=False)
print(len(table), "rows;", sorted(p.name for p in out.iterdir())[:3], "...")
print(table["object_id", "z", "log_mbh", "log_mbh_err", "flags"][:5])

# %%
# Resume: nothing is computed twice
# ---------------------------------
# Calling again with the same arguments reads the finished partitions back
# from ``output`` instead of recomputing them; after an interruption only the
# missing partitions would run.
again = predict_many(paths, [(MassEstimator, {"virial": False})], client=client,
                     partition_size=100, output=out, progress=False)
print("identical after resume:", bool(np.all(again["log_mbh"] == table["log_mbh"])))
client.close()
cluster.close()

# %%
# Compare with the truth
# ----------------------
# The network learns the catalogue-style virial mass; its residuals and the
# coverage of its 68 % intervals on these 600 spectra:
import matplotlib.pyplot as plt

from spectralnn.datasets import SpectrumDataset

truth = []
for p in paths:
    with SpectrumDataset(p) as ds:
        truth.append(np.asarray(ds.read_meta(columns=["virial_log_mbh"])["virial_log_mbh"]))
truth = np.concatenate(truth)
pred, err = table["log_mbh"].value, table["log_mbh_err"].value
resid = pred - truth
print(f"bias {np.mean(resid):+.3f} dex, RMS {np.sqrt(np.mean(resid ** 2)):.3f} dex, "
      f"68% coverage {np.mean(np.abs(resid) < err):.2f}")

fig, ax = plt.subplots(figsize=(5, 4.5))
ax.errorbar(truth, pred, yerr=err, fmt=".", ms=3, alpha=0.5, elinewidth=0.5)
lims = [truth.min() - 0.2, truth.max() + 0.2]
ax.plot(lims, lims, "k--", lw=1)
ax.set_xlabel("catalogue-style virial log M (truth)")
ax.set_ylabel("predict_many log M")
ax.set_title("600 spectra, 2 Dask workers")
fig.tight_layout()
