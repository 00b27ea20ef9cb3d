"""
SDSS queries and downloads (spectralnn.datasets.sdss), offline.

As astroquery tests itself: the request layer is monkeypatched (astroquery's
``SDSS._request`` for SkyServer queries, ``spectralnn.datasets.sdss._http_get``
for spectrum files), answering from the small files in ``data/`` and from
spectrum files generated here. The ``remote_data`` twins at the end run only
with ``--remote-data``.
"""

import io
import time
from pathlib import Path

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.table import Table

pytest.importorskip("astroquery")

from astroquery.sdss import SDSS  # noqa: E402
from astroquery.utils.mocks import MockResponse  # noqa: E402

from spectralnn.datasets import sdss  # noqa: E402
from spectralnn.datasets.sdss import (  # noqa: E402
    SDSSDownloadError,
    download_spectra,
    query_spectra,
    spectrum_path,
    spectrum_url,
    verify_spectrum_file,
)
from tests.datasets.test_catalog import write_sdss_like  # noqa: E402

DATA = Path(__file__).parent / "data"


@pytest.fixture
def skyserver(monkeypatch):
    """SkyServer answers from data/ (chosen from the SQL), and a record of the calls."""
    calls = []

    def request(method, url, **kwargs):
        sql = kwargs["params"]["cmd"]
        calls.append(sql)
        if "s.ra BETWEEN" in sql:
            name = "sdss_sql_cone.csv" if "213.3" in sql else "sdss_sql_empty.csv"
        else:
            name = "sdss_sql_plate_mjd_fiber.csv"
        return MockResponse(content=(DATA / name).read_bytes(), url=url)

    monkeypatch.setattr(SDSS, "_request", request)
    monkeypatch.setattr(sdss, "_require_online", lambda url: None)
    return calls


def _spec_bytes(tmp_path, plate, mjd, fiber):
    path = tmp_path / f"src-{plate}-{mjd}-{fiber}.fits"
    if not path.exists():
        wave = 3800.0 * 10 ** (1e-4 * np.arange(300))
        write_sdss_like(path, wave, np.ones(300), np.ones(300), plate, mjd, fiber, 0.1)
    return path.read_bytes()


class FakeSAS:
    """The Science Archive Server: serves generated files, with scripted failures."""

    def __init__(self, tmp_path):
        self.tmp_path = tmp_path
        self.calls = []
        self.failures = {}  # file name -> list of failures to play first

    def __call__(self, url, *, headers=None, timeout=None):
        name = url.rsplit("/", 1)[1]
        self.calls.append((name, dict(headers or {})))
        plan = self.failures.get(name, [])
        if plan:
            failure = plan.pop(0)
            if failure == "drop":
                raise ConnectionError("connection reset by peer")
            if failure == "truncated":
                body = self._body(name)[:5000]
                return MockResponse(content=body, url=url)
            return MockResponse(content=b"", url=url, status_code=failure)
        body = self._body(name)
        start = 0
        if headers and "Range" in headers:
            start = int(headers["Range"].split("=")[1].rstrip("-"))
            return MockResponse(content=body[start:], url=url, status_code=206)
        return MockResponse(content=body, url=url)

    def _body(self, name):
        plate, mjd, fiber = (int(x) for x in name[5:-5].split("-"))
        return _spec_bytes(self.tmp_path, plate, mjd, fiber)


@pytest.fixture
def sas(monkeypatch, tmp_path):
    fake = FakeSAS(tmp_path / "server")
    (tmp_path / "server").mkdir()
    monkeypatch.setattr(sdss, "_http_get", fake)
    monkeypatch.setattr(sdss, "_require_online", lambda url: None)
    monkeypatch.setattr(time, "sleep", lambda s: None)  # no back-off waits in tests
    return fake


