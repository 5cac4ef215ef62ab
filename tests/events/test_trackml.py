"""The real TrackML sample pins down the geometry conventions and the reader."""

from __future__ import annotations

import gzip
import shutil

import numpy as np
import pytest

from taas.detector.trackml import load_trackml_detector
from taas.errors import InputError
from taas.events.dataset import open_dataset
from taas.events.event import read_event_parquet, write_event_parquet
from taas.events.trackml import read_trackml_event
from tests.trackml_data import TRACKML_DIR, TRACKML_EVENT_ID, needs_trackml

pytestmark = needs_trackml


@pytest.fixture(scope="module")
def detector():
    return load_trackml_detector(TRACKML_DIR / "detectors.csv.gz")


@pytest.fixture(scope="module")
def event(detector):
    return read_trackml_event(TRACKML_DIR, TRACKML_EVENT_ID, detector)


def test_detector_loads_every_module(detector):
    assert len(detector) == 18728
    m = detector.modules
    # the readout grid spans the module exactly
    np.testing.assert_allclose(m["n_u"] * m["pitch_u"], 2 * m["max_hu"], rtol=1e-9)
    np.testing.assert_allclose(m["n_v"] * m["pitch_v"], 2 * m["hv"], rtol=1e-9)
    # rotations are proper rotations
    r = detector.rotation
    np.testing.assert_allclose(np.einsum("nji,njk->nik", r, r), np.broadcast_to(np.eye(3), r.shape),
                               atol=1e-5)


def test_event_sizes_match_files(event):
    assert event.source == "trackml"
    assert len(event.cells) == 18564
    assert len(event.hits) == 5527
    assert len(event.particles) == 548
    assert set(np.unique(event.cells["hit_id"])) <= set(event.hits["hit_id"])


def test_hits_lie_on_their_module_plane_and_inside_bounds(event, detector):
    """Pins rotation and trapezoid conventions: every true hit is on its module."""
    h = event.hits
    rows = detector.index_of(h["module_key"])
    local = detector.global_to_local(rows, np.stack([h["tx"], h["ty"], h["tz"]], axis=1))
    assert np.all(np.abs(local[:, 2]) <= detector.modules["thickness"][rows] / 2 + 1e-3)
    assert detector.inside_bounds(rows, local[:, 0], local[:, 1], tolerance=1e-3).all()
    # the reconstructed (reference) positions too, and they are within a few pitches of truth
    assert detector.inside_bounds(rows, h["ref_u"], h["ref_v"], tolerance=1e-3).all()
    m = detector.modules
    assert np.all(np.abs(h["ref_u"] - local[:, 0]) < 5 * m["pitch_u"][rows])


def test_cell_centres_reproduce_hit_positions(event, detector):
    """Channel -> local at cell centres: the mean cell centre of a hit is its reference position.

    The barrel volumes carry a constant u offset in TrackML (a Lorentz-angle like shift of < 1
    pitch), so the check allows one pitch in u; in v it must agree to a tenth of a pitch.
    """
    c = event.cells
    rows = detector.index_of(c["module_key"])
    u, v = detector.channel_to_local(rows, c["ch0"], c["ch1"])
    ids, inverse, counts = np.unique(c["hit_id"], return_inverse=True, return_counts=True)
    mean_u = np.bincount(inverse, u) / counts
    mean_v = np.bincount(inverse, v) / counts
    h = event.hits
    order = np.argsort(h["hit_id"])
    pos = order[np.searchsorted(h["hit_id"][order], ids)]
    hit_rows = detector.index_of(h["module_key"][pos])
    m = detector.modules
    assert np.all(np.abs(mean_u - h["ref_u"][pos]) < m["pitch_u"][hit_rows])
    assert np.median(np.abs(mean_v - h["ref_v"][pos]) / m["pitch_v"][hit_rows]) < 0.01
    assert np.all(np.abs(mean_v - h["ref_v"][pos]) < 0.75 * m["pitch_v"][hit_rows])


def test_particles_derived_fields(event):
    p = event.particles
    assert np.all(p.pt > 0)
    assert p["primary"].sum() > 0.5 * len(p)
    noise_free = event.hits["particle_id"][event.hits["particle_id"] != 0]
    assert p["nhits"].sum() == len(noise_free)
    known = np.isin(np.abs(p["particle_type"]), [11, 13, 211, 321, 2212])
    assert np.all(np.isfinite(p["m"][known]))


def test_parquet_round_trip(event, tmp_path):
    write_event_parquet(event, tmp_path)
    back = read_event_parquet(tmp_path, event.event_id, event.detector)
    assert back.equals(event)
    assert back.source == "trackml"


def test_dataset_recognises_trackml():
    ds = open_dataset(TRACKML_DIR)
    assert ds.format == "trackml"
    assert ds.event_ids == [TRACKML_EVENT_ID]
    assert ds.detector_path.name == "detectors.csv.gz"


def _copy_event(tmp_path):
    for f in TRACKML_DIR.glob("event*"):
        shutil.copy(f, tmp_path / f.name)
    return tmp_path


def _rewrite(path, edit):
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    lines = edit(lines)
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))


@pytest.mark.parametrize(
    ("file", "edit", "pattern"),
    [
        ("cells", lambda ls: [ls[0].replace("ch0", "chan0"), *ls[1:]], r"cells.*'ch0'"),
        ("cells", lambda ls: [ls[0], ls[1].replace(ls[1].split(",")[1], "99999"), *ls[2:]],
         r"cells.*row 0.*'ch0'.*outside"),
        ("hits", lambda ls: [ls[0], ls[1], ls[2].rsplit(",", 1)[0] + ",77777", *ls[3:]],
         r"hits.*row 1.*'module_id'"),
        ("truth", lambda ls: [ls[0], ls[1], ls[2], ls[3].replace(ls[3].split(",")[2], "nan", 1),
                              *ls[4:]], r"truth.*row 2.*'tx'"),
        ("particles", lambda ls: [ls[0], ls[1].replace(ls[1].split(",")[5], "inf", 1), *ls[2:]],
         r"particles.*row 0.*'px'"),
        ("cells", lambda ls: [ls[0], "123456789,1,1,0.5", *ls[1:]], r"cells.*row 0.*'hit_id'"),
        ("cells", lambda ls: ls[:1], r"cells.*empty event"),
    ],
)
def test_bad_files_name_file_row_and_column(tmp_path, detector, file, edit, pattern):
    d = _copy_event(tmp_path)
    _rewrite(d / f"event000000001-{file}.csv.gz", edit)
    with pytest.raises(InputError, match=pattern):
        read_trackml_event(d, TRACKML_EVENT_ID, detector)


def test_truncated_gzip(tmp_path, detector):
    d = _copy_event(tmp_path)
    path = d / "event000000001-cells.csv.gz"
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(InputError, match="cells"):
        read_trackml_event(d, TRACKML_EVENT_ID, detector)


def test_missing_file(tmp_path, detector):
    d = _copy_event(tmp_path)
    (d / "event000000001-truth.csv.gz").unlink()
    with pytest.raises(InputError, match="truth"):
        read_trackml_event(d, TRACKML_EVENT_ID, detector)
