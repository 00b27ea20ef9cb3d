"""
Real-data check of the shipped SpectralClassifier and RedshiftEstimator.

Every spectrum of ``../shared/data/real/spectra_index.csv`` with a pipeline
(or literature) class that is not flagged ``Z_SUSPECT``: 157 SDSS/BOSS
quasars (mostly z < 0.7 broad-line AGN, the 52 epochs of RM017, a few
high-z quasars), 4 galaxies, 1 star and the continuum-normalised Keck
spectrum of PHL 957. The class must match, and the redshift of every
quasar or galaxy be within |Δz| ≤ 0.01 of the pipeline's.

These figures are a check, never a training or model-selection target.
Measured with the shipped weights (classifier 1.0.0, redshift 1.0.0 with the
template search): 152 of 160 classes right and 147 of the 158 quasar and
galaxy redshifts within 0.01. The misses (see ``docs/classification.rst``):
two z ~ 0.4-0.5 AGN with strong host light called GALAXY, a galaxy with a
broad line called QSO (the pipeline calls its other epoch QSO), a z = 0.12
galaxy and NGC 4636 called STAR, an F star called GALAXY, the
continuum-normalised Keck spectrum of PHL 957 (outside the training domain),
one spectrum flagged unusable; and redshifts of six z ~ 0.3-0.6 quasars put
at z ~ 0.9-2 (Hβ/[O III] taken for Mg II), one at z = 0.39 put at 0.03 and
one at z = 1.93 off by 0.06.
The bounds below document the current state.
"""

import csv
import warnings

import numpy as np
import pytest

pytest.importorskip("keras")


@pytest.fixture(scope="module")
def real_results(real_data):
    from spectralnn.batch import as_batch
    from spectralnn.estimators import RedshiftEstimator, SpectralClassifier
    from spectralnn.io import read_spectrum

    with open(real_data / "spectra_index.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["label_class"]
                and "Z_SUSPECT" not in r["flags"]]
    clf = SpectralClassifier()
    zest = RedshiftEstimator(classifier=clf)
    out = []
    with warnings.catch_warnings():
        # real files carry header quirks and masked pixels that warn
        warnings.simplefilter("ignore")
        for r in rows:
            kwargs = {"rows": [int(r["row"])]} if r["format"].startswith("desi") else {}
            try:
                spectrum = read_spectrum(real_data / r["path"], **kwargs)
                # a DESI coadd comes as a SpectrumList (one row asked for)
                batch = as_batch(spectrum)[:1]
            except Exception:  # noqa: BLE001 - an unreadable file counts as a miss
                out.append((r, "", np.nan))
                continue
            cls = str(clf.predict(batch)["class"][0])
            z = float(zest.predict(batch)["z"][0].value)
            out.append((r, cls, z))
    return out


def test_real_classes(real_results):
    right = [cls == r["label_class"].replace(" (literature)", "")
             for r, cls, _ in real_results]
    assert len(right) >= 150
    # measured 152 / 160
    assert np.sum(right) >= 0.93 * len(right)


def test_real_redshifts(real_results):
    with_z = [(float(r["label_z"]), z) for r, _, z in real_results
              if r["label_z"] and r["label_class"] in ("QSO", "GALAXY")]
    truth, pred = np.array(with_z).T
    good = np.abs(pred - truth) <= 0.01
    # measured 147 / 158 quasars and galaxies with a pipeline z
    assert len(good) >= 150
    assert good.mean() >= 0.90