# ------------------------------------------------------------------ queries
def test_query_payload():
    sql = query_spectra(["0332-52367-0639", (7339, 56683, 739), "spec-0266-51602-0013.fits"],
                        get_query_payload=True)
    assert len(sql) == 1 and sql[0].startswith("SELECT s.plate, s.mjd, s.fiberID, s.run2d")
    assert "(s.plate = 266 AND s.mjd = 51602 AND s.fiberID = 13)" in sql[0]
    many = query_spectra([(1000, 55000, f) for f in range(1, 121)], get_query_payload=True)
    assert len(many) == 3  # 50 conditions per request keeps the URL short
    cone = query_spectra(coordinates=SkyCoord(0.0001 * u.deg, 10 * u.deg),
                         radius=3 * u.arcsec, get_query_payload=True)
    assert len(cone) == 1 and cone[0].count("s.ra BETWEEN") == 2  # RA wraps at 0
    with pytest.raises(ValueError, match="exactly one"):
        query_spectra(["0332-52367-0639"], coordinates=SkyCoord(0 * u.deg, 0 * u.deg))
    with pytest.raises(ValueError, match="PLATE-MJD-FIBER"):
        query_spectra(["332-52367"], get_query_payload=True)


def test_query_by_plate_mjd_fiber(skyserver):
    found = query_spectra(["0332-52367-0639", (7339, 56683, 739), (1, 51000, 1)])
    assert len(skyserver) == 1
    assert found["plate"].tolist() == [332, 7339] and found["fiber"].tolist() == [639, 739]
    assert found["run2d"].tolist() == ["26", "v5_13_2"]
    assert found["input_row"].tolist() == [0, 1]
    assert found.meta["not_found"] == [2]
    assert found["ra"].unit == u.deg and found["class"][0] == "QSO"


def test_query_by_position_keeps_the_radius(skyserver):
    rm017 = SkyCoord(213.35115 * u.deg, 53.09082 * u.deg)
    found = query_spectra(coordinates=[rm017, SkyCoord(10 * u.deg, -5 * u.deg)])
    # three epochs of RM017; the galaxy 4 arcsec away is outside 2 arcsec
    assert sorted(found["mjd"].tolist()) == [52762, 56664, 56683]
    assert set(found["input_row"].tolist()) == {0}
    assert found.meta["not_found"] == [1]


def test_query_by_catalogue(skyserver):
    from spectralnn.datasets import read_catalog

    cat = read_catalog(Table({"PLATE": [332, -1], "MJD": [52367, -1],
                              "FIBERID": [639, -1], "RA": [184.03066, 213.35115],
                              "DEC": [-2.238279, 53.09082], "Z": [0.1006, 0.456]}))
    found = query_spectra(catalog=cat)
    assert len(skyserver) == 2  # one plate-mjd-fiber query, one position query
    # (the recorded answer to the first also holds 7339-56683-739: not asked, no row)
    keys = zip(found["plate"].tolist(), found["mjd"].tolist(), strict=True)
    rows = dict(zip(keys, found["input_row"].tolist(), strict=True))
    assert rows[(332, 52367)] == 0 and rows[(1325, 52762)] == 1
    assert (7339, 56683) in rows and len(found) == 4
    assert found.meta["not_found"] == []


# ---------------------------------------------------------------- downloads
def test_urls_and_cache_layout():
    assert spectrum_url(266, 51602, 13, 26).endswith(
        "/dr17/sdss/spectro/redux/26/spectra/0266/spec-0266-51602-0013.fits")
    assert "/v5_13_2/spectra/full/7339/" in spectrum_url(7339, 56683, 739, "v5_13_2")
    assert "/v5_13_2/spectra/lite/7339/" in spectrum_url(7339, 56683, 739, "v5_13_2",
                                                         lite=True)
    assert "/dr14/" in spectrum_url(10000, 57346, 1, "v5_10_0", data_release=14)
    assert spectrum_url(10000, 57346, 1, "v5_10_0").endswith("spec-10000-57346-0001.fits")
    assert spectrum_path(332, 52367, 639, "26", cache_dir="c") == \
        Path("c/dr17/26/full/0332/spec-0332-52367-0639.fits")
    with pytest.raises(ValueError, match="data_release"):
        spectrum_url(1, 1, 1, "26", data_release=19)


def _table():
    return Table({"plate": [332, 7339], "mjd": [52367, 56683], "fiber": [639, 739],
                  "run2d": ["26", "v5_13_2"]})


def test_download_cache_and_resume(sas, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    result = download_spectra(_table(), cache_dir=cache, progress=False)
    assert result["status"].tolist() == ["downloaded", "downloaded"]
    for path in result["path"]:
        assert verify_spectrum_file(path) and str(cache) in path
    assert Path(result["path"][1]).parts[-4:-1] == ("v5_13_2", "full", "7339")
    # a second run: verified and skipped, without a connection at all
    sas.calls.clear()

    def offline(url):
        raise SDSSDownloadError("offline")

    monkeypatch.setattr(sdss, "_require_online", offline)
    again = download_spectra(_table(), cache_dir=cache, progress=False)
    assert again["status"].tolist() == ["cached", "cached"] and not sas.calls
    # an interrupted download (a .part file) is continued with a range request
    monkeypatch.setattr(sdss, "_require_online", lambda url: None)
    full = Path(result["path"][0])
    body = full.read_bytes()
    full.unlink()
    full.with_name(full.name + ".part").write_bytes(body[:8640])
    resumed = download_spectra(_table(), cache_dir=cache, progress=False)
    assert resumed["status"].tolist() == ["downloaded", "cached"]
    assert sas.calls == [("spec-0332-52367-0639.fits", {"Range": "bytes=8640-"})]
    assert full.read_bytes() == body and not full.with_name(full.name + ".part").exists()
    # a corrupt cached file is fetched again
    full.write_bytes(body[:2880])
    assert download_spectra(_table()[:1], cache_dir=cache,
                            progress=False)["status"][0] == "downloaded"


def test_download_retries_and_failures(sas, tmp_path):
    sas.failures = {"spec-0332-52367-0639.fits": ["drop", 503, "truncated"],
                    "spec-7339-56683-0739.fits": [404]}
    result = download_spectra(_table(), cache_dir=tmp_path / "c", retries=3,
                              progress=False)
    assert result["status"].tolist() == ["downloaded", "missing"]
    assert "404" in result["message"][1]
    assert len([c for c in sas.calls if c[0].startswith("spec-0332")]) == 4
    sas.failures = {"spec-0332-52367-0639.fits": [500, 500, 500]}
    failed = download_spectra(_table()[:1], cache_dir=tmp_path / "d", retries=2,
                              progress=False)
    assert failed["status"][0] == "failed" and "after 3 attempts" in failed["message"][0]
    with pytest.raises(ValueError, match="run2d"):
        download_spectra(Table({"plate": [1], "mjd": [1], "fiber": [1]}))


def test_offline_fails_at_once(tmp_path):
    """No network (pytest-remotedata blocks it here): a clear error, not a hang."""
    from astropy.utils.data import conf as data_conf

    start = time.monotonic()
    with pytest.raises(SDSSDownloadError, match="cannot reach data.sdss.org"):
        download_spectra(_table(), cache_dir=tmp_path, progress=False)
    with pytest.raises(SDSSDownloadError, match="cannot reach skyserver.sdss.org"):
        query_spectra(["0332-52367-0639"])
    assert time.monotonic() - start < 10
    with data_conf.set_temp("allow_internet", False):
        with pytest.raises(SDSSDownloadError, match="switched off"):
            query_spectra(["0332-52367-0639"])


def test_verify_spectrum_file(tmp_path):
    good = tmp_path / "good.fits"
    good.write_bytes(_spec_bytes(tmp_path, 1, 2, 3))
    assert verify_spectrum_file(good)
    cut = tmp_path / "cut.fits"
    cut.write_bytes(good.read_bytes()[:2880 * 2])
    assert not verify_spectrum_file(cut)
    odd = tmp_path / "odd.fits"
    odd.write_bytes(io.BytesIO(b"x" * 100).getvalue())
    assert not verify_spectrum_file(odd)


# ------------------------------------------------------------- remote twins
@pytest.mark.remote_data
class TestRemote:
    def test_query_and_download_a_known_spectrum(self, tmp_path):
        found = query_spectra(["0332-52367-0639"])
        assert found["run2d"][0] == "26" and abs(found["z"][0] - 0.1006) < 1e-3
        result = download_spectra(found, cache_dir=tmp_path, lite=True)
        assert result["status"][0] == "downloaded"
        from spectralnn.io import read_sdss

        assert read_sdss(result["path"][0]).meta["object_id"] == "SDSS_332-52367-639"

    def test_query_by_position(self):
        found = query_spectra(coordinates=SkyCoord(213.35115 * u.deg, 53.09082 * u.deg))
        assert len(found) > 10  # RM017 was observed at many epochs
